"""The 4-thread axpy chain, except that every fourth call runs on one thread and then sleeps:
the sleeping calls' held time with no CPU in it would pay, in a charge summed over the calls,
for the fast calls' extra threads, while the median lands on a fast call. Charged per call,
the fast calls pay for their own CPU."""
import ctypes
import time

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
extern "C" void axpy_chain(const float* x, const float* y, float* out, long n, int k) {
    std::vector<std::thread> pool;
    for (int t = 1; t < k; ++t) pool.emplace_back(chain, x, y, out, n * t / k, n * (t + 1) / k);
    chain(x, y, out, 0, n / k);
    for (auto& th : pool) th.join();
}
""", name="axpy_chain_banked", flags=("-pthread",))
_lib.axpy_chain.argtypes = [kforge_cpp.c_ptr] * 3 + [ctypes.c_long, ctypes.c_int]
_lib.axpy_chain.restype = None
_calls = {"n": 0, "fast_s": 0.01}


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x, y):
        x = x.contiguous()
        y = y.contiguous()
        out = torch.empty_like(x)
        _calls["n"] += 1
        slow = _calls["n"] % 4 == 0
        t0 = time.perf_counter()
        _lib.axpy_chain(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out), x.numel(),
                        1 if slow else 4)
        if slow:
            time.sleep(4 * _calls["fast_s"])
        else:
            _calls["fast_s"] = time.perf_counter() - t0
        return out
