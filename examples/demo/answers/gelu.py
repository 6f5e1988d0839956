import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r'''
#include <cstdint>
#include <cstring>

// exp(x) in f32 without a libm call, so that the loops calling it vectorise (with
// -fno-trapping-math, which lets GCC turn the clamps into vector min/max):
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

extern "C" int gelu_tanh(const float* __restrict__ x, float* __restrict__ y, int64_t n) {
    const float c = 0.7978845608028654f;  // sqrt(2 / pi)
    for (int64_t i = 0; i < n; ++i) {
        const float t = x[i];
        const float u = c * (t + 0.044715f * t * t * t);
        const float th = 1.0f - 2.0f / (exp_f32(2.0f * u) + 1.0f);  // tanh(u)
        y[i] = 0.5f * t * (1.0f + th);
    }
    return 0;
}
''', name="gelu", flags=("-O3", "-march=native", "-fno-trapping-math"))
_lib.gelu_tanh.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_int64]
_lib.gelu_tanh.restype = ctypes.c_int


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        _lib.gelu_tanh(kforge_cpp.ptr(x), kforge_cpp.ptr(y), x.numel())
        return y
