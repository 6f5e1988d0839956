"""Hostile (hang): a grid-stride row sum whose stride is 0. 1024 programs are meant to walk
the rows `programs` apart, but the stride passed is programs // rows, which is 0 for 4096
rows, so every program sums its first row forever. A GPU-side hang: the harness blocks in
torch.cuda.synchronize() and only the parent's wall-clock limit ends it (the process group
is killed). Expected: timeout; the jobs after it on the same GPU must still pass."""
import torch
import triton
import triton.language as tl


@triton.jit
def row_sum_kernel(x_ptr, out_ptr, rows, cols, stride, step, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    mask = offs < cols
    while row < rows:
        x = tl.load(x_ptr + row * stride + offs, mask=mask, other=0.0)
        tl.store(out_ptr + row, tl.sum(x, axis=0))
        row += step


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        rows, cols = x.shape
        out = torch.empty(rows, dtype=x.dtype, device=x.device)
        programs = min(rows, 1024)
        row_sum_kernel[(programs,)](x, out, rows, cols, x.stride(0), programs // rows,
                                    BLOCK=triton.next_power_of_2(cols), num_warps=8)
        return out
