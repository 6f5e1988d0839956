"""A float32 matmul in C++ that sums each output's 16,384 products in tiles of 32 and adds
the 512 tiles one after another, as a tiled GPU kernel does: correct, in another order than
the BLAS, so that some elements of most calls miss the strict
tolerance (the float64 second look's case, in every timed run of a profile job)."""
import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r"""
#include <vector>
extern "C" void matmul(const float* a, const float* b, float* c, long m, long k, long n) {
    std::vector<float> acc(n), tile(n);
    for (long i = 0; i < m; ++i) {
        for (long j = 0; j < n; ++j) acc[j] = 0.0f;
        for (long p0 = 0; p0 < k; p0 += 32) {  // tiles of 32 products, added one by one
            for (long j = 0; j < n; ++j) tile[j] = 0.0f;
            for (long p = p0; p < p0 + 32 && p < k; ++p)
                for (long j = 0; j < n; ++j) tile[j] += a[i * k + p] * b[p * n + j];
            for (long j = 0; j < n; ++j) acc[j] += tile[j];
        }
        for (long j = 0; j < n; ++j) c[i * n + j] = acc[j];
    }
}
""", name="matmul")
_lib.matmul.argtypes = [kforge_cpp.c_ptr] * 3 + [ctypes.c_long] * 3


class ModelNew(torch.nn.Module):
    def forward(self, a, b):
        a, b = a.contiguous(), b.contiguous()
        c = torch.empty(a.shape[0], b.shape[1], dtype=a.dtype)
        _lib.matmul(kforge_cpp.ptr(a), kforge_cpp.ptr(b), kforge_cpp.ptr(c), a.shape[0],
                    a.shape[1], b.shape[1])
        return c
