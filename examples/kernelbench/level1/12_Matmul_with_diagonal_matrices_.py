"""C = diag(A) @ B: every row of B scaled by one element of A.

A problem in KernelBench's level-1 format (class Model, get_inputs, get_init_inputs, shapes
as module constants), at a size a 2-core CPU verifies in seconds."""
import torch
import torch.nn as nn

N = 512
M = 512


class Model(nn.Module):
    """The reference builds the N x N diagonal matrix and multiplies it out."""

    def __init__(self):
        super().__init__()

    def forward(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        return torch.diag(A) @ B


def get_inputs():
    A = torch.randn(N)
    B = torch.randn(N, M)
    return [A, B]


def get_init_inputs():
    return []
