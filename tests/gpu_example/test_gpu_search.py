"""examples/gpu-search's variant pool on a host without a GPU: every variant passes the
harness's static rules, and under triton_emulator/ (NOT Triton; see test_gpu_example.py) at
small, ragged shapes every variant of an op's ladder matches the reference within the strict
tolerance while every x_ variant (broken on purpose) does not. Whether Triton compiles them
and how fast they are is the GPU run's job (scripts/gpu-e2e.sh search)."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SEARCH = os.path.join(ROOT, "examples", "gpu-search")
sys.path.insert(0, SEARCH)
sys.path.insert(0, HERE)

import coder_server  # noqa: E402
import test_gpu_example as gx  # noqa: E402  (the emulator, task loading and comparison)

from kforge_verifier import rules  # noqa: E402

POOL = coder_server.Pool(os.path.join(SEARCH, "variants"))
VARIANTS = sorted(POOL.code)


@pytest.mark.parametrize("name", VARIANTS)
def test_static_rules(name):
    violations = rules.check(POOL.code[name], "triton", ("reference",), filename=name + ".py")
    assert violations == [], [str(v) for v in violations]


@pytest.fixture
def poisoned_empty(monkeypatch):
    """torch.empty/empty_like filled with NaN, as the judge poisons what a candidate did not
    write: an x_ variant that leaves elements unwritten must not pass because the allocator
    handed back memory that held the right values (it did, now and then, under load)."""
    import torch
    empty, empty_like = torch.empty, torch.empty_like

    def nan_filled(t):
        return t.fill_(float("nan")) if t.is_floating_point() else t
    monkeypatch.setattr(torch, "empty", lambda *a, **k: nan_filled(empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: nan_filled(empty_like(*a, **k)))


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_under_the_emulator(name, poisoned_empty):
    op, stem = name.split("/")
    mod = gx.task_module(op)
    cand = gx.load(os.path.join(SEARCH, "variants", op, stem + ".py"), "gpu_search_candidate")
    model = cand.ModelNew()
    results = []
    for seed in (0, 1):
        out = model(*gx.inputs(mod, seed))
        results.append(gx.check_close(gx.reference(mod, gx.inputs(mod, seed)), out))
    if stem.startswith("x_"):
        assert not any(r.ok for r in results), f"{name} is meant to fail verification"
    else:
        assert all(r.ok for r in results), [r.message for r in results]


def fake_strategy(out, strategy, speedups, utilisation, measured):
    """OUT/<strategy>/ as gpu-e2e.sh search collects it: report.json, results.json, tasks/."""
    d = os.path.join(out, strategy)
    os.makedirs(os.path.join(d, "report"))
    os.makedirs(os.path.join(d, "tasks"))
    tasks, results = [], []
    for i, (op, (speedup, winner)) in enumerate(speedups.items(), start=1):
        state = "passed" if speedup else "failed"
        tasks.append({"task": i, "op_name": op, "task_id": "default", "state": state,
                      "speedup": speedup, "device_seconds": 4.0, "device_jobs": 2,
                      "reason": "passed" if speedup else "no candidate passed"})
        results.append({"task": i, "op_name": op, "task_id": "default", "state": state})
        trace = []
        for variant, s in measured.get(op, []):
            trace.append({"role": "coder", "sample": 0,
                          "output": "```python\n" + POOL.code[f"{op}/{variant}"] + "```"})
            doc = {"verdict": "passed" if s else "precision_mismatch"}
            if s:
                doc["profile"] = {"speedup": s}
            trace.append({"role": "verifier", "sample": 0, "verdict": doc["verdict"],
                          "output": json.dumps(doc)})
        code = POOL.code[f"{op}/{winner}"] if winner else None
        with open(os.path.join(d, "tasks", f"{i}.json"), "w") as f:
            json.dump({"code": code, "trace": trace}, f)
    report = {"tasks": tasks, "metrics": {"speedup": {"geomean": None}},
              "device": {"jobs": 10, "seconds": 50.0, "window_seconds": 52.0,
                         "per_device": [{"device": "cuda:0", "utilisation": utilisation}]},
              "wall": {"seconds": 60.0}}
    with open(os.path.join(d, "report", "report.json"), "w") as f:
        json.dump(report, f)
    with open(os.path.join(d, "results.json"), "w") as f:
        json.dump(results, f)


def test_compare_puts_the_strategies_side_by_side(tmp_path):
    out = str(tmp_path)
    fake_strategy(out, "fix_loop", {"softmax": (1.0, "1_row_w2"), "matmul": (0.5, "1_tile64x64x32_w4_s2"),
                                    "gelu": (None, None)}, 0.95,
                  {"softmax": [("1_row_w2", 1.0)]})
    fake_strategy(out, "evolve", {"softmax": (2.0, "3_row_w16"), "matmul": (1.0, "3_tile128x128x64_w8_s3_g8"),
                                  "gelu": (1.5, "3_fused_b4096_w8")}, 0.85,
                  {"softmax": [("1_row_w2", 1.2), ("x_no_max", None), ("3_row_w16", 2.0)]})
    r = subprocess.run([sys.executable, os.path.join(SEARCH, "compare.py"), "--out", out,
                        "--strategies", "fix_loop,evolve,best_of_n", "--device-budget", "20"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    assert s["common_ops"] == ["softmax", "matmul"]  # gelu: fix_loop found nothing
    assert s["not_run"] == ["best_of_n"]
    assert abs(s["goals"]["evolve_ratio"] - 2.0) < 1e-9 and s["goals"]["evolve_ratio_met"]
    assert s["goals"]["utilisation_met"] == {"fix_loop": True, "evolve": False}
    assert s["strategies"]["evolve"]["tasks"]["softmax"]["winner"] == "3_row_w16"
    assert s["variants"]["softmax"]["1_row_w2"]["median_speedup"] == 1.1
    assert s["variants"]["softmax"]["x_no_max"]["verdicts"] == ["precision_mismatch"]
    with open(os.path.join(out, "summary.md")) as f:
        text = f.read()
    assert "evolve / fix_loop geomean: 2.00x** (goal >= 1.3x: met)" in text
    assert "85.0% (< 90%)" in text
