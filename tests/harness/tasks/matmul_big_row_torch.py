"""A float32 matmul whose input has one row ~1000x the others (16 x 16,384 x 64): the output is
of many scales (its largest value over 10x its RMS on most draws), each row of one. An honest
kernel adding in another order than the BLAS misses the strict tolerance in the large row;
the judge's second look holds each row to its own scale."""
import torch
import torch.nn as nn

M, K, N = 16, 16384, 64


class Model(nn.Module):
    def forward(self, a, b):
        return torch.matmul(a, b)


def get_inputs():
    a = torch.randn(M, K)
    a[1:] *= 1e-3
    return [a, torch.randn(K, N)]


def get_init_inputs():
    return []
