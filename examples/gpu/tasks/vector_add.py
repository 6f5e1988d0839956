"""Element-wise add of two float32 vectors (KernelBench level 1 style). N is 2**24 - 3, so a
kernel must mask its last block. Memory-bound: 3 x 64 MiB move per call, tens of
microseconds on an H100/H200."""
import torch
import torch.nn as nn

N = 16777213


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x, y):
        return x + y


def get_inputs():
    return [torch.randn(N), torch.randn(N)]


def get_init_inputs():
    return []
