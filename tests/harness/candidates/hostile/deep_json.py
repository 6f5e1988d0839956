"""Writes a message nested 100,000 levels deep on its worker's channel to the judge, whose
JSON parser then recurses past Python's limit. That is the candidate breaking the protocol
(rejected), not the judge failing (an infra_error)."""
import ctypes
import os

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
        for fd in os.listdir("/proc/self/fd"):  # the channel is the socket among them
            try:
                if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                    os.write(int(fd), b"[" * 100000 + b"]" * 100000)
            except OSError:
                pass
        out = torch.empty_like(x)
        _lib.vector_add(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out), x.numel())
        return out
