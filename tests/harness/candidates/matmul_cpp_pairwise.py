"""A float32 matmul in C++ whose dot products are summed pairwise (recursive halves down to 8
products, added one after another): correct, closer to float64 than a BLAS, and in another
order, so that the large row of matmul_big_row_torch misses the strict tolerance on some draws
(the second look's rows of one scale)."""
import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r"""
static float dot(const float* a, const float* b, long n, long stride) {
    if (n <= 8) {
        float s = 0.0f;
        for (long p = 0; p < n; ++p) s += a[p] * b[p * stride];
        return s;
    }
    long h = n / 2;
    return dot(a, b, h, stride) + dot(a + h, b + h * stride, n - h, stride);
}
extern "C" void matmul(const float* a, const float* b, float* c, long m, long k, long n) {
    for (long i = 0; i < m; ++i)
        for (long j = 0; j < n; ++j) c[i * n + j] = dot(a + i * k, b + j, k, n);
}
""", name="matmul_pairwise")
_lib.matmul.argtypes = [kforge_cpp.c_ptr] * 3 + [ctypes.c_long] * 3


class ModelNew(torch.nn.Module):
    def forward(self, a, b):
        a, b = a.contiguous(), b.contiguous()
        c = torch.empty(a.shape[0], b.shape[1], dtype=a.dtype)
        _lib.matmul(kforge_cpp.ptr(a), kforge_cpp.ptr(b), kforge_cpp.ptr(c), a.shape[0],
                    a.shape[1], b.shape[1])
        return c
