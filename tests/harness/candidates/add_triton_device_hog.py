"""A correct Triton vector add that asks torch's allocator for 2 GiB more than the job's device
memory cap (3/4 of the device): the allocator's cap, set in the worker before the candidate
loaded, refuses it (torch's out-of-memory error in the candidate, resource_exceeded). Under
the judge's own threshold (the cap + 4 GiB), so that a worker whose cap failed passes here."""
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
        scratch = torch.empty(total * 3 // 4 + (2 << 30), dtype=torch.uint8, device=x.device)
        out = torch.empty_like(x)
        n = x.numel()
        add_kernel[(triton.cdiv(n, 1024),)](x, y, out, n, BLOCK=1024)
        del scratch
        return out
