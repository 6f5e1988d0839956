"""Element-wise add of two bfloat16 vectors (a dtype numpy lacks: it travels as int16)."""
import torch
import torch.nn as nn

N = 4099


class Model(nn.Module):
    def forward(self, x, y):
        return x + y


def get_inputs():
    return [torch.randn(N).bfloat16(), torch.randn(N).bfloat16()]


def get_init_inputs():
    return []
