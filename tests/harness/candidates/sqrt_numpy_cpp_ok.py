"""Square root in C++ (NaN for negative inputs, as the reference)."""
import ctypes

import numpy as np
import kforge_cpp

_lib = kforge_cpp.build(r"""
#include <cmath>
extern "C" void vsqrt(const float* x, float* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = std::sqrt(x[i]);
}
""", name="vsqrt")
_lib.vsqrt.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_long]


class ModelNew:
    def forward(self, x):
        x = np.ascontiguousarray(x)
        out = np.empty_like(x)
        _lib.vsqrt(kforge_cpp.ptr(x), kforge_cpp.ptr(out), x.size)
        return out
