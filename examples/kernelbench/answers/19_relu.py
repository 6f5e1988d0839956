import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r'''
#include <cstdint>

extern "C" int relu(const float* __restrict__ x, float* __restrict__ y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const float v = x[i];
        y[i] = v > 0.0f ? v : 0.0f;  // a select, not a branch: vectorises to vmaxps
    }
    return 0;
}
''', name="relu", flags=("-O3", "-march=native"))
_lib.relu.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_int64]
_lib.relu.restype = ctypes.c_int


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        _lib.relu(kforge_cpp.ptr(x), kforge_cpp.ptr(y), x.numel())
        return y
