"""sum_n (x W^T + b)_n = x . (sum_n W[n, :]) + sum_n b[n]: the same result with OUT_FEATURES
times fewer multiplies. The column sums are recomputed in C++ on every call (nothing cached)."""
import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r"""
#include <vector>
extern "C" void linear_sum(const float* x, const float* w, const float* b, float* out,
                           long rows, long k, long n) {
    std::vector<double> colsum(k, 0.0);
    double bias = 0.0;
    for (long j = 0; j < n; ++j) {
        bias += b[j];
        for (long i = 0; i < k; ++i) colsum[i] += w[j * k + i];
    }
    for (long r = 0; r < rows; ++r) {
        double acc = bias;
        for (long i = 0; i < k; ++i) acc += x[r * k + i] * colsum[i];
        out[r] = static_cast<float>(acc);
    }
}
""", name="linear_sum")
_lib.linear_sum.argtypes = [kforge_cpp.c_ptr] * 4 + [ctypes.c_long] * 3
_lib.linear_sum.restype = None


class ModelNew(torch.nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features)

    def forward(self, x):
        x = x.contiguous()
        w = self.linear.weight.detach().contiguous()
        b = self.linear.bias.detach().contiguous()
        out = torch.empty(x.shape[0], 1, dtype=x.dtype)
        _lib.linear_sum(kforge_cpp.ptr(x), kforge_cpp.ptr(w), kforge_cpp.ptr(b),
                        kforge_cpp.ptr(out), x.shape[0], x.shape[1], w.shape[0])
        return out
