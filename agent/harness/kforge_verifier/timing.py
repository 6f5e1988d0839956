"""Profiling methods. Each returns a list of per-run times in microseconds.

  perf_counter_ns  CPU (and numpy jobs): time.perf_counter_ns around each call, with the
                   device synchronised before and after the call when there is one
  cuda_events      CUDA: before each run the L2 cache is flushed by writing a 256 MiB
                   buffer; then torch.cuda.synchronize(), a start event, the call,
                   torch.cuda.synchronize() (so work the candidate queued on other streams is
                   finished) and an end event. The synchronisation costs a few microseconds
                   on both sides, which slightly compresses speedups of tiny kernels
  npu_events       Ascend (torch_npu): the same shape with torch.npu events; untested here

Every method takes prepare(i), called before call i (warm-up runs first, i = 0, 1, ...)
outside the timed interval; the runner uses it to rewrite the inputs' contents between
runs, so that an answer reused for the same input buffers is caught after timing.

summarize() gives median/min/max/mean/runs; the speedup is a ratio of medians.
"""

import os
import statistics
import time

L2_FLUSH_BYTES = 256 * 1024 * 1024


def _no_prepare(i):
    pass


def time_host(call, warmup, runs, sync, prepare=_no_prepare):
    for i in range(warmup):
        prepare(i)
        call()
    sync()
    times = []
    for i in range(runs):
        prepare(warmup + i)
        sync()
        t0 = time.perf_counter_ns()
        call()
        sync()
        t1 = time.perf_counter_ns()
        times.append((t1 - t0) / 1000.0)
    return times


def time_cuda(torch, call, warmup, runs, prepare=_no_prepare):
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device="cuda")
    for i in range(warmup):
        prepare(i)
        flush.zero_()
        call()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
    for i in range(runs):
        prepare(warmup + i)
        flush.zero_()
        torch.cuda.synchronize()
        starts[i].record()
        call()
        torch.cuda.synchronize()
        ends[i].record()
    torch.cuda.synchronize()
    del flush
    return [s.elapsed_time(e) * 1000.0 for s, e in zip(starts, ends)]


def time_npu(torch, call, warmup, runs, prepare=_no_prepare):
    npu = torch.npu
    for i in range(warmup):
        prepare(i)
        call()
    npu.synchronize()
    starts = [npu.Event(enable_timing=True) for _ in range(runs)]
    ends = [npu.Event(enable_timing=True) for _ in range(runs)]
    for i in range(runs):
        prepare(warmup + i)
        npu.synchronize()
        starts[i].record()
        call()
        npu.synchronize()
        ends[i].record()
    npu.synchronize()
    return [s.elapsed_time(e) * 1000.0 for s, e in zip(starts, ends)]


def method_for(fw):
    device = getattr(fw, "device", "cpu")
    if fw.name == "torch" and device == "cuda":
        return "cuda_events"
    if fw.name == "torch" and device == "npu":
        return "npu_events"
    return "perf_counter_ns"


def measure(fw, call, warmup, runs, prepare=_no_prepare):
    """-> (times_us, method). prepare(i) runs before call i, outside the timed interval."""
    method = method_for(fw)
    if method == "cuda_events":
        return time_cuda(fw.torch, call, warmup, runs, prepare), method
    if method == "npu_events":
        return time_npu(fw.torch, call, warmup, runs, prepare), method
    return time_host(call, warmup, runs, fw.synchronize, prepare), method


def summarize(times):
    return {"median_us": round(statistics.median(times), 3), "min_us": round(min(times), 3),
            "max_us": round(max(times), 3), "mean_us": round(statistics.fmean(times), 3),
            "runs": len(times)}


class CpuMeter:
    """The CPU time one worker has used, read by the judge from outside the worker, which can
    change neither source:
      cgroup  its box's cpu.stat (usage_usec), opened by the agent and passed as a file
              descriptor: every thread of every process in the box, children included
      pid     its process's CPU clock (CLOCK_PROCESS_CPUTIME_ID of another process): its
              threads, living and ended, not its children; where it has no cgroup
    ns() is None once the source cannot be read (the worker is gone, or a zombie)."""

    def __init__(self, stat_fd=None, pid=None):
        self.stat_fd = stat_fd
        self.pid = pid
        self.source = "cgroup" if stat_fd is not None else "pid"

    @classmethod
    def from_message(cls, msg, fds):
        """The meter the agent handed over with a worker: {"cpu": "cgroup"} with cpu.stat's
        descriptor as the second fd, or {"cpu_pid": N}; None (and any extra fd closed) else."""
        extra = list(fds[1:])
        meter = None
        if msg.get("cpu") == "cgroup" and extra:
            meter = cls(stat_fd=extra.pop(0))
        elif isinstance(msg.get("cpu_pid"), int) and not isinstance(msg.get("cpu_pid"), bool) \
                and msg["cpu_pid"] > 0:
            meter = cls(pid=msg["cpu_pid"])
        for fd in extra:
            os.close(fd)
        return meter

    def ns(self):
        try:
            if self.stat_fd is not None:
                for line in os.pread(self.stat_fd, 4096, 0).split(b"\n"):
                    key, _, value = line.partition(b" ")
                    if key == b"usage_usec":
                        return int(value) * 1000
                return None
            with open(f"/proc/{self.pid}/stat", "rb") as f:  # a zombie's clock stands still
                if f.read().rpartition(b")")[2].split()[0] in (b"Z", b"X"):
                    return None
            return time.clock_gettime_ns(((~self.pid) << 3) | 2)  # the pid's CPUCLOCK_SCHED
        except (OSError, ValueError):
            return None

    def close(self):
        if self.stat_fd is not None:
            os.close(self.stat_fd)
            self.stat_fd = None


def cpu_charge(samples, threads):
    """What each of a side's timed calls is charged for CPU it used beyond `threads` CPUs.
    samples: [(wall_ns, held_ns, cpu_ns)] per timed call, where held_ns is the part of the call
    the worker held it (the judge's clock from the request sent to its copy of the outputs
    taken: the worker's own clean-up after its reply falls in it) and cpu_ns what its meter
    read for the call (the candidate's: from its start to the next call's start, so that CPU
    accounted after the call, a thread still running when it answered, is not lost).

    While the worker holds a call it may use `threads` CPUs: CPU time beyond threads x held is
    work more CPUs did in parallel, and the call is taken at the time those `threads` CPUs
    would have needed for it: wall + excess / threads. The excess is taken per call, so that
    slow calls (a sleep) cannot pay for fast parallel ones, and at least the calls' mean excess
    over the whole set, so that a meter read at a clock tick's grain (cgroup accounting of a
    thread that is still running) cannot hide it from the calls that did not catch a tick. One
    thread never uses more CPU than the time it ran, so a kernel on the job's threads is
    charged nothing (the meter can lag behind a running thread, never run ahead).
    -> ([extra ns per call], doc), or (None, None) where some call has no reading."""
    if not samples or any(c is None for _, _, c in samples):
        return None, None
    n = len(samples)
    wall, held, cpu = (sum(column) for column in zip(*samples))
    mean = max(cpu - threads * held, 0) / n
    extra = [max(c - threads * h, mean, 0) / threads for _, h, c in samples]
    return extra, {"cpu_us": round(cpu / n / 1000.0, 3),      # the mean per call
                   "cpu_median_us": round(statistics.median(c for _, _, c in samples) / 1000.0,
                                          3),
                   "held_us": round(held / n / 1000.0, 3),
                   "cpus_busy": round(cpu / held, 3) if held > 0 else None,
                   "charged_calls": sum(e > 0 for e in extra),
                   "charged": round((wall + sum(extra)) / wall, 4) if wall > 0 else 1.0}
