"""Sum over the last axis of a (ROWS, COLS) float32 tensor (KernelBench level 1 style:
sum reduction over a dimension). The output has ROWS elements."""
import torch
import torch.nn as nn

ROWS = 4096
COLS = 4096


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return torch.sum(x, dim=1)


def get_inputs():
    return [torch.randn(ROWS, COLS)]


def get_init_inputs():
    return []
