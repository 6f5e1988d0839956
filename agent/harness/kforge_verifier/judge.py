"""The judge: the trusted side of a verification (Verifier v2, docs/harness.md).

The judge owns the seeds (secret, random), the inputs, the reference and its outputs, the
comparison, the clock and the verdict. The candidate runs in another process, a worker
(worker.py) that the agent started in the job's box and that runs one candidate only. The
judge hands it inputs through shared memory, takes back its outputs as a snapshot, and
never trusts anything else the worker says: a worker's error report can only ever become one
of the candidate's verdicts (compile_error, runtime_error, crashed, resource_exceeded,
rejected, precision_mismatch), never passed and never infra_error.

One judge serves one device for the agent's lifetime (warm: the framework imported, the
device context up) and keeps the reference outputs of recent tasks (TaskCache): a candidate
pays only for its own compile, checks and profile.

Agent <-> judge (JSON messages on fd 3, channel.py):
  -> {"ready": {"versions": ...}}
  <- {"op": "verify", "job_dir": DIR, "timeout_ms": N} + fd of the worker's socket
       with the worker's CPU meter (timing.CpuMeter), where the agent has one:
       "cpu": "cgroup" + a second fd (its box's cpu.stat), or "cpu_pid": PID
  -> {"reference_worker": 1}     profile jobs: a second fresh worker, to time the reference in
  <- {"reference_worker": 1} + fd of its socket (and its meter, as above),
     or {"reference_worker": 0, "why": ...}
  -> {"reference_timed": 1}      the reference is timed (or needs no timing): the agent kills
                                 the reference's worker, if it gave one, then may warm the
                                 next workers, without slowing the reference down
  <- {"reference_timed": 1}      only where it gave one: that worker is gone (its device
                                 memory freed before the candidate's is measured from:
                                 DeviceMemory)
  -> {"release_worker": 1}       the judge is done with the worker: kill it and its box
  <- {"worker_exit": {"exit_code", "signal", "oom", "stderr"}}
  -> {"result": {...}}           the verdict document (docs/harness.md, result.json)

Timing (profile jobs): every timed run, warm-ups included, gets fresh inputs from a secret
seed, and its output is compared with the reference's for those inputs. A run is timed by
the judge's own clock from before the inputs are written to after the judge holds a private
copy of the outputs; the reference is timed the same way through a worker of its own (a
fresh process from the agent, loaded with the reference's code), so both sides pay the same
copies, messages and device context switches. Its outputs are only timed: the ones the
candidate is checked against are computed in the judge. Work the
candidate leaves running after it answers (a thread, a side stream) is either inside the
interval or missing from the copied outputs, which then fail the comparison. The worker's
round-trip cost, measured before the candidate is loaded, is subtracted from its times.
"""

import collections
import copy
import functools
import hashlib
import json
import os
import platform
import re
import secrets
import signal as signal_mod
import statistics
import time

from . import channel, compare, errors, frameworks, job as job_mod
from . import launchers, launches, timing, trace, verdicts
from .runner import Case, Runner, TRIAL_MIN, new_doc
from .verdicts import Failure

CANDIDATE_VERDICTS = {verdicts.COMPILE_ERROR, verdicts.RUNTIME_ERROR, verdicts.CRASHED,
                      verdicts.RESOURCE_EXCEEDED, verdicts.REJECTED,
                      verdicts.PRECISION_MISMATCH}
READY_WAIT_S = 120.0          # a cold worker imports torch and creates the device context
PINGS = 15                    # round trips measured before the candidate is loaded
CACHE_TASKS = int(os.environ.get("KFORGE_JUDGE_CACHE_TASKS", "8"))
CACHE_BYTES = int(os.environ.get("KFORGE_JUDGE_CACHE_MB", "1024")) << 20
# The timed runs' input sets kept per task, with the reference's outputs and time on each, so
# that a candidate pays only for its own runs; beyond this, sets are drawn fresh per run.
TIMED_SETS_BYTES = int(os.environ.get("KFORGE_JUDGE_TIMED_SETS_MB", "128")) << 20
# The reference is timed in a worker of its own (asked of the agent: a fresh process that never
# ran a candidate), through the same crossing as the candidate: the same buffers, messages and
# second device context. KFORGE_JUDGE_REFERENCE_WORKER=0 times it inside the judge instead,
# which leaves the crossing on the candidate's side only (docs/harness.md, "Timing").
REFERENCE_WORKER = os.environ.get("KFORGE_JUDGE_REFERENCE_WORKER", "1") != "0"
# Inputs and outputs in device memory shared with the worker (CUDA VMM allocations passed as
# file descriptors, channel.DeviceArena) instead of host shared memory: the default on CUDA
# since it was measured on an H100 (docs/harness.md, "Transport"); KFORGE_VERIFIER_CUDA_IPC=0
# keeps a job's buffers in host memory.
CUDA_IPC = os.environ.get("KFORGE_VERIFIER_CUDA_IPC", "1") != "0"
# With CUDA IPC, the candidate's inputs are private copies made on the device (and the
# reference's too, so both sides pay the copy) rather than views of the shared buffer.
CUDA_IPC_PRIVATE = os.environ.get("KFORGE_VERIFIER_CUDA_IPC_PRIVATE", "1") == "1"
# The candidate's device memory: a cap per job, sized from the device as the host's is from the
# host (3/4 of its memory; KFORGE_JUDGE_DEVICE_MEMORY_MB sets it). The worker's allocator is
# held to it before the candidate loads (an honest kernel that asks for more gets the
# framework's out-of-memory error: resource_exceeded). The candidate can lift that, so the
# judge also measures, from outside, how much more of the device is in use than when the
# candidate loaded (DeviceMemory), after every checked call and after the timed runs.
DEVICE_MEMORY_MB = int(os.environ.get("KFORGE_JUDGE_DEVICE_MEMORY_MB", "0"))
# what else may start on the device during a job and counts in that measure: the next warm
# workers (about 0.5 GiB of context each; the agent says how many it keeps,
# KFORGE_JUDGE_WARM_WORKERS), at least 4 GiB
DEVICE_SLACK = max(4, int(os.environ.get("KFORGE_JUDGE_WARM_WORKERS", "0"))) << 30
# The roofline: no call can move its bytes faster than ROOFLINE_MARGIN times the copy
# bandwidth the judge measures on the device (KFORGE_JUDGE_ROOFLINE_MARGIN).
ROOFLINE_MARGIN = float(os.environ.get("KFORGE_JUDGE_ROOFLINE_MARGIN", "2.0"))
# The float64 second look at a precision mismatch (JudgeRunner._within_reference_error): at
# most this many float64 runs of the reference a job, and none for a reference slower than
# this per call in float32, so a near miss cannot stretch a job toward its deadline.
SECOND_LOOKS = int(os.environ.get("KFORGE_JUDGE_SECOND_LOOKS", "8"))
SECOND_LOOK_REF_S = float(os.environ.get("KFORGE_JUDGE_SECOND_LOOK_REF_S", "2"))
# The same for the reference's arithmetic (its traced contractions at the device's peak); a
# time below it is flagged suspicious, not rejected (see _check_roofline).
FLOPS_MARGIN = float(os.environ.get("KFORGE_JUDGE_FLOPS_MARGIN", str(ROOFLINE_MARGIN)))
# Per-call limits, from the reference's own time per call (ref): a call that cannot be the
# kernel being slow is ended there, not at the job's limit. A call has two phases:
#   computing  until the candidate's forward returns. The worker's first call also compiles
#              (Triton's JIT), so it has only the job's limit; every later call gets
#              max(CALL_FLOOR_S, CALL_FACTOR x ref).
#   finishing  after the forward returned (the worker says so on the calls the judge asks it
#              to): the device's queue drains and the outputs are copied, max(SYNC_FLOOR_S,
#              CALL_FACTOR x ref). A GPU kernel that never ends is found here in seconds.
# The worker's word can only shorten its own time: every limit is capped by the job's.
CALL_FACTOR = float(os.environ.get("KFORGE_JUDGE_CALL_FACTOR", "100"))
CALL_FLOOR_S = float(os.environ.get("KFORGE_JUDGE_CALL_FLOOR_S", "10"))
SYNC_FLOOR_S = float(os.environ.get("KFORGE_JUDGE_SYNC_FLOOR_S", "2"))
_BANDWIDTH = {}  # (framework, device) -> measured copy bandwidth, bytes/s


def copy_bandwidth(fw):
    """The device's memory bandwidth as a copy reaches it (read + write bytes per second),
    measured once per device: the best of 5 copies of 64 MiB (256 MiB on CUDA)."""
    key = (fw.name, fw.device)
    if key in _BANDWIDTH:
        return _BANDWIDTH[key]
    if fw.name == "torch":
        torch = fw.torch
        n = (256 if fw.device == "cuda" else 64) << 20
        src = torch.empty(n, dtype=torch.uint8, device=fw.device)
        dst = torch.empty_like(src)
        copy = dst.copy_
    else:
        import numpy as np
        n = 64 << 20
        src, dst = np.ones(n, dtype=np.uint8), np.empty(n, dtype=np.uint8)
        copy = (lambda a: np.copyto(dst, a))
    best = float("inf")
    for _ in range(6):
        fw.synchronize()
        t0 = time.perf_counter()
        copy(src)
        fw.synchronize()
        best = min(best, time.perf_counter() - t0)
    _BANDWIDTH[key] = 2 * n / max(best, 1e-9)
    return _BANDWIDTH[key]


_PEAK = {}  # (framework, device) -> flop/s no call can beat


def _cpu_peak_flops():
    """The CPUs' arithmetic ceiling in flop/s, from what they are, not from a library: every
    core at its highest clock (cpufreq's cpuinfo_max_freq, else 1.5 x the fastest "cpu MHz")
    doing the widest multiply-adds its flags name (AMX tiles 2048 flop a cycle, AVX-512 with
    bfloat16 128, AVX-512 64, AVX2+FMA 32, else 64). A loose bound on purpose: a
    framework's BLAS may be far from it (Debian's torch 1.13 multiplies float32 matrices at
    6 GFLOP/s on a 2-core VM where its bfloat16 product reaches 210), and a kernel faster than
    the framework is the point."""
    khz = 0
    for cpu in range(os.cpu_count() or 1):
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq") as f:
                khz = max(khz, int(f.read().strip()))
        except (OSError, ValueError):
            pass
    flags = set()
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() == "cpu MHz" and not khz:
                mhz = float(value)
                khz = max(khz, int(mhz * 1500))  # x 1.5: a turbo clock it does not show
            elif key.strip() in ("flags", "Features"):
                flags.update(value.split())
    if "amx_bf16" in flags or "amx_int8" in flags:
        per_cycle = 2048
    elif "avx512_bf16" in flags:
        per_cycle = 128
    elif "avx512f" in flags:
        per_cycle = 64
    elif "avx2" in flags and "fma" in flags:
        per_cycle = 32
    else:
        per_cycle = 64
    hz = (khz or 5_000_000) * 1000.0
    return (os.cpu_count() or 1) * hz * per_cycle


def _gpu_peak_flops(torch):
    """The GPU's best matmul rate in flop/s over float32, float16 and bfloat16: each grown
    until one product takes 20 ms (or 8192 square), then the best of 3."""
    best = 0.0
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        try:
            n = 1024
            while True:
                a = torch.randn(n, n, device="cuda", dtype=dtype)
                b = torch.randn(n, n, device="cuda", dtype=dtype)
                times = []
                for _ in range(3):
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    torch.matmul(a, b)
                    torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
                if min(times) >= 0.02 or n >= 8192:
                    break
                n *= 2
            best = max(best, 2.0 * n ** 3 / max(min(times), 1e-9))
        except Exception as e:  # noqa: BLE001 - a dtype this device lacks
            if errors.is_device_oom(e):
                raise  # the device is full now (a candidate's memory): not kept as the peak
        finally:
            a = b = None
    torch.cuda.empty_cache()
    return best


def peak_flops(fw):
    """The least time any call can spend on its arithmetic follows from this (flop/s):
    measured on a GPU (its fastest matmul), the hardware's ceiling on a CPU.
    Once per device; 0.0 where unknown (no FLOPs floor then)."""
    key = (fw.name, fw.device)
    if key not in _PEAK:
        try:
            if fw.name == "torch" and fw.device == "cuda":
                _PEAK[key] = _gpu_peak_flops(fw.torch)
            elif fw.device == "cpu":
                _PEAK[key] = _cpu_peak_flops()
            else:
                _PEAK[key] = 0.0
        except Exception as e:  # noqa: BLE001 - no floor rather than a wrong one
            if errors.is_device_oom(e):
                raise
            _PEAK[key] = 0.0
    return _PEAK[key]


def roofline_floor_us(min_bytes, bandwidth, margin=None):
    """The least time, in microseconds, any call that moves `min_bytes` can take."""
    margin = ROOFLINE_MARGIN if margin is None else margin
    return min_bytes / (bandwidth * margin) * 1e6


def _gib(n):
    return f"{n / (1 << 30):.2f} GiB"


class DeviceMemory:
    """The candidate's share of the device's memory, as the judge sees it from outside: what
    the device has in use beyond what it had when the candidate loaded, less the judge's own
    growth since. probe() -> (free, total, the judge's own reserved bytes)."""

    def __init__(self, probe, cap_bytes=0):
        self.probe = probe
        free, total, own = probe()
        self.total = total
        self.cap = cap_bytes or total * 3 // 4
        self.base_used, self.base_own, self.base_free = total - free, own, free

    @classmethod
    def of(cls, fw):
        """One for fw's device (None on a CPU, or where the framework cannot tell)."""
        try:
            if fw.memory_info() is None:
                return None
            return cls(fw.memory_info, DEVICE_MEMORY_MB << 20)
        except Exception:  # noqa: BLE001 - no figures: no cap from outside
            return None

    def _held(self, figures):
        free, total, own = figures
        return max(total - free - self.base_used - max(own - self.base_own, 0), 0)

    def held(self):
        return self._held(self.probe())

    def check(self, what):
        """A Failure (resource_exceeded) once the candidate holds more than its cap."""
        held = self.held()
        if held > self.cap + DEVICE_SLACK:
            raise Failure(verdicts.RESOURCE_EXCEEDED,
                          f"the candidate's process held about {_gib(held)} of device memory "
                          f"after {what}, over the job's device memory cap of {_gib(self.cap)} "
                          f"(3/4 of the device's {_gib(self.total)} unless "
                          f"KFORGE_JUDGE_DEVICE_MEMORY_MB sets it)")

    def oom_failure(self, stage, loaded, exc=None):
        """The judge's own allocation on the device failed during `stage`. The cap leaves the
        judge what was free at the candidate's load less the cap and DEVICE_SLACK: while the
        judge needed no more than that (its growth since the load and the failed request),
        the device ran out because the candidate's process took more than its cap
        (resource_exceeded). Otherwise the reference's side needs more than this device has
        (infra_error). What the candidate holds when measured does not decide it: a thread
        of its could allocate and free around the judge's allocations."""
        figures = self.probe()
        held, grown = self._held(figures), max(figures[2] - self.base_own, 0)
        need = grown + _requested_bytes(exc)
        share = self.base_free - self.cap - DEVICE_SLACK
        said = (f"the judge needed {_gib(need)}, its share {_gib(max(share, 0))}; the "
                f"candidate's process held about {_gib(held)} when measured, of the "
                f"{_gib(self.base_free)} free when it loaded (its cap: {_gib(self.cap)})")
        if loaded and need <= share:
            return Failure(verdicts.RESOURCE_EXCEEDED,
                           f"the device ran out of memory during {stage}, with the candidate's "
                           f"process on it: {said}")
        return Failure(verdicts.INFRA_ERROR,
                       f"the judge ran out of device memory during {stage}, the reference's "
                       f"side ({said}): the task's reference and its buffers need more "
                       f"than this device has free beside a candidate at its cap")


_UNITS = {"b": 1, "bytes": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def _requested_bytes(exc):
    """What a failed allocation asked for, from torch's words ("Tried to allocate 2.00 GiB");
    0 where they do not say."""
    m = re.search(r"tried to allocate ([0-9.]+) ?(bytes|b|kib|mib|gib|tib)\b", str(exc).lower())
    return int(float(m.group(1)) * _UNITS[m.group(2)]) if m else 0


class WorkerGone(Exception):
    """The worker closed its socket: it died, exited, or was killed."""


class WorkerTimeout(Exception):
    """A limit ran out while the worker had the floor: the job's (no message) or a per-call
    limit (the message says which)."""


class Remote:
    """The judge's view of one worker."""

    def __init__(self, chan, timeout_s, cpu=None):
        self.chan = chan
        self.timeout_s = timeout_s
        self.cpu = cpu            # timing.CpuMeter from the agent, or None
        # the job's time counts from the candidate's load: until then the worker (warm, or
        # starting cold) and the judge's own reference work are not the candidate's doing
        self.deadline = time.monotonic() + READY_WAIT_S
        self.in_arena = None
        self.out_arena = None
        self.loaded = False       # the candidate's code was handed over
        self.rtt_us = 0.0

    def request(self, msg, fds=(), limit=None):
        """Sends msg and waits for the reply until the job's deadline, or sooner by `limit`
        (CallLimit) when msg is a call: ended early, WorkerTimeout says which limit."""
        deadline, why = self._sooner(limit.compute_s, limit.computing) if limit is not None \
            else (self.deadline, None)
        try:
            self.chan.send(msg, fds)
            reply, extra = self.chan.recv(deadline)
            if limit is not None and msg.get("notify") and reply.get("returned") == 1 and \
                    len(reply) == 1:
                # the forward returned: what is left is draining the device and the copies
                for fd in extra:
                    os.close(fd)
                deadline, why = self._sooner(limit.sync_s, limit.finishing)
                reply, extra = self.chan.recv(deadline)
        except channel.Closed:
            raise WorkerGone() from None
        except channel.Timeout:
            raise WorkerTimeout(why() if why else "") from None
        except channel.ProtocolError as e:
            raise Failure(verdicts.REJECTED if self.loaded else verdicts.INFRA_ERROR,
                          f"the worker broke the protocol: {e}") from None
        for fd in extra:
            os.close(fd)
        why = _malformed(reply) if self.loaded else None
        if why:
            raise Failure(verdicts.REJECTED, f"the worker broke the protocol: {why}")
        return reply

    def _sooner(self, seconds, why):
        """(deadline, why): now + seconds where that comes before the job's deadline, with
        `why` (a function giving the message), else the job's deadline and None."""
        now = time.monotonic()
        if seconds is not None and now + seconds < self.deadline:
            return now + seconds, why
        return self.deadline, None

    def wait_ready(self):
        try:
            msg, fds = self.chan.recv(self.deadline)
        except channel.Closed:
            raise Failure(verdicts.INFRA_ERROR, "the candidate worker died before it was "
                          "ready (no candidate code had run)") from None
        except channel.Timeout:
            raise Failure(verdicts.INFRA_ERROR, "the candidate worker was not ready in "
                          "time") from None
        for fd in fds:
            os.close(fd)
        if "ready" not in msg:
            raise Failure(verdicts.INFRA_ERROR, "the candidate worker did not say ready")
        return msg["ready"]

    def set_arenas(self, in_bytes, out_bytes, device=False):
        """Shared buffers for inputs and outputs: in device memory (CUDA VMM, exported as file
        descriptors) when `device` and the driver allows it, else in host memory (memfd)."""
        for a in (self.in_arena, self.out_arena):
            if a is not None:
                a.close()
        self.in_arena = self.out_arena = None
        if device:
            try:
                self.in_arena = channel.DeviceArena(in_bytes)
                self.out_arena = channel.DeviceArena(out_bytes)
            except OSError:
                for a in (self.in_arena, self.out_arena):
                    if a is not None:
                        a.close()
                self.in_arena = self.out_arena = None
        if self.in_arena is not None:
            reply = self.request({"op": "arenas", "device": 1, "in": self.in_arena.size,
                                  "out": self.out_arena.size},
                                 fds=(self.in_arena.fd, self.out_arena.fd))
            if "ok" in reply:
                return
            for a in (self.in_arena, self.out_arena):
                a.close()
        self.in_arena = channel.Arena(in_bytes, name="kforge-in")
        self.out_arena = channel.Arena(out_bytes, name="kforge-out")
        self.request({"op": "arenas", "in": self.in_arena.size, "out": self.out_arena.size},
                     fds=(self.in_arena.fd, self.out_arena.fd))

    def measure_rtt(self):
        """The least round trip to the worker, taken off each timed call of the candidate.
        A host round trip only: a trip that also touched the device on both sides (to take
        the GPU's context switches off too) was measured on an H100 and credits candidates
        with time they spent (docs/performance.md, "Verifier v2 on a GPU")."""
        times = []
        for _ in range(PINGS):
            t0 = time.perf_counter_ns()
            self.request({"op": "ping"})
            times.append((time.perf_counter_ns() - t0) / 1000.0)
        # the least of them: what every call pays at least. A median taken on a loaded host
        # can exceed a fast call's whole time and leave ~0 after the subtraction (an absurd
        # speedup); the minimum never takes away more than the call surely spent on the trip
        self.rtt_us = min(times)

    def cpu_ns(self):
        return self.cpu.ns() if self.cpu is not None else None

    def close(self):
        for a in (self.in_arena, self.out_arena):
            if a is not None:
                a.close()
        if self.cpu is not None:
            self.cpu.close()
        self.chan.close()


class CallLimit:
    """The per-call limits of one call (see CALL_FACTOR): compute_s None = the job's only."""

    def __init__(self, ref_s, first):
        self.ref_s = ref_s
        self.compute_s = None if first else max(CALL_FLOOR_S, CALL_FACTOR * ref_s)
        self.sync_s = max(SYNC_FLOOR_S, CALL_FACTOR * ref_s)

    def _ref(self):
        return f"the reference takes {self.ref_s * 1e3:.3f} ms per call"

    def computing(self):
        return (f"the candidate's forward did not return within the per-call limit of "
                f"{self.compute_s:g} s ({self._ref()}; the limit is max({CALL_FLOOR_S:g} s, "
                f"{CALL_FACTOR:g}x that)); its process was killed")

    def finishing(self):
        return (f"the candidate's work did not finish within {self.sync_s:g} s after its "
                f"forward returned (a kernel that never ends?; {self._ref()}; the limit is "
                f"max({SYNC_FLOOR_S:g} s, {CALL_FACTOR:g}x that)); its process was killed")


def _count(v, limit=2**63):
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < limit


# The fields of a worker's reply that the judge reads, with their types. Once a candidate's
# code is loaded its process can send anything: a reply that breaks these is rejected, so
# nothing the candidate sends can make the judge itself fail (an infra_error).
_REPLY_LISTS = ("problems", "aliases")


def _malformed(reply):
    """-> what is wrong with a worker's reply, or None."""
    for key in _REPLY_LISTS:
        if reply.get(key) is not None and not isinstance(reply[key], list):
            return f"{key} is not a list"
    if reply.get("launches") is not None and not _count(reply["launches"], 2**53):
        return "launches is not a count"
    phases = reply.get("phases_ns")
    if phases is not None and not (isinstance(phases, dict) and all(
            _count(v) for v in phases.values())):
        return "phases_ns is not a map of counts"
    summary = reply.get("trace")
    if summary is not None:
        if not isinstance(summary, dict):
            return "trace is not a map"
        for key, kind in (("ops", list), ("producers", list), ("max_numel", dict)):
            if summary.get(key) is not None and not isinstance(summary[key], kind):
                return f"trace.{key} is not a {kind.__name__}"
    return None


def _candidate_failure(reply, what):
    """A worker's error report -> a Failure with one of the candidate's verdicts."""
    err = reply.get("error")
    if not isinstance(err, dict):
        return Failure(verdicts.RUNTIME_ERROR, f"the candidate's worker gave no result for "
                       f"{what}")
    verdict = err.get("verdict")
    if verdict not in CANDIDATE_VERDICTS:
        verdict = verdicts.RUNTIME_ERROR
    message = err.get("message")
    return Failure(verdict, errors.trim(str(message)) if message else f"{what} failed")


class TaskState:
    """What the judge keeps of one task between candidates: the reference, loaded and run on
    secret seeds."""

    def __init__(self):
        self.task = None
        self.ref_model = None
        self.ref_call = None
        self.cases = []
        self.ref_log = None
        self.nbytes = 0
        self.timed = []     # TimedSet: the profile's input sets, drawn on secret seeds
        self.ref_call_s = 0.0  # the reference's median time per trial call (CallLimit)
        self.ref_model64 = None  # the reference in float64 (the second look), False: none


class TimedSet:
    """One timed run's inputs, with the reference's outputs on them and its time (`how`:
    "worker", through a reference worker, or "judge", in the judge's process)."""

    def __init__(self, seed, inputs, ref_leaves, ref_ns, phases_ns=None, how="judge"):
        self.seed, self.inputs, self.ref_leaves, self.ref_ns = seed, inputs, ref_leaves, ref_ns
        self.phases_ns = phases_ns or {}  # where ref_ns went (profile.breakdown_us)
        self.how = how
        self.truth = None  # the reference's outputs in float64, once a comparison needed them
        self.nbytes = channel.total_array_bytes(inputs) + channel.total_array_bytes(ref_leaves)


class TaskCache:
    def __init__(self, max_tasks=CACHE_TASKS, max_bytes=CACHE_BYTES):
        self.items = collections.OrderedDict()
        self.max_tasks = max_tasks
        self.max_bytes = max_bytes

    def get(self, key):
        state = self.items.get(key)
        if state is not None:
            self.items.move_to_end(key)
        return state

    def put(self, key, state):
        if state.nbytes > self.max_bytes:
            return
        self.items[key] = state
        while len(self.items) > self.max_tasks or \
                sum(s.nbytes for s in self.items.values()) > self.max_bytes:
            self.items.popitem(last=False)


class JudgeRunner(Runner):
    """Runner's stages with the candidate behind a Remote."""
    show_seeds = False

    def __init__(self, spec, doc, remote, cache, fw_cache, reference_worker=None,
                 reference_timed=None):
        super().__init__(spec, doc)
        self.remote = remote
        self.reference_worker = reference_worker  # () -> a Remote from the agent, or None
        self.reference_timed = reference_timed    # () tells the agent the reference is timed;
        #                                           True once it says its worker is gone
        self.ref_remote = None  # the reference's worker while the profile runs
        self.device_memory = None  # DeviceMemory from the candidate's load on (not on a CPU)
        self.ref_source = ""
        self.cache = cache
        self.fw_cache = fw_cache
        self.last_report = {}
        self.calls = 0  # calls sent to the worker
        self.float64_runs = 0  # the reference run in float64 for a second look (SECOND_LOOKS)
        self.ref_scales = {}  # output index -> the reference's error in the looks, to scale

    def stage(self, name):
        self.doc["stage"] = name  # no stage file: the judge never reads the job's files back

    # --- reference (cached per task) -----------------------------------------------------
    def _task_key(self, source):
        spec = self.spec
        h = hashlib.sha256(source.encode())
        h.update(json.dumps([spec.framework, spec.backend, self.trials, spec.threads,
                             spec.seed]).encode())
        return h.hexdigest()

    def load_reference(self):
        spec = self.spec
        self.stage("load_reference")
        for key, path in (("reference", spec.reference_path),
                          ("candidate", spec.candidate_path)):
            if not os.path.isfile(path):
                raise verdicts.input_error(f"{key} file {path} does not exist")
        t0 = time.perf_counter()
        fw_key = (spec.framework, spec.backend)
        if fw_key not in self.fw_cache:
            fw = frameworks.get(spec.framework, spec.backend)
            try:
                fw.init_device()
            except Exception as e:  # noqa: BLE001
                raise Failure(verdicts.INFRA_ERROR, errors.describe(
                    e, f"cannot initialise the {spec.backend} device")) from None
            self.fw_cache[fw_key] = fw
        self.fw = self.fw_cache[fw_key]
        self.fw.set_threads(spec.threads)
        self.doc["versions"].update(self.fw.versions())
        with open(spec.reference_path, encoding="utf-8", errors="replace") as f:
            source = f.read()
        self.ref_source = source
        key = self._task_key(source)
        state = self.cache.get(key)
        self.doc["reference_cached"] = state is not None
        if state is None:
            state = self._compute_reference()
            self.cache.put(key, state)
        self.task, self.ref_model, self.ref_call = state.task, state.ref_model, state.ref_call
        self.cases, self.ref_log = state.cases, state.ref_log
        self.state = state
        self.doc["phases_ms"]["load_reference"] = round((time.perf_counter() - t0) * 1e3, 3)

    def _compute_reference(self):
        spec = self.spec
        state = TaskState()
        try:
            self.task = self._import(spec.reference_path, "_kforge_reference", keep=False)
        except Failure:
            raise
        except BaseException as e:  # noqa: BLE001
            raise self._reference_failure(e, "the reference failed to import") from None
        for name in ("Model", "get_inputs"):
            if not callable(getattr(self.task, name, None)):
                raise verdicts.input_error(f"the task {spec.reference} has no {name}"
                                           f"{'()' if name == 'get_inputs' else ' class'}")
        base = secrets.randbits(30)  # trial t uses base + t; never shown to anyone
        try:
            with self.fw.no_grad():
                init = self.init_inputs()
                self.fw.seed(spec.seed)
                model = self.fw.prepare_model(self.task.Model(*init))
                self.ref_call = self.callable_of(model)
                self.ref_model = model
                for t in range(self.trials):
                    self.cases.append(self._reference_cases(base + t, f"trial {t}"))
                self.ref_log = self._trace_reference(base)
        except Failure:
            raise
        except BaseException as e:  # noqa: BLE001
            raise self._reference_failure(e, "the reference failed to run") from None
        for cases in self.cases:
            for c in cases:
                state.nbytes += channel.total_array_bytes(c.pristine) + \
                    sum(h.array.nbytes for h in c.ref_outputs)
        state.task, state.ref_model, state.ref_call = self.task, self.ref_model, self.ref_call
        state.cases, state.ref_log = self.cases, self.ref_log
        if self.ref_call_times:
            state.ref_call_s = statistics.median(self.ref_call_times)
        return state

    # --- candidate --------------------------------------------------------------------------
    def check_rules(self):
        """The static rules: milliseconds, so before anything costly."""
        self.stage("load_candidate")
        super().check_rules()

    def load_candidate(self):
        self.stage("load_candidate")
        t0 = time.perf_counter()
        r = self.remote
        need = max(sum(channel.total_array_bytes(c.pristine) for c in cases)
                   for cases in self.cases) + channel.total_array_bytes(self.init_inputs())
        out_need = max(sum(h.array.nbytes + 64 for h in c.ref_outputs) for cases in self.cases
                       for c in cases)
        # CUDA IPC unless turned off (KFORGE_VERIFIER_CUDA_IPC=0, docs/harness.md), when
        # every input is a CUDA tensor and the constructor takes no arrays
        on_device = CUDA_IPC and self.fw.name == "torch" and self.fw.device == "cuda" and all(
            channel.all_on_cuda(c.pristine) for cases in self.cases for c in cases) and \
            channel.all_on_cuda(self.init_inputs()) is None
        r.set_arenas(need + (1 << 20), 2 * out_need + (1 << 20), device=on_device)
        self.doc["transport"] = "cuda_ipc" if isinstance(r.in_arena, channel.DeviceArena) \
            else "shared_memory"
        r.measure_rtt()
        t_ref = time.perf_counter()
        self.time_reference()  # profile jobs: before any of the candidate's code exists
        if self.reference_timed is not None:
            t_ack = time.perf_counter()
            if self.reference_timed():  # its worker, if any, is gone (its kill, on CUDA)
                self.doc["phases_ms"]["reference_timed"] = \
                    round((time.perf_counter() - t_ack) * 1e3, 3)
        t0 += time.perf_counter() - t_ref  # its own phase, time_reference
        self.device_memory = DeviceMemory.of(self.fw)
        self._load(r, self.source, "loading the candidate",
                   device_cap=self.device_memory.cap if self.device_memory else None)
        self._check_device_memory("loading the candidate")
        self.doc["phases_ms"]["load_candidate"] = round((time.perf_counter() - t0) * 1e3, 3)

    def _load(self, remote, source, what, device_cap=None, **fields):
        """Hands `source` to a worker with the task's constructor inputs (fields override the
        candidate's load message: the reference's worker loads the task's Model), after its
        setup with the candidate's device memory cap (None: none)."""
        spec = self.spec
        # the framework and the device first, while no candidate code exists in the worker:
        # its failure is the host's (a device the candidate's predecessor left full, a broken
        # driver), not the candidate's
        reply = remote.request({"op": "setup", "framework": spec.framework,
                                "backend": spec.backend, "threads": spec.threads,
                                "device_cap": device_cap})
        if "ok" not in reply:
            err = reply.get("error") if isinstance(reply.get("error"), dict) else {}
            raise Failure(verdicts.INFRA_ERROR, f"{what}: the worker could not set up "
                          f"{spec.framework} on {spec.backend} before any candidate code "
                          f"existed: " + errors.trim(str(err.get("message", reply)))[:1500])
        remote.in_arena.reset()
        init = channel.encode(self.init_inputs(), None if isinstance(
            remote.in_arena, channel.DeviceArena) else remote.in_arena)  # device: no arrays
        remote.loaded = True  # from here on, whatever the worker does is its code's doing
        remote.deadline = time.monotonic() + remote.timeout_s
        reply = remote.request({"op": "load", "source": source, "impl_type": spec.impl_type,
                                "framework": spec.framework, "backend": spec.backend,
                                "op_name": spec.op_name, "threads": spec.threads,
                                "seed": spec.seed, "init": init,
                                "reference_names": sorted(self.reference_names), **fields})
        if "ok" not in reply:
            raise _candidate_failure(reply, what)

    def _check_device_memory(self, what):
        if self.device_memory is not None:
            self.device_memory.check(what)

    def call_limit(self):
        """The next call's CallLimit: the worker's first call compiles, later ones do not."""
        limit = CallLimit(self.state.ref_call_s, first=self.calls == 0)
        self.calls += 1
        return limit

    def private_inputs(self, remote=None):
        """Whether the worker copies its inputs out of a device arena (CUDA_IPC_PRIVATE)."""
        remote = self.remote if remote is None else remote
        return CUDA_IPC_PRIVATE and isinstance(remote.in_arena, channel.DeviceArena)

    def remote_call(self, inputs, seed, what, trace=False):
        """One call of the candidate on `inputs` -> its output leaves (private copies)."""
        r = self.remote
        r.in_arena.reset()
        tree = channel.put(inputs, r.in_arena)
        self.fw.synchronize()
        reply = r.request({"op": "call", "inputs": tree, "seed": seed, "trace": trace,
                           "what": what, "notify": 1, "private": self.private_inputs()},
                          limit=self.call_limit())
        return self._take(reply, tree, what)

    def _read_outputs(self, reply, remote, what):
        """A call's reply -> private copies of the output leaves in remote's buffer."""
        if "out" not in reply:
            raise _candidate_failure(reply, what)
        try:
            leaves = channel.take(reply["out"], remote.out_arena, self.fw.device, copy=True)
            self.fw.synchronize()
        except channel.ProtocolError as e:
            raise Failure(verdicts.PRECISION_MISMATCH, f"{what}: the candidate's outputs "
                          f"cannot be read: {e}") from None
        if not isinstance(leaves, list):
            raise Failure(verdicts.PRECISION_MISMATCH, f"{what}: malformed outputs")
        return leaves

    def _take(self, reply, in_tree, what):
        leaves = self._read_outputs(reply, self.remote, what)
        self._check_device_memory(what)
        self.last_report = reply
        self.last_in_tree = in_tree
        launchers.note(reply.get("launchers"))  # validated there; prebuilt by later workers
        return leaves

    def run_candidate(self, inputs, seed, what):
        leaves = self.remote_call(inputs, seed, what)
        self._check_launched(self.last_report.get("launches"), 1, what)
        return leaves

    def _check_launched(self, delta, expected, what):
        # the worker counts, for every call (None where the impl_type has no counter): the
        # judge's own process never loads a kernel, so its counters say nothing. Its count is
        # a hint (the worker is the candidate's process), but one it must give.
        impl = self.spec.impl_type
        if (delta is None and impl not in launches.COUNTED) or self.nothing_to_compute:
            return
        if delta is None:
            raise Failure(verdicts.REJECTED, f"the candidate's worker did not count its "
                          f"kernel's launches during {what}")
        if delta < expected:
            how = {"cpp": "call into its native library (kforge_cpp/ctypes)",
                   "triton": "launch a @triton.jit kernel",
                   "cuda_c": "call its compiled CUDA extension"}.get(impl, "launch its kernel")
            raise Failure(verdicts.REJECTED, f"the candidate's forward did not {how} during "
                          f"{what} ({delta} launches for {expected} calls): it must compute "
                          f"with its own {impl} kernel, not the framework")

    def _traced_candidate_run(self):
        """The smoke run: trial 0's first input set, under the worker's tracer."""
        if self.fw.name not in ("torch", "numpy"):
            return
        case = self.cases[0][0]
        t0 = time.perf_counter()
        self._traced_run(case, self._fresh_inputs(case, 0), f"{case.label}, traced run")
        self.doc["phases_ms"]["first_call"] = round((time.perf_counter() - t0) * 1e3, 3)
        self.doc["phases_ms"]["first_call_in_worker"] = _worker_phases_ms(self.last_report)

    def _traced_run(self, case, inputs, label):
        """One call under the worker's tracer: the framework-op rules on what it ran (a hint
        from the candidate's process, but one it must give), then its values."""
        leaves = self.remote_call(inputs, case.seed, label, trace=True)
        self._check_launched(self.last_report.get("launches"), 1, label)
        summary = self.last_report.get("trace")
        if not isinstance(summary, dict):
            raise Failure(verdicts.REJECTED, f"{label}: the candidate's worker gave no trace "
                          f"of the call")
        self.check_trace(_RemoteLog(summary), list(range(len(leaves))))
        # traced outputs may be the tracer's own array type: only the values count here;
        # the inputs as the candidate left them (in-place ops write them)
        after = channel.take(self.last_in_tree, self.remote.in_arena, self.fw.device)
        self.compare_case(case, after, leaves, label)

    def check_case(self, case, inputs, leaves, label, allow_rules=True):
        if allow_rules:
            rep = self.last_report
            problems = rep.get("problems") or []
            if problems:
                raise Failure(verdicts.REJECTED, f"{label}: " + "; ".join(
                    str(p)[:300] for p in problems[:5]))
            aliases = rep.get("aliases") or []
            for i, alias in enumerate(aliases[:len(leaves)]):
                ref_alias = case.ref_aliases[i] if i < len(case.ref_aliases) else False
                if alias is True and not ref_alias:
                    raise Failure(verdicts.REJECTED,
                                  f"{label}: output {i} shares memory with an input (the "
                                  f"reference returns new memory); write outputs to freshly "
                                  f"allocated memory")
            # the inputs as the candidate left them (they live in the shared input buffer)
            after = channel.take(self.last_in_tree, self.remote.in_arena, self.fw.device)
            for i, (now, before) in enumerate(zip(after, case.pristine)):
                if case.ref_modified[i] or self.fw.same(now, before):
                    continue
                raise Failure(verdicts.REJECTED,
                              f"{label}: the candidate modified input {i} in place, which "
                              f"the reference leaves untouched; do not write into inputs")
            inputs = after
        self.compare_case(case, inputs, leaves, label)

    def compare_case(self, case, inputs, leaves, label, details=True):
        """The comparison: on the device where it can run there and passes (compare.fast_pass),
        else on the host (Runner.check_case), which also words the mismatch for the model."""
        fw, spec = self.fw, self.spec
        keep = case.ref_keep
        if fw.name == "torch" and keep and len(keep) == len(leaves) and \
                not case.ref_modified_host:
            passed = [compare.fast_pass(fw.torch, e, a, spec.tolerance, spec.atol, spec.rtol,
                                        details) for e, a in zip(keep, leaves)]
            if all(c is not None for c in passed):
                for c in passed:
                    self._accumulate(c)
                return
        if not case.ref_outputs and keep:
            case.ref_outputs = [fw.host(x) for x in keep]  # timed runs: only when needed
        try:
            Runner.check_case(self, case, inputs, leaves, label, allow_rules=False)
        except Failure as f:
            if f.verdict != verdicts.PRECISION_MISMATCH or \
                    not self._within_reference_error(case, inputs, leaves):
                raise
            # the strict count of the output that failed is not a mismatch after all
            self.stats["mismatches"] -= (f.checks or {}).get("mismatches", 0)

    def _within_reference_error(self, case, inputs, leaves):
        """A precision mismatch, looked at again against the reference computed in float64
        (compare.within_reference_error): True when every output of the candidate is as close
        to it as the reference's own is. Only where the strict policy applies, in torch jobs,
        for references that write no input, compute a contraction (the long sums whose
        rounding this is about: trace.CONTRACTIONS) and draw no random numbers (trace.RANDOM:
        in float64 they are other numbers, and the "truth" another sample); a reference that
        cannot run in float64 leaves the mismatch as it was. The float64 outputs
        are kept with the case (a trial's: once per task)."""
        fw, spec, log = self.fw, self.spec, self.ref_log
        if fw.name != "torch" or spec.tolerance != "strict" or case.ref_modified_host or \
                len(leaves) != len(case.ref_outputs) or log is None or \
                not set(log.ops) & trace.CONTRACTIONS or set(log.all_ops) & trace.RANDOM:
            return False  # only long sums, and no random draws (float64 draws other numbers)
        truth, stand_in = case.truth, False
        # bounded: a few float64 runs a job, of a reference that is quick in float32
        if truth is None and self.float64_runs < SECOND_LOOKS and \
                self.state.ref_call_s <= SECOND_LOOK_REF_S:
            self.float64_runs += 1
            truth = self._float64_reference(case.pristine or inputs, case.seed)
            case.truth = truth or []
        if truth is None and self.stats.get("float64_second_look"):
            # past them, a candidate that has passed a second look against float64 (so its
            # order of additions is as right as the reference's) is held to the reference
            # itself, the reference's own error taken at the scale the looks found it
            # (compare.reference_error_scale). A large-K profile job checks 55 timed
            # outputs; an honest tiled kernel fails the strict check on most of them (found
            # on an H100)
            truth, stand_in = case.ref_outputs, True
        if not truth or len(truth) != len(leaves):
            return False
        scales = []
        for j, (expected, leaf, t) in enumerate(zip(case.ref_outputs, leaves, truth)):
            try:
                actual = fw.host(leaf)
            except TypeError:
                return False
            if actual.kind != expected.kind:
                return False
            atol, rtol = compare.tolerance_for(expected.dtype, spec.atol, spec.rtol)
            scale = self.ref_scales.get(j) if stand_in else None
            if stand_in and scale is None or not compare.within_reference_error(
                    expected, actual, t, atol, rtol, ref_scale=scale):
                return False
            if not stand_in:
                scales.append((j, compare.reference_error_scale(expected, t, atol)))
        for j, scale in scales:  # the largest of each ratio over the looks passed
            kept = self.ref_scales.setdefault(j, scale)
            for key in set(kept) | set(scale):
                kept[key] = max(kept.get(key, 0.0), scale.get(key, 0.0))
        if "float64_second_look" not in self.stats:
            self.notes.append("some outputs passed only against the reference computed in "
                              "float64, as close to it as the reference itself "
                              "(checks.float64_second_look counts the calls; "
                              "checks.second_look_vs_reference those past the job's float64 "
                              "runs, held to the reference with the same budget)")
        key = "second_look_vs_reference" if stand_in else "float64_second_look"
        self.stats[key] = self.stats.get(key, 0) + 1
        return True

    def _float64_reference(self, inputs, seed):
        """The reference's outputs (HostArrays) computed in float64 on `inputs`, or None."""
        fw = self.fw
        torch = fw.torch
        state = self.state
        try:
            if state.ref_model64 is None:
                model = self.ref_model
                state.ref_model64 = copy.deepcopy(model).double() \
                    if isinstance(model, torch.nn.Module) else False
            if state.ref_model64 is False:
                return None
            args = [x.double() if isinstance(x, torch.Tensor) and x.is_floating_point() else x
                    for x in inputs]
            fw.seed(seed)
            with fw.no_grad():
                out = self.callable_of(state.ref_model64)(*args)
            return [fw.host(x) for x in frameworks.flatten_outputs(out)]
        except Exception as e:  # noqa: BLE001 - no second look rather than a wrong one
            if errors.is_device_oom(e):
                raise  # a passing shortage (the candidate's memory), not "no float64 here"
            return None

    def _check_integrity(self, when):
        pass  # the candidate cannot reach the judge: nothing of ours to patch

    # --- precision ----------------------------------------------------------------------------
    def precision(self):
        self.stage("precision")
        t0 = time.perf_counter()
        self._traced_candidate_run()  # the smoke run: trial 0's first input set
        spent = collections.defaultdict(float)  # where precision's time went (diagnostic)
        calls = []

        def timed(what, fn, *args):
            t = time.perf_counter()
            out = fn(*args)
            ms = (time.perf_counter() - t) * 1e3
            spent[what] += ms
            if what == "calls":
                calls.append(round(ms, 2))
            return out

        # the last call is traced too: a candidate that computes with its kernel on the first
        # (traced) call and falls back to the framework after it meets the tracer again
        last = (len(self.cases) - 1, len(self.cases[-1]) - 1) if self.cases else None
        for t, cases in enumerate(self.cases):
            for k, case in enumerate(cases):
                runs = [case.label] + ([case.label + ", second run"] if t == 0 and k == 0 else [])
                for label in runs:
                    inputs = timed("inputs", self._fresh_inputs, case, k)
                    if (t, k) == last and self.fw.name in ("torch", "numpy"):
                        timed("calls", self._traced_run, case, inputs, label + ", traced")
                        continue
                    leaves = timed("calls", self.run_candidate, inputs, case.seed, label)
                    timed("checks", self.check_case, case, inputs, leaves, label)
            self.doc["trials"] = t + 1
        self.doc["phases_ms"]["precision"] = round((time.perf_counter() - t0) * 1e3, 3)
        self.doc["phases_ms"]["precision_parts"] = {
            **{k: round(v, 2) for k, v in spent.items()}, "each_call": calls[:16]}

    # --- profile ------------------------------------------------------------------------------
    def profile(self):
        spec, fw, r = self.spec, self.fw, self.remote
        self.stage("profile")
        t0 = time.perf_counter()
        total = spec.warmup + spec.runs
        # buffers for the reference's outputs only where a set's were not kept (TIMED_SETS_BYTES)
        redraw = any(t.inputs is None for t in self.state.timed[:total])
        ref_in, ref_out = self._reference_buffers() if redraw else (None, None)
        flush = self._l2_flush()
        cand_times, ref_times, raw_times = [], [], []  # ns, ns, us (until charged)
        ref_how = set()
        floor_us = self._crossing_floor_us(total)
        ref_cpu = []  # (wall, held, cpu) ns per timed call: cpu_charge
        meter, held = [], []  # the candidate's meter before each call; its held ns
        breakdown = collections.defaultdict(list)  # phase -> ns of each timed run
        try:
            for i in range(total):
                timed = self.state.timed[i]  # time_reference() drew it before the load
                inputs, ref_leaves, ref_ns, seed = timed.inputs, timed.ref_leaves, timed.ref_ns, timed.seed
                if inputs is None:  # not kept (TIMED_SETS_BYTES): drawn again from its seed
                    inputs = self.gen_sets(seed)[0]
                    ref_leaves, _, _ = self._reference_run(inputs, ref_in, ref_out, None)
                label = f"timed run {i + 1} of {total} (inputs of its own)"
                # the candidate, on the same values
                reply, tree, leaves, (s, t_put, t_replied, end), (c0, _) = \
                    self._timed_remote_call(r, inputs, label, flush, self.call_limit())
                meter.append(c0)
                leaves = self._with_written(leaves, tree, r.in_arena)  # as _reference_run's
                self.last_report, self.last_in_tree = reply, tree
                launchers.note(reply.get("launchers"))  # validated there
                self._check_launched(reply.get("launches"), 1, label)
                cand_ns = end - s
                case = Case(seed=seed, label=label, pristine=[], ref_outputs=[],
                            ref_keep=list(ref_leaves), ref_aliases=[True] * len(ref_leaves),
                            ref_modified=[])
                case.truth = timed.truth  # the float64 second look's, kept with the set
                self.compare_case(case, inputs, leaves, label, details=False)
                if timed.inputs is not None:
                    timed.truth = case.truth
                if i >= spec.warmup:
                    breakdown["candidate.judge_put"].append(t_put - s)
                    breakdown["candidate.request"].append(t_replied - t_put)
                    breakdown["candidate.judge_take"].append(s + cand_ns - t_replied)
                    worker = reply.get("phases_ns")
                    if isinstance(worker, dict):
                        for k in ("take", "call", "checks", "put"):
                            if isinstance(worker.get(k), int):
                                breakdown["candidate.worker_" + k].append(worker[k])
                        # one clock (CLOCK_MONOTONIC) on both sides of the socket
                        if isinstance(worker.get("received_at"), int) and isinstance(worker.get("replied_at"), int):
                            breakdown["candidate.to_worker"].append(worker["received_at"] - t_put)
                            breakdown["candidate.from_worker"].append(t_replied - worker["replied_at"])
                    for k, v in timed.phases_ns.items():
                        breakdown["reference." + k].append(v)
                    ref_times.append(ref_ns)
                    ref_how.add(timed.how)
                    ref_cpu.append((ref_ns, timed.phases_ns.get("request", 0) +
                                    timed.phases_ns.get("judge_take", 0),
                                    timed.phases_ns.get("cpu")))
                    held.append(end - t_put)
                    cand_times.append(cand_ns)
                    raw_times.append(cand_ns / 1000.0)
        finally:
            for a in (ref_in, ref_out):
                if a is not None:
                    a.close()
            del flush
        # what any correct call moves at least: its outputs and its largest input (every
        # timed set has the task's shapes: the last one's sizes stand for all)
        min_bytes = channel.total_array_bytes(ref_leaves) + max(
            [channel.total_array_bytes(x) for x in inputs] or [0])
        self._check_device_memory("the timed runs")
        below_flops = self._check_roofline(min_bytes, statistics.median(raw_times))
        meter.append(r.cpu_ns())  # after the last call's comparison
        if r.cpu is not None and None in meter:
            raise Failure(verdicts.REJECTED, "the candidate's process left its CPU meter during "
                          "the timed runs (it exited while its socket still answered)")
        # A call's CPU: from its start to the next call's, so that what its threads are
        # accounted for after it (a thread still running when it answered) is not lost
        cand_cpu = [(w, h, meter[i + 1] - meter[i] if r.cpu is not None else None)
                    for w, h, i in zip(cand_times, held, range(spec.warmup, total))]
        cpu_doc = None
        if fw.device == "cpu":  # CPU jobs: the CPUs a side used beyond `threads` are charged
            ref_extra, ref_cpu_doc = timing.cpu_charge(ref_cpu, spec.threads)
            cand_extra, cand_cpu_doc = timing.cpu_charge(cand_cpu, spec.threads)
            if ref_extra:
                ref_times = [t + e for t, e in zip(ref_times, ref_extra)]
            if cand_extra:
                cand_times = [t + e for t, e in zip(cand_times, cand_extra)]
            cpu_doc = {"reference": ref_cpu_doc, "candidate": cand_cpu_doc,
                       "source": r.cpu.source if r.cpu is not None else None}
        ref_times = [t / 1000.0 for t in ref_times]
        cand_times = [t / 1000.0 - r.rtt_us for t in cand_times]
        at_floor = sum(t < floor_us for t in cand_times)
        cand_times = [max(t, floor_us, 0.001) for t in cand_times]
        cand_stats = timing.summarize(cand_times)
        ref_stats = timing.summarize(ref_times)
        speedup = ref_stats["median_us"] / cand_stats["median_us"]
        why = ([f"speedup above {spec.suspicious_speedup:g}x"]
               if speedup > spec.suspicious_speedup else []) + ([below_flops] if below_flops
                                                                 else [])
        self.doc["profile"] = {"candidate": cand_stats, "reference": ref_stats,
                               "speedup": round(speedup, 4), "suspicious": bool(why),
                               "suspicious_why": why,
                               "method": "judge_clock", "warmup": spec.warmup,
                               "worker_rtt_us": round(r.rtt_us, 3),
                               # no candidate time is taken below what the harness's own
                               # worker needs to cross without a kernel (_crossing_floor_us)
                               "crossing_floor_us": round(floor_us, 3),
                               "runs_at_floor": at_floor,
                               # where the reference was timed: "worker" (a process of its
                               # own, through the same crossing) or "judge" (see REFERENCE_WORKER)
                               "reference_timing": "worker" if ref_how == {"worker"} else "judge",
                               # medians of where each side's time went; the worker_* phases
                               # are the candidate process's own report: diagnostics only
                               "breakdown_us": {k: round(statistics.median(v) / 1000.0, 3)
                                                for k, v in sorted(breakdown.items()) if v},
                               "threads": spec.threads if fw.device == "cpu" else None,
                               # CPU jobs: each side's CPU time per call and what its calls
                               # were charged for CPUs used beyond `threads`
                               # (timing.cpu_charge); null: unmeasured
                               "cpu": cpu_doc}
        self.doc["phases_ms"]["profile"] = round((time.perf_counter() - t0) * 1e3, 3)

    timing_note = ", every timed run on inputs of its own and checked"

    def _crossing_floor_us(self, total):
        """The least time a candidate's call is taken at: what a kernel that takes no time
        would read through the harness, i.e. the median of what the reference's worker spent
        on its timed calls outside its kernel (receiving, the inputs' views, the outputs'
        copies, the reply, and the judge's copies on both sides). The candidate's worker is
        its own process: a candidate that answers the judge from a loop of its own skips
        that work, and without this floor the time saved would read as its kernel's speed.
        With it, no speedup reads higher than a zero-time kernel's under the conditions the
        reference was timed in. 0 where the reference was timed in the judge."""
        crossings = [t.phases_ns["crossing"] for t in self.state.timed[self.spec.warmup:total]
                     if t.how == "worker" and "crossing" in t.phases_ns]
        return statistics.median(crossings) / 1000.0 if crossings else 0.0

    def _check_roofline(self, min_bytes, raw_median_us):
        """A time no device can reach is not a speedup: rejected. The time compared is the
        judge's whole clock for the call (round trip and copies included), so the check
        can only err toward letting a time through. Two floors: the bytes any correct call
        moves over the device's copy bandwidth (below it: rejected), and the reference's
        contractions (its traced matmuls, convolutions, attention: trace.min_flops) over the
        device's peak. The second is how the reference computes, not the least any correct
        computation needs (algebra can collapse it: a Linear whose outputs are summed is one
        dot product per row), so a time below it is flagged suspicious for a human, with the
        verdict left as it is. -> why the time is suspicious, or None."""
        bandwidth = copy_bandwidth(self.fw)
        floor = roofline_floor_us(min_bytes, bandwidth)
        min_flops = self.ref_log.flops if self.ref_log is not None else 0
        peak = peak_flops(self.fw) if min_flops else 0.0
        flops_floor = min_flops / (peak * FLOPS_MARGIN) * 1e6 if peak > 0 else 0.0
        self.doc["roofline"] = {"min_bytes": int(min_bytes),
                                "copy_bandwidth_gbps": round(bandwidth / 1e9, 3),
                                "margin": ROOFLINE_MARGIN, "floor_us": round(floor, 3),
                                "min_flops": int(min_flops),
                                "peak_gflops": round(peak / 1e9, 3) if peak else None,
                                "flops_margin": FLOPS_MARGIN,
                                "flops_floor_us": round(flops_floor, 3),
                                "below_flops_floor": raw_median_us < flops_floor,
                                "candidate_median_us": round(raw_median_us, 3)}
        if raw_median_us < floor:
            raise Failure(verdicts.REJECTED,
                          f"impossible timing: the candidate's median call took "
                          f"{raw_median_us:.3f} us, but moving the {int(min_bytes)} bytes of "
                          f"its outputs and largest input takes at least {floor:.3f} us on "
                          f"this device ({bandwidth / 1e9:.1f} GB/s measured, x"
                          f"{ROOFLINE_MARGIN:g}): the work was not all done in the timed call")
        if raw_median_us < flops_floor:
            return (f"its median call ({raw_median_us:.1f} us) is below what the reference's "
                    f"matrix products need at this device's peak ({int(min_flops)} flop, "
                    f"{flops_floor:.1f} us at {peak / 1e9:.1f} GFLOP/s x{FLOPS_MARGIN:g}): an "
                    f"algebraic shortcut, or a time not to trust")
        return None

    @functools.cached_property
    def nothing_to_compute(self):
        """The task's arrays are all empty (inputs and the reference's outputs): a call has no
        memory to pass its kernel (an empty tensor's pointer is NULL), so no launch is asked."""
        case = self.cases[0][0] if self.cases and self.cases[0] else None
        return case is not None and not any(
            all(a.shape) for a in self.fw.arrays(list(case.pristine) + list(case.ref_keep)))

    @functools.cached_property
    def written_inputs(self):
        """Indices of the inputs the reference writes in place (known once load_reference ran):
        a timed run checks them too."""
        return sorted(self.cases[0][0].ref_modified_host) if self.cases else []

    def _with_written(self, leaves, tree, arena):
        """A call's output leaves, with the inputs the reference writes as it left them in
        `arena` (private copies), where there are any."""
        if not self.written_inputs:
            return leaves
        after = channel.take(tree, arena, self.fw.device)
        return list(leaves) + [after[i] for i in self.written_inputs]

    def _timed_remote_call(self, remote, inputs, label, flush, limit):
        """One timed call through a worker, timed by the judge's clock from before the inputs
        are written to after the judge holds a private copy of the outputs. The worker's CPU
        meter is read on both sides of it.
        -> (reply, input tree, output leaves, (start, put, replied, end) in ns, the worker's
        meter (ns) before and after the call, each None where unread)."""
        fw = self.fw
        if flush is not None:
            flush.zero_()
        fw.synchronize()
        c0 = remote.cpu_ns()
        s = time.perf_counter_ns()
        remote.in_arena.reset()
        tree = channel.put(inputs, remote.in_arena)
        fw.synchronize()
        t_put = time.perf_counter_ns()
        reply = remote.request({"op": "call", "inputs": tree, "seed": None, "what": label,
                                "private": self.private_inputs(remote),
                                "writeback": bool(self.written_inputs)}, limit=limit)
        if "out" not in reply:
            raise _candidate_failure(reply, label)
        t_replied = time.perf_counter_ns()
        leaves = self._read_outputs(reply, remote, label)
        end = time.perf_counter_ns()
        return reply, tree, leaves, (s, t_put, t_replied, end), (c0, remote.cpu_ns())

    def _start_reference_worker(self):
        """A worker of its own for timing the reference, loaded with the reference's code, with
        buffers like the candidate's; None (timed in the judge) when the agent has none to
        give or it does not come up. It never runs a candidate: the agent kills it after the
        job."""
        if self.reference_worker is None:
            return None
        t0 = time.perf_counter()
        r = self.remote
        ref = None
        try:
            ref = self.reference_worker()
            if ref is None:
                self.doc["reference_worker"] = "none: the agent gave no worker"
                return None
            ref.wait_ready()
            ref.set_arenas(r.in_arena.size, r.out_arena.size,
                           device=isinstance(r.in_arena, channel.DeviceArena))
            if type(ref.in_arena) is not type(r.in_arena):
                raise OSError("its buffers are not of the candidate's kind")
            ref.measure_rtt()
            self._load(ref, self.ref_source, "loading the reference", impl_type="reference",
                       class_name="Model", op_name="", reference_names=[])
        except (Failure, WorkerGone, WorkerTimeout, channel.ProtocolError, OSError) as e:
            self.doc["reference_worker"] = "none: " + errors.trim(str(e))[:300]
            if ref is not None:
                ref.close()
            return None
        self.doc["phases_ms"]["reference_worker"] = round((time.perf_counter() - t0) * 1e3, 3)
        return ref

    def _reference_buffers(self):
        """Buffers for the reference's calls in the judge, of the candidate's kind and size."""
        r = self.remote
        if isinstance(r.in_arena, channel.DeviceArena):
            return channel.DeviceArena(r.in_arena.size), channel.DeviceArena(r.out_arena.size)
        return (channel.Arena(r.in_arena.size, name="kforge-ref-in"),
                channel.Arena(r.out_arena.size, name="kforge-ref-out"))

    def _l2_flush(self):
        fw = self.fw
        if fw.name == "torch" and fw.device == "cuda":
            return fw.torch.empty(timing.L2_FLUSH_BYTES, dtype=fw.torch.int8, device="cuda")
        return None

    def _reference_run(self, inputs, ref_in, ref_out, flush):
        """The reference on copies of `inputs` (they stay pristine) in the judge, timed like the
        candidate: inputs written, call, outputs copied. -> (output leaves, ns, phases)."""
        fw = self.fw
        if flush is not None:
            flush.zero_()
        fw.synchronize()
        s = time.perf_counter_ns()
        ref_in.reset()
        tree = channel.put(inputs, ref_in)
        ins = channel.take(tree, ref_in, fw.device, copy=self.private_inputs())
        fw.synchronize()
        t_in = time.perf_counter_ns()
        with fw.no_grad():
            out = self.ref_call(*ins)
        fw.synchronize()
        t_called = time.perf_counter_ns()
        ref_out.reset()
        leaves = channel.take(channel.put(frameworks.flatten_outputs(out), ref_out),
                              ref_out, fw.device)
        fw.synchronize()
        end = time.perf_counter_ns()
        leaves = self._with_written(leaves, tree, ref_in)  # in-place results too, untimed
        return list(leaves), end - s, {"inputs": t_in - s, "call": t_called - t_in,
                                       "outputs": end - t_called}

    def time_reference(self):
        """Profile jobs, before the candidate is loaded: the timed runs' input sets, drawn on
        secret seeds, with the reference's outputs and time on each. Kept per task, so the
        reference is timed once per set, not once per candidate; the sets differ from each
        other, so a candidate's content cache never hits within its job, and each worker
        serves one job, so nothing it cached survives to the next. Seeds and times are always
        kept; inputs and outputs while they fit TIMED_SETS_BYTES (else profile() draws them
        again from the seed). No candidate code exists while the reference is timed: it
        cannot slow the reference's worker down or stop it."""
        spec, state = self.spec, self.state
        if spec.task_type != "profile":
            return
        total = spec.warmup + spec.runs
        if len(state.timed) >= total:
            self.doc["reference_timed_cached"] = True
            return
        t0 = time.perf_counter()
        ref_in, ref_out = self._reference_buffers()
        flush = self._l2_flush()
        self.ref_remote = self._start_reference_worker() if REFERENCE_WORKER else None
        kept = sum(t.nbytes for t in state.timed)
        try:
            for i in range(len(state.timed), total):
                seed = secrets.randbits(30)
                inputs = self.gen_sets(seed)[0]
                leaves, ref_ns, phases = self._reference_run(inputs, ref_in, ref_out, flush)
                how = "judge"
                if self.ref_remote is not None:
                    try:  # the same call, timed through the reference's own worker
                        reply, _, _, (w0, w_put, w_replied, w_end), (c0, c1) = \
                            self._timed_remote_call(self.ref_remote, inputs,
                                                    f"the reference's timed run {i + 1}",
                                                    flush, None)
                        worker_ns = max(w_end - w0 - self.ref_remote.rtt_us * 1000.0, 1.0)
                        # what the crossing costs without the kernel: the reference's worker
                        # runs no candidate code, so its own "call" phase is trusted
                        call = (reply.get("phases_ns") or {}).get("call", 0)
                        phases = {"in_judge": ref_ns, "judge_put": w_put - w0,
                                  "request": w_replied - w_put, "judge_take": w_end - w_replied,
                                  "crossing": max(worker_ns - call, 0)}
                        if c0 is not None and c1 is not None:  # its CPU (cpu_charge)
                            phases["cpu"] = c1 - c0
                        ref_ns = worker_ns
                        how = "worker"
                    except (Failure, WorkerGone, WorkerTimeout, channel.ProtocolError,
                            OSError) as e:
                        self.doc["reference_worker"] = f"dropped at timed run {i + 1}: " + \
                            errors.trim(str(e))[:300]
                        self.ref_remote.close()
                        self.ref_remote = None
                timed = TimedSet(seed, inputs, leaves, ref_ns, phases, how)
                if kept + timed.nbytes > TIMED_SETS_BYTES:
                    timed.inputs = timed.ref_leaves = None
                    timed.nbytes = 0
                kept += timed.nbytes
                state.nbytes += timed.nbytes
                state.timed.append(timed)
        finally:
            ref_in.close()
            ref_out.close()
            del flush
            if self.ref_remote is not None:
                self.ref_remote.close()  # it exits; the agent kills it with the job's worker
                self.ref_remote = None
        self.doc["phases_ms"]["time_reference"] = round((time.perf_counter() - t0) * 1e3, 3)

    def stages(self):
        self.check_rules()          # milliseconds: before the reference and the compile
        self.load_reference()
        self.load_candidate()
        self.precision()
        if self.spec.task_type == "profile":
            self.profile()


class _RemoteLog:
    """A worker's trace summary in the shape Runner.check_trace reads."""

    def __init__(self, summary):
        ops = summary.get("ops") or []
        self.ops = [str(o)[:100] for o in ops if isinstance(o, str)][:500]
        mx = summary.get("max_numel") or {}
        self.max_numel = {str(k)[:100]: v for k, v in mx.items() if isinstance(v, int)} \
            if isinstance(mx, dict) else {}
        self._producers = summary.get("producers") or []

    def producer(self, index):
        p = self._producers[index] if index < len(self._producers) else None
        return str(p)[:100] if p else None

    def release(self):
        pass


def _signal_name(sig):
    try:
        return signal_mod.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _death_failure(exit_info, stage, what):
    """How a worker that went away ended -> the candidate's verdict."""
    info = exit_info or {}
    tail = str(info.get("stderr") or "")[-3000:]
    tail_text = f"; stderr:\n{tail}" if tail.strip() else ""
    if info.get("oom"):
        return Failure(verdicts.RESOURCE_EXCEEDED, f"the candidate ran out of memory (the job's "
                       f"memory limit) during {what}{tail_text}")
    if info.get("pids_exceeded"):
        return Failure(verdicts.RESOURCE_EXCEEDED, f"the candidate hit the job's process limit "
                       f"during {what}{tail_text}")
    sig = info.get("signal") or 0
    if sig:
        if sig in (signal_mod.SIGXCPU, signal_mod.SIGXFSZ):
            return Failure(verdicts.RESOURCE_EXCEEDED, f"killed by {_signal_name(sig)} during "
                           f"{what}{tail_text}")
        return Failure(verdicts.CRASHED, f"the candidate crashed its process with "
                       f"{_signal_name(sig)} during {what}{tail_text}")
    code = info.get("exit_code")
    return Failure(verdicts.CRASHED, f"the candidate's process exited (status {code}) during "
                   f"{what} without answering{tail_text}")


def _worker_phases_ms(reply):
    """A call's phases as the worker reported them (take, call, checks, put, launcher_build),
    in ms: a diagnostic of the candidate's own process, never part of a verdict or a time."""
    phases = reply.get("phases_ns") if isinstance(reply, dict) else None
    if not isinstance(phases, dict):
        return {}
    return {k: round(v / 1e6, 3) for k, v in phases.items()
            if k in ("take", "call", "checks", "put", "launcher_build")
            and _count(v, 10**13)}


def _warm_report(ready):
    """What the worker said its warm-up did, before any candidate existed (a diagnostic: only
    small numbers and a short string are kept)."""
    warm = ready.get("warm") if isinstance(ready, dict) else None
    out = {}
    if isinstance(warm, dict):
        for key, value in warm.items():
            if key in ("launchers_built", "ms", "seeded_files") and isinstance(value, (int, float)) \
                    and not isinstance(value, bool):
                out[key] = value
            elif key == "error" and isinstance(value, str):
                out[key] = value[:200]
    return out


def verify(job_dir, remote, cache, fw_cache, release, reference_worker=None,
           reference_timed=None):
    """One job. release() kills the worker (through the agent) and returns how it ended;
    reference_worker() asks the agent for a worker to time the reference in (None: none);
    reference_timed() tells the agent the reference is timed -> True once the agent says the
    worker it gave for that is gone."""
    doc = new_doc()
    t_start = time.time()
    runner = None
    exit_info = None
    try:
        spec = job_mod.load(job_dir)
        doc["job"] = {"op_name": spec.op_name, "backend": spec.backend, "arch": spec.arch,
                      "impl_type": spec.impl_type, "framework": spec.framework,
                      "task_type": spec.task_type, "tolerance": spec.tolerance,
                      "trials": max(spec.trials, TRIAL_MIN)}
        runner = JudgeRunner(spec, doc, remote, cache, fw_cache, reference_worker,
                             reference_timed)
        t0 = time.perf_counter()
        ready = remote.wait_ready()
        doc["phases_ms"]["worker_ready"] = round((time.perf_counter() - t0) * 1e3, 3)
        doc["worker_warm"] = _warm_report(ready)
        runner.run()
    except Failure as f:
        doc["verdict"], doc["message"], doc["input_error"] = f.verdict, f.message, f.input_error
        if f.checks is not None:
            doc["checks"] = f.checks
        elif runner is not None:
            doc["checks"] = dict(runner.stats)
    except WorkerGone:
        exit_info = release()
        what = doc.get("stage", "the job")
        if remote.loaded:
            f = _death_failure(exit_info, doc.get("stage"), what)
        else:
            f = Failure(verdicts.INFRA_ERROR, "the candidate worker died before the candidate "
                        f"was loaded: {exit_info}")
        doc["verdict"], doc["message"] = f.verdict, f.message
    except WorkerTimeout as e:
        exit_info = release()
        doc["verdict"] = verdicts.TIMEOUT if remote.loaded else verdicts.INFRA_ERROR
        doc["message"] = (f"during {doc.get('stage')}: {e}" if str(e) else
                          f"the job's time ran out during {doc.get('stage')}; the candidate's "
                          f"process was killed")
    except BaseException as e:  # noqa: BLE001 - a judge bug still gives a verdict
        if runner is not None and errors.is_device_oom(e):
            # the judge's own allocation on the device: whose doing, from the device's figures
            dm, stage = runner.device_memory, doc.get("stage")
            f = dm.oom_failure(stage, remote.loaded, e) if dm is not None else Failure(
                verdicts.INFRA_ERROR, f"the judge ran out of device memory during {stage}, "
                f"before the candidate loaded: the task's reference and its buffers need more "
                f"than this device has free")
            doc["verdict"], doc["message"] = f.verdict, f.message + "\n" + errors.trim(
                errors.describe(e, "the judge's allocation"))
        else:
            doc["verdict"] = verdicts.INFRA_ERROR
            doc["message"] = errors.trim("judge error (a bug in kforge_verifier, not in the "
                                         "candidate):\n" + "".join(
                                             __import__("traceback").format_exception(e)))
    if exit_info is None:
        exit_info = release()
    doc["worker"] = {k: exit_info.get(k) for k in ("exit_code", "signal", "oom")} \
        if isinstance(exit_info, dict) else None
    if doc["verdict"] != verdicts.PASSED:
        doc.pop("profile", None)
    doc["clock"] = {"start_unix_ms": round(t_start * 1000.0, 3),
                    "end_unix_ms": round(time.time() * 1000.0, 3)}
    return doc


def serve(fd=3):
    """The judge's loop: one job at a time from the agent, until the agent closes fd."""
    ctl = channel.Channel(fd)
    cache = TaskCache()
    fw_cache = {}
    preload = os.environ.get("KFORGE_JUDGE_PRELOAD", "").split(",")
    backend = os.environ.get("KFORGE_JUDGE_DEVICE", "cpu")
    if "torch" in preload:
        try:  # warm: the framework imported and the device context up before any job
            fw = frameworks.get("torch", backend)
            fw.init_device()
            fw_cache[("torch", backend)] = fw
        except Exception:  # noqa: BLE001 - reported by the first job that needs it
            pass
    seed = "triton" in preload and backend == "cuda"

    seeded = {}  # how the last seeding went: in each result (triton_seed), for operators

    def seed_triton_cache():  # between jobs: what new workers' caches are copied from
        t0 = time.perf_counter()
        try:
            seeded["launchers_built"] = seeded.get("launchers_built", 0) + launchers.seed()
            seeded["ms"] = round((time.perf_counter() - t0) * 1e3, 3)  # the last seeding's
            seeded.pop("error", None)
        except Exception as e:  # noqa: BLE001 - workers then build their own
            seeded["error"] = errors.describe(e, "seeding the Triton cache")[:300]

    if seed:
        seed_triton_cache()
    ctl.send({"ready": {"pid": os.getpid(), "python": platform.python_version()}})
    while True:
        try:
            msg, fds = ctl.recv()
        except channel.Closed:
            return 0
        if msg.get("op") != "verify" or not 1 <= len(fds) <= 2:
            for fd_ in fds:
                os.close(fd_)
            ctl.send({"result": {"verdict": verdicts.INFRA_ERROR,
                                 "message": "judge: a verify request needs one worker fd"}})
            continue
        timeout_s = max(float(msg.get("timeout_ms", 600_000)) / 1000.0, 1.0)
        remote = Remote(channel.Channel(fds[0]), timeout_s, timing.CpuMeter.from_message(msg, fds))

        def ask(request, key, wait_s=None):
            """Sends the agent `request` -> (reply, fds) of its first reply carrying `key`
            (the descriptors of any other are closed), or None past wait_s."""
            ctl.send(request)
            deadline = None if wait_s is None else time.monotonic() + wait_s
            while True:
                try:
                    reply, extra = ctl.recv(deadline)
                except channel.Timeout:
                    return None  # a late answer is read (its fds closed) by a later ask
                if key in reply:
                    return reply, extra
                for fd_ in extra:
                    os.close(fd_)

        def release():
            try:
                remote.close()
            except OSError:
                pass
            reply, extra = ask({"release_worker": 1}, "worker_exit")
            for fd_ in extra:
                os.close(fd_)
            return reply["worker_exit"] if isinstance(reply["worker_exit"], dict) else {}

        given = {}

        def reference_worker():
            answer = ask({"reference_worker": 1}, "reference_worker", READY_WAIT_S)
            if answer is None:
                return None
            reply, extra = answer
            if reply["reference_worker"] == 1 and 1 <= len(extra) <= 2:
                given["reference_worker"] = True  # the agent answers reference_timed
                return Remote(channel.Channel(extra[0]), timeout_s,
                              timing.CpuMeter.from_message(reply, extra))
            for fd_ in extra:
                os.close(fd_)
            return None

        released = {}

        def release_once():
            if "info" not in released:
                t0 = time.perf_counter()
                released["info"] = release()
                released["ms"] = round((time.perf_counter() - t0) * 1e3, 3)
            return released["info"]

        def reference_timed():
            # True once the agent says the reference's worker is gone (where it gave one;
            # else nothing to wait for); without its word the device's memory is measured
            # from as it is then
            if not given.get("reference_worker"):
                ctl.send({"reference_timed": 1})
                return False
            answer = ask({"reference_timed": 1}, "reference_timed", READY_WAIT_S)
            for fd_ in answer[1] if answer else ():
                os.close(fd_)
            return answer is not None

        doc = verify(msg.get("job_dir", ""), remote, cache, fw_cache, release_once,
                     reference_worker, reference_timed)
        if "ms" in released:  # the kill of the candidate's box, its exit included
            doc.setdefault("phases_ms", {})["release"] = released["ms"]
        if seed:
            doc["triton_seed"] = dict(seeded)
        from .result import sanitize
        ctl.send({"result": sanitize(doc)})
        if seed:
            seed_triton_cache()
