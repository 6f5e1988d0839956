"""Scales its input in place with its own C++ kernel, as the reference does."""
import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r"""
extern "C" void scale(float* x, long n) { for (long i = 0; i < n; ++i) x[i] *= 2.0f; }
""", name="scale")
_lib.scale.argtypes = [kforge_cpp.c_ptr, ctypes.c_long]


class ModelNew(torch.nn.Module):
    def forward(self, x):
        _lib.scale(kforge_cpp.ptr(x), x.numel())
        return torch.zeros(1, dtype=torch.int32)
