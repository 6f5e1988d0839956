"""Correct vector add in CUDA C through torch.utils.cpp_extension.load_inline."""
import torch
from torch.utils.cpp_extension import load_inline

_cuda_src = r"""
#include <torch/extension.h>

__global__ void add_kernel(const float* x, const float* y, float* out, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = x[i] + y[i];
}

torch::Tensor vector_add(torch::Tensor x, torch::Tensor y) {
    auto out = torch::empty_like(x);
    long n = x.numel();
    int threads = 256;
    int blocks = (int)((n + threads - 1) / threads);
    add_kernel<<<blocks, threads>>>(x.data_ptr<float>(), y.data_ptr<float>(),
                                    out.data_ptr<float>(), n);
    return out;
}
"""
_cpp_src = "torch::Tensor vector_add(torch::Tensor x, torch::Tensor y);"

_ext = load_inline(name="kforge_vector_add", cpp_sources=_cpp_src, cuda_sources=_cuda_src,
                   functions=["vector_add"], verbose=False)


class ModelNew(torch.nn.Module):
    def forward(self, x, y):
        return _ext.vector_add(x.contiguous(), y.contiguous())
