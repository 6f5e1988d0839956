import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r'''
#include <cmath>
#include <cstdint>

// GELU, 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))), one pass.
extern "C" int gelu(const float* __restrict__ x, float* __restrict__ y, int64_t n) {
    const float k = 0.7978845608f;  // sqrt(2 / pi)
    for (int64_t i = 0; i < n; ++i) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.0f + std::tanh(k * (v + 0.044715f * v * v * v)));
    }
    return 0;
}
''', name="gelu", flags=("-O3", "-march=native"))
_lib.gelu.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_int64]
_lib.gelu.restype = ctypes.c_int


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        _lib.gelu(kforge_cpp.ptr(x), kforge_cpp.ptr(y), x.numel())
        return y
