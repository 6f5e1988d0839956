"""Square matrix multiplication in float16, C = A @ B with M = N = K = 4096 (KernelBench
level 1: 1_Square_matrix_multiplication_, in half precision so that tensor cores do the work;
cuBLAS accumulates in float32). The inputs are drawn in float32 and rounded to float16."""
import torch
import torch.nn as nn

M = 4096
N = 4096
K = 4096


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, a, b):
        return torch.matmul(a, b)


def get_inputs():
    return [torch.randn(M, K).half(), torch.randn(K, N).half()]


def get_init_inputs():
    return []
