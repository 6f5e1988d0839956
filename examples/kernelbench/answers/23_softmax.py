import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r'''
#include <cstdint>
#include <cstring>

// exp(x) in f32 without a libm call, so that the loops calling it vectorise:
// x = n*ln2 + r with |r| <= ln2/2, exp(x) = 2^n * p(r), p the degree-6 Taylor polynomial
// (relative error < 3e-7). x is clamped to [-87, 88]: the result stays a normal float.
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

extern "C" int softmax_rows(const float* __restrict__ x, float* __restrict__ y,
                            int64_t rows, int64_t n) {
    const int64_t L = 8;  // f32 lanes of one AVX2 register
    const int64_t body = n - n % L;
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * n;
        float* yr = y + r * n;
        // Pass 1: the row maximum, 8 lanes wide.
        float m[L];
        for (int64_t k = 0; k < L; ++k) m[k] = xr[0];
        for (int64_t j = 0; j < body; j += L)
            for (int64_t k = 0; k < L; ++k) m[k] = xr[j + k] > m[k] ? xr[j + k] : m[k];
        float mx = xr[0];
        for (int64_t k = 0; k < L; ++k) mx = m[k] > mx ? m[k] : mx;
        for (int64_t j = body; j < n; ++j) mx = xr[j] > mx ? xr[j] : mx;
        // Pass 2: e = exp(x - max) <= 1 (no overflow), written to y, summed in 8 lanes.
        float s[L] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t j = 0; j < body; j += L)
            for (int64_t k = 0; k < L; ++k) {
                const float e = exp_f32(xr[j + k] - mx);
                yr[j + k] = e;
                s[k] += e;
            }
        double sum = 0.0;
        for (int64_t k = 0; k < L; ++k) sum += s[k];
        for (int64_t j = body; j < n; ++j) {
            yr[j] = exp_f32(xr[j] - mx);
            sum += yr[j];
        }
        // Pass 3: scale by the reciprocal of the sum.
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = 0; j < n; ++j) yr[j] *= inv;
    }
    return 0;
}
''', name="softmax", flags=("-O3", "-march=native", "-fno-trapping-math"))
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
