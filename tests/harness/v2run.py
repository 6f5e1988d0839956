"""Runs cases of tests/harness/cases.json through Verifier v2 the way the agent does, in
Python: one warm judge (kforge_judge.py) and, per job, a fresh candidate worker
(kforge_worker.py) handed to the judge over SCM_RIGHTS; when the judge releases the worker it
is killed with its whole process group and the judge is told how it ended.

    /usr/bin/python3 tests/harness/v2run.py [FILE.json ...] [CASE_NAME ...]   # each verdict

The C++ agent (agent/verifier/) is the production driver; this one lets the harness's tests
run without a build.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import jobrun  # noqa: E402

ROOT = jobrun.ROOT
HARNESS_DIR = os.path.join(ROOT, "agent", "harness")
sys.path.insert(0, HARNESS_DIR)
from kforge_verifier import channel  # noqa: E402

PYTHON = jobrun.PYTHON


def _env(extra=None):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": HARNESS_DIR,
           "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "1"
    env.update(extra or {})
    return env


def _readable_harness():
    """The harness where any user can read it: a worker run as nobody cannot read a clone
    under a 0700 directory (root's home), so it gets a copy, as the agent's jobs do."""
    if os.geteuid() != 0:
        return HARNESS_DIR
    import atexit
    import shutil
    root = tempfile.mkdtemp(prefix="kforge-harness-copy-")
    os.chmod(root, 0o755)
    copy = os.path.join(root, "harness")
    shutil.copytree(HARNESS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    atexit.register(shutil.rmtree, root, True)
    return copy


def _kill(proc):
    """A worker and its process group, gone when this returns."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class Judge:
    def __init__(self, device="cpu", env=None, reference_workers=True):
        self.device = device
        self.reference_workers = reference_workers  # False: refuse the judge's asks, as an
                                                    # agent without a worker to give would
        self.worker_harness = _readable_harness()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen([PYTHON, os.path.join(HARNESS_DIR, "kforge_judge.py"),
                                      "--fd", str(theirs.fileno())], pass_fds=[theirs.fileno()],
                                     env=_env(env), start_new_session=True)
        theirs.close()
        self.ctl = channel.Channel(mine.detach())
        msg, _ = self.ctl.recv(time.monotonic() + 60)
        assert "ready" in msg, msg

    def spawn_worker(self, work_dir, limits=None):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        setup = jobrun._preexec(limits or {})
        proc = subprocess.Popen([PYTHON, os.path.join(self.worker_harness, "kforge_worker.py"),
                                 "--fd", str(theirs.fileno())], pass_fds=[theirs.fileno()],
                                cwd=work_dir,
                                env=_env({"KFORGE_WORKER_PRELOAD": "torch", "HOME": work_dir,
                                          "KFORGE_WORKER_DEVICE": self.device,
                                          "PYTHONPATH": self.worker_harness}),
                                preexec_fn=setup,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        theirs.close()
        return proc, mine

    def _new_worker(self, parent, limits):
        work = tempfile.mkdtemp(prefix="worker-", dir=parent)
        if os.geteuid() == 0 and limits and limits.get("processes"):
            os.chown(work, jobrun.NOBODY, jobrun.NOBODY)
        return self.spawn_worker(work, limits)

    def verify(self, job_dir, timeout_s=60, limits=None):
        parent = self.parent = os.path.dirname(job_dir)
        if not limits and getattr(self, "spare", None):
            proc, sock = self.spare  # warm, as the agent's pool keeps one
            self.spare = None
        else:
            proc, sock = self._new_worker(parent, limits)
        if not limits:
            # the next job's worker warms up while this one runs. The agent waits for the
            # judge's reference_timed (its workers fork from the zygote in milliseconds);
            # this driver's are interpreters importing torch for a second or more, so it
            # starts them at once, or the next short job would wait that second
            self._refill()
        # the worker's CPU meter: its process's CPU clock (the agent passes its box's cpu.stat)
        self.ctl.send({"op": "verify", "job_dir": job_dir, "timeout_ms": int(timeout_s * 1000),
                       "cpu_pid": proc.pid}, fds=[sock.fileno()])
        sock.close()
        extra = []  # the reference's worker, when the judge asks for one
        try:
            return self._serve_job(proc, timeout_s, extra)
        finally:
            for p, _ in extra:
                _kill(p)

    def _refill(self):
        if not getattr(self, "spare", None):
            self.spare = self._new_worker(self.parent, None)

    def _serve_job(self, proc, timeout_s, extra):
        while True:
            msg, _ = self.ctl.recv(time.monotonic() + timeout_s + 120)
            if "reference_worker" in msg and not self.reference_workers:
                self.ctl.send({"reference_worker": 0, "why": "none to give"})
            elif "reference_timed" in msg:
                if extra:  # the reference's worker is gone before the judge goes on
                    for p, _ in extra:
                        _kill(p)
                    extra.clear()
                    self.ctl.send({"reference_timed": 1})
                self._refill()
            elif "reference_worker" in msg:
                if getattr(self, "spare", None):
                    (p, s), self.spare = self.spare, None  # warm, as the agent's pool would
                else:
                    p, s = self._new_worker(self.parent, None)
                extra.append((p, s))
                self.ctl.send({"reference_worker": 1, "cpu_pid": p.pid}, fds=[s.fileno()])
                s.close()
            elif "release_worker" in msg:
                _kill(proc)
                # what is there now: a setsid'd grandchild outside the group may hold the pipe
                os.set_blocking(proc.stderr.fileno(), False)
                err = (proc.stderr.read() or b"").decode(errors="replace")[-4000:]
                self.last_stderr = err
                rc = proc.returncode
                self.ctl.send({"worker_exit": {"exit_code": rc if rc >= 0 else None,
                                               "signal": -rc if rc < 0 else 0,
                                               "oom": False, "stderr": err}})
            elif "result" in msg:
                self._refill()  # where the judge never said the reference was timed
                return msg["result"]

    def close(self):
        if getattr(self, "spare", None):
            proc, sock = self.spare
            sock.close()
            _kill(proc)
        self.ctl.close()
        self.proc.wait(timeout=30)


def main(names):
    files = [n for n in names if n.endswith(".json")] or ["cases.json"]
    names = [n for n in names if not n.endswith(".json")]
    cases = [c for f in files for c in jobrun.load_cases(f) if not names or c["name"] in names]
    # the judge's settings of this environment (KFORGE_VERIFIER_CUDA_IPC, KFORGE_JUDGE_*) go along
    passed = {k: v for k, v in os.environ.items() if k.startswith(("KFORGE_VERIFIER_", "KFORGE_JUDGE_"))}
    judge = Judge(device="cuda" if any(c["backend"] == "cuda" for c in cases) else "cpu",
                  env=passed)
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            job_dir = jobrun.make_job_dir(case, tmp)
            t0 = time.monotonic()
            doc = judge.verify(job_dir, case.get("timeout_s", 60), case.get("limits"))
            ok = doc["verdict"] == case["expect"]
            bad += not ok
            print(f"{'ok ' if ok else 'BAD'} {case['name']}: {doc['verdict']} "
                  f"(want {case['expect']}) {time.monotonic() - t0:.2f}s "
                  f"{'' if ok else doc['message'][:600]}")
            if os.environ.get("KFORGE_V2RUN_PROFILE") == "1":
                import json
                print(f"    message: {doc['message'][:400]}")
                for key in ("checks", "profile"):
                    if doc.get(key):
                        print(f"    {key}: " + json.dumps(doc[key], sort_keys=True))
            if not ok and getattr(judge, "last_stderr", ""):
                print("    worker stderr: " + judge.last_stderr[-2000:].replace("\n", "\n    "))
    judge.close()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
