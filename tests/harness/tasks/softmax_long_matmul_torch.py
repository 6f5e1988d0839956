"""softmax(a @ b, dim=1), float32, 16 x 8,192 x 256 of randn: rows nearly one-hot (the largest
value ~16x the RMS), and a relative error in every element, its logits' absolute error. An
honest kernel adding in another order than the BLAS can miss the strict tolerance; the judge's
second look holds each element to its own value."""
import torch
import torch.nn as nn

M, K, N = 16, 8192, 256


class Model(nn.Module):
    def forward(self, a, b):
        return torch.softmax(a @ b, dim=1)


def get_inputs():
    return [torch.randn(M, K), torch.randn(K, N)]


def get_init_inputs():
    return []
