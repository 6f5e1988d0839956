import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r'''
#include <cmath>
#include <cstdint>

extern "C" int softmax_rows(const float* __restrict__ x, float* __restrict__ y,
                            int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * n;
        float* yr = y + r * n;
        double s = 0.0;
        for (int64_t i = 0; i < n; ++i) {
            yr[i] = std::exp(xr[i]);
            s += yr[i];
        }
        const float inv = static_cast<float>(1.0 / s);
        for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
    }
    return 0;
}
''', name="softmax", flags=("-O3", "-march=native"))
_lib.softmax_rows.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_int64, ctypes.c_int64]
_lib.softmax_rows.restype = ctypes.c_int


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        n = x.shape[-1]
        _lib.softmax_rows(kforge_cpp.ptr(x), kforge_cpp.ptr(y), x.numel() // n, n)
        return y
