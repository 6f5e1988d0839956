"""relu(x * scale + bias) with a per-column scale and bias, float32. Eager PyTorch runs three
element-wise kernels (and writes two intermediates); one fused kernel reads x once."""
import torch
import torch.nn as nn

ROWS = 4096
COLS = 4096


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x, scale, bias):
        return torch.relu(x * scale + bias)


def get_inputs():
    return [torch.randn(ROWS, COLS), 1.0 + 0.5 * torch.randn(COLS), 0.5 * torch.randn(COLS)]


def get_init_inputs():
    return []
