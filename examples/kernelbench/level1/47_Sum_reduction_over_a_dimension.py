"""Sum over one dimension (keepdim) of a (batch_size, dim1, dim2) tensor.

A problem in KernelBench's level-1 format (class Model, get_inputs, get_init_inputs, shapes
as module constants), at a size a 2-core CPU verifies in seconds."""
import torch
import torch.nn as nn

batch_size = 16
dim1 = 256
dim2 = 256
reduce_dim = 1


class Model(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sum(x, dim=self.dim, keepdim=True)


def get_inputs():
    x = torch.randn(batch_size, dim1, dim2)
    return [x]


def get_init_inputs():
    return [reduce_dim]
