"""Runs cases of tests/harness/cases.json through the harness the way the C++ parent does:
a job directory with job.json, reference.py and candidate.py; a scrubbed environment; the
parent's token on stdin (result.json must echo it); a new process group killed at the end;
and, when a case has "limits", the parent's rlimits (RLIMIT_AS for memory_mb, RLIMIT_NPROC
for processes, as the unprivileged user "nobody" when we are root, because RLIMIT_NPROC does
not bind root).

    /usr/bin/python3 tests/harness/jobrun.py [CASE_NAME ...]   # prints each verdict

Used by test_harness.py.
"""

import json
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HARNESS = os.path.join(ROOT, "agent", "harness", "kforge_harness.py")
PYTHON = os.environ.get("KFORGE_TEST_PYTHON", "/usr/bin/python3")  # the contract's interpreter
NOBODY = 65534
DEFAULT_TIMEOUT_S = 60

JOB_KEYS = ("op_name", "backend", "arch", "impl_type", "framework", "task_type")


def load_cases(file="cases.json"):
    """cases.json: the CPU corpus (every host); cases_cuda.json: needs a CUDA GPU."""
    with open(os.path.join(HERE, file), encoding="utf-8") as f:
        return json.load(f)


def case_by_name(name):
    for case in load_cases() + load_cases("cases_cuda.json"):
        if case["name"] == name:
            return case
    raise KeyError(name)


def make_job_dir(case, parent):
    """Lays out a job directory for a case under `parent`. -> its path."""
    job_dir = tempfile.mkdtemp(prefix=f"{case['name']}-", dir=parent)
    shutil.copy(os.path.join(HERE, case["task"]), os.path.join(job_dir, "reference.py"))
    shutil.copy(os.path.join(HERE, case["candidate"]), os.path.join(job_dir, "candidate.py"))
    job = {k: case[k] for k in JOB_KEYS if k in case}
    job.update(case.get("job", {}))
    job.setdefault("reference", "reference.py")
    job.setdefault("candidate", "candidate.py")
    with open(os.path.join(job_dir, "job.json"), "w", encoding="utf-8") as f:
        json.dump(job, f, indent=1)
    return job_dir


@dataclass
class Outcome:
    returncode: int
    timed_out: bool
    result: dict          # None when no result.json was written
    stage: str            # DIR/stage, "" when missing
    stderr: str
    wall_s: float


def can_limit_processes():
    return os.geteuid() != 0 or hasattr(os, "setuid")


def _preexec(limits):
    memory_mb = limits.get("memory_mb")
    processes = limits.get("processes")

    def apply():
        os.setpgrp()
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if memory_mb:
            b = int(memory_mb) << 20
            resource.setrlimit(resource.RLIMIT_AS, (b, b))
        if processes:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            resource.setrlimit(resource.RLIMIT_NPROC, (int(processes), int(processes)))
    return apply


def _read_stage(job_dir):
    try:
        with open(os.path.join(job_dir, "stage"), encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


def run_job(job_dir, limits=None, timeout_s=None, hang_stage=None, hang_grace_s=1.0,
            cpp_cache=None):
    """Runs the harness on a job directory. -> Outcome. Always kills the process group.

    hang_stage: instead of a fixed timeout, kill the job hang_grace_s after DIR/stage first
    says hang_stage (timed_out is then True): a hang test that does not depend on how long
    the stages before it take on a loaded machine.
    cpp_cache: a kforge_cpp cache shared by jobs (tests only: it saves compiles; the parent
    gives each job its own).
    """
    limits = limits or {}
    token = secrets.token_hex(16)
    if limits.get("processes") and os.geteuid() == 0:
        for dirpath, dirnames, filenames in os.walk(job_dir):
            os.chmod(dirpath, 0o777)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o666)
    env = {"PATH": os.environ.get("KFORGE_TEST_PATH", "/usr/local/bin:/usr/bin:/bin"),
           "HOME": job_dir, "LANG": "C.UTF-8"}
    if cpp_cache:
        env["KFORGE_CPP_CACHE"] = cpp_cache
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_HOME", "LD_LIBRARY_PATH"):
        if name in os.environ:
            env[name] = os.environ[name]
    start = time.monotonic()
    # Output goes to files, not pipes: children left behind by the job (a fork bomb) would
    # hold pipes open; we wait for the leader only and then kill its group, as the parent.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([PYTHON, HARNESS, "--job-dir", job_dir], cwd=job_dir, env=env,
                                stdin=subprocess.PIPE, stdout=out, stderr=err,
                                preexec_fn=_preexec(limits))
        try:
            proc.stdin.write((token + "\n").encode())
            proc.stdin.close()
        except OSError:
            pass
        timed_out = False
        deadline = start + (timeout_s or DEFAULT_TIMEOUT_S)
        reached = None
        try:
            while proc.poll() is None:
                now = time.monotonic()
                if hang_stage and reached is None and _read_stage(job_dir) == hang_stage:
                    reached = now
                if now >= deadline or (reached is not None and now - reached >= hang_grace_s):
                    timed_out = True
                    break
                time.sleep(0.02)
        finally:
            _kill_group(proc.pid)  # at the timeout, and whatever the job left behind
            proc.wait()
        err.seek(0)
        stderr = err.read()
    wall = time.monotonic() - start
    result = None
    path = os.path.join(job_dir, "result.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    stage = _read_stage(job_dir)
    if result is not None:
        result["token_ok"] = result.pop("token", None) == token
    return Outcome(proc.returncode, timed_out, result, stage,
                   stderr.decode(errors="replace"), wall)


def _kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_case(case, parent, cpp_cache=None):
    """Runs a case. A case expecting timeout is killed 1 s after it reached the precision
    stage (its timeout_s is meant for the parent, which also counts the stages before)."""
    job_dir = make_job_dir(case, parent)
    if case["expect"] == "timeout":
        return run_job(job_dir, case.get("limits"), DEFAULT_TIMEOUT_S, hang_stage="precision",
                       cpp_cache=cpp_cache)
    return run_job(job_dir, case.get("limits"), case.get("timeout_s"), cpp_cache=cpp_cache)


def main(names):
    cases = load_cases()
    if names and names[0].endswith(".json"):
        cases, names = load_cases(names[0]), names[1:]
    if names:
        cases = [case_by_name(n) for n in names]
    with tempfile.TemporaryDirectory(prefix="kforge-harness-") as parent:
        os.chmod(parent, 0o777)
        for case in cases:
            out = run_case(case, parent)
            verdict = out.result["verdict"] if out.result else \
                f"(no result: rc={out.returncode} timed_out={out.timed_out} stage={out.stage})"
            ok = "ok " if (out.result or {}).get("verdict") == case["expect"] else "   "
            print(f"{ok}{case['name']:34s} {verdict:20s} expect {case['expect']:18s} "
                  f"{out.wall_s:5.2f}s")
            if out.result:
                print("      " + out.result["message"].replace("\n", "\n      ")[:1500])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
