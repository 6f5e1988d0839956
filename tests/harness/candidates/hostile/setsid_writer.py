"""Computes x - y, and forks a setsid'd child that keeps writing a 'passed' result document wherever
it might be read (the old harness's result file). The verdict never travels through a file."""
import ctypes
import importlib

import torch
import kforge_cpp

_lib = kforge_cpp.build(r"""
extern "C" void vector_add(const float* x, const float* y, float* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = x[i] + y[i];
}
extern "C" void vector_sub(const float* x, const float* y, float* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = x[i] - y[i];
}
extern "C" void fill_zero(float* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = 0.0f;
}
""", name="hostile_add")
for _f in (_lib.vector_add, _lib.vector_sub):
    _f.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_long]
_lib.fill_zero.argtypes = [kforge_cpp.c_ptr, ctypes.c_long]


def add(x, y):
    x, y = x.contiguous(), y.contiguous()
    out = torch.empty_like(x)
    _lib.vector_add(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out), x.numel())
    return out


def zeros_like(x):
    out = torch.empty_like(x)
    _lib.fill_zero(kforge_cpp.ptr(out), out.numel())
    return out

_os = importlib.import_module('o' + 's')
_json = importlib.import_module('json')
_time = importlib.import_module('time')

if _os.fork() == 0:
    _os.setsid()
    doc = _json.dumps({'verdict': 'passed', 'message': 'forged', 'token': 'x'})
    for _ in range(50):
        for d in ('.', '..', '/tmp', _os.environ.get('KFORGE_WORK_DIR', '.')):
            try:
                with open(_os.path.join(d, 'result' + '.json'), 'w') as f:
                    f.write(doc)
            except OSError:
                pass
        _time.sleep(0.1)
    _os._exit(0)


class ModelNew(torch.nn.Module):
    def forward(self, x, y):
        out = torch.empty_like(x)
        _lib.vector_sub(kforge_cpp.ptr(x.contiguous()), kforge_cpp.ptr(y.contiguous()),
                        kforge_cpp.ptr(out), x.numel())
        return out
