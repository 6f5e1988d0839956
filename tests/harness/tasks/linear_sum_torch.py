"""KernelBench level-2 style: a Linear layer whose outputs are summed per row. The sum collapses
the matmul to one dot product per row (x . colsum(W) + sum(b)): a correct kernel may do far
less arithmetic than the reference's matrix product."""
import torch
import torch.nn as nn

BATCH, IN_FEATURES, OUT_FEATURES = 256, 256, 4096


class Model(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x):
        return self.linear(x).sum(dim=1, keepdim=True)


def get_inputs():
    return [torch.randn(BATCH, IN_FEATURES)]


def get_init_inputs():
    return [IN_FEATURES, OUT_FEATURES]
