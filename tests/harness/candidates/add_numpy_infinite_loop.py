"""Never returns: an infinite loop in C++ (the parent's timeout ends it)."""
import ctypes

import numpy as np
import kforge_cpp

_lib = kforge_cpp.build(r"""
extern "C" void vector_add(const float* x, const float* y, float* out, long n) {
    volatile long i = 0;
    while (true) { i = i + 1; }
}
""", name="spin")
_lib.vector_add.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_long]


class ModelNew:
    def forward(self, x, y):
        out = np.empty_like(x)
        _lib.vector_add(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out), x.size)
        return out
