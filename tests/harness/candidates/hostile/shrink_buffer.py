"""A correct vector add that first tries to shrink the shared buffers it was handed (memfds
it finds in /proc/self/fd): had that worked, the judge's next read of them would die of
SIGBUS (an infra_error blamed on the host). The buffers are sealed against it."""
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


def _shrink():
    for fd in os.listdir("/proc/self/fd"):
        try:
            if "memfd:kforge" in os.readlink(f"/proc/self/fd/{fd}"):
                os.ftruncate(int(fd), 0)
        except OSError:
            pass  # sealed (EPERM): the attack fails, the kernel goes on


class ModelNew(torch.nn.Module):
    def forward(self, x, y):
        _shrink()
        out = torch.empty_like(x)
        _lib.vector_add(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out), x.numel())
        return out
