"""A correct vector add whose worker, patched through the module table, sends replies the
judge cannot read as written: a count where a list belongs, a phase of 400 digits, a trace
that is a number. The judge must reject it, not fail itself (an infra_error)."""
import ctypes
import importlib

import torch
import kforge_cpp

_lib = kforge_cpp.build(r"""
extern "C" void vector_add(const float* x, const float* y, float* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = x[i] + y[i];
}
""", name="vector_add")
_lib.vector_add.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_long]

_worker = importlib.import_module("kforge_" + "verifier.worker")
_run = _worker.Worker.run


def _forged(self, msg):
    reply = _run(self, msg)
    if "out" in reply:
        reply.update(problems=5, aliases=7, trace=5, phases_ns={"call": 10 ** 400})
    return reply


_worker.Worker.run = _forged


class ModelNew(torch.nn.Module):
    def forward(self, x, y):
        out = torch.empty_like(x)
        _lib.vector_add(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out), x.numel())
        return out
