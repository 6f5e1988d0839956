"""Hostile (PyTorch fallback): the Triton layer norm, wrapped in try/except with
F.layer_norm "just in case" the launch fails. The harness's static rules reject a
framework layer_norm anywhere outside kernel code, even on a path these inputs never take.
Expected: rejected (framework_op); the fix is answers/layernorm.py."""
import torch
import torch.nn.functional as F
import triton
import triton.language as tl

EPS = 1e-5


@triton.jit
def layernorm_kernel(x_ptr, w_ptr, b_ptr, out_ptr, cols, stride, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    mask = offs < cols
    x = tl.load(x_ptr + row * stride + offs, mask=mask, other=0.0)
    mean = tl.sum(x, axis=0) / cols
    diff = tl.where(mask, x - mean, 0.0)
    var = tl.sum(diff * diff, axis=0) / cols
    rstd = 1.0 / tl.sqrt(var + eps)
    w = tl.load(w_ptr + offs, mask=mask, other=0.0)
    b = tl.load(b_ptr + offs, mask=mask, other=0.0)
    tl.store(out_ptr + row * stride + offs, diff * rstd * w + b, mask=mask)


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x, weight, bias):
        try:
            x = x.contiguous()
            rows, cols = x.shape
            out = torch.empty_like(x)
            layernorm_kernel[(rows,)](x, weight.contiguous(), bias.contiguous(), out, cols,
                                      x.stride(0), EPS, BLOCK=triton.next_power_of_2(cols),
                                      num_warps=8)
            return out
        except Exception:
            return F.layer_norm(x, (x.shape[-1],), weight, bias, EPS)
