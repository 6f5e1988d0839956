"""A Triton add whose grid-stride loop has a stride of 0: the launch returns, the kernel never
ends. The judge's finishing limit (seconds, from the reference's time per call) ends it, not the
job's limit."""
import torch
import triton
import triton.language as tl


@triton.jit
def add_kernel(x_ptr, y_ptr, out_ptr, n, step, BLOCK: tl.constexpr):
    start = tl.program_id(0) * BLOCK
    while start < n:
        offs = start + tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask),
                 mask=mask)
        start += step


class ModelNew(torch.nn.Module):
    def forward(self, x, y):
        out = torch.empty_like(x)
        n = x.numel()
        programs = triton.cdiv(n, 1024)
        add_kernel[(programs,)](x, y, out, n, programs // n, BLOCK=1024)
        return out
