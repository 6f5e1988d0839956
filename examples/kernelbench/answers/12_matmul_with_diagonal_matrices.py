import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r'''
#include <cstdint>

// C[i, :] = A[i] * B[i, :]: the diagonal matrix is never built, each row of B is read once.
extern "C" int diag_matmul(const float* __restrict__ a, const float* __restrict__ b,
                           float* __restrict__ c, int64_t n, int64_t m) {
    for (int64_t i = 0; i < n; ++i) {
        const float s = a[i];
        const float* bi = b + i * m;
        float* ci = c + i * m;
        for (int64_t j = 0; j < m; ++j) ci[j] = s * bi[j];
    }
    return 0;
}
''', name="diag_matmul", flags=("-O3", "-march=native"))
_lib.diag_matmul.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_int64, ctypes.c_int64]
_lib.diag_matmul.restype = ctypes.c_int


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, A, B):
        A = A.contiguous()
        B = B.contiguous()
        C = torch.empty_like(B)
        _lib.diag_matmul(kforge_cpp.ptr(A), kforge_cpp.ptr(B), kforge_cpp.ptr(C), B.shape[0], B.shape[1])
        return C
