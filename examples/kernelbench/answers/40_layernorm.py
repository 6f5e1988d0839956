import ctypes

import torch
import kforge_cpp

EPS = 1e-5  # nn.LayerNorm's default

_lib = kforge_cpp.build(r'''
#include <cmath>
#include <cstdint>

// Each of `rows` rows of n floats: f64 mean and biased variance (divide by n, as nn.LayerNorm
// does), then (x - mean) * rstd * w + b.
extern "C" int layernorm(const float* __restrict__ x, const float* __restrict__ w,
                         const float* __restrict__ b, float* __restrict__ y,
                         int64_t rows, int64_t n, double eps) {
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * n;
        float* yr = y + r * n;
        double sum = 0.0;
        for (int64_t j = 0; j < n; ++j) sum += xr[j];
        const double mean = sum / n;
        double ss = 0.0;
        for (int64_t j = 0; j < n; ++j) ss += (xr[j] - mean) * (xr[j] - mean);
        const float rstd = static_cast<float>(1.0 / std::sqrt(ss / n + eps));
        const float m = static_cast<float>(mean);
        for (int64_t j = 0; j < n; ++j) yr[j] = (xr[j] - m) * rstd * w[j] + b[j];
    }
    return 0;
}
''', name="layernorm", flags=("-O3", "-march=native"))
_lib.layernorm.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, kforge_cpp.c_ptr, kforge_cpp.c_ptr,
                           ctypes.c_int64, ctypes.c_int64, ctypes.c_double]
_lib.layernorm.restype = ctypes.c_int


class ModelNew(torch.nn.Module):
    def __init__(self, normalized_shape):
        super().__init__()
        # The same parameters as nn.LayerNorm's, initialised the same way (ones and zeros).
        self.weight = torch.nn.Parameter(torch.ones(normalized_shape))
        self.bias = torch.nn.Parameter(torch.zeros(normalized_shape))

    def forward(self, x):
        x = x.contiguous()
        w = self.weight.detach().contiguous()
        b = self.bias.detach().contiguous()
        n = w.numel()
        y = torch.empty_like(x)
        _lib.layernorm(kforge_cpp.ptr(x), kforge_cpp.ptr(w), kforge_cpp.ptr(b), kforge_cpp.ptr(y),
                       x.numel() // n, n, EPS)
        return y
