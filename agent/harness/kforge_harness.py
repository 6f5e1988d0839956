#!/usr/bin/python3
"""kforge Verifier harness: checks one candidate kernel against its reference.

    /usr/bin/python3 kforge_harness.py --job-dir DIR

DIR holds job.json, the reference and the candidate. The harness writes DIR/stage before each
stage and DIR/result.json (atomically) at the end, and exits 0 whenever it wrote a verdict.
The contract, job.json, the result schema and the verdicts: docs/harness.md.
"""

import argparse
import json
import os
import sys
import time

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS")


def _threads_from_job(job_dir):
    """job.json's "threads", read before numpy/torch are imported (they read the env once)."""
    try:
        with open(os.path.join(job_dir, "job.json"), encoding="utf-8") as f:
            value = json.load(f).get("threads", 1)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
    except Exception:  # noqa: BLE001 - job.json problems are reported by the runner
        pass
    return 1


def _read_token():
    """First line of stdin (at most 4 KiB), or None when stdin is absent or a terminal."""
    try:
        if sys.stdin is None or sys.stdin.isatty():
            return None
        line = sys.stdin.readline(4096)
        sys.stdin.close()
    except (OSError, ValueError):
        return None
    return line.strip() if line else None


def main(argv=None):
    started_unix_ms = round(time.time() * 1000.0, 3)  # the parent's clock: process start-up
    parser = argparse.ArgumentParser(description="kforge verifier harness")
    parser.add_argument("--job-dir", required=True, help="directory with job.json")
    args = parser.parse_args(argv)
    job_dir = os.path.abspath(args.job_dir)
    try:
        os.chdir(job_dir)
    except OSError as e:
        print(f"kforge_harness: cannot enter the job directory: {e}", file=sys.stderr)
        return 2

    # The parent writes a per-job token as the first line of stdin; result.json carries it
    # back, so a result.json written by the candidate itself is recognised as forged. Read
    # before any task or candidate code runs; kept in locals only (never a module global).
    token = _read_token()

    threads = str(_threads_from_job(job_dir))
    for var in _THREAD_VARS:
        os.environ[var] = threads
    os.environ.setdefault("KFORGE_CPP_CACHE", os.path.join(job_dir, ".kforge_cpp"))

    # A fatal signal (SIGSEGV in a kernel) kills the process before any verdict is written;
    # the parent classifies it from DIR/stage, and this puts the Python stack on stderr.
    import faulthandler
    faulthandler.enable()

    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)  # kforge_cpp and kforge_verifier, also for the candidate
    t0 = time.perf_counter()
    from kforge_verifier import runner
    imports_ms = round((time.perf_counter() - t0) * 1000.0, 3)
    runner.verify(job_dir, imports_ms=imports_ms, token=token, started_unix_ms=started_unix_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
