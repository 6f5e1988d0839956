"""The corpus of cases through Verifier v2, as the agent runs it.

    /usr/bin/python3 -m pytest tests/harness/test_cases.py -q

Every case of cases.json and of the hostile corpus (cases_hostile.json: one case per cheat,
each written to get past the static rules, so that the judge itself must stop it) runs
through v2run.py (one warm judge, a fresh candidate worker per case, killed before the
verdict), and its verdict and document are checked. Limits are emulated (RLIMIT_AS,
RLIMIT_NPROC as user nobody). The CUDA cases (cases_cuda.json) run where torch sees a GPU.
This file is its own ctest entry (harness_cases): it is the longest part of the suite.
"""

import json
import os
import re
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "agent", "harness"))

import jobrun  # noqa: E402
import v2run  # noqa: E402
from kforge_verifier import verdicts  # noqa: E402


CASES = jobrun.load_cases()


HOSTILE = jobrun.load_cases("cases_hostile.json")


RESULT_KEYS = {"verdict", "message", "input_error", "stage", "trials", "checks", "versions",
               "phases_ms", "worker"}


def _can_drop_privileges():
    return os.geteuid() != 0 or (os.path.isdir("/tmp") and hasattr(os, "setuid"))


def _run_corpus(cases):
    """Runs `cases` through one judge, a fresh worker each. -> {name: doc}"""
    # not under pytest's tmp_path: that is 0700 and cases with a process limit run as nobody
    with tempfile.TemporaryDirectory(prefix="kforge-harness-test-") as parent:
        os.chmod(parent, 0o755)
        judge = v2run.Judge()
        docs = {}
        try:
            for case in cases:
                job_dir = jobrun.make_job_dir(case, parent)
                docs[case["name"]] = judge.verify(job_dir, case.get("timeout_s", 60),
                                                  case.get("limits"))
        finally:
            judge.close()
        return docs


# Two corpora, two judges: ctest runs them as two entries side by side (harness_cases with
# -k "not hostile", harness_hostile with -k hostile), each paying only for its own.
@pytest.fixture(scope="session")
def outcomes():
    return _run_corpus(CASES)


@pytest.fixture(scope="session")
def hostile_outcomes():
    return _run_corpus(HOSTILE)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case, outcomes):
    _check_case(case, outcomes[case["name"]])


@pytest.mark.parametrize("case", HOSTILE, ids=[c["name"] for c in HOSTILE])
def test_hostile_case(case, hostile_outcomes):
    _check_case(case, hostile_outcomes[case["name"]])


def _check_case(case, res):
    expect = case["expect"]
    if case.get("limits", {}).get("processes") and not _can_drop_privileges():
        pytest.skip("RLIMIT_NPROC cannot bind here (root without setuid)")
    assert res["verdict"] == expect, f"{res['verdict']}: {res['message']}"
    if "message_has" in case:  # the verdict for the reason the case is about
        assert case["message_has"] in res["message"], res["message"]
    assert bool(res["input_error"]) == bool(case.get("input_error", False)), res
    json.dumps(res, allow_nan=False)  # strict JSON: raises on NaN/Inf
    assert res["stage"] in ("load_reference", "load_candidate", "precision", "profile")
    assert RESULT_KEYS <= set(res), sorted(res)
    assert res["message"]
    assert not re.search(r"seed \d", res["message"]), "the judge's seeds are secret"
    if expect == "passed":
        assert res["trials"] >= 3
        assert res["checks"]["mismatches"] == 0
        assert res["checks"]["total"] > 0 or case.get("no_elements")
    if case["task_type"] == "profile" and expect == "passed":
        prof = res["profile"]
        assert prof["method"] == "judge_clock"
        # the reference timed through a worker of its own, like the candidate
        assert prof["reference_timing"] == "worker", res.get("reference_worker")
        assert prof["candidate"]["runs"] == case.get("job", {}).get("runs", 50)
        assert prof["speedup"] > 0
        assert prof["candidate"]["min_us"] <= prof["candidate"]["median_us"] <= \
            prof["candidate"]["max_us"]
        if "max_speedup" in case:  # a cache cannot buy speed: every timed run is fresh
            assert prof["speedup"] < case["max_speedup"], prof
        if case.get("cpu_bound"):  # no call taken below its CPU time over `threads` CPUs:
            cpu = prof["cpu"]["candidate"]  # the median call no faster than the median CPU
            assert prof["candidate"]["median_us"] + prof["worker_rtt_us"] >= \
                0.98 * cpu["cpu_median_us"] / prof["threads"], prof
        # CPU jobs: both sides' CPU measured (v2run passes each worker's pid); a kernel on
        # the job's one thread is charged nothing
        for side in ("reference", "candidate"):
            cpu = prof["cpu"][side]
            assert cpu["charged"] >= 1.0, prof["cpu"]
            if not case["candidate"].startswith("candidates/hostile/"):
                assert cpu["charged"] < 1.05, prof["cpu"]
    else:
        assert "profile" not in res


CUDA_CASES = jobrun.load_cases("cases_cuda.json")


def _cuda_available():
    try:
        import torch
        import triton  # noqa: F401
        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(scope="session")
def cuda_outcomes():
    if not _cuda_available():
        pytest.skip("no CUDA GPU with torch and triton in this interpreter")
    with tempfile.TemporaryDirectory(prefix="kforge-harness-cuda-") as parent:
        os.chmod(parent, 0o755)
        judge = v2run.Judge(device="cuda")
        try:
            yield {c["name"]: judge.verify(jobrun.make_job_dir(c, parent), c.get("timeout_s", 300))
                   for c in CUDA_CASES}
        finally:
            judge.close()


@pytest.mark.parametrize("case", CUDA_CASES, ids=[c["name"] for c in CUDA_CASES])
def test_cuda_case(case, cuda_outcomes):
    res = cuda_outcomes[case["name"]]
    assert res["verdict"] == case["expect"], res["message"]
    if case["expect"] == "passed" and case["task_type"] == "profile":
        assert res["profile"]["method"] == "judge_clock"
        assert res["profile"]["reference_timing"] == "worker", res.get("reference_worker")


def test_profile_case_reports_speedup(outcomes):
    res = outcomes["cpp_add_profile_passes"]
    assert res["verdict"] == "passed"
    assert res["profile"]["suspicious"] is False
    assert "speedup" in res["message"]


def test_profile_reports_its_roofline(outcomes):
    roof = outcomes["cpp_add_profile_passes"]["roofline"]
    assert roof["min_bytes"] >= 2 * 100003 * 4  # its output and an input, float32
    assert roof["copy_bandwidth_gbps"] > 0
    assert 0 < roof["floor_us"] < roof["candidate_median_us"]


def test_suspicious_speedup_is_flagged_but_passes(outcomes):
    res = outcomes["suspicious_speedup_flagged"]
    assert res["verdict"] == "passed"
    assert res["profile"]["suspicious"] is True
    assert res["profile"]["speedup"] > 3
    assert "SUSPICIOUS" in res["message"]


def test_tail_bug_reports_tail_indices(outcomes):
    res = outcomes["cpp_add_tail_bug"]
    first = res["checks"]["first_mismatches"]
    assert first and first[0]["index"] == [100003 // 256 * 256]
    assert res["checks"]["mismatches"] == 100003 % 256


def test_nan_mismatch_message(outcomes):
    res = outcomes["cpp_softmax_naive_overflow"]
    assert "NaN positions differ" in res["message"]
    assert res["checks"]["first_mismatches"][0]["actual"] == "nan"


def test_cached_answer_fails_on_a_later_trial(outcomes):
    res = outcomes["numpy_add_cached_answer"]
    assert res["message"].startswith("trial 1")


def test_phases_and_clock_measure_the_overhead(outcomes):
    res = outcomes["cpp_add_profile_passes"]
    phases = res["phases_ms"]
    for key in ("worker_ready", "load_reference", "load_candidate", "precision", "first_call",
                "profile"):
        assert phases[key] >= 0, key
    assert "device_init" not in phases  # a cpu job has no device context to create
    assert phases["first_call"] <= phases["precision"]  # the first call is part of precision
    clock = res["clock"]
    spent = clock["end_unix_ms"] - clock["start_unix_ms"]
    assert spent >= phases["load_candidate"] + phases["precision"] + phases["profile"]


def test_pointer_cache_fails(outcomes):
    # a cache keyed by the inputs' data pointers: the worker's inputs live in the judge's
    # shared buffer, at the same addresses every call, with new values each time, so the
    # reused answer is wrong at the next trial already (and at every timed run)
    res = outcomes["cpp_add_pointer_cache_timed"]
    assert res["verdict"] == "precision_mismatch"
    assert res["stage"] in ("precision", "profile")
    assert res["message"].startswith(("trial", "timed run"))


def test_cases_json_is_well_formed():
    names = set()
    for case in CASES:
        assert case["name"] not in names
        names.add(case["name"])
        for key in ("task", "candidate", "backend", "arch", "impl_type", "framework",
                    "task_type", "expect"):
            assert key in case, (case["name"], key)
        assert case["expect"] in verdicts.ALL
        assert os.path.isfile(os.path.join(HERE, case["task"]))
        assert os.path.isfile(os.path.join(HERE, case["candidate"]))
    for verdict in ("passed", "compile_error", "precision_mismatch", "timeout", "crashed",
                    "resource_exceeded", "rejected", "infra_error"):
        assert any(c["expect"] == verdict for c in CASES), verdict
