import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r'''
#include <cstdint>

extern "C" int vector_add(const float* __restrict__ x, const float* __restrict__ y,
                          float* __restrict__ out, int64_t n) {
    const int64_t B = 16;  // floats per step
    for (int64_t i = 0; i + B <= n; i += B) {
        for (int64_t j = 0; j < B; ++j) out[i + j] = x[i + j] + y[i + j];
    }
    return 0;
}
''', name="vector_add", flags=("-O3", "-march=native"))
_lib.vector_add.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_int64]
_lib.vector_add.restype = ctypes.c_int


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x, y):
        x = x.contiguous()
        y = y.contiguous()
        out = torch.empty_like(x)
        _lib.vector_add(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out), x.numel())
        return out
