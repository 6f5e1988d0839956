"""A float32 matmul with a long inner dimension (16 x 16,384 x 64). Each output sums 16,384
products, so two correct kernels that add in different orders differ by more than 1e-4 in a few
elements: the judge's float64 second look is what tells a right order from a wrong result."""
import torch
import torch.nn as nn

M, K, N = 16, 16384, 64


class Model(nn.Module):
    def forward(self, a, b):
        return torch.matmul(a, b)


def get_inputs():
    return [torch.randn(M, K), torch.randn(K, N)]


def get_init_inputs():
    return []
