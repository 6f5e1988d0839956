"""Element-wise vector add: out = x + y (float32, 1-D)."""
import torch
import torch.nn as nn

N = 65536  # vector length; the campaign sweeps it


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x, y):
        return x + y


def get_inputs():
    return [torch.randn(N), torch.randn(N)]


def get_init_inputs():
    return []
