"""The Triton cache the judge seeds (kforge_verifier/launchers.py, seed()), copied into a fresh
worker's: a worker's warm-up (CUDA context, then Triton's warm-up kernel and the launchers of
the kept signatures) timed in fresh processes with an empty cache and with a copy of the
seed. On a CUDA host, with the interpreter that has torch and triton:

    /opt/torch/.venv/bin/python bench/triton_seed_probe.py
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "agent", "harness")
CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
import torch
torch.empty(1, device="cuda")
t1 = time.perf_counter()
from kforge_verifier import launchers
if sys.argv[2] == "judge":
    n = launchers.seed()
else:
    n = launchers.prebuild(os.environ.get("KFORGE_WORKER_LAUNCHERS", ""), launchers.warm_kernel)
t2 = time.perf_counter()
files = sum(len(f) for _, _, f in os.walk(os.environ["TRITON_CACHE_DIR"]))
print(json.dumps({"cuda_init_ms": round((t1 - t0) * 1e3, 1),
                  "triton_warm_ms": round((t2 - t1) * 1e3, 1), "launchers_built": n,
                  "cache_files": files}))
"""


def run(label, role, cache, extra):
    env = dict(os.environ, TRITON_CACHE_DIR=cache, **extra)
    out = subprocess.run([sys.executable, "-c", CHILD, HARNESS, role], env=env,
                         capture_output=True, text=True, check=False)
    print(f"{label}: {out.stdout.strip() or out.stderr[-3000:]}", flush=True)


def main():
    record = repr((({(4,): 1024}, {"x_ptr": "*fp32", "y_ptr": "*fp32", "out_ptr": "*fp32",
                                    "n": "i32", "BLOCK": "constexpr"}, []), {}))
    with tempfile.TemporaryDirectory() as d:
        kept = os.path.join(d, "triton-launchers.json")
        with open(kept, "w", encoding="utf-8") as f:
            json.dump([record], f)
        seed = os.path.join(d, "seed")
        run("judge seeds", "judge", seed, {"KFORGE_JUDGE_LAUNCHERS_FILE": kept})
        worker_env = {"KFORGE_WORKER_LAUNCHERS": json.dumps([record])}
        for i in range(3):
            run(f"worker {i}, empty cache", "worker", os.path.join(d, f"cold{i}"), worker_env)
            copy = os.path.join(d, f"seeded{i}")
            shutil.copytree(seed, copy)
            run(f"worker {i}, seeded cache", "worker", copy, worker_env)


if __name__ == "__main__":
    main()
