import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r'''
#include <cstdint>
#include <vector>

// x viewed as (outer, n, inner), summed over n: for each outer index, the n rows of `inner`
// floats are added into one row of f64 accumulators, a loop over contiguous memory that
// vectorises, then rounded once to f32.
extern "C" int sum_dim(const float* __restrict__ x, float* __restrict__ y,
                       int64_t outer, int64_t n, int64_t inner) {
    std::vector<double> acc(inner);
    for (int64_t o = 0; o < outer; ++o) {
        for (int64_t k = 0; k < inner; ++k) acc[k] = 0.0;
        for (int64_t i = 0; i < n; ++i) {
            const float* row = x + (o * n + i) * inner;
            for (int64_t k = 0; k < inner; ++k) acc[k] += row[k];
        }
        for (int64_t k = 0; k < inner; ++k) y[o * inner + k] = static_cast<float>(acc[k]);
    }
    return 0;
}
''', name="sum_dim", flags=("-O3", "-march=native"))
_lib.sum_dim.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
_lib.sum_dim.restype = ctypes.c_int


class ModelNew(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        x = x.contiguous()
        dim = self.dim % x.dim()
        outer = 1
        for s in x.shape[:dim]:
            outer *= s
        inner = 1
        for s in x.shape[dim + 1:]:
            inner *= s
        shape = list(x.shape)
        shape[dim] = 1
        y = torch.empty(shape, dtype=x.dtype)
        _lib.sum_dim(kforge_cpp.ptr(x), kforge_cpp.ptr(y), outer, x.shape[dim], inner)
        return y
