"""x * 2 in C++, for any number of elements (none included)."""
import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r"""
extern "C" void scale2(const float* x, float* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = x[i] * 2.0f;
}
""", name="scale2")
_lib.scale2.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_long]
_lib.scale2.restype = None


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        out = torch.empty_like(x)
        _lib.scale2(kforge_cpp.ptr(x), kforge_cpp.ptr(out), x.numel())
        return out
