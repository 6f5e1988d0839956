"""Probes CUDA IPC the way the Verifier's device transport uses it, step by step.

    /opt/torch/.venv/bin/python bench/cuda_ipc_probe.py

The parent allocates a device arena (agent/harness/kforge_verifier/channel.DeviceArena: a CUDA
VMM allocation exported as a file descriptor), fills two float32 inputs and starts a child
process that imports the arena from the inherited descriptor and runs framework ops and a
Triton launch on views of it, printing the runtime's last error and the outcome of each step.
With --pidns the child runs in a new PID namespace (unshare -p -f, as root), as the boxed
worker does. Prints one line per step; exits 0 when every step worked.
"""

import ctypes
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "agent", "harness"))

N = 100003


def _maps(name):
    with open("/proc/self/maps") as f:
        return sorted({line.split()[-1] for line in f if name in line})


def _cudart():
    import torch
    torch.cuda.init()
    for name in ("libcudart.so.13", "libcudart.so.12", "libcudart.so"):
        try:
            lib = ctypes.CDLL(name)
            lib.cudaGetLastError.restype = ctypes.c_int
            lib.cudaPeekAtLastError.restype = ctypes.c_int
            return lib
        except OSError:
            continue
    raise OSError("no libcudart")


def child(in_size, fd):
    import torch
    from kforge_verifier import channel
    torch.cuda.init()
    arena = channel.DeviceArena(in_size, fd=fd)
    lib = _cudart()
    print("libcudart mapped:", _maps("libcudart"), flush=True)
    failures = 0

    def step(name, fn):
        nonlocal failures
        before = lib.cudaPeekAtLastError()
        try:
            out = fn()
            torch.cuda.synchronize()
            print(f"{name}: ok {out if out is not None else ''} (last error before {before})",
                  flush=True)
        except BaseException as e:  # noqa: BLE001
            failures += 1
            print(f"{name}: FAILED {type(e).__name__}: {str(e).splitlines()[0]} "
                  f"(last error before {before}, after {lib.cudaPeekAtLastError()})", flush=True)
            lib.cudaGetLastError()

    n = N * 4
    x = arena.tensor[0:n].view(torch.float32)
    y = arena.tensor[512 * 1024:512 * 1024 + n].view(torch.float32)
    step("sum of view x", lambda: float(x.sum()))
    step("x + y on IPC views", lambda: float((x + y)[:4].sum()))
    step("x.clone() + y.clone()", lambda: float((x.clone() + y.clone())[:4].sum()))
    step("x.reshape + y", lambda: float((x.reshape(N) + y.reshape(N))[:4].sum()))

    import triton
    import triton.language as tl

    @triton.jit
    def touch(x_ptr):
        pass

    @triton.jit
    def add(x_ptr, y_ptr, o_ptr, n, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = i < n
        tl.store(o_ptr + i, tl.load(x_ptr + i, mask=m) + tl.load(y_ptr + i, mask=m), mask=m)

    step("triton touch(x)", lambda: touch[(1,)](x) and None)
    step("x + y after the touch", lambda: float((x + y)[:4].sum()))
    o = torch.empty_like(x)
    step("triton add on IPC views", lambda: add[(triton.cdiv(N, 1024),)](x, y, o, N, BLOCK=1024)
         and None)
    step("torch check of the triton add", lambda: bool(torch.equal(o, x + y)))

    from torch.overrides import TorchFunctionMode

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    def traced():
        with Mode():
            touch[(1,)](x)
            return float((x + y)[:4].sum())
    step("touch + add under a TorchFunctionMode", traced)
    arena.close()
    return failures


def parent():
    import torch
    from kforge_verifier import channel
    torch.cuda.init()
    print("torch", torch.__version__, "cuda", torch.version.cuda, "device",
          torch.cuda.get_device_name(0), flush=True)
    arena = channel.DeviceArena(1 << 22)
    print("parent libcudart mapped:", _maps("libcudart"), "last error",
          _cudart().cudaPeekAtLastError(), "arena", arena.size, "bytes, fd", arena.fd,
          flush=True)
    g = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(N, device="cuda", generator=g)
    y = torch.randn(N, device="cuda", generator=g)
    arena.tensor[0:N * 4].copy_(x.view(torch.uint8))
    arena.tensor[512 * 1024:512 * 1024 + N * 4].copy_(y.view(torch.uint8))
    torch.cuda.synchronize()
    print("parent: expected x+y[:4] sum", float((x + y)[:4].sum()), flush=True)
    env = dict(os.environ)
    extra = [a for a in sys.argv[1:] if a != "--pidns"]
    wrap = []
    if "--pidns" in sys.argv:
        wrap = ["unshare", "-p", "-f", "--mount-proc"] + ([] if os.geteuid() == 0 else ["-r"])
    cmd = wrap + [sys.executable, os.path.abspath(__file__), "--child", str(arena.size),
                  str(arena.fd)] + extra
    rc = subprocess.call(cmd, env=env, pass_fds=(arena.fd,))
    env["CUDA_LAUNCH_BLOCKING"] = "1"
    print("--- again with CUDA_LAUNCH_BLOCKING=1", flush=True)
    rc2 = subprocess.call(cmd, env=env, pass_fds=(arena.fd,))
    arena.close()
    return 1 if rc or rc2 else 0


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--child":
        sys.exit(1 if child(int(sys.argv[2]), int(sys.argv[3])) else 0)
    sys.exit(parent())
