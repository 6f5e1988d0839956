"""NOT Triton: a small CPU emulator of the part of Triton's Python API that the candidates
in examples/gpu/answers use, for tests/gpu_example on hosts without a GPU.

A launch kernel[grid](*args) runs the kernel's Python body once per program id, with numpy
arrays standing for Triton's blocks and a pointer type standing for tensor pointers: loads
and stores gather and scatter through flat views of CPU tensors, and an address outside
the tensor that is not masked off raises (the emulator's illegal memory access). This
checks a kernel's indexing, masks and arithmetic; it says nothing about whether Triton
compiles the kernel, how fast it is, or how GPU arithmetic rounds (exp, division and
reductions differ in their last bits). Kernels are numpy-vectorised per program, so keep
shapes small.
"""
import numpy as np
import torch

from . import language

__version__ = "0.0+cpu-emulator"


def cdiv(a, b):
    return (a + b - 1) // b


def next_power_of_2(n):
    return 1 << (int(n) - 1).bit_length()


def _arg(value):
    if isinstance(value, torch.Tensor):
        if not value.is_contiguous():
            raise ValueError("the emulator passes contiguous tensors only")
        return language.Pointer(value.detach().reshape(-1).numpy(), 0)
    if isinstance(value, float):
        return np.float32(value)
    return value


class JITFunction:
    def __init__(self, fn):
        self.fn = fn
        self.__name__ = fn.__name__
        self.launches = 0

    def __getitem__(self, grid):
        def launch(*args, num_warps=None, num_stages=None, **kwargs):
            g = grid(kwargs) if callable(grid) else grid
            g = tuple(int(d) for d in g) + (1,) * (3 - len(g))
            args = [_arg(a) for a in args]
            kwargs = {k: _arg(v) for k, v in kwargs.items()}
            self.launches += 1
            with np.errstate(all="ignore"):
                for z in range(g[2]):
                    for y in range(g[1]):
                        for x in range(g[0]):
                            language._state["pid"] = (x, y, z)
                            language._state["grid"] = g
                            self.fn(*args, **kwargs)
        return launch


def jit(fn=None, **options):
    if fn is None:
        return JITFunction
    return JITFunction(fn)
