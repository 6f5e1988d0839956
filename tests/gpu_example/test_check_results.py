"""examples/gpu/check_results.py on synthetic collections (what gpu-e2e.sh gathers on the
GPU host), so that the comparison that decides the GPU run's outcome is tested here."""
import copy
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "gpu")
EXPECTED = os.path.join(EXAMPLE, "expected.json")
SWEEP_EXPECTED = os.path.join(EXAMPLE, "sweep-expected.json")
with open(EXPECTED, encoding="utf-8") as f:
    PLAN = json.load(f)
with open(SWEEP_EXPECTED, encoding="utf-8") as f:
    SWEEP = json.load(f)


def profile(median):
    stats = {"median_us": median, "min_us": median, "max_us": median, "mean_us": median, "runs": 50}
    return {"candidate": stats, "reference": dict(stats, median_us=2 * median), "speedup": 2.0,
            "suspicious": False, "method": "cuda_events", "warmup": 5, "threads": None}


def collection(verdicts=None, medians=None, plan_doc=PLAN, gpus=1):
    """Results, shows and jobs as the campaign would leave them: first attempts in campaign
    order, then the fixes; job k on GPU k % gpus, in waves of 9 s (so jobs of one wave run
    beside each other on different GPUs). verdicts: {(task, attempt): v}."""
    verdicts = verdicts or {}
    medians = medians or {}
    results, shows, jobs = [], {}, []
    order = []
    for i, (key, plan) in enumerate(plan_doc["tasks"].items(), start=1):
        for n in range(1, len(plan["verifications"]) + 1):
            order.append((n, i, key))
    order.sort()
    traces = {}
    for job_id, (n, i, key) in enumerate(order, start=1):
        t = 1_000_000 + ((job_id - 1) // gpus) * 9000
        want = plan_doc["tasks"][key]["verifications"][n - 1]["verdict"]
        v = verdicts.get((key, n), want)
        doc = {"verdict": v, "message": f"{v}: synthetic", "stage": "profile",
               "phases_ms": {"imports": 3000.0, "device_init": 400.0, "load_reference": 900.0,
                             "load_candidate": 300.0, "first_call": 700.0, "precision": 1500.0,
                             "profile": 800.0},
               "clock": {"start_unix_ms": t + 60, "end_unix_ms": t + 7800}}
        if v == "passed":
            doc["profile"] = profile(medians.get(key, 50.0))
        jobs.append({"id": job_id, "task": i, "device": f"cuda:{(job_id - 1) % gpus}", "agent": "a1",
                     "assigned_ms": t, "finished_ms": t + 8000, "state": "done"})
        traces.setdefault(i, []).append({"role": "verifier", "verdict": v, "input": f"job {job_id}",
                                         "output": json.dumps(doc)})
    for i, (key, plan) in enumerate(plan_doc["tasks"].items(), start=1):
        trace = [{"role": "designer", "verdict": "", "input": "", "output": ""}]
        for step in traces[i]:
            trace += [{"role": "coder", "verdict": "", "input": "", "output": ""}, step]
        last = trace[-1]["verdict"]
        results.append({"task": i, "op_name": plan["op_name"], "task_id": plan["task_id"],
                        "state": "passed" if last == "passed" else "failed",
                        "verdict": last, "reason": last})
        shows[i] = {"task": i, "trace": trace}
    return results, shows, jobs


def check(tmp_path, results, shows, jobs, expected=EXPECTED, extra=()):
    (tmp_path / "tasks").mkdir(exist_ok=True)
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    (tmp_path / "versions.json").write_text(json.dumps({"gpu": "synthetic", "triton": "0"}))
    for i, show in shows.items():
        (tmp_path / "tasks" / f"{i}.json").write_text(json.dumps(show))
    r = subprocess.run([sys.executable, os.path.join(EXAMPLE, "check_results.py"), "--out",
                        str(tmp_path), "--expected", expected, *extra], capture_output=True, text=True)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (tmp_path / "summary.md").exists()
    return r.returncode, summary


def test_everything_as_planned_passes(tmp_path):
    rc, summary = check(tmp_path, *collection())
    assert rc == 0, summary["problems"]
    assert summary["ok"]
    names = {c["check"]: c for c in summary["checks"]}
    recovery = names["recovery after an illegal memory access"]
    assert recovery["ok"] and recovery["next_task"].startswith("gelu/")
    assert names["side stream timed"]["ok"]
    over = summary["overhead_ms"][0]
    assert over["wall"] == 8000 and over["process_start"] == 60 and over["teardown"] == 200
    assert summary["overhead_median_ms"]["first_call"] == 700.0


def test_a_wrong_verdict_fails_and_is_named(tmp_path):
    key = next(k for k in PLAN["tasks"] if k.startswith("vector_add_cached/"))
    rc, summary = check(tmp_path, *collection({(key, 1): "passed"}))
    assert rc == 1
    assert any(key in p and "expected precision_mismatch, got passed" in p
               for p in summary["problems"])


def test_the_job_after_the_crash_must_not_fail(tmp_path):
    key = next(k for k in PLAN["tasks"] if k.startswith("gelu/"))
    rc, summary = check(tmp_path, *collection({(key, 1): "infra_error"}))
    assert rc == 1
    assert any(p.startswith("recovery:") for p in summary["problems"])


def test_an_untimed_side_stream_fails(tmp_path):
    side = PLAN["side_stream"][0]
    rc, summary = check(tmp_path, *collection(medians={side["task"]: 10.0, side["like"]: 50.0}))
    assert rc == 1
    assert any(p.startswith("side stream:") for p in summary["problems"])


def test_missing_collections_fail(tmp_path):
    results, shows, jobs = collection()
    rc, summary = check(tmp_path, results[:-1], shows, jobs)
    assert rc == 1


def test_the_sweep_on_eight_gpus_passes_with_its_isolation_checks(tmp_path):
    rc, summary = check(tmp_path, *collection(plan_doc=SWEEP, gpus=8), expected=SWEEP_EXPECTED)
    assert rc == 0, summary["problems"]
    beside = [c for c in summary["checks"] if c["check"].startswith("jobs beside")]
    # every relu task's illegal memory access and the hang ran beside jobs on other GPUs
    assert sorted(c["task"] for c in beside) == sorted(SWEEP["recovery_after"] + ["row_sum_hang/COLS=4096,ROWS=4096"])
    assert all(c["ok"] and c["devices_beside"] >= 1 for c in beside)
    recovered = [c for c in summary["checks"] if c["check"].startswith("recovery")]
    assert len(recovered) == len(SWEEP["recovery_after"]) and all(c["ok"] for c in recovered)


def test_a_job_disturbed_beside_a_crash_is_named(tmp_path):
    results, shows, jobs = collection(plan_doc=SWEEP, gpus=8)
    crash = next(j for j in jobs if SWEEP["recovery_after"][0] == next(
        f"{r['op_name']}/{r['task_id']}" for r in results if r["task"] == j["task"]))
    victim = next(j for j in jobs if j["assigned_ms"] == crash["assigned_ms"] and j["device"] != crash["device"]
                  and json.loads(shows[j["task"]]["trace"][-1]["output"])["verdict"] == "passed")
    key = next(f"{r['op_name']}/{r['task_id']}" for r in results if r["task"] == victim["task"])
    attempt = sum(1 for s in shows[victim["task"]]["trace"] if s["role"] == "verifier")
    rc, summary = check(tmp_path, *collection({(key, attempt): "crashed"}, plan_doc=SWEEP, gpus=8),
                        expected=SWEEP_EXPECTED)
    assert rc == 1
    assert any(p.startswith("isolation:") and key in p for p in summary["problems"]), summary["problems"]


def test_jobs_per_minute_against_a_one_gpu_baseline(tmp_path):
    def report(out, jobs, devices, window):
        (out / "report").mkdir(parents=True, exist_ok=True)
        per = [{"device": f"cuda:{i}", "host": "h", "jobs": jobs // devices,
                "busy_seconds": window * 0.9, "utilisation": 0.9} for i in range(devices)]
        (out / "report" / "report.json").write_text(json.dumps({"device": {
            "devices_used": devices, "jobs": jobs, "window_seconds": window,
            "jobs_per_minute": jobs / (window / 60.0), "per_device": per}}))
    base = tmp_path / "one"
    many = tmp_path / "all"
    many.mkdir()
    report(base, 12, 1, 120.0)     # 6 jobs per minute
    report(many, 72, 8, 90.0)      # 48 jobs per minute
    rc, summary = check(many, *collection(plan_doc=SWEEP, gpus=8), expected=SWEEP_EXPECTED,
                        extra=("--baseline", str(base)))
    assert rc == 0, summary["problems"]
    assert summary["devices"]["jobs_per_minute_ratio"] == 8.0
    assert len(summary["devices"]["per_device"]) == 8
    assert "ratio 8.00x" in (many / "summary.md").read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, summary = check(many, *collection(plan_doc=SWEEP, gpus=8), expected=SWEEP_EXPECTED,
                        extra=("--baseline", str(empty)))
    assert rc == 1 and any(p.startswith("baseline:") for p in summary["problems"])


def test_the_sweep_on_one_gpu_a_crash_after_a_planned_crash_is_recovery(tmp_path):
    # on one GPU the relu tasks' illegal memory accesses run one after another: the next job
    # after each is another planned crash, which is its plan, not a failure to recover
    rc, summary = check(tmp_path, *collection(plan_doc=SWEEP, gpus=1), expected=SWEEP_EXPECTED)
    assert rc == 0, summary["problems"]
    recovered = [c for c in summary["checks"] if c["check"].startswith("recovery")]
    assert len(recovered) == len(SWEEP["recovery_after"]) and all(c["ok"] for c in recovered)
    assert sum(c["next_verdict"] == "crashed" for c in recovered) == len(recovered) - 1
