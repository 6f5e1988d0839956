import ctypes

import torch
import kforge_cpp

EPS = 1e-5  # the reference's epsilon

_lib = kforge_cpp.build(r'''
#include <cmath>
#include <cstdint>

extern "C" int layernorm(const float* __restrict__ x, const float* __restrict__ w,
                         const float* __restrict__ b, float* __restrict__ y,
                         int64_t rows, int64_t n, double eps) {
    const int64_t L = 8;  // independent f64 accumulators, so the sums vectorise
    const int64_t body = n - n % L;
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * n;
        float* yr = y + r * n;
        // Pass 1a: the mean.
        double s[L] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t j = 0; j < body; j += L)
            for (int64_t k = 0; k < L; ++k) s[k] += xr[j + k];
        double sum = 0.0;
        for (int64_t k = 0; k < L; ++k) sum += s[k];
        for (int64_t j = body; j < n; ++j) sum += xr[j];
        const double mean = sum / n;
        // Pass 1b: the biased variance, around the mean (no cancellation).
        double q[L] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t j = 0; j < body; j += L)
            for (int64_t k = 0; k < L; ++k) {
                const double d = xr[j + k] - mean;
                q[k] += d * d;
            }
        double ss = 0.0;
        for (int64_t k = 0; k < L; ++k) ss += q[k];
        for (int64_t j = body; j < n; ++j) ss += (xr[j] - mean) * (xr[j] - mean);
        // Pass 2: normalise, scale and shift in f32.
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
    def __init__(self):
        super().__init__()

    def forward(self, x, weight, bias):
        x = x.contiguous()
        weight = weight.contiguous()
        bias = bias.contiguous()
        y = torch.empty_like(x)
        n = x.shape[-1]
        _lib.layernorm(kforge_cpp.ptr(x), kforge_cpp.ptr(weight), kforge_cpp.ptr(bias),
                       kforge_cpp.ptr(y), x.numel() // n, n, EPS)
        return y
