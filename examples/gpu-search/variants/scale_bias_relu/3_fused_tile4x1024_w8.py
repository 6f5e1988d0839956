# kforge-variant: scale_bias_relu/3_fused_tile4x1024_w8
"""relu(x * scale + bias) fused, in 2-D tiles of 4 rows x 1024 columns: each program loads
its columns' scale and bias once and broadcasts them over its rows (no modulo per element),
eight warps."""
import torch
import triton
import triton.language as tl


@triton.jit
def scale_bias_relu_kernel(x_ptr, s_ptr, b_ptr, out_ptr, rows, cols, stride,
                           BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < cols
    s = tl.load(s_ptr + c, mask=cmask, other=0.0)
    b = tl.load(b_ptr + c, mask=cmask, other=0.0)
    mask = (r[:, None] < rows) & cmask[None, :]
    ptrs = r[:, None] * stride + c[None, :]
    x = tl.load(x_ptr + ptrs, mask=mask, other=0.0)
    y = x * s[None, :] + b[None, :]
    tl.store(out_ptr + ptrs, tl.where(y > 0, y, 0.0), mask=mask)


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x, scale, bias):
        x = x.contiguous()
        scale = scale.contiguous()
        bias = bias.contiguous()
        cols = x.shape[-1]
        rows = x.numel() // cols
        out = torch.empty_like(x)
        grid = (triton.cdiv(rows, 4), triton.cdiv(cols, 1024))
        scale_bias_relu_kernel[grid](x, scale, bias, out, rows, cols, cols,
                                     BLOCK_R=4, BLOCK_C=1024, num_warps=8)
        return out
