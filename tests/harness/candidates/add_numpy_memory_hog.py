"""Allocates 8 GiB of scratch in C++. Under RLIMIT_AS the allocation throws std::bad_alloc;
the extern "C" wrapper catches it and returns -1, which the Python side raises as
MemoryError (the harness reports resource_exceeded)."""
import ctypes

import numpy as np
import kforge_cpp

_lib = kforge_cpp.build(r"""
#include <new>
#include <vector>
#include <cstring>
extern "C" int vector_add(const float* x, const float* y, float* out, long n) {
    try {
        std::vector<char> scratch(8L << 30);          // 8 GiB
        std::memset(scratch.data(), 1, scratch.size());
        for (long i = 0; i < n; ++i) out[i] = x[i] + y[i] + scratch[i] - 1;
        return 0;
    } catch (const std::bad_alloc&) {
        return -1;
    }
}
""", name="hog")
_lib.vector_add.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_long]
_lib.vector_add.restype = ctypes.c_int


class ModelNew:
    def forward(self, x, y):
        out = np.empty_like(x)
        if _lib.vector_add(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out),
                           x.size) != 0:
            raise MemoryError("vector_add: std::bad_alloc")
        return out
