"""The older AIKG form: a function {op_name}_{impl_type}_{framework} taking the inputs."""
import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r"""
extern "C" void vector_add(const float* x, const float* y, float* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = x[i] + y[i];
}
""", name="vector_add")
_lib.vector_add.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_long]


def vector_add_cpp_torch(x, y):
    x = x.contiguous()
    y = y.contiguous()
    out = torch.empty_like(x)
    _lib.vector_add(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out), x.numel())
    return out
