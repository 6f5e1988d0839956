"""Sum reduction over the last axis: out[r] = sum_j x[r, j] (float32)."""
import torch
import torch.nn as nn

ROWS = 128
N = 4096  # row length; the campaign sweeps it


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return torch.sum(x, dim=1)


def get_inputs():
    return [torch.randn(ROWS, N)]


def get_init_inputs():
    return []
