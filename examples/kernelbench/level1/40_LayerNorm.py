"""Layer normalisation over the trailing (features, dim1, dim2) dimensions, with nn.LayerNorm's
learned scale and shift.

A problem in KernelBench's level-1 format (class Model, get_inputs, get_init_inputs, shapes
as module constants), at a size a 2-core CPU verifies in seconds."""
import torch
import torch.nn as nn

batch_size = 16
features = 4
dim1 = 8
dim2 = 8


class Model(nn.Module):
    def __init__(self, normalized_shape: tuple):
        super().__init__()
        self.ln = nn.LayerNorm(normalized_shape=normalized_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x)


def get_inputs():
    x = torch.randn(batch_size, features, dim1, dim2)
    return [x]


def get_init_inputs():
    return [(features, dim1, dim2)]
