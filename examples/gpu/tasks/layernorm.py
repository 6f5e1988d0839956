"""Layer normalisation over the last axis with a per-column weight and bias, float32
(KernelBench level 1 style): (x - mean) / sqrt(var + EPS) * weight + bias, biased variance."""
import torch
import torch.nn as nn
import torch.nn.functional as F

ROWS = 4096
COLS = 4096
EPS = 1e-5


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x, weight, bias):
        return F.layer_norm(x, (x.shape[-1],), weight, bias, EPS)


def get_inputs():
    return [torch.randn(ROWS, COLS), 1.0 + 0.1 * torch.randn(COLS), 0.1 * torch.randn(COLS)]


def get_init_inputs():
    return []
