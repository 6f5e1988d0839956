"""Vector add checked on several sizes per trial (get_inputs_dyn_list)."""
import torch
import torch.nn as nn

N = 4097
SIZES = (1, 1000, 4097, 65537)


class Model(nn.Module):
    def forward(self, x, y):
        return x + y


def get_inputs():
    return [torch.randn(N), torch.randn(N)]


def get_inputs_dyn_list():
    return [[torch.randn(n), torch.randn(n)] for n in SIZES]


def get_init_inputs():
    return []
