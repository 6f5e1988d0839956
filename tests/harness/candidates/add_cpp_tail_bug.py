"""Vector add that only processes whole blocks of 256: the last N % 256 elements are never
written (a tail bug)."""
import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r"""
extern "C" void vector_add(const float* x, const float* y, float* out, long n) {
    const long block = 256;
    for (long b = 0; b < n / block; ++b)
        for (long i = b * block; i < (b + 1) * block; ++i) out[i] = x[i] + y[i];
}
""", name="vector_add_tail")
_lib.vector_add.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_long]


class ModelNew(torch.nn.Module):
    def forward(self, x, y):
        out = torch.empty_like(x)
        _lib.vector_add(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out), x.numel())
        return out
