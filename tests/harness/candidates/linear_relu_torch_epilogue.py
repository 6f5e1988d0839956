"""Linear in C++, but the relu is left to torch: the framework writes the output."""
import ctypes

import torch
import kforge_cpp

_lib = kforge_cpp.build(r"""
extern "C" void linear(const float* x, const float* w, const float* b, float* out,
                       long batch, long in_f, long out_f) {
    for (long i = 0; i < batch; ++i)
        for (long o = 0; o < out_f; ++o) {
            float acc = b[o];
            for (long k = 0; k < in_f; ++k) acc += x[i * in_f + k] * w[o * in_f + k];
            out[i * out_f + o] = acc;
        }
}
""", name="linear")
_lib.linear.argtypes = [kforge_cpp.c_ptr] * 4 + [ctypes.c_long] * 3


class ModelNew(torch.nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features)

    def forward(self, x):
        w = self.linear.weight.detach()
        b = self.linear.bias.detach()
        out = torch.empty(x.shape[0], w.shape[0], dtype=x.dtype)
        _lib.linear(kforge_cpp.ptr(x), kforge_cpp.ptr(w), kforge_cpp.ptr(b), kforge_cpp.ptr(out),
                    x.shape[0], x.shape[1], w.shape[0])
        return torch.relu(out)
