"""Honest: its C++ function is named softmax and called as a method of the library object
(self._lib.softmax(...)). The old static rule read .softmax() as the framework's."""
import ctypes

import torch
import kforge_cpp


def _load():
    lib = kforge_cpp.build(r"""
#include <cmath>
extern "C" void softmax(const float* x, float* out, long rows, long cols) {
    for (long r = 0; r < rows; ++r) {
        const float* in = x + r * cols;
        float* o = out + r * cols;
        float m = in[0];
        for (long c = 1; c < cols; ++c) m = in[c] > m ? in[c] : m;
        double sum = 0.0;
        for (long c = 0; c < cols; ++c) { o[c] = std::exp(in[c] - m); sum += o[c]; }
        const float inv = (float)(1.0 / sum);
        for (long c = 0; c < cols; ++c) o[c] *= inv;
    }
}
""", name="softmax_named")
    lib.softmax.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_long, ctypes.c_long]
    return lib


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self._lib = _load()

    def forward(self, x):
        x = x.contiguous()
        out = torch.empty_like(x)
        self._lib.softmax(kforge_cpp.ptr(x), kforge_cpp.ptr(out), x.shape[0], x.shape[1])
        return out
