"""Layer normalisation over the last axis with a per-column scale and shift:
out = (x - mean) / sqrt(var + EPS) * weight + bias, biased variance (float32)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

ROWS = 64
N = 1024  # normalised length; the campaign sweeps it
EPS = 1e-5


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x, weight, bias):
        return F.layer_norm(x, (x.shape[-1],), weight, bias, EPS)


def get_inputs():
    return [torch.randn(ROWS, N), 1.0 + 0.1 * torch.randn(N), 0.1 * torch.randn(N)]


def get_init_inputs():
    return []
