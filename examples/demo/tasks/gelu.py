"""GELU, tanh approximation, written out the way many model files do (as in GPT-2's MLP):
0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))). Eager torch runs it as a chain of
element-wise kernels, each reading and writing the whole tensor; a fused kernel does one pass."""
import math

import torch
import torch.nn as nn

ROWS = 64
N = 4096  # row length; the campaign sweeps it


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def get_inputs():
    return [torch.randn(ROWS, N)]


def get_init_inputs():
    return []
