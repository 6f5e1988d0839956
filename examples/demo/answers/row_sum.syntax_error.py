import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r'''
#include <cstdint>

extern "C" int row_sum(const float* __restrict__ x, float* __restrict__ out,
                       int64_t rows, int64_t n) {
    const int64_t L = 8;  // independent accumulators
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * n;
        double acc[L] = {0, 0, 0, 0, 0, 0, 0, 0};
        const int64_t body = n - n % L;
        for (int64_t j = 0; j < body; j += L) {
            for (int64_t k = 0; k < L; ++k) acc[k] += static_cast<double>(xr[j + k]);
        }
        double s = 0.0
        for (int64_t k = 0; k < L; ++k) s += acc[k];
        for (int64_t j = body; j < n; ++j) s += static_cast<double>(xr[j]);  // ragged tail
        out[r] = static_cast<float>(s);
    }
    return 0;
}
''', name="row_sum", flags=("-O3", "-march=native"))
_lib.row_sum.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_int64, ctypes.c_int64]
_lib.row_sum.restype = ctypes.c_int


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        rows, n = x.shape
        out = torch.empty(rows, dtype=x.dtype)
        _lib.row_sum(kforge_cpp.ptr(x), kforge_cpp.ptr(out), rows, n)
        return out
