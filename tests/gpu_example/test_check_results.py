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
with open(EXPECTED, encoding="utf-8") as f:
    PLAN = json.load(f)


def profile(median):
    stats = {"median_us": median, "min_us": median, "max_us": median, "mean_us": median, "runs": 50}
    return {"candidate": stats, "reference": dict(stats, median_us=2 * median), "speedup": 2.0,
            "suspicious": False, "method": "cuda_events", "warmup": 5, "threads": None}


def collection(verdicts=None, medians=None):
    """Results, shows and jobs as the campaign would leave them: first attempts in campaign
    order (one GPU, jobs in queue order), then the fixes. verdicts: {(task, attempt): v}."""
    verdicts = verdicts or {}
    medians = medians or {}
    results, shows, jobs = [], {}, []
    order = []
    for i, (key, plan) in enumerate(PLAN["tasks"].items(), start=1):
        for n in range(1, len(plan["verifications"]) + 1):
            order.append((n, i, key))
    order.sort()
    t = 1_000_000
    traces = {}
    for job_id, (n, i, key) in enumerate(order, start=1):
        want = PLAN["tasks"][key]["verifications"][n - 1]["verdict"]
        v = verdicts.get((key, n), want)
        doc = {"verdict": v, "message": f"{v}: synthetic", "stage": "profile",
               "phases_ms": {"imports": 3000.0, "device_init": 400.0, "load_reference": 900.0,
                             "load_candidate": 300.0, "first_call": 700.0, "precision": 1500.0,
                             "profile": 800.0},
               "clock": {"start_unix_ms": t + 60, "end_unix_ms": t + 7800}}
        if v == "passed":
            doc["profile"] = profile(medians.get(key, 50.0))
        jobs.append({"id": job_id, "task": i, "device": "cuda:0", "agent": "a1",
                     "assigned_ms": t, "finished_ms": t + 8000, "state": "done"})
        traces.setdefault(i, []).append({"role": "verifier", "verdict": v, "input": f"job {job_id}",
                                         "output": json.dumps(doc)})
        t += 9000
    for i, (key, plan) in enumerate(PLAN["tasks"].items(), start=1):
        trace = [{"role": "designer", "verdict": "", "input": "", "output": ""}]
        for step in traces[i]:
            trace += [{"role": "coder", "verdict": "", "input": "", "output": ""}, step]
        last = trace[-1]["verdict"]
        results.append({"task": i, "op_name": plan["op_name"], "task_id": plan["task_id"],
                        "state": "passed" if last == "passed" else "failed",
                        "verdict": last, "reason": last})
        shows[i] = {"task": i, "trace": trace}
    return results, shows, jobs


def check(tmp_path, results, shows, jobs):
    (tmp_path / "tasks").mkdir(exist_ok=True)
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    (tmp_path / "versions.json").write_text(json.dumps({"gpu": "synthetic", "triton": "0"}))
    for i, show in shows.items():
        (tmp_path / "tasks" / f"{i}.json").write_text(json.dumps(show))
    r = subprocess.run([sys.executable, os.path.join(EXAMPLE, "check_results.py"), "--out",
                        str(tmp_path), "--expected", EXPECTED], capture_output=True, text=True)
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
    side = PLAN["side_stream"]
    rc, summary = check(tmp_path, *collection(medians={side["task"]: 10.0, side["like"]: 50.0}))
    assert rc == 1
    assert any(p.startswith("side stream:") for p in summary["problems"])


def test_missing_collections_fail(tmp_path):
    results, shows, jobs = collection()
    rc, summary = check(tmp_path, results[:-1], shows, jobs)
    assert rc == 1
