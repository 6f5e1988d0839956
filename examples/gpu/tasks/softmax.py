"""Row softmax of a (ROWS, COLS) float32 tensor of large magnitude (KernelBench level 1:
23_Softmax, with inputs scaled by SCALE): exp(x) without subtracting the row maximum
overflows float32 (exp(88.7) is the largest finite value)."""
import torch
import torch.nn as nn

ROWS = 4096
COLS = 4096
SCALE = 40.0


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return torch.softmax(x, dim=1)


def get_inputs():
    return [torch.randn(ROWS, COLS) * SCALE]


def get_init_inputs():
    return []
