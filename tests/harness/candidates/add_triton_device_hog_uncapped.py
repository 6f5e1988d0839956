"""A correct Triton vector add that lifts its process's allocator cap
(set_per_process_memory_fraction(1.0)) and holds 6 GiB more than the job's device memory cap
(3/4 of the device) while the judge checks it: the judge's measure from outside
(judge.DeviceMemory, over the cap + 4 GiB) finds it after the load, resource_exceeded."""
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
        torch.cuda.set_per_process_memory_fraction(1.0)
        total = torch.cuda.mem_get_info()[1]
        self.hog = torch.empty(total * 3 // 4 + (6 << 30), dtype=torch.uint8, device="cuda")

    def forward(self, x, y):
        out = torch.empty_like(x)
        n = x.numel()
        add_kernel[(triton.cdiv(n, 1024),)](x, y, out, n, BLOCK=1024)
        return out
