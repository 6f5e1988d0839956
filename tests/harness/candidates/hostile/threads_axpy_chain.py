"""The same fused axpy chain split over 4 threads of its own, while the reference is held to
the job's `threads` (1): on an idle multi-core host the extra CPUs read as a speedup the
kernel did not earn. The judge charges each side the CPU time it used beyond `threads` CPUs."""
import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r"""
#include <thread>
#include <vector>
static void chain(const float* x, const float* y, float* out, long lo, long hi) {
    for (long i = lo; i < hi; ++i) {
        float v = x[i];
        for (int s = 0; s < 64; ++s) v = v * 0.999f + y[i];
        out[i] = v;
    }
}
extern "C" void axpy_chain(const float* x, const float* y, float* out, long n) {
    const int k = 4;
    std::vector<std::thread> pool;
    for (int t = 1; t < k; ++t) pool.emplace_back(chain, x, y, out, n * t / k, n * (t + 1) / k);
    chain(x, y, out, 0, n / k);
    for (auto& th : pool) th.join();
}
""", name="axpy_chain4", flags=("-pthread",))
_lib.axpy_chain.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_long]
_lib.axpy_chain.restype = None


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x, y):
        x = x.contiguous()
        y = y.contiguous()
        out = torch.empty_like(x)
        _lib.axpy_chain(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out), x.numel())
        return out
