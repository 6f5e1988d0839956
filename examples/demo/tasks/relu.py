"""ReLU: out = max(x, 0) element-wise (float32, 2-D)."""
import torch
import torch.nn as nn

ROWS = 64
N = 4096  # row length; the campaign sweeps it


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return torch.relu(x)


def get_inputs():
    return [torch.randn(ROWS, N)]


def get_init_inputs():
    return []
