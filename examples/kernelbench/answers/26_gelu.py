import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r'''
#include <cmath>
#include <cstdint>
#include <cstring>

// exp(x) in f32 without a libm call, so that the loop vectorises: x = n*ln2 + r,
// exp(x) = 2^n * p(r), p the degree-6 Taylor polynomial (relative error < 3e-7). x is
// clamped to [-87, 88] so that the result stays a normal float.
static inline float exp_f32(float x) {
    x = x > -87.0f ? x : -87.0f;
    x = x < 88.0f ? x : 88.0f;
    const float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;  // round(x / ln2)
    const float r = (x - n * 0.693145752f) - n * 1.42860677e-6f;    // ln2 in two parts
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// erf(x) by Abramowitz and Stegun 7.1.26 (absolute error < 1.5e-7), odd in x.
static inline float erf_f32(float x) {
    const float a = std::fabs(x);
    const float t = 1.0f / (1.0f + 0.3275911f * a);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    const float y = 1.0f - p * t * exp_f32(-a * a);
    return std::copysign(y, x);
}

// The exact GELU, 0.5 * x * (1 + erf(x / sqrt(2))), one pass.
extern "C" int gelu(const float* __restrict__ x, float* __restrict__ y, int64_t n) {
    const float k = 0.70710678118654752f;  // 1 / sqrt(2)
    for (int64_t i = 0; i < n; ++i) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.0f + erf_f32(v * k));
    }
    return 0;
}
''', name="gelu", flags=("-O3", "-march=native", "-fno-trapping-math"))
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
