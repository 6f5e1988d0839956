"""A correct Triton vector add that lifts its process's allocator cap
(set_per_process_memory_fraction(1.0)) and holds all but 3 GiB of the device's free memory
while the judge checks it: the judge's measure from outside (judge.DeviceMemory) finds it
over the job's device memory cap, resource_exceeded, never infra_error."""
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
        free = torch.cuda.mem_get_info()[0]
        self.hog = torch.empty(max(free - (3 << 30), 1), dtype=torch.uint8, device="cuda")

    def forward(self, x, y):
        out = torch.empty_like(x)
        n = x.numel()
        add_kernel[(triton.cdiv(n, 1024),)](x, y, out, n, BLOCK=1024)
        return out
