# kforge-variant: gelu/1_unfused2_b1024_w4
"""GELU (tanh approximation) in two Triton kernels: u = sqrt(2/pi) * (x + 0.044715 x**3)
written to a float32 intermediate, then x / (1 + exp(-2u)); 1024-element programs."""
import torch
import triton
import triton.language as tl


@triton.jit
def inner_kernel(x_ptr, u_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    tl.store(u_ptr + offs, 0.7978845608028654 * (x + 0.044715 * x * x * x), mask=mask)


@triton.jit
def out_kernel(x_ptr, u_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    u = tl.load(u_ptr + offs, mask=mask, other=0.0)
    tl.store(out_ptr + offs, x / (1.0 + tl.exp(-2.0 * u)), mask=mask)


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        n = x.numel()
        u = torch.empty_like(x)
        out = torch.empty_like(x)
        grid = (triton.cdiv(n, 1024),)
        inner_kernel[grid](x, u, n, BLOCK=1024, num_warps=4)
        out_kernel[grid](x, u, out, n, BLOCK=1024, num_warps=4)
        return out
