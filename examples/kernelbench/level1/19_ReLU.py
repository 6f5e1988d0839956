"""ReLU, element-wise.

A problem in KernelBench's level-1 format (class Model, get_inputs, get_init_inputs, shapes
as module constants), at a size a 2-core CPU verifies in seconds."""
import torch
import torch.nn as nn

batch_size = 16
dim = 4096


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


def get_inputs():
    x = torch.randn(batch_size, dim)
    return [x]


def get_init_inputs():
    return []
