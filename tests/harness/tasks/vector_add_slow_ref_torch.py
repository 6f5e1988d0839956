"""Vector add whose reference sleeps 50 ms per call, so any real kernel looks > 10x faster:
the profile must flag the speedup as suspicious (and still pass)."""
import time

import torch
import torch.nn as nn

N = 100003


class Model(nn.Module):
    def forward(self, x, y):
        time.sleep(0.05)
        return x + y


def get_inputs():
    return [torch.randn(N), torch.randn(N)]


def get_init_inputs():
    return []
