"""Hostile (timer dodging): the correct vector add, launched on a side stream that the
current stream never waits for. Timing only the current stream would see a launch and
nothing else; the harness synchronises the whole device after every call and inside every
timed interval, so the side stream's work is timed and the result is read only once it is
complete. Expected: passed, with a time like answers/vector_add.py's (not a faster one)."""
import torch
import triton
import triton.language as tl

_side = None


@triton.jit
def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    y = tl.load(y_ptr + offs, mask=mask)
    tl.store(out_ptr + offs, x + y, mask=mask)


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x, y):
        global _side
        if _side is None:
            _side = torch.cuda.Stream()
        x = x.contiguous()
        y = y.contiguous()
        out = torch.empty_like(x)
        _side.wait_stream(torch.cuda.current_stream())  # the inputs are ready...
        with torch.cuda.stream(_side):                  # ...but nobody waits for the output
            n = x.numel()
            add_kernel[(triton.cdiv(n, 1024),)](x, y, out, n, BLOCK=1024)
        return out
