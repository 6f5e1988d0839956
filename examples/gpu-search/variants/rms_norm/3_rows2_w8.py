# kforge-variant: rms_norm/3_rows2_w8
"""RMS norm: one program of eight warps per 2 rows, a 2 x COLS tile in registers, the row
statistics reduced along the columns, one pass over memory (half the programs)."""
import torch
import triton
import triton.language as tl

EPS = 1e-6


@triton.jit
def rms_norm_kernel(x_ptr, out_ptr, rows, cols, stride, eps, ROWS: tl.constexpr,
                    BLOCK: tl.constexpr):
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    c = tl.arange(0, BLOCK)
    mask = (r[:, None] < rows) & (c[None, :] < cols)
    ptrs = r[:, None] * stride + c[None, :]
    x = tl.load(x_ptr + ptrs, mask=mask, other=0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / cols + eps)
    tl.store(out_ptr + ptrs, x * rstd[:, None], mask=mask)


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        rows, cols = x.shape
        out = torch.empty_like(x)
        rms_norm_kernel[(triton.cdiv(rows, 2),)](x, out, rows, cols, x.stride(0), EPS, ROWS=2,
                                                 BLOCK=triton.next_power_of_2(cols), num_warps=8)
        return out
