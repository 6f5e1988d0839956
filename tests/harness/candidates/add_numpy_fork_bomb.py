"""Forks sleeping children in a loop (at most 3000): under RLIMIT_NPROC fork() fails with
EAGAIN (BlockingIOError) and the harness reports resource_exceeded."""
import ctypes
import os
import time

import numpy as np
import kforge_cpp

_lib = kforge_cpp.build(r"""
extern "C" void vector_add(const float* x, const float* y, float* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = x[i] + y[i];
}
""", name="vector_add")
_lib.vector_add.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_long]

MAX_CHILDREN = 3000


class ModelNew:
    def forward(self, x, y):
        for _ in range(MAX_CHILDREN):
            if os.fork() == 0:
                time.sleep(20)
                os._exit(0)
        out = np.empty_like(x)
        _lib.vector_add(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out), x.size)
        return out
