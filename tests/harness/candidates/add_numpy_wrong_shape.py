"""Correct values, but returned as a column (N, 1) instead of (N,)."""
import ctypes

import numpy as np
import kforge_cpp

_lib = kforge_cpp.build(r"""
extern "C" void vector_add(const float* x, const float* y, float* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = x[i] + y[i];
}
""", name="vector_add")
_lib.vector_add.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_long]


class ModelNew:
    def forward(self, x, y):
        out = np.empty((x.size, 1), dtype=x.dtype)
        _lib.vector_add(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out), x.size)
        return out
