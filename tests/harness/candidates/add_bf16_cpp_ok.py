"""Correct bfloat16 add: the C++ kernel adds in float32, the result is rounded to bfloat16."""
import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r"""
extern "C" void vector_add(const float* x, const float* y, float* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = x[i] + y[i];
}
""", name="vector_add")
_lib.vector_add.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_long]


class ModelNew(torch.nn.Module):
    def forward(self, x, y):
        x, y = x.float().contiguous(), y.float().contiguous()
        out = torch.empty_like(x)
        _lib.vector_add(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out), x.numel())
        return out.bfloat16()
