# kforge-variant: vector_add/0_persistent_b128_w1
"""Vector add, slow by construction: 256 programs of one warp each walk the vector 128
elements at a time (a grid-stride loop), so few memory requests are in flight."""
import torch
import triton
import triton.language as tl

PROGRAMS = 256


@triton.jit
def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr, PROGRAMS: tl.constexpr):
    pid = tl.program_id(0)
    iters = tl.cdiv(n, BLOCK * PROGRAMS)
    for i in range(0, iters):
        offs = (i * PROGRAMS + pid) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask)
        y = tl.load(y_ptr + offs, mask=mask)
        tl.store(out_ptr + offs, x + y, mask=mask)


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x, y):
        x = x.contiguous()
        y = y.contiguous()
        out = torch.empty_like(x)
        n = x.numel()
        add_kernel[(PROGRAMS,)](x, y, out, n, BLOCK=128, PROGRAMS=PROGRAMS, num_warps=1)
        return out
