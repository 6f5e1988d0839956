"""Hostile (answer cached across calls): keeps its last output keyed on the inputs' data
pointers and shape and returns it again when the same buffers come back, still launching
its kernel (on no elements) so that every call counts as a launch. The timed runs reuse one
set of buffers, so it would be timed at the cost of an empty launch; the harness rewrites
the buffers' values between timed runs and checks the last timed output. A precision trial
whose inputs get the freed blocks of an earlier call's (PyTorch's caching allocator) fails
already. Expected: precision_mismatch (stage precision or profile; on the H200, at the last timed run)."""
import torch
import triton
import triton.language as tl


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
        self.key = None
        self.out = None

    def forward(self, x, y):
        key = (x.data_ptr(), y.data_ptr(), tuple(x.shape))
        if key == self.key:
            add_kernel[(1,)](x, y, self.out, 0, BLOCK=1024)  # a launch that writes nothing
            return self.out
        x = x.contiguous()
        y = y.contiguous()
        out = torch.empty_like(x)
        n = x.numel()
        add_kernel[(triton.cdiv(n, 1024),)](x, y, out, n, BLOCK=1024)
        self.key, self.out = key, out
        return out
