"""relu(x * scale + bias) fused in one Triton kernel: x is read once and the output written
once; scale and bias are indexed by column (offset modulo the row length)."""
import torch
import triton
import triton.language as tl


@triton.jit
def scale_bias_relu_kernel(x_ptr, scale_ptr, bias_ptr, out_ptr, n, cols, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    col = offs % cols
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    s = tl.load(scale_ptr + col, mask=mask, other=0.0)
    b = tl.load(bias_ptr + col, mask=mask, other=0.0)
    y = x * s + b
    tl.store(out_ptr + offs, tl.where(y > 0, y, 0.0), mask=mask)


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x, scale, bias):
        x = x.contiguous()
        scale = scale.contiguous()
        bias = bias.contiguous()
        out = torch.empty_like(x)
        n = x.numel()
        cols = x.shape[-1]
        scale_bias_relu_kernel[(triton.cdiv(n, 1024),)](x, scale, bias, out, n, cols, BLOCK=1024)
        return out
