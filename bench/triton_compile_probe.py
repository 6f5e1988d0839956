"""Where a fresh worker's first Triton call goes: kernel compile vs launcher build vs load.

    /opt/torch/.venv/bin/python bench/triton_compile_probe.py

Runs in a fresh cache directory; prints ms per step. Each kernel is compiled for the first
time in this process; B and C share A's signature shape or not, so the launcher's part shows.
"""
import os
import sys
import tempfile
import time

os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="triton-probe-")
t0 = time.perf_counter()
import torch  # noqa: E402
t1 = time.perf_counter()
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
t2 = time.perf_counter()
torch.cuda.init()
x = torch.randn(100003, device="cuda")
y = torch.randn(100003, device="cuda")
torch.cuda.synchronize()
t3 = time.perf_counter()
print(f"import torch {1e3 * (t1 - t0):.1f} ms, import triton {1e3 * (t2 - t1):.1f} ms, "
      f"context+inputs {1e3 * (t3 - t2):.1f} ms, triton {triton.__version__}", flush=True)


@triton.jit
def warm(x_ptr):
    pass


@triton.jit
def add_a(x_ptr, y_ptr, o_ptr, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    tl.store(o_ptr + i, tl.load(x_ptr + i, mask=m) + tl.load(y_ptr + i, mask=m), mask=m)


@triton.jit
def add_b(x_ptr, y_ptr, o_ptr, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    tl.store(o_ptr + i, tl.load(x_ptr + i, mask=m) * 2.0 + tl.load(y_ptr + i, mask=m), mask=m)


@triton.jit
def mul_c(x_ptr, o_ptr, n, s, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    tl.store(o_ptr + i, tl.load(x_ptr + i, mask=m) * s, mask=m)


def timed(name, fn):
    torch.cuda.synchronize()
    s = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    print(f"{name}: {1e3 * (time.perf_counter() - s):.1f} ms", flush=True)


o = torch.empty_like(x)
n = x.numel()
g = (triton.cdiv(n, 1024),)
timed("warm kernel (x_ptr), first ever", lambda: warm[(1,)](x))
timed("add_a first call (new signature)", lambda: add_a[g](x, y, o, n, BLOCK=1024))
timed("add_a second call", lambda: add_a[g](x, y, o, n, BLOCK=1024))
timed("add_b first call (add_a's signature, other body)", lambda: add_b[g](x, y, o, n, BLOCK=1024))
timed("mul_c first call (new signature)", lambda: mul_c[g](x, o, n, 3.0, BLOCK=1024))
from triton.runtime import cache as _cache  # noqa: E402,F401
files = []
for root, _, names in os.walk(os.environ["TRITON_CACHE_DIR"]):
    files += [n for n in names]
print("cache files:", sorted({f.rsplit(".", 1)[-1] for f in files}), len(files), flush=True)
sys.exit(0)
