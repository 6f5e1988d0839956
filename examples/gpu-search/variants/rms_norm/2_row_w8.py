# kforge-variant: rms_norm/2_row_w8
"""RMS norm: one program of eight warps per row held in registers; the mean of squares, one
reciprocal square root and the scaling in one pass over memory."""
import torch
import triton
import triton.language as tl

EPS = 1e-6


@triton.jit
def rms_norm_kernel(x_ptr, out_ptr, cols, stride, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    mask = offs < cols
    x = tl.load(x_ptr + row * stride + offs, mask=mask, other=0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / cols + eps)
    tl.store(out_ptr + row * stride + offs, x * rstd, mask=mask)


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        rows, cols = x.shape
        out = torch.empty_like(x)
        rms_norm_kernel[(rows,)](x, out, cols, x.stride(0), EPS,
                                 BLOCK=triton.next_power_of_2(cols), num_warps=8)
        return out
