"""A correct Triton vector add that asks for 90% of the device's memory through torch's
allocator, over the job's device memory cap (3/4 of the device): the framework's own
out-of-memory error inside the candidate, resource_exceeded."""
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
    def forward(self, x, y):
        total = torch.cuda.mem_get_info()[1]
        scratch = torch.empty(int(total * 0.9), dtype=torch.uint8, device=x.device)
        out = torch.empty_like(x)
        n = x.numel()
        add_kernel[(triton.cdiv(n, 1024),)](x, y, out, n, BLOCK=1024)
        del scratch
        return out
