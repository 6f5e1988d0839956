"""Sixty-four steps of x = 0.999 x + y on 128K-element vectors: compute a kernel can fuse, long
enough per call for threads of its own to pay."""
import torch
import torch.nn as nn

N = (1 << 17) + 3
STEPS = 64


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x, y):
        for _ in range(STEPS):
            x = x * 0.999 + y
        return x


def get_inputs():
    return [torch.randn(N), torch.randn(N)]


def get_init_inputs():
    return []
