# kforge-variant: row_sum/3_rows4_w8
"""Row sum: one program of eight warps per 4 rows, a 4 x COLS tile loaded at once and
reduced along the columns (fewer, fuller programs)."""
import torch
import triton
import triton.language as tl


@triton.jit
def row_sum_kernel(x_ptr, out_ptr, rows, cols, stride, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    c = tl.arange(0, BLOCK)
    mask = (r[:, None] < rows) & (c[None, :] < cols)
    x = tl.load(x_ptr + r[:, None] * stride + c[None, :], mask=mask, other=0.0)
    tl.store(out_ptr + r, tl.sum(x, axis=1), mask=r < rows)


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        rows, cols = x.shape
        out = torch.empty(rows, dtype=x.dtype, device=x.device)
        row_sum_kernel[(triton.cdiv(rows, 4),)](x, out, rows, cols, x.stride(0), ROWS=4,
                                                BLOCK=triton.next_power_of_2(cols), num_warps=8)
        return out
