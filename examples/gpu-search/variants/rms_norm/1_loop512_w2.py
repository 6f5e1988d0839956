# kforge-variant: rms_norm/1_loop512_w2
"""RMS norm, one kernel: one program of two warps per row, two passes over the row 512
columns at a time (the sum of squares, then the scaled output)."""
import torch
import triton
import triton.language as tl

EPS = 1e-6


@triton.jit
def rms_norm_kernel(x_ptr, out_ptr, cols, stride, eps, CHUNK: tl.constexpr):
    row = tl.program_id(0)
    acc = tl.zeros((CHUNK,), dtype=tl.float32)
    for start in range(0, cols, CHUNK):
        offs = start + tl.arange(0, CHUNK)
        x = tl.load(x_ptr + row * stride + offs, mask=offs < cols, other=0.0)
        acc += x * x
    rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / cols + eps)
    for start in range(0, cols, CHUNK):
        offs = start + tl.arange(0, CHUNK)
        mask = offs < cols
        x = tl.load(x_ptr + row * stride + offs, mask=mask, other=0.0)
        tl.store(out_ptr + row * stride + offs, x * rstd, mask=mask)


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        rows, cols = x.shape
        out = torch.empty_like(x)
        rms_norm_kernel[(rows,)](x, out, cols, x.stride(0), EPS, CHUNK=512, num_warps=2)
        return out
