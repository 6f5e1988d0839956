"""Gaussian noise injection (a regulariser layer): x + sigma * N(0,1)."""
import torch
import torch.nn as nn

N = 1 << 16
SIGMA = 0.005


class Model(nn.Module):
    def forward(self, x):
        return x + SIGMA * torch.randn_like(x)


def get_inputs():
    return [torch.randn(N)]


def get_init_inputs():
    return []
