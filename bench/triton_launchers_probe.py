"""On a CUDA host with Triton: kforge_verifier/launchers.py end to end in fresh processes.
One records the signature of a vector add's kernel (as a worker does for the judge); then a
fresh one without and a fresh one with that record build ahead while they warm up, and time
the candidate's first launch (docs/performance.md, "Triton launchers built ahead").

  /opt/torch/.venv/bin/python bench/triton_launchers_probe.py"""
import json, os, subprocess, sys, tempfile, time
HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "agent", "harness")
sys.path.insert(0, HARNESS)
stage = sys.argv[1] if len(sys.argv) > 1 else "main"
if stage == "main":
    recs = subprocess.run([sys.executable, __file__, "record"], capture_output=True, text=True,
                          env={**os.environ, "TRITON_CACHE_DIR": tempfile.mkdtemp()})
    print("record:", recs.stdout[-3000:], recs.stderr[-1500:])
    records = json.loads(recs.stdout.strip().splitlines()[-1])
    for text in ("[]", json.dumps(records)):
        r = subprocess.run([sys.executable, __file__, "use"], capture_output=True, text=True,
                           env={**os.environ, "TRITON_CACHE_DIR": tempfile.mkdtemp(),
                                "KFORGE_WORKER_LAUNCHERS": text})
        print("use with", len(json.loads(text)), "records:", r.stdout[-1500:], r.stderr[-1500:])
    sys.exit(0)
import torch, triton, triton.language as tl
from kforge_verifier import launchers, worker

@triton.jit
def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask), mask=mask)

x = torch.randn(100003, device="cuda"); y = torch.randn_like(x); o = torch.empty_like(x)
if stage == "record":
    worker._warm_triton()
    print("record() ->", launchers.record())
    add_kernel[(triton.cdiv(x.numel(), 1024),)](x, y, o, x.numel(), BLOCK=1024)
    seen = launchers.take_seen()
    print("seen:", seen)
    print("valid:", [launchers.valid(t) is not None for t in seen])
    print(json.dumps([t for t in seen if launchers.valid(t) is not None]))
else:
    t0 = time.perf_counter()
    n = launchers.prebuild(os.environ["KFORGE_WORKER_LAUNCHERS"], worker._warm_triton)
    print(f"prebuild: {n} built in {1e3 * (time.perf_counter() - t0):.1f} ms (warm-up included)")
    torch.cuda.synchronize(); t0 = time.perf_counter()
    add_kernel[(triton.cdiv(x.numel(), 1024),)](x, y, o, x.numel(), BLOCK=1024); torch.cuda.synchronize()
    print(f"candidate's first launch: {1e3 * (time.perf_counter() - t0):.1f} ms")
