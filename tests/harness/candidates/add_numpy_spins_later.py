"""Right on its first call, then never returns: a hang that the judge's per-call limit (from
the reference's time per call) ends long before the job's own limit."""
import ctypes

import numpy as np
import kforge_cpp

_lib = kforge_cpp.build(r"""
extern "C" void vector_add(const float* x, const float* y, float* out, long n, int spin) {
    volatile long i = 0;
    while (spin) { i = i + 1; }
    for (long k = 0; k < n; ++k) out[k] = x[k] + y[k];
}
""", name="spin_later")
_lib.vector_add.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_long,
                            ctypes.c_int]


class ModelNew:
    def __init__(self):
        self.calls = 0

    def forward(self, x, y):
        self.calls += 1
        out = np.empty_like(x)
        _lib.vector_add(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out), x.size,
                        1 if self.calls > 1 else 0)
        return out
