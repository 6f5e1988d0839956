"""RMS normalisation over the last axis, float32: x / sqrt(mean(x**2) + EPS) (KernelBench
level 1 style). Eager PyTorch runs pow, mean, add, rsqrt and mul as separate kernels."""
import torch
import torch.nn as nn

ROWS = 4096
COLS = 4096
EPS = 1e-6


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + EPS)


def get_inputs():
    return [torch.randn(ROWS, COLS)]


def get_init_inputs():
    return []
