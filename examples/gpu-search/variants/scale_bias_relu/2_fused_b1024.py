# kforge-variant: scale_bias_relu/2_fused_b1024
"""relu(x * scale + bias) fused in one Triton kernel over the flattened tensor: x read once,
the output written once; scale and bias indexed by column (offset modulo the row length)."""
import torch
import triton
import triton.language as tl


@triton.jit
def scale_bias_relu_kernel(x_ptr, s_ptr, b_ptr, out_ptr, n, cols, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    col = offs % cols
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    s = tl.load(s_ptr + col, mask=mask, other=0.0)
    b = tl.load(b_ptr + col, mask=mask, other=0.0)
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
