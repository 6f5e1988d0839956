# kforge-variant: rms_norm/0_unfused2_loop256_w1
"""RMS norm, not fused: a first kernel (one warp per row, 256 columns at a time) writes each
row's 1 / sqrt(mean(x**2) + eps), a second scales every element by its row's factor, so x
is read twice from memory."""
import torch
import triton
import triton.language as tl

EPS = 1e-6


@triton.jit
def rstd_kernel(x_ptr, r_ptr, cols, stride, eps, CHUNK: tl.constexpr):
    row = tl.program_id(0)
    acc = tl.zeros((CHUNK,), dtype=tl.float32)
    for start in range(0, cols, CHUNK):
        offs = start + tl.arange(0, CHUNK)
        x = tl.load(x_ptr + row * stride + offs, mask=offs < cols, other=0.0)
        acc += x * x
    tl.store(r_ptr + row, 1.0 / tl.sqrt(tl.sum(acc, axis=0) / cols + eps))


@triton.jit
def scale_kernel(x_ptr, r_ptr, out_ptr, n, cols, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    r = tl.load(r_ptr + offs // cols, mask=mask, other=0.0)
    tl.store(out_ptr + offs, x * r, mask=mask)


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        rows, cols = x.shape
        rstd = torch.empty(rows, dtype=torch.float32, device=x.device)
        out = torch.empty_like(x)
        rstd_kernel[(rows,)](x, rstd, cols, cols, EPS, CHUNK=256, num_warps=1)
        n = x.numel()
        scale_kernel[(triton.cdiv(n, 1024),)](x, rstd, out, n, cols, BLOCK=1024)
        return out
