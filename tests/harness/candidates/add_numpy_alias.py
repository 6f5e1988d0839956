"""Writes the sum into its first input and returns that input."""
import ctypes

import numpy as np
import kforge_cpp

_lib = kforge_cpp.build(r"""
extern "C" void add_into(float* x, const float* y, long n) {
    for (long i = 0; i < n; ++i) x[i] += y[i];
}
""", name="add_into")
_lib.add_into.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_long]


class ModelNew:
    def forward(self, x, y):
        _lib.add_into(kforge_cpp.ptr(x), kforge_cpp.ptr(y), x.size)
        return x
