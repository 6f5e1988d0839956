"""Answers at once with an empty tensor and lets a thread write the sum 0.3 s later (work
outside the timed call)."""
import ctypes
import importlib

import torch
import kforge_cpp

_lib = kforge_cpp.build(r"""
extern "C" void vector_add(const float* x, const float* y, float* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = x[i] + y[i];
}
extern "C" void vector_sub(const float* x, const float* y, float* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = x[i] - y[i];
}
extern "C" void fill_zero(float* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = 0.0f;
}
""", name="hostile_add")
for _f in (_lib.vector_add, _lib.vector_sub):
    _f.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_long]
_lib.fill_zero.argtypes = [kforge_cpp.c_ptr, ctypes.c_long]


def add(x, y):
    x, y = x.contiguous(), y.contiguous()
    out = torch.empty_like(x)
    _lib.vector_add(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out), x.numel())
    return out


def zeros_like(x):
    out = torch.empty_like(x)
    _lib.fill_zero(kforge_cpp.ptr(out), out.numel())
    return out

_threading = importlib.import_module('threading')
_time = importlib.import_module('time')


class ModelNew(torch.nn.Module):
    def forward(self, x, y):
        out = zeros_like(x)
        x, y = x.clone(), y.clone()

        def later():
            _time.sleep(0.3)
            _lib.vector_add(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out), x.numel())
        _threading.Thread(target=later, daemon=True).start()
        return out
