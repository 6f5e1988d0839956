# kforge-variant: softmax/0_loop3pass_c256_w1
"""Row softmax, slow by construction: one program of one warp per row, three passes over
the row 256 columns at a time (the maximum, the sum of exp(x - max), the output), so the
row is read three times."""
import torch
import triton
import triton.language as tl


@triton.jit
def softmax_kernel(x_ptr, out_ptr, cols, stride, CHUNK: tl.constexpr):
    row = tl.program_id(0)
    base = x_ptr + row * stride
    m = tl.full((CHUNK,), -float("inf"), dtype=tl.float32)
    for start in range(0, cols, CHUNK):
        offs = start + tl.arange(0, CHUNK)
        m = tl.maximum(m, tl.load(base + offs, mask=offs < cols, other=-float("inf")))
    row_max = tl.max(m, axis=0)
    s = tl.zeros((CHUNK,), dtype=tl.float32)
    for start in range(0, cols, CHUNK):
        offs = start + tl.arange(0, CHUNK)
        x = tl.load(base + offs, mask=offs < cols, other=-float("inf"))
        s += tl.exp(x - row_max)
    total = tl.sum(s, axis=0)
    for start in range(0, cols, CHUNK):
        offs = start + tl.arange(0, CHUNK)
        mask = offs < cols
        x = tl.load(base + offs, mask=mask, other=-float("inf"))
        tl.store(out_ptr + row * stride + offs, tl.exp(x - row_max) / total, mask=mask)


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        out = torch.empty_like(x)
        rows, cols = x.shape
        softmax_kernel[(rows,)](x, out, cols, x.stride(0), CHUNK=256, num_warps=1)
        return out
