"""Tests of the Verifier harness (agent/harness).

    /usr/bin/python3 -m pytest tests/harness -q

Single verifications with their own candidates (limits, roofline, timing rotation) and unit
tests of the comparison, the static rules, tracing, classification, job parsing, result
writing and kforge_cpp. The corpus of cases (cases*.json) runs in test_cases.py.
"""

import ctypes
import errno
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "agent", "harness"))

import jobrun  # noqa: E402
import v2run  # noqa: E402
import kforge_cpp  # noqa: E402
from kforge_verifier import compare, errors, job, result, rules, trace, verdicts  # noqa: E402

CASES = jobrun.load_cases()


def test_a_time_below_the_roofline_is_rejected():
    # The judge is told the device is a billion times slower than it is: every honest time
    # is then below what the bytes allow, which is what a forged time looks like.
    case = next(c for c in CASES if c["name"] == "cpp_add_profile_passes")
    with tempfile.TemporaryDirectory(prefix="kforge-harness-test-") as parent:
        os.chmod(parent, 0o755)
        judge = v2run.Judge(env={"KFORGE_JUDGE_ROOFLINE_MARGIN": "1e-9"})
        try:
            doc = judge.verify(jobrun.make_job_dir(case, parent), 60)
        finally:
            judge.close()
    assert doc["verdict"] == "rejected", doc["message"]
    assert "impossible timing" in doc["message"]
    assert "profile" not in doc or "speedup" not in doc["profile"]


def test_a_time_below_the_reference_s_arithmetic_is_flagged():
    """The FLOPs floor: nn.Linear's 2 x 16 x 32 x 64 flops, counted from the reference's
    traced call, over the device's peak. With the peak taken as it is, an honest kernel
    passes above the floor; told the device is a billion times slower, every honest time is
    below it. Algebra can make a correct kernel beat the reference's arithmetic (a Linear
    whose outputs are summed), so such a time is flagged for a human, never rejected."""
    base = next(c for c in CASES if c["name"] == "weights_from_init_inputs_pass")
    case = dict(base, task_type="profile", job={"runs": 5, "warmup": 1})
    docs = {}
    with tempfile.TemporaryDirectory(prefix="kforge-harness-test-") as parent:
        os.chmod(parent, 0o755)
        for margin in ("2", "1e-9"):
            judge = v2run.Judge(env={"KFORGE_JUDGE_FLOPS_MARGIN": margin})
            try:
                docs[margin] = judge.verify(jobrun.make_job_dir(case, parent), 60)
            finally:
                judge.close()
    honest = docs["2"]
    assert honest["verdict"] == "passed", honest["message"]
    roof = honest["roofline"]
    assert roof["min_flops"] == 2 * 16 * 32 * 64
    assert roof["peak_gflops"] > 0
    assert 0 < roof["flops_floor_us"] < roof["candidate_median_us"]
    assert not roof["below_flops_floor"] and not honest["profile"]["suspicious"]
    below = docs["1e-9"]
    assert below["verdict"] == "passed", below["message"]
    assert below["roofline"]["below_flops_floor"] and below["profile"]["suspicious"]
    assert "SUSPICIOUS" in below["message"] and "algebraic shortcut" in below["message"]


def test_min_flops_counts_contractions_at_their_least():
    """What the FLOPs floor counts, op by op, from a traced call; never more than the op
    needs, whatever the algorithm."""
    import torch
    from kforge_verifier import frameworks, trace
    fw = frameworks.get("torch", "cpu")

    def flops(fn, *args):
        return trace.trace_torch(torch, fw.overlaps, fn, args)[1].flops

    a, b, c = torch.randn(64, 32), torch.randn(32, 16), torch.randn(64, 16)
    assert flops(lambda x, y: x @ y, a, b) == 2 * 64 * 16 * 32
    assert flops(torch.addmm, c, a, b) == 2 * 64 * 16 * 32          # the bias is not a factor
    assert flops(torch.bmm, torch.randn(4, 8, 5), torch.randn(4, 5, 3)) == 2 * 4 * 8 * 3 * 5
    assert flops(torch.nn.Linear(32, 10), a) == 2 * 64 * 10 * 32
    # a 3x3 convolution: its taps are not counted (Winograd, FFT need fewer multiplies)
    assert flops(torch.nn.Conv2d(3, 8, 3, padding=1), torch.randn(2, 3, 16, 16)) == \
        2 * (2 * 8 * 16 * 16) * 3
    # operands by keyword, in any order: a depthwise convolution counts its one channel
    x, w = torch.randn(2, 8, 16, 16), torch.randn(8, 1, 3, 3)
    assert flops(lambda x, w: torch.nn.functional.conv2d(weight=w, input=x, groups=8,
                                                         padding=1), x, w) == 2 * (2 * 8 * 256)
    assert flops(lambda x, y: torch.matmul(other=y, input=x), a, b) == 2 * 64 * 16 * 32
    assert flops(torch.addr, torch.randn(5, 5), torch.randn(5), torch.randn(5)) == 0  # outer
    assert flops(lambda x: torch.relu(x) * 2 + 1, a) == 0  # elementwise: the bytes bound it
    import numpy as np
    _, log = trace.trace_numpy(lambda x, y: np.matmul(x, y) + 1,
                               (np.ones((8, 4)), np.ones((4, 2))), fw.overlaps)
    assert log.flops == 2 * 8 * 2 * 4


@pytest.mark.parametrize("env,workers,timing", [
    ({}, True, "worker"),
    ({"KFORGE_JUDGE_REFERENCE_WORKER": "0"}, True, "judge"),
    ({}, False, "judge")])
def test_the_reference_is_timed_in_a_worker_of_its_own(env, workers, timing):
    # By default the judge asks the agent for a second fresh worker and times the reference
    # there, through the same crossing as the candidate; where it is turned off or the agent
    # has none to give, the reference is timed in the judge and the job still passes.
    case = next(c for c in CASES if c["name"] == "cpp_add_profile_passes")
    with tempfile.TemporaryDirectory(prefix="kforge-harness-test-") as parent:
        os.chmod(parent, 0o755)
        judge = v2run.Judge(env=env, reference_workers=workers)
        try:
            doc = judge.verify(jobrun.make_job_dir(case, parent), 60)
        finally:
            judge.close()
    assert doc["verdict"] == "passed", doc["message"]
    assert doc["profile"]["reference_timing"] == timing
    assert doc["profile"]["reference"]["runs"] == doc["profile"]["candidate"]["runs"]
    assert ("reference_worker" in doc) == (not workers and not env), doc.get("reference_worker")
    assert doc["phases_ms"]["time_reference"] > 0
    # where the agent gave a worker, it said the worker was gone before the candidate loaded
    assert ("reference_timed" in doc["phases_ms"]) == (timing == "worker")


def _verify_alone(candidate, env, timeout_s=60):
    """cpp_infinite_loop's numpy task with another candidate, through a judge of its own."""
    case = dict(next(c for c in CASES if c["name"] == "cpp_infinite_loop"),
                candidate=candidate)
    with tempfile.TemporaryDirectory(prefix="kforge-harness-test-") as parent:
        os.chmod(parent, 0o755)
        judge = v2run.Judge(env=env)
        try:
            return judge.verify(jobrun.make_job_dir(case, parent), timeout_s)
        finally:
            judge.close()


def test_a_later_call_that_never_returns_meets_the_per_call_limit():
    # Right once, then a spin: the limit from the reference's time per call (floor lowered
    # to 1 s here) ends it, not the job's 60 s; the message says which limit and why.
    doc = _verify_alone("candidates/add_numpy_spins_later.py", {"KFORGE_JUDGE_CALL_FLOOR_S": "1"})
    assert doc["verdict"] == "timeout", doc["message"]
    assert "per-call limit of 1 s" in doc["message"]
    assert "the reference takes" in doc["message"]


def test_work_that_never_finishes_after_the_forward_returned_meets_the_finishing_limit():
    # The GPU case (a kernel that never ends: the launch returns, the synchronise hangs),
    # played on a CPU by outputs that take forever to hand over.
    doc = _verify_alone("candidates/add_numpy_slow_finish.py",
                        {"KFORGE_JUDGE_SYNC_FLOOR_S": "1", "KFORGE_JUDGE_CALL_FLOOR_S": "30"})
    assert doc["verdict"] == "timeout", doc["message"]
    assert "did not finish within 1 s after its forward returned" in doc["message"]


def test_timing_calls_prepare_before_each_call():
    from kforge_verifier import timing
    seen, calls = [], []
    timing.time_host(lambda: calls.append(len(seen) - 1), 3, 5, lambda: None, seen.append)
    assert seen == list(range(8))
    assert calls == list(range(8))  # prepare(i) ran right before call i


def test_cpu_beyond_the_jobs_threads_is_charged():
    """A call that used more CPU than `threads` CPUs while its worker held it is charged the
    time those CPUs would have needed; one that did not is charged nothing."""
    from kforge_verifier import timing
    ms = 1_000_000
    # one thread: never more CPU than held time (the meter lags, never leads)
    extra, doc = timing.cpu_charge([(10 * ms, 8 * ms, 7 * ms)] * 5, 1)
    assert extra == [0] * 5 and doc["charged"] == 1.0
    # 4 threads busy 8 ms each: 24 ms beyond one CPU, charged on every call
    extra, doc = timing.cpu_charge([(10 * ms, 8 * ms, 32 * ms)] * 5, 1)
    assert extra == [24 * ms] * 5
    assert doc["cpus_busy"] == 4.0 and doc["charged"] == pytest.approx(3.4)
    # the same work with 4 threads allowed: nothing to charge
    assert timing.cpu_charge([(10 * ms, 8 * ms, 32 * ms)] * 5, 4)[0] == [0] * 5
    # slow calls that sleep (held, no CPU) do not pay for the fast parallel ones
    fast, slow = (10 * ms, 10 * ms, 20 * ms), (60 * ms, 60 * ms, 20 * ms)
    extra, _ = timing.cpu_charge([fast] * 15 + [slow] * 5, 1)
    assert extra[:15] == [10 * ms] * 15
    # a meter read at a tick's grain: the CPU lands on some calls only; every call is
    # charged at least the set's mean excess
    extra, _ = timing.cpu_charge([(2 * ms, 2 * ms, 0)] * 3 + [(2 * ms, 2 * ms, 16 * ms)], 1)
    assert extra == [2 * ms] * 3 + [14 * ms]
    # a call without a reading: unmeasured, never guessed
    assert timing.cpu_charge([(10 * ms, 8 * ms, 32 * ms), (10 * ms, 8 * ms, None)], 1) == \
        (None, None)


def test_the_cpu_meter_reads_a_process_and_a_cgroup_file(tmp_path):
    """The two sources the agent hands the judge: a pid's CPU clock and a cpu.stat file."""
    from kforge_verifier import timing
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\n"
                             "while time.process_time() - t < 0.2: pass\ninput()"],
                            stdin=subprocess.PIPE)
    try:
        meter = timing.CpuMeter.from_message({"cpu_pid": busy.pid}, [])
        deadline = time.monotonic() + 30
        while meter.ns() < 200 * 1_000_000:  # the child's own busy loop, read from outside
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        busy.communicate(b"\n")
    assert meter.ns() is None  # gone: no reading, not a stale one
    # exited but not reaped (a worker that forked and left its child the socket): a zombie's
    # clock stands still, so it gives no reading either
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        meter = timing.CpuMeter.from_message({"cpu_pid": zombie.pid}, [])
        deadline = time.monotonic() + 30
        while meter.ns() is not None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with open(f"/proc/{zombie.pid}/stat", "rb") as f:
            assert f.read().rpartition(b")")[2].split()[0] == b"Z"
    finally:
        zombie.wait()
    stat = tmp_path / "cpu.stat"
    stat.write_text("usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n")
    fd = os.open(stat, os.O_RDONLY)
    meter = timing.CpuMeter.from_message({"cpu": "cgroup"}, [-1, fd])
    assert meter.ns() == 1_234_000 and meter.source == "cgroup"
    meter.close()
    assert timing.CpuMeter.from_message({"cpu_pid": True}, []) is None  # not a pid


def _numpy_runner(tmp_path, get_inputs, warmup=2, runs=3):
    from kforge_verifier import frameworks, runner as runner_mod
    spec = job.parse({"framework": "numpy", "warmup": warmup, "runs": runs}, str(tmp_path))
    r = runner_mod.Runner(spec, runner_mod.new_doc())
    r.fw = frameworks.get("numpy", "cpu")
    r.task = type("Task", (), {"get_inputs": staticmethod(get_inputs)})
    return r


def test_rotation_gives_the_last_timed_call_other_values(tmp_path):
    # the last call gets the alternative values and the one before it the original ones: a
    # result kept from any earlier call on the same buffers is wrong for the last call
    r = _numpy_runner(tmp_path, lambda: [np.random.rand(4), 3])
    buf = r.gen_sets(10)[0]
    original, alternative = r.gen_sets(10)[0][0], r.gen_sets(11)[0][0]
    prepare = r._rotation(buf, 10, 11)
    seen = []
    for i in range(5):
        prepare(i)
        seen.append("A" if np.array_equal(buf[0], original) else
                    "B" if np.array_equal(buf[0], alternative) else "?")
        assert buf[1] == 3
    assert seen == ["A", "B", "A", "A", "B"]


def test_rotation_skipped_when_inputs_ignore_the_seed(tmp_path):
    r = _numpy_runner(tmp_path, lambda: [np.ones(4)])
    assert r._rotation(r.gen_sets(10)[0], 10, 11) is None


def test_missing_job_json_is_input_error(tmp_path):
    out = jobrun.run_job(str(tmp_path))
    assert out.result["verdict"] == "infra_error"
    assert "job.json" in out.result["input_error"]
    assert out.result["stage"] == "load_reference"


def test_unknown_framework_is_input_error(tmp_path):
    (tmp_path / "job.json").write_text(json.dumps({"framework": "jax"}))
    out = jobrun.run_job(str(tmp_path))
    assert out.result["verdict"] == "infra_error"
    assert "framework" in out.result["input_error"]
    assert out.returncode == 0


# --- part 2: comparison ---------------------------------------------------------------------

def host(values, dtype="float32"):
    arr = np.asarray(values, dtype=np.float32 if dtype in ("float32", "bfloat16") else dtype)
    return compare.to_host_array(arr, dtype)


def test_tolerance_table():
    assert compare.tolerance_for("float32") == (1e-4, 1e-4)
    assert compare.tolerance_for("float16") == (1e-2, 1e-2)
    assert compare.tolerance_for("bfloat16") == (3e-2, 3e-2)
    assert compare.tolerance_for("float64") == (1e-7, 1e-7)
    assert compare.tolerance_for("int32") == (0.0, 0.0)
    assert compare.tolerance_for("bool") == (0.0, 0.0)
    assert compare.tolerance_for("float32", atol=0.5) == (0.5, 1e-4)


def test_a_second_look_in_float64_passes_what_is_as_right_as_the_reference():
    """Large-K float32 sums: the reference's own order of additions is off the float64 truth by
    more than the strict tolerance, so an honest kernel adding in another order may fail
    against it while being as right. The second look passes it; it does not pass a kernel
    computing in a narrower type, zeros for tiny outputs, or NaNs the reference lacks."""
    rng = np.random.default_rng(7)
    a64, b64 = rng.standard_normal((128, 16384)), rng.standard_normal((16384, 128))
    truth = a64 @ b64
    a32, b32 = a64.astype(np.float32), b64.astype(np.float32)
    ref = a32 @ b32
    other_order = sum(a32[:, k:k + 512] @ b32[k:k + 512, :] for k in range(0, 16384, 512))
    half = (a32.astype(np.float16) @ b32.astype(np.float16)).astype(np.float32)
    # a tiled GPU kernel: 512 tiles of 32 added one after another into a float32 accumulator
    # (5-10x further off than a BLAS's split sums, and as right)
    tiled = np.zeros((128, 128), dtype=np.float32)
    for k in range(0, 16384, 32):
        tiled += a32[:, k:k + 32] @ b32[k:k + 32, :]

    def tf32(x):  # TensorFloat-32: float32 inputs rounded to 10 mantissa bits
        bits = x.view(np.uint32)
        return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)

    def host(x):
        return compare.to_host_array(np.asarray(x), np.asarray(x).dtype.name)

    atol, rtol = compare.tolerance_for("float32")
    t = host(truth)
    assert np.abs(ref - truth).max() > atol  # the reference itself is this far off
    assert compare.within_reference_error(host(ref), host(other_order), t, atol, rtol)
    assert not compare.within_reference_error(host(ref), host(half), t, atol, rtol)
    # against a reference far closer to the truth than the tiles (cuBLAS on a GPU; here the
    # truth rounded to float32), the tiles are still as right
    close = truth.astype(np.float32)
    assert np.abs(tiled - truth).max() > 2 * np.abs(close - truth).max()
    assert compare.within_reference_error(host(close), host(tiled), t, atol, rtol)
    assert not compare.within_reference_error(host(ref), host(tf32(a32) @ tf32(b32)), t, atol,
                                              rtol)
    # a part at a smaller scale is held to its own: rows 30x smaller computed from TF32
    # inputs, and a torch.cat of a matmul and a tiny term left as zeros, both fail; the
    # tiles, which are as right everywhere, still pass
    small = a64.copy()
    small[64:] /= 30
    truth_s = small @ b64
    s32 = small.astype(np.float32)
    ref_s = s32 @ b32
    half_tf32 = ref_s.copy()
    half_tf32[64:] = tf32(s32[64:]) @ tf32(b32)
    assert not compare.within_reference_error(host(ref_s), host(half_tf32), host(truth_s),
                                              atol, rtol)
    tiled_s = np.zeros((128, 128), dtype=np.float32)
    for k in range(0, 16384, 32):
        tiled_s += s32[:, k:k + 32] @ b32[k:k + 32, :]
    assert compare.within_reference_error(host(ref_s), host(tiled_s), host(truth_s), atol, rtol)
    # past a job's float64 runs: held to the reference itself, its error taken at the scale
    # the looks found it; the tiles still pass, TF32 inputs and another draw's output do not
    scale = compare.reference_error_scale(host(ref), t)
    # (and each row's largest error over its RMS, for a later draw of many scales)
    assert set(scale) == {"elem", "l2", "rows", "cols", "row_elem"} and 0 < scale["l2"] < 1e-4
    assert compare.within_reference_error(host(ref), host(tiled), host(ref), atol, rtol,
                                          ref_scale=scale)
    for wrong in (tf32(a32) @ tf32(b32), tiled[::-1].copy()):
        assert not compare.within_reference_error(host(ref), host(wrong), host(ref), atol,
                                                  rtol, ref_scale=scale)
    tiny_part = rng.standard_normal((128, 16)) * 1e-3
    cat_truth = np.concatenate([truth, tiny_part], axis=1)
    cat_ref = np.concatenate([ref, tiny_part.astype(np.float32)], axis=1)
    cat_zeros = np.concatenate([tiled, np.zeros((128, 16), dtype=np.float32)], axis=1)
    assert not compare.within_reference_error(host(cat_ref), host(cat_zeros), host(cat_truth),
                                              atol, rtol)
    tiny = rng.random((64, 100_000)) * 2e-5  # a softmax over 10^5 columns: every value < atol
    assert not compare.within_reference_error(host(tiny.astype(np.float32)),
                                              host(np.zeros_like(tiny, dtype=np.float32)),
                                              host(tiny), atol, rtol)
    nan = other_order.copy()
    nan[3, 4] = np.nan
    assert not compare.within_reference_error(host(ref), host(nan), t, atol, rtol)
    # a reference whose rounding swamps its output (a variance as E[x^2] - E[x]^2 around a
    # mean of 1000, in float32) says little: 2x its error would pass a constant
    x = 1000 + rng.standard_normal((256, 4096))
    var_truth = (x * x).mean(1) - x.mean(1) ** 2
    x32 = x.astype(np.float32)
    var_ref = (x32 * x32).mean(1) - x32.mean(1) ** 2
    assert np.abs(var_ref - var_truth).max() > np.std(var_truth)
    assert not compare.within_reference_error(host(var_ref),
                                              host(np.ones(256, dtype=np.float32)),
                                              host(var_truth), atol, rtol)
    # outputs of many scales: the reference's largest error (at its largest values) is no
    # budget for its small ones (exp where x > 0, 0 elsewhere)
    z = 4 * rng.standard_normal(65536)
    exp_truth = np.exp(z)
    exp_ref = exp_truth.astype(np.float32)
    half_zero = np.where(z > 0, exp_ref, 0).astype(np.float32)
    assert not compare.within_reference_error(host(exp_ref), host(half_zero), host(exp_truth),
                                              atol, rtol)


def _many_scale_kernels(a32, b32):
    """Honest float32 matmuls in other orders of addition than a BLAS (tiles of 32 added one
    after another, blocks of 512, pairwise halves down to 8 products, Kahan) and narrower
    ones (inputs rounded to TF32, bfloat16, float16), for the second look's many-scale
    tests. -> ({name: product}, {name: product})."""
    def rounded(x, drop):  # float32 rounded to nearest on the mantissa bits left
        bits = x.view(np.uint32)
        half = np.uint32(1 << (drop - 1))
        return ((bits + half) & np.uint32(0xFFFFFFFF ^ ((1 << drop) - 1))).view(np.float32)

    def tiles(t):
        acc = np.zeros((a32.shape[0], b32.shape[1]), np.float32)
        for k in range(0, a32.shape[1], t):
            acc += a32[:, k:k + t] @ b32[k:k + t]
        return acc

    parts = np.stack([a32[:, k:k + 8] @ b32[k:k + 8] for k in range(0, a32.shape[1], 8)])
    while len(parts) > 1:
        parts = parts[0::2] + parts[1::2]
    total = np.zeros((a32.shape[0], b32.shape[1]), np.float32)
    carry = np.zeros_like(total)
    for k in range(a32.shape[1]):
        y = np.outer(a32[:, k], b32[k]) - carry
        t = total + y
        carry = (t - total) - y
        total = t
    honest = {"tiles of 32": tiles(32), "blocks of 512": tiles(512), "pairwise": parts[0],
              "kahan": total}
    narrow = {"tf32": rounded(a32, 13) @ rounded(b32, 13),
              "bfloat16": rounded(a32, 16) @ rounded(b32, 16),
              "float16": a32.astype(np.float16).astype(np.float32) @
              b32.astype(np.float16).astype(np.float32)}
    return honest, narrow


def _host(x):
    x = np.asarray(x)
    return compare.to_host_array(x, x.dtype.name)


def test_a_second_look_at_a_matmul_with_one_row_1000x_the_others():
    """16 x 16,384 x 64, a's rows 1..15 scaled by 1e-3: the output is of many scales (its
    largest value over RANGE x its RMS, on most draws), each row of one. Each row is held to
    the one-scale budget of its own: honest orders pass (against the BLAS and against a
    reference as close to float64 as float32 goes, like cuBLAS), and so does the reference's
    error taken at the looks' scale; narrower inputs, a 1e-3 error in the large row, another
    draw and zeros for the small rows do not."""
    atol, rtol = compare.tolerance_for("float32")
    rng = np.random.default_rng(11)
    many = 0
    for _ in range(3):  # draws of one scale (max ~9.8x the RMS) take the unchanged path
        a32 = rng.standard_normal((16, 16384)).astype(np.float32)
        a32[1:] *= np.float32(1e-3)
        b32 = rng.standard_normal((16384, 64)).astype(np.float32)
        truth = a32.astype(np.float64) @ b32.astype(np.float64)
        if np.abs(truth).max() > compare.RANGE * np.sqrt(np.mean(truth * truth)):
            many += 1
        honest, narrow = _many_scale_kernels(a32, b32)
        t = _host(truth)
        for ref in (a32 @ b32, truth.astype(np.float32)):
            scale = compare.reference_error_scale(_host(ref), t)
            assert "rel" not in scale
            for name, out in honest.items():
                assert compare.within_reference_error(_host(ref), _host(out), t, atol, rtol), name
                assert compare.within_reference_error(_host(ref), _host(out), _host(ref), atol,
                                                      rtol, ref_scale=scale), name
            wrong = dict(narrow)
            elem = ref.copy()
            elem[0, int(np.argmax(np.abs(truth[0])))] *= np.float32(1.001)
            row = ref.copy()
            row[0] *= np.float32(1.001)
            zeros = ref.copy()
            zeros[1:] = 0
            other = rng.standard_normal((16, 16384)).astype(np.float32)
            other[1:] *= np.float32(1e-3)
            wrong.update({"element 1e-3 off": elem, "row * 1.001": row, "zeros": zeros,
                          "another draw": other @ b32})
            for name, out in wrong.items():
                assert not compare.compare(_host(ref), _host(out)).ok, name
                assert not compare.within_reference_error(_host(ref), _host(out), t, atol,
                                                          rtol), name
                assert not compare.within_reference_error(_host(ref), _host(out), _host(ref),
                                                          atol, rtol, ref_scale=scale), name
    assert many >= 2
    # rows of fewer than ROW_MIN elements get no row-wise look: a row's largest error is no
    # budget for 8 values
    a32 = rng.standard_normal((64, 4096)).astype(np.float32)
    a32[1:] *= np.float32(1e-3)
    b32 = rng.standard_normal((4096, 8)).astype(np.float32)
    truth = a32.astype(np.float64) @ b32.astype(np.float64)
    assert np.abs(truth).max() > compare.RANGE * np.sqrt(np.mean(truth * truth))
    assert not compare.within_reference_error(_host(a32 @ b32), _host(a32 @ b32),
                                              _host(truth), atol, rtol)


def test_the_rows_path_holds_small_columns_and_needs_no_look_of_many_scales():
    """Two red-team findings on the rows path. (1) A few output features 100x smaller
    (b's last 8 columns): computed from float16 or bfloat16 inputs, they fit the budget of
    rows alone; each column is now held to its own scale too. (2) Past the float64 looks, a
    draw of many scales needs each row's reference error, which the looks record whether
    their own draws were of one scale or many."""
    atol, rtol = compare.tolerance_for("float32")
    rng = np.random.default_rng(1)
    a32 = rng.standard_normal((16, 16384)).astype(np.float32)
    a32[1:] *= np.float32(1e-3)
    b32 = rng.standard_normal((16384, 64)).astype(np.float32)
    b32[:, 56:] *= np.float32(1e-2)
    truth = a32.astype(np.float64) @ b32.astype(np.float64)
    assert np.abs(truth).max() > compare.RANGE * np.sqrt(np.mean(truth * truth))
    honest, narrow = _many_scale_kernels(a32, b32)
    ref, t = a32 @ b32, _host(truth)
    scale = compare.reference_error_scale(_host(ref), t)
    for name, out in honest.items():
        assert compare.within_reference_error(_host(ref), _host(out), t, atol, rtol), name
    for name in ("bfloat16", "float16"):
        out = honest["tiles of 32"].copy()
        out[:, 56:] = narrow[name][:, 56:]
        assert not compare.compare(_host(ref), _host(out)).ok, name
        assert not compare.within_reference_error(_host(ref), _host(out), t, atol, rtol), name
        assert not compare.within_reference_error(_host(ref), _host(out), _host(ref), atol,
                                                  rtol, ref_scale=scale), name
    # (2): the scale of a look at a draw of one scale serves a later draw of many
    rng = np.random.default_rng(11)
    one_scale = None
    for _ in range(30):
        a32 = rng.standard_normal((16, 16384)).astype(np.float32)
        a32[1:] *= np.float32(1e-3)
        b32 = rng.standard_normal((16384, 64)).astype(np.float32)
        truth = a32.astype(np.float64) @ b32.astype(np.float64)
        many = np.abs(truth).max() > compare.RANGE * np.sqrt(np.mean(truth * truth))
        ref, tiled = a32 @ b32, _many_scale_kernels(a32, b32)[0]["tiles of 32"]
        if compare.compare(_host(ref), _host(tiled)).ok:
            continue
        if not many and one_scale is None:
            assert compare.within_reference_error(_host(ref), _host(tiled), _host(truth),
                                                  atol, rtol)
            one_scale = compare.reference_error_scale(_host(ref), _host(truth))
        elif many and one_scale is not None:
            assert compare.within_reference_error(_host(ref), _host(tiled), _host(ref), atol,
                                                  rtol, ref_scale=one_scale)
            break
    else:
        raise AssertionError("no draw of one scale then one of many, both failing strict")


def test_a_large_row_s_value_near_0_is_held_to_its_row_s_scale():
    """Found on an H100 (`triton_matmul_big_row_passes`): a Triton matmul with one input row
    1000x the others failed on a value of the large row that was near 0 by chance, through
    its column's L2 guard (the column's norm is small there, its error is not). The guards
    take each element's scale as its row's RMS times its column's: the same error passes,
    while the small rows' values in that column 1e-3 off (1.5% of them) still fail."""
    atol, rtol = compare.tolerance_for("float32")
    rng = np.random.default_rng(2)
    a = rng.standard_normal((16, 4096))
    a[1:] *= 1e-3
    truth = a @ rng.standard_normal((4096, 64))
    assert np.abs(truth).max() <= compare.RANGE * np.sqrt(np.mean(truth * truth))  # one scale
    ref = truth.astype(np.float32)  # as close to float64 as cuBLAS
    j = int(np.argmin(np.abs(truth[0])))
    near0 = ref.copy()
    near0[0, j] += np.float32(3e-4)  # 5e-6 of row 0's RMS: an order of additions' error
    assert not compare.compare(_host(ref), _host(near0)).ok
    assert compare.within_reference_error(_host(ref), _host(near0), _host(truth), atol, rtol)
    wrong = near0.copy()
    wrong[1:, j] += np.float32(1e-3)
    assert not compare.within_reference_error(_host(ref), _host(wrong), _host(truth), atol,
                                              rtol)


def test_a_second_look_at_the_softmax_of_a_long_matmul():
    """softmax(a @ b, dim=1), 16 x 8,192 x 256 of randn: rows nearly one-hot, the largest
    value ~16x the RMS. The output has no negative value and a relative error in every
    element (its logits' absolute error), so each element is held to max(2 x the
    reference's largest relative error above atol, rtol) of its own value, and the rows and
    columns in L2 to 2 rtol. Honest orders pass, against the BLAS and against the truth
    rounded to float32; narrower inputs, a row scaled by 1.001, an element 1e-3 off where
    the row's error is ~0 (its largest value), the small values zeroed and another draw do
    not."""
    atol, rtol = compare.tolerance_for("float32")

    def softmax(z):
        z = z - z.max(1, keepdims=True)
        ez = np.exp(z)
        return ez / ez.sum(1, keepdims=True)

    rng = np.random.default_rng(5)
    for _ in range(2):
        a32 = rng.standard_normal((16, 8192)).astype(np.float32)
        b32 = rng.standard_normal((8192, 256)).astype(np.float32)
        truth = softmax(a32.astype(np.float64) @ b32.astype(np.float64))
        assert truth.max() > compare.RANGE * np.sqrt(np.mean(truth * truth))
        honest, narrow = _many_scale_kernels(a32, b32)
        t = _host(truth)
        for ref in (softmax(a32 @ b32), truth.astype(np.float32)):
            scale = compare.reference_error_scale(_host(ref), t)
            assert "rel" in scale
            for name, z in honest.items():
                out = softmax(z)
                assert compare.within_reference_error(_host(ref), _host(out), t, atol, rtol), name
                assert compare.within_reference_error(_host(ref), _host(out), _host(ref), atol,
                                                      rtol, ref_scale=scale), name
            wrong = {name: softmax(z) for name, z in narrow.items()}
            row = ref.copy()
            row[3] *= np.float32(1.001)
            elem = ref.copy()
            elem[5, int(np.argmax(truth[5]))] *= np.float32(1.001)
            small = np.where(ref < 1e-2, 0, ref).astype(np.float32)
            wrong.update({"row * 1.001": row, "element 1e-3 off": elem, "small zeroed": small,
                          "another draw": softmax(rng.standard_normal((16, 8192)).astype(
                              np.float32) @ b32)})
            for name, out in wrong.items():
                if compare.compare(_host(ref), _host(out)).ok:
                    continue  # within the strict tolerance: no second look is asked
                assert not compare.within_reference_error(_host(ref), _host(out), t, atol,
                                                          rtol), name
                assert not compare.within_reference_error(_host(ref), _host(out), _host(ref),
                                                          atol, rtol, ref_scale=scale), name
    # a non-negative output of many scales whose reference is off by more than MEANINGFUL
    # relative to its values above atol (an absolute error, as |matmul| has near its zeros)
    # gets no relative look: its largest relative error would pass anything
    truth = np.exp(3 * rng.standard_normal(4096))
    ref = np.abs(truth + 1e-3 * rng.standard_normal(4096)).astype(np.float32)
    assert truth.max() > compare.RANGE * np.sqrt(np.mean(truth * truth))
    assert not compare.within_reference_error(_host(ref), _host(ref), _host(truth), atol, rtol)
    assert "rel" in compare.reference_error_scale(_host(ref), _host(truth))


def test_a_0d_array_crosses_as_0d_and_equals_a_numpy_scalar():
    """np.sum gives a numpy scalar or a 0-d array; both are one value. The channel kept the
    shape of neither (np.ascontiguousarray makes 0-d arrays 1-d)."""
    from kforge_verifier import channel, frameworks, runner
    arena = channel.Arena(4096, name="kforge-test")
    try:
        tree = channel.put([np.array(2.5), np.ones((2, 3))[:, ::2]], arena)
        got = channel.take(tree, arena, "cpu")
        assert [x.shape for x in got] == [(), (2, 2)] and float(got[0]) == 2.5
    finally:
        arena.close()
    fw = frameworks.get("numpy", "cpu")
    assert runner._same_scalar(fw.host(np.array(1.0)), fw.host(np.float64(1.0)))
    assert not runner._same_scalar(fw.host(np.ones(1)), fw.host(np.float64(1.0)))


def test_fp32_within_tolerance_passes_and_outside_fails():
    e = np.linspace(-3, 3, 1000)
    assert compare.compare(host(e), host(e * (1 + 5e-5))).ok
    bad = compare.compare(host(e), host(e * (1 + 1e-3)))
    assert not bad.ok and bad.checks["mismatches"] > 0


def test_fp16_and_bf16_are_looser():
    e = np.linspace(1, 2, 100)
    assert compare.compare(host(e, "float16"), host(e * 1.005, "float16")).ok
    assert not compare.compare(host(e, "float16"), host(e * 1.03, "float16")).ok
    assert compare.compare(host(e, "bfloat16"), host(e * 1.02, "bfloat16")).ok


def test_job_overrides_apply():
    e = np.ones(10)
    assert compare.compare(host(e), host(e * 1.01), atol=0.0, rtol=0.02).ok


def test_integers_must_be_equal():
    e = np.arange(10, dtype=np.int64)
    a = e.copy()
    a[3] += 1
    c = compare.compare(host(e, "int64"), host(a, "int64"))
    assert not c.ok and c.checks["mismatches"] == 1
    assert c.checks["first_mismatches"][0]["index"] == [3]


def test_shape_mismatch():
    c = compare.compare(host(np.zeros(6)), host(np.zeros((6, 1))))
    assert not c.ok and "shape mismatch" in c.message
    assert c.checks["actual_shape"] == [6, 1]


def test_dtype_mismatch():
    c = compare.compare(host(np.zeros(4), "float32"), host(np.zeros(4), "float64"))
    assert not c.ok and "dtype mismatch" in c.message


def test_nan_positions_must_match():
    e = np.array([1.0, np.nan, 3.0])
    assert compare.compare(host(e), host(e.copy())).ok
    c = compare.compare(host(e), host([1.0, 2.0, 3.0]))
    assert not c.ok and "NaN positions differ" in c.message
    assert c.checks["first_mismatches"][0]["index"] == [1]
    assert not compare.compare(host([1.0, 2.0]), host([np.nan, 2.0])).ok


def test_inf_positions_and_signs_must_match():
    e = np.array([np.inf, -np.inf, 1.0])
    assert compare.compare(host(e), host(e.copy())).ok
    c = compare.compare(host(e), host([-np.inf, -np.inf, 1.0]))
    assert not c.ok and "Inf" in c.message
    assert not compare.compare(host(e), host([1e30, -np.inf, 1.0])).ok


def test_first_mismatches_have_nd_indices_and_are_capped():
    e = np.zeros((4, 5))
    a = e.copy()
    a[2, 3] = 1.0
    a[3, :] = 2.0
    c = compare.compare(host(e), host(a))
    first = c.checks["first_mismatches"]
    assert first[0] == {"index": [2, 3], "expected": 0.0, "actual": 1.0}
    assert first[1]["index"] == [3, 0]
    assert c.checks["mismatches"] == 6
    many = compare.compare(host(np.zeros(100)), host(np.ones(100)))
    assert len(many.checks["first_mismatches"]) == compare.MAX_REPORTED


def test_tiny_outputs_cannot_pass_as_zeros():
    # a softmax over 10^5 columns: every element is far below atol
    e = np.full(100000, 1e-5)
    c = compare.compare(host(e), host(np.zeros_like(e)))
    assert not c.ok and "aggregate" in c.message
    assert compare.compare(host(e), host(e * (1 + 1e-6))).ok


def test_fractional_policy_allows_a_few_outliers():
    e = np.linspace(1, 2, 1000)
    a = e.copy()
    a[:10] *= 2  # 1% wrong
    assert compare.compare(host(e), host(a), policy="fractional").ok
    a[:30] *= 2  # 3% wrong
    c = compare.compare(host(e), host(a), policy="fractional")
    assert not c.ok and c.checks["limit"] == 0.02


def test_fractional_policy_still_requires_nan_positions():
    e = np.linspace(1, 2, 1000)
    a = e.copy()
    a[0] = np.nan
    assert not compare.compare(host(e), host(a), policy="fractional").ok


def test_sanitize_writes_non_finite_as_strings():
    doc = result.sanitize({"a": float("nan"), "b": [float("inf"), -float("inf")],
                           "c": np.float32(1.5), "d": np.int64(3), "e": np.bool_(True)})
    assert doc == {"a": "nan", "b": ["inf", "-inf"], "c": 1.5, "d": 3, "e": True}
    json.dumps(doc, allow_nan=False)


def test_result_written_atomically(tmp_path):
    result.write_result(str(tmp_path), {"verdict": "passed", "x": float("nan")})
    assert json.loads((tmp_path / "result.json").read_text())["x"] == "nan"
    assert sorted(os.listdir(tmp_path)) == ["result.json"]
    result.write_stage(str(tmp_path), "precision")
    assert (tmp_path / "stage").read_text().strip() == "precision"


# --- part 2: static rules -------------------------------------------------------------------

def violations(source, impl="cpp", **kw):
    return rules.check(source, impl, **kw)


def rule_names(source, impl="cpp"):
    return sorted({v.rule for v in violations(source, impl)})


CPP_OK = '''
import ctypes, torch, kforge_cpp
_lib = kforge_cpp.build("extern \\"C\\" void f(float* o, long n) {}")
class ModelNew(torch.nn.Module):
    def forward(self, x):
        out = torch.empty_like(x).reshape(-1)
        _lib.f(kforge_cpp.ptr(out), out.numel())
        return out.view(x.shape)
'''

TRITON_OK = '''
import torch, triton
import triton.language as tl
@triton.jit
def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask),
             mask=mask)
    acc = tl.dot(tl.zeros((16, 16), tl.float16), tl.zeros((16, 16), tl.float16))
class ModelNew(torch.nn.Module):
    def forward(self, x, y):
        out = torch.empty_like(x)
        n = x.numel()
        add_kernel[(triton.cdiv(n, 1024),)](x, y, out, n, BLOCK=1024)
        return out
'''


def test_cpp_candidate_that_builds_and_calls_is_clean():
    assert violations(CPP_OK) == []


def test_cpp_candidate_without_native_code_is_rejected():
    src = "import torch\nclass ModelNew(torch.nn.Module):\n    def forward(self, x):\n" \
          "        return x.clone()\n"
    assert rule_names(src) == ["impl"]


def test_native_function_named_like_a_framework_op_is_fine():
    src = CPP_OK + "\ndef g(a, b):\n    return _lib.matmul(a, b)\n"
    assert violations(src) == []


def test_own_method_named_like_a_framework_op_is_fine():
    src = CPP_OK + ("\nclass Helper:\n    def softmax(self, x):\n        return x\n"
                    "    def forward(self, x):\n        return self.softmax(x)\n")
    assert violations(src) == []


def test_triton_needs_jit_and_launch():
    assert violations(TRITON_OK, "triton") == []
    no_launch = TRITON_OK.replace("add_kernel[(triton.cdiv(n, 1024),)](x, y, out, n, BLOCK=1024)",
                                  "pass")
    assert [v.rule for v in violations(no_launch, "triton")] == ["impl"]
    no_jit = TRITON_OK.replace("@triton.jit\n", "")
    assert "impl" in rule_names(no_jit, "triton")


def test_cuda_c_needs_global_and_load_inline():
    ok = ('from torch.utils.cpp_extension import load_inline\n'
          'src = "__global__ void k(float* x) {}"\n'
          'mod = load_inline(name="k", cpp_sources="", cuda_sources=src)\n')
    assert violations(ok, "cuda_c") == []
    assert "impl" in rule_names(ok.replace("__global__", "__device__"), "cuda_c")
    aten = ok.replace('"__global__ void k(float* x) {}"',
                      '"__global__ void k(float* x) {} torch::Tensor f(torch::Tensor a) '
                      '{ return torch::matmul(a, a); }"')
    assert rule_names(aten, "cuda_c") == ["framework_op"]


@pytest.mark.parametrize("call", ["torch.matmul(x, x)", "torch.nn.functional.softmax(x, 1)",
                                  "F.softmax(x, dim=1)", "np.dot(x, x)",
                                  "torch.linalg.solve(x, x)", "x @ x", "np.linalg.norm(x)"])
def test_framework_heavy_ops_are_rejected(call):
    src = CPP_OK + f"\nimport torch.nn.functional as F\nimport numpy as np\ndef g(x):\n" \
                   f"    return {call}\n"
    assert rule_names(src) == ["framework_op"], call


@pytest.mark.parametrize("call", ["x.mm(x)", "lib.softmax(x)", "self._lib.matmul(a, b)"])
def test_method_calls_are_left_to_the_runtime_trace(call):
    # by name alone x.mm(x) and a ctypes function lib.softmax look the same: the trace in the
    # worker decides by the object called (a tensor's method is the framework's)
    src = CPP_OK + f"\ndef g(x, lib, self, a, b):\n    return {call}\n"
    assert rule_names(src) == [], call


def test_allocation_and_layout_are_allowed():
    src = CPP_OK + ("\nimport numpy as np\ndef g(x):\n    a = np.empty((3, 4), np.float32)\n"
                    "    b = torch.zeros(3).reshape(3, 1).contiguous()\n"
                    "    return np.ascontiguousarray(a).T, b.permute(1, 0), x.to(torch.float16)\n")
    assert violations(src) == []


def test_main_guard_is_ignored():
    src = CPP_OK + '\nif __name__ == "__main__":\n    print(torch.softmax(torch.ones(3), 0))\n'
    assert violations(src) == []


def test_kernel_code_is_exempt():
    assert violations(TRITON_OK, "triton") == []  # tl.dot inside @triton.jit


@pytest.mark.parametrize("line", ["from reference import Model", "import reference",
                                  "importlib.import_module('reference')",
                                  "open('reference.py').read()"])
def test_reference_is_off_limits(line):
    src = CPP_OK + f"\nimport importlib\n{line}\n"
    assert "reference" in rule_names(src)


@pytest.mark.parametrize("line", ["import gc", "import inspect", "import sys\nsys.modules",
                                  "exec('1')", "torch.matmul = lambda a, b: a",
                                  "setattr(torch, 'softmax', None)", "open('result.json', 'w')",
                                  "import sys\nf = sys._getframe(1)", "import kforge_verifier",
                                  "import builtins", "f = lambda e: e.__traceback__.tb_frame",
                                  "getattr(g, 'f_back')"])
def test_integrity_rules(line):
    src = CPP_OK + f"\n{line}\n"
    assert "integrity" in rule_names(src), line


def test_syntax_error_propagates():
    with pytest.raises(SyntaxError):
        rules.check("def f(:\n", "cpp")


def test_violation_names_the_line():
    v = violations(CPP_OK + "\nimport gc\n")[0]
    assert v.line == CPP_OK.count("\n") + 2 and "line" in str(v)


# --- part 2: runtime tracing ----------------------------------------------------------------

torch = pytest.importorskip("torch")


def _torch_overlaps(a, b):
    from kforge_verifier.frameworks import TorchFramework
    return TorchFramework("cpu").overlaps(a, b)


def test_trace_sees_torch_compute_and_provenance():
    def cand(x, y):
        out = torch.empty_like(x)
        tmp = x + y
        out.copy_(tmp)
        return out, torch.empty_like(x)
    (o1, o2), log = trace.trace_torch(torch, _torch_overlaps, cand,
                                      [torch.ones(8), torch.ones(8)])
    assert log.ops == ["add"]
    assert log.producer(o1) == "add"   # copy_ carries the taint to the output
    assert log.producer(o2) is None    # fresh allocation is clean
    assert log.max_numel["add"] == 8


def test_trace_normalizes_names():
    assert trace.normalize("__radd__") == "add"
    assert trace.normalize("__iadd__") == "add"
    assert trace.normalize("add_") == "add"
    assert trace.normalize("bmm") == "matmul"
    assert trace.normalize("add.reduce") == "sum"
    assert trace.normalize("__get__") == "attr"
    assert trace.is_heavy("matmul") and trace.is_heavy("linalg.norm")
    assert not trace.is_heavy("add")


def test_trace_numpy_through_asarray():
    def cand(a, b):
        a = np.ascontiguousarray(a)
        out = np.empty_like(a)
        out[:] = np.exp(a) + b
        return out
    overlaps = lambda x, y: bool(np.may_share_memory(x.view(np.ndarray),  # noqa: E731
                                                     y.view(np.ndarray)))
    out, log = trace.trace_numpy(cand, [np.ones(4), np.ones(4)], overlaps)
    assert log.ops == ["exp", "add"]
    assert log.producer(out) == "add"
    assert np.asarray is not None and np.asarray.__module__ == "numpy"  # restored


def test_integrity_snapshot_detects_replacement():
    import types
    ns = types.SimpleNamespace(f=len, g=abs)
    snap = trace.IntegritySnapshot([("ns", ns)])
    assert snap.changed() == []
    ns.f = max
    assert snap.changed() == ["ns.f"]


# --- part 2: classification, job parsing -----------------------------------------------------

def test_classification():
    assert errors.classify(MemoryError()) == "resource_exceeded"
    assert errors.classify(BlockingIOError(errno.EAGAIN, "x")) == "resource_exceeded"
    assert errors.classify(OSError(errno.ENOMEM, "Cannot allocate memory")) == \
        "resource_exceeded"
    assert errors.classify(RuntimeError("DefaultCPUAllocator: can't allocate memory")) == \
        "resource_exceeded"
    assert errors.classify(RuntimeError("CUDA error: an illegal memory access was "
                                        "encountered")) == "crashed"
    assert errors.classify(ModuleNotFoundError("x"), loading=True) == "compile_error"
    assert errors.classify(kforge_cpp.CompileError("bad")) == "compile_error"
    assert errors.classify(ValueError("x")) == "runtime_error"
    assert errors.classify(ValueError("x"), loading=True) == "compile_error"
    try:
        raise ValueError("from a chain") from MemoryError()
    except ValueError as e:
        assert errors.classify(e) == "resource_exceeded"


def test_device_memory_out_of_memory_is_told_apart():
    class OutOfMemoryError(RuntimeError):  # torch.cuda's, by name (no CUDA here)
        pass
    assert errors.is_device_oom(OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert errors.is_device_oom(RuntimeError("CUDA error: out of memory"))
    assert not errors.is_device_oom(MemoryError())  # the host's: the box's cap says so
    assert not errors.is_device_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory"))


def test_the_candidate_s_device_memory_is_capped_from_outside():
    """judge.DeviceMemory with the device's figures given: what the device has in use beyond
    what it had when the candidate loaded, less the judge's own growth, against the cap."""
    from kforge_verifier import judge as judge_mod
    gib = 1 << 30
    figures = {"free": 70 * gib, "total": 80 * gib, "own": 2 * gib}
    mem = judge_mod.DeviceMemory(lambda: (figures["free"], figures["total"], figures["own"]))
    assert mem.cap == 60 * gib  # 3/4 of the device, unless set
    figures.update(free=30 * gib, own=5 * gib)  # 40 GiB more in use, 3 of them the judge's
    assert mem.held() == 37 * gib
    mem.check("trial 0")  # under the cap
    figures["free"] = 0  # the candidate's process lifted its allocator's cap and took it all
    with pytest.raises(verdicts.Failure) as e:
        mem.check("trial 1")
    assert e.value.verdict == "resource_exceeded"
    assert "67.00 GiB of device memory after trial 1" in e.value.message
    assert "cap of 60.00 GiB" in e.value.message
    # the judge's own allocation failed: the candidate's doing while the judge needed no more
    # than the cap leaves it (70 free at the load - 60 - 4 GiB of slack = 6 GiB), whatever
    # the candidate holds when measured (a thread of its can allocate and free around it)
    figures.update(free=0, own=3 * gib)
    oom = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has ...")
    assert mem.oom_failure("precision", True, oom).verdict == "resource_exceeded"
    figures.update(free=65 * gib)  # the candidate's process has let go of it by now
    assert mem.oom_failure("precision", True, oom).verdict == "resource_exceeded"
    # an honest candidate under its cap, and a judge that needs more than its share: the
    # reference's side
    figures.update(free=0, own=6 * gib)  # 4 GiB grown + 2 asked for: its whole share
    assert mem.oom_failure("precision", True, oom).verdict == "resource_exceeded"
    big = RuntimeError("CUDA out of memory. Tried to allocate 512.00 MiB")
    figures.update(own=8 * gib)  # 6 GiB grown + 0.5 asked for: over its 6 GiB share
    f = mem.oom_failure("precision", True, big)
    assert f.verdict == "infra_error" and "the reference's side" in f.message, f.message
    assert mem.oom_failure("loading the candidate", False, oom).verdict == "infra_error"
    assert errors.is_device_oom(RuntimeError("cuMemCreate failed: CUDA_ERROR_OUT_OF_MEMORY (2)"))
    assert errors.is_device_oom(RuntimeError("CUBLAS_STATUS_ALLOC_FAILED when calling x"))
    small = judge_mod.DeviceMemory(lambda: (figures["free"], figures["total"], 0), 8 * gib)
    assert small.cap == 8 * gib


def test_traceback_is_trimmed_to_candidate_frames():
    def deep(n):
        if n == 0:
            raise RuntimeError("boom")
        deep(n - 1)
    try:
        deep(50)
    except RuntimeError as e:
        text = errors.format_exception(e)
    assert text.splitlines()[-1] == "RuntimeError: boom"
    assert len(text.splitlines()) <= errors.TRACEBACK_LINES + 1


def test_job_defaults_and_validation(tmp_path):
    spec = job.parse({}, str(tmp_path))
    assert (spec.trials, spec.seed, spec.warmup, spec.runs, spec.tolerance, spec.threads) == \
        (3, 0, 5, 50, "strict", 1)
    assert spec.suspicious_speedup == 10.0
    for bad in ({"framework": "jax"}, {"trials": "3"}, {"atol": -1}, {"backend": "tpu"},
                {"reference": "../x.py"}, {"task_type": "fast"}, {"tolerance": "loose"}):
        with pytest.raises(verdicts.Failure) as info:
            job.parse(bad, str(tmp_path))
        assert info.value.verdict == "infra_error" and info.value.input_error
    assert job.parse({"future_key": 1}, str(tmp_path)).extra == {"future_key": 1}


# --- part 2: kforge_cpp ---------------------------------------------------------------------

SRC = 'extern "C" long twice(long x) { return 2 * x; }\n'


def test_kforge_cpp_builds_caches_and_counts(tmp_path):
    cache = str(tmp_path / "cache")
    lib = kforge_cpp.build(SRC, name="twice", cache_dir=cache)
    assert lib.kforge_cached is False
    lib.twice.argtypes = [ctypes.c_long]
    lib.twice.restype = ctypes.c_long
    before = kforge_cpp.native_calls()
    assert lib.twice(21) == 42
    assert kforge_cpp.native_calls() == before  # no pointer passed: not a kernel call
    compiled = kforge_cpp.compilations()
    again = kforge_cpp.build(SRC, name="twice", cache_dir=cache)
    assert again.kforge_cached is True and again.kforge_path == lib.kforge_path
    assert kforge_cpp.compilations() == compiled
    other = kforge_cpp.build(SRC + "// changed\n", name="twice", cache_dir=cache)
    assert other.kforge_path != lib.kforge_path
    flagged = kforge_cpp.build(SRC, name="twice", cache_dir=cache, flags=("-O3",))
    assert flagged.kforge_path != lib.kforge_path


def test_kforge_cpp_compile_error_carries_stderr(tmp_path):
    with pytest.raises(kforge_cpp.CompileError) as info:
        kforge_cpp.build("int f( {", cache_dir=str(tmp_path))
    assert "error" in info.value.stderr
    assert "error" in str(info.value)
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_kforge_cpp_missing_symbol_is_a_compile_error(tmp_path):
    src = 'extern "C" void g();\nextern "C" void f() { g(); }\n'
    with pytest.raises(kforge_cpp.CompileError):
        kforge_cpp.build(src, cache_dir=str(tmp_path), flags=("-Wl,-z,now",))


def test_ctypes_hook_counts_plain_cdll(tmp_path):
    lib = kforge_cpp.build('extern "C" void put(long* p) { *p = 2; }\n', name="put",
                           cache_dir=str(tmp_path))
    kforge_cpp.install_ctypes_hook()
    plain = ctypes.CDLL(lib.kforge_path)
    plain.put.argtypes = [ctypes.POINTER(ctypes.c_long)]
    v = ctypes.c_long(0)
    before = kforge_cpp.native_calls()
    plain.put(ctypes.byref(v))
    ctypes.cdll.LoadLibrary(lib.kforge_path).put(ctypes.pointer(v))
    assert kforge_cpp.native_calls() == before + 2 and v.value == 2


def test_kforge_cpp_ptr():
    a = np.zeros(4, dtype=np.float32)
    assert kforge_cpp.ptr(a).value == a.ctypes.data
    t = torch.zeros(4)
    assert kforge_cpp.ptr(t).value == t.data_ptr()


@pytest.mark.parametrize("case", ["equal", "tiny_error", "one_off", "nan_moved", "inf_sign",
                                  "all_small_zero", "int_equal", "int_off"])
def test_fast_pass_agrees_with_the_host_comparison(case):
    # the judge's device-side shortcut may only ever say "passed" where compare() would
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(7)
    e = torch.randn(1000, generator=g)
    a = e.clone()
    if case == "tiny_error":
        a = a + 1e-6
    elif case == "one_off":
        a[17] += 1.0
    elif case == "nan_moved":
        e[3] = float("nan")
        a[4] = float("nan")
    elif case == "inf_sign":
        e[5] = float("inf")
        a[5] = float("-inf")
    elif case == "all_small_zero":
        e = torch.full((100000,), 1e-5)
        a = torch.zeros(100000)
    elif case.startswith("int"):
        e = torch.arange(100)
        a = e.clone()
        if case == "int_off":
            a[9] = 0
    fast = compare.fast_pass(torch, e, a)
    assert (compare.fast_pass(torch, e, a, details=False) is None) == (fast is None)
    host = compare.compare(compare.to_host_array(e.numpy(), str(e.dtype).replace("torch.", "")),
                           compare.to_host_array(a.numpy(), str(a.dtype).replace("torch.", "")))
    assert (fast is not None) == host.ok, (case, host.message)
    if fast is not None:
        assert fast["total"] == host.checks["total"]
        assert fast["max_abs_error"] == pytest.approx(host.checks["max_abs_error"], abs=1e-6)


# --- red-team fixes: cuda_c sources, counted native calls, numpy in torch jobs --------------

_LOAD = 'from torch.utils.cpp_extension import load_inline\n'


def test_cuda_c_docstrings_and_comments_are_not_aten_calls():
    src = (_LOAD + '"""Computes torch.matmul(A, B) with a tiled CUDA kernel."""\n'
           'cuda_src = """\n// equivalent to torch::softmax(x, -1)\n/* at::matmul(a, b) */\n'
           'int n = 1\'000;  // x.softmax(1)\n__global__ void k(float* x) {}\n"""\n'
           'mod = load_inline(name="k", cpp_sources="", cuda_sources=[cuda_src])\n'
           'class ModelNew:\n    """Like x.softmax(1), in CUDA."""\n')
    assert violations(src, "cuda_c") == []


@pytest.mark.parametrize("sources", [
    # a real call, split over constants, or behind a string literal that hides it from a
    # comment stripper looking at one constant alone
    'cuda_src = "__global__ void k(float* x) {} auto f(at::Tensor a) { return a.matmul(a); }"',
    'a = "__global__ void k(float* x) {} auto f(at::Tensor a) { return torch::mat"\n'
    'cuda_src = a + "mul(a, a); }"',
    'A = "__global__ void k(float* x) {} const char* s = \\""\n'
    'cuda_src = A + "/* \\"; auto y = torch::matmul(a, a); // */"',
    'A = "__global__ void k(float* x) {} const char* s = \\""\n'
    'def pre():\n    return A\n'
    'B = "/* \\"; auto y = torch::matmul(a, a); // */"\ncuda_src = pre() + B',
    'cuda_src = "__global__ void k(float* x) {}\\n#define IGNORE(...)\\n'
    'IGNORE(b\'/*\') auto y = torch::matmul(a, a); //*/"',
    'cuda_src = "__global__ void k(float* x) {} auto s = R\\"( \\"/* )\\"; '
    'auto y = torch::matmul(a, a); /* \\" */"',
])
def test_cuda_c_aten_calls_in_the_real_source_are_still_found(sources):
    src = _LOAD + sources + '\nmod = load_inline(name="k", cpp_sources="", cuda_sources=cuda_src)\n'
    assert rule_names(src, "cuda_c") == ["framework_op"], sources


def test_cuda_c_docstring_read_as_source_is_scanned():
    src = (_LOAD + '"""auto f(at::Tensor a) { return torch::matmul(a, a); }"""\n'
           'mod = load_inline(name="k", cpp_sources=__doc__, '
           'cuda_sources="__global__ void k(float* x) {}")\n')
    assert rule_names(src, "cuda_c") == ["framework_op"]


def test_strip_cpp_comments_keeps_literals():
    text = "int n = 1'000; // a\nchar c = '/'; const char* q = \"//x\"; /* b */ y"
    assert rules.strip_cpp_comments(text) == \
        "int n = 1'000;  \nchar c = '/'; const char* q = \"//x\";   y"
    assert rules.strip_cpp_comments('auto s = R"(x)";') is None


@pytest.mark.parametrize("line", ["kforge_cpp._count()", "from kforge_cpp import _count",
                                  "getattr(kforge_cpp, '_calls')"])
def test_kforge_cpp_internals_are_off_limits(line):
    assert "integrity" in rule_names(CPP_OK + f"\n{line}\n")


def test_only_own_libraries_called_with_a_pointer_count(tmp_path):
    kforge_cpp.install_ctypes_hook()
    lib = kforge_cpp.build('#include <string.h>\n'
                           'extern "C" void zero(float* p, long n) { memset(p, 0, 4 * n); }\n'
                           'extern "C" void noop(void) {}\n', name="own",
                           cache_dir=str(tmp_path))
    lib.zero.argtypes = [kforge_cpp.c_ptr, ctypes.c_long]
    a = np.ones(4, dtype=np.float32)

    def delta(call):
        before = kforge_cpp.native_calls()
        call()
        return kforge_cpp.native_calls() - before

    assert delta(lambda: lib.zero(kforge_cpp.ptr(a), 4)) == 1
    assert delta(lambda: lib.zero(a.ctypes.data, 4)) == 1      # int for a pointer argtype
    assert delta(lambda: lib.noop()) == 0                       # no memory passed
    libc = ctypes.CDLL(None)
    assert delta(lambda: libc.getpid()) == 0
    assert delta(lambda: libc.memset(kforge_cpp.ptr(a), 0, 4)) == 0
    libm = ctypes.CDLL("libm.so.6")
    libm.cos.restype = ctypes.c_double
    libm.cos.argtypes = [ctypes.c_double]
    assert delta(lambda: libm.cos(1.0)) == 0
    # a C library function reached through the candidate's own library is not its code
    assert delta(lambda: lib.memset(kforge_cpp.ptr(a), 0, 4)) == 0
    borrowed = ctypes.CDLL(lib.kforge_path, handle=libc._handle)
    assert delta(lambda: borrowed.memset(kforge_cpp.ptr(a), 0, 4)) == 0
    forged = lib._FuncPtr(ctypes.cast(libc.memset, ctypes.c_void_p).value)
    assert delta(lambda: forged(kforge_cpp.ptr(a), 0, 4)) == 0
    nd = np.ctypeslib.load_library(os.path.basename(lib.kforge_path), lib.kforge_path)
    nd.zero.argtypes = [np.ctypeslib.ndpointer(np.float32), ctypes.c_long]
    assert delta(lambda: nd.zero(a, 4)) == 1


def test_trace_sees_numpy_compute_in_a_torch_job():
    lin = torch.nn.Linear(4, 3)

    def cand(x):
        w = lin.weight.detach().numpy()
        y = x.numpy().dot(w.T) + np.asarray(lin.bias.detach())
        return torch.from_numpy(np.maximum(y, 0).astype(np.float32))
    out, log = trace.trace_torch(torch, _torch_overlaps, cand, [torch.randn(2, 4)])
    assert "matmul" in log.ops and "maximum" in log.ops
    assert log.producer(out) == "maximum"  # astype carries the taint, from_numpy shares it
    assert np.asarray.__module__ == "numpy"  # restored

    def elementwise(x, y):
        return torch.from_numpy(x.numpy() + y.numpy())
    out, log = trace.trace_torch(torch, _torch_overlaps, elementwise,
                                 [torch.ones(8), torch.ones(8)])
    assert log.ops == ["add"] and log.producer(out) == "add"


def test_numpy_allocation_and_pointers_in_a_torch_job_are_fine():
    def cand(x):
        out = torch.empty_like(x)
        scratch = np.empty((3, 4), np.float32)
        raw = np.frombuffer(x.numpy(), dtype=np.uint8)
        p = np.ascontiguousarray(x.numpy()).ctypes.data_as(ctypes.c_void_p)
        view = out.numpy().reshape(-1)
        view[:] = 1.0  # the candidate's own writes into its output (a kernel would)
        del scratch, raw, p
        return out
    out, log = trace.trace_torch(torch, _torch_overlaps, cand, [torch.randn(5)])
    assert log.ops == [] and log.producer(out) is None and log.errors == 0


def test_a_finite_mask_penalty_gives_float16_rows_no_budget():
    """A red team's (it passed a logit-scale budget that was not merged, docs/harness.md):
    causal attention probabilities with a finite mask penalty, softmax(q k^T / sqrt(d) -
    100 (j > i)), 512 x 512, d = 64. e^-100 is no 0 in float64, so the spread of a row's log
    values grows with the penalty, which adds no rounding. A kernel that knows the mask
    computes q k^T in float16 on the rows where that spread is large (p (1 - p) of the row
    unmasked, p between 0.1 and 0.9: about 70% of the causal work), in float32 elsewhere.
    It fails, in the strict check, against float64 and past the looks."""
    atol, rtol = compare.tolerance_for("float32")
    n, d, penalty = 512, 64, 100.0
    i = np.arange(n)
    mask = np.where(i[None, :] > i[:, None], -penalty, 0.0).astype(np.float32)
    p = (i + 1) / n
    cheat_rows = np.sqrt(p * (1 - p)) >= 0.3
    scale = np.float32(1 / math.sqrt(d))
    rng = np.random.default_rng(15)

    def softmax(z):
        z = z - z.max(-1, keepdims=True)
        ez = np.exp(z)
        return ez / ez.sum(-1, keepdims=True)

    def f16(x):
        return x.astype(np.float16).astype(np.float32)

    for _ in range(2):
        q = rng.standard_normal((n, d), dtype=np.float32)
        k = rng.standard_normal((n, d), dtype=np.float32)
        z64 = (q.astype(np.float64) @ k.T.astype(np.float64)) * float(scale)
        truth = softmax(z64 + mask)
        z = (q @ k.T) * scale
        z[cheat_rows] = (f16(q[cheat_rows]) @ f16(k).T) * scale
        cheat = softmax(z + mask).astype(np.float32)
        for ref in (softmax((q @ k.T) * scale + mask).astype(np.float32),
                    softmax(z64.astype(np.float32) + mask).astype(np.float32)):
            assert not compare.compare(_host(ref), _host(cheat)).ok
            assert not compare.within_reference_error(_host(ref), _host(cheat), _host(truth),
                                                      atol, rtol)
            ref_scale = compare.reference_error_scale(_host(ref), _host(truth), atol)
            assert not compare.within_reference_error(_host(ref), _host(cheat), _host(ref),
                                                      atol, rtol, ref_scale=ref_scale)
