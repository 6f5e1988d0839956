"""How long a killed CUDA process takes to be gone: SIGKILL to waitpid's return, for a process
with a bare CUDA context, with 1 GiB of the caching allocator, and with a device buffer of its
parent's mapped through CUDA IPC (what a candidate worker holds when the agent kills it). On a
CUDA host, with the interpreter that has torch:

    /opt/torch/.venv/bin/python bench/cuda_exit_probe.py [rounds]
"""

import os
import signal
import statistics
import sys
import time

import torch
import torch.multiprocessing as mp


def child(ready, handle, alloc_mb):
    torch.empty(1, device="cuda")
    if alloc_mb:
        torch.empty(alloc_mb << 20, dtype=torch.uint8, device="cuda")
    if handle is not None:
        handle.add_(1)  # a tensor of the parent's, opened through CUDA IPC
        torch.cuda.synchronize()
    ready.set()
    time.sleep(3600)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    ctx = mp.get_context("spawn")
    shared = torch.zeros(64 << 20, dtype=torch.uint8, device="cuda")
    for label, handle, alloc_mb in (("bare context", None, 0), ("1 GiB allocated", None, 1024),
                                    ("IPC buffer mapped", shared, 0)):
        ms = []
        for _ in range(rounds):
            ready = ctx.Event()
            p = ctx.Process(target=child, args=(ready, handle, alloc_mb))
            p.start()
            if not ready.wait(30):
                p.kill()
                p.join()
                print(f"cuda_exit.{label.replace(' ', '_')}: the child did not come up (exit "
                      f"code {p.exitcode})")
                break
            t0 = time.perf_counter()
            os.kill(p.pid, signal.SIGKILL)
            p.join()  # waitpid: returns once the process, its CUDA context with it, is gone
            ms.append((time.perf_counter() - t0) * 1e3)
        if not ms:
            continue
        print(f"cuda_exit.{label.replace(' ', '_')}_ms: median {statistics.median(ms):.1f} "
              f"min {min(ms):.1f} max {max(ms):.1f} ({len(ms)} kills)")


if __name__ == "__main__":
    main()
