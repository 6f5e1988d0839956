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
