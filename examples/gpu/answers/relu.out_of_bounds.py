"""Hostile (illegal memory access): ReLU whose store goes 2**40 elements (4 TiB) past the
output, an address no allocation covers, and without its mask. CUDA reports an illegal
memory access at the next synchronisation and the process's CUDA context is unusable from
then on. Expected: crashed; the next job on the same GPU (another process) must still pass."""
import torch
import triton
import triton.language as tl


@triton.jit
def relu_kernel(x_ptr, out_ptr, n, far, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    tl.store(out_ptr + far + offs, tl.where(x > 0, x, 0.0))


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        out = torch.empty_like(x)
        n = x.numel()
        relu_kernel[(triton.cdiv(n, 1024),)](x, out, n, 1 << 40, BLOCK=1024)
        return out
