"""A tiled Triton matmul that multiplies float32 in float32 (input_precision="ieee"): correct,
but it adds its 16,384 products in another order than cuBLAS."""
import torch
import triton
import triton.language as tl


@triton.jit
def matmul_kernel(a, b, c, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    rm = tl.program_id(0) * BM + tl.arange(0, BM)
    rn = tl.program_id(1) * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        ks = k0 + rk
        a_t = tl.load(a + rm[:, None] * K + ks[None, :],
                      mask=(rm[:, None] < M) & (ks[None, :] < K), other=0.0)
        b_t = tl.load(b + ks[:, None] * N + rn[None, :],
                      mask=(ks[:, None] < K) & (rn[None, :] < N), other=0.0)
        acc += tl.dot(a_t, b_t, input_precision="ieee")
    tl.store(c + rm[:, None] * N + rn[None, :], acc, mask=(rm[:, None] < M) & (rn[None, :] < N))


class ModelNew(torch.nn.Module):
    def forward(self, a, b):
        a, b = a.contiguous(), b.contiguous()
        M, K = a.shape
        N = b.shape[1]
        c = torch.empty(M, N, device=a.device, dtype=a.dtype)
        grid = (triton.cdiv(M, 64), triton.cdiv(N, 64))
        matmul_kernel[grid](a, b, c, M, N, K, BM=64, BN=64, BK=32)
        return c
