#!/usr/bin/env python3
"""Reads what scripts/gpu-e2e.sh collected in OUT and writes OUT/summary.md and
OUT/summary.json: every verification's verdict (against expected.json when given), the
speedups, the harness overhead per job, the checks that need more than one job (the next
job after an illegal memory access on the same GPU; the side stream's timing; on several
GPUs, the jobs that ran beside a crash or a hang), and each device's utilisation.

    python3 check_results.py --out OUT [--expected examples/gpu/expected.json] [--baseline OUT1]

--baseline names the OUT of a run of the same campaign on one GPU (gpu-e2e.sh multi): the
summary gives jobs per minute against it.

Exit status: 0 when everything expected happened (or, without --expected, every task
finished), 1 otherwise. Standard library only: it runs with the jobs' Python.

Inputs (written by gpu-e2e.sh): OUT/results.json (kforge results --json), OUT/tasks/<task>.json
(kforge show --json --full: the trace of steps; a verifier step's input is "job N" and its
output the harness's result.json), OUT/jobs.json (kforge jobs --json: assigned_ms,
finished_ms, device), OUT/versions.json, OUT/report/report.json (kforge report: the device
window, jobs per minute, per-device busy time).
"""
import argparse
import json
import os
import statistics
import sys

PHASES = ("imports", "device_init", "worker_ready", "load_reference", "load_candidate",
          "first_call", "precision", "profile")


def load(path, default=None):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def verifications(out, results):
    """-> list of dicts, one per verifier step, in job order."""
    jobs = {j["id"]: j for j in load(os.path.join(out, "jobs.json"), [])}
    rows = []
    for task in results:
        show = load(os.path.join(out, "tasks", f"{task['task']}.json"), {})
        n = 0
        for step in show.get("trace", []):
            if step.get("role") != "verifier":
                continue
            n += 1
            try:
                doc = json.loads(step.get("output") or "{}")
            except ValueError:
                doc = {"verdict": step.get("verdict"), "message": step.get("output", "")}
            job_id = None
            words = (step.get("input") or "").split()
            if len(words) == 2 and words[0] == "job" and words[1].isdigit():
                job_id = int(words[1])
            job = jobs.get(job_id, {})
            rows.append({
                "task": f"{task['op_name']}/{task['task_id']}", "task_row": task["task"],
                "attempt": n, "verdict": step.get("verdict") or doc.get("verdict"),
                "message": doc.get("message", ""), "stage": doc.get("stage", ""),
                "profile": doc.get("profile"), "phases_ms": doc.get("phases_ms", {}),
                "clock": doc.get("clock"), "versions": doc.get("versions", {}),
                "job": job_id, "device": job.get("device"), "agent": job.get("agent"),
                "assigned_ms": job.get("assigned_ms"), "finished_ms": job.get("finished_ms"),
            })
    rows.sort(key=lambda r: (r["assigned_ms"] or 0, r["job"] or 0))
    return rows


def overhead(row):
    """Milliseconds: the job's wall time and where it went."""
    o = {}
    a, f = row["assigned_ms"], row["finished_ms"]
    if a and f:
        o["wall"] = f - a
    clock = row["clock"] or {}
    if a and clock.get("start_unix_ms"):
        o["process_start"] = round(clock["start_unix_ms"] - a, 1)
    if f and clock.get("end_unix_ms"):
        o["teardown"] = round(f - clock["end_unix_ms"], 1)
    for k in PHASES:
        if k in row["phases_ms"]:
            o[k] = round(row["phases_ms"][k], 1)
    prof = row["profile"]
    if prof:
        runs = prof["candidate"]["runs"] + prof.get("warmup", 0)
        o["kernel_calls_timed_ms"] = round(prof["candidate"]["median_us"] * runs / 1000.0, 2)
    return o


def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--expected")
    ap.add_argument("--baseline", help="another run's OUT (the same campaign on one GPU): "
                    "jobs per minute against it")
    args = ap.parse_args()
    out = args.out
    results = load(os.path.join(out, "results.json"))
    problems = []
    if not isinstance(results, list):
        problems.append("no results.json (kforge results --json failed)")
        results = []
    expected = load(args.expected) if args.expected else None
    if args.expected and expected is None:
        problems.append(f"cannot read {args.expected}")
    rows = verifications(out, results)
    by_task = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r)

    # 1. verdicts
    table = []
    tasks = {f"{t['op_name']}/{t['task_id']}": t for t in results}
    if expected:
        for key, plan in expected["tasks"].items():
            # infra_error verifications are retried by the Conductor with the same code: they
            # are problems of their own, not one of the planned attempts
            got = [r for r in by_task.get(key, []) if r["verdict"] != "infra_error"]
            for r in by_task.get(key, []):
                if r["verdict"] == "infra_error":
                    first = (r["message"] or "").strip().splitlines()[:1]
                    problems.append(f"{key}: infra_error (job {r['job']}): "
                                    f"{first[0][:300] if first else 'no message'}")
                    table.append((key, r["attempt"], "(retried)", "", "infra_error", False, r))
            task = tasks.get(key)
            for i, want in enumerate(plan["verifications"]):
                r = got[i] if i < len(got) else None
                verdict = r["verdict"] if r else "(not run)"
                ok = verdict == want["verdict"]
                if not ok:
                    problems.append(f"{key} verification {i + 1} ({want['candidate']}): expected "
                                    f"{want['verdict']}, got {verdict}")
                table.append((key, r["attempt"] if r else i + 1, want["candidate"],
                              want["verdict"], verdict, ok, r))
            if len(got) > len(plan["verifications"]):
                problems.append(f"{key}: {len(got)} verifications, {len(plan['verifications'])} planned")
            state = task["state"] if task else "(missing)"
            if state != plan["state"]:
                problems.append(f"{key}: task {state}, expected {plan['state']}"
                                + (f" ({task.get('reason', '')})" if task else ""))
        for key in tasks:
            if key not in expected["tasks"]:
                problems.append(f"{key}: a task expected.json does not plan")
    else:
        for key, task in tasks.items():
            for r in by_task.get(key, []):
                table.append((key, r["attempt"], "", "", r["verdict"], True, r))
            if task["state"] not in ("passed", "failed"):
                problems.append(f"{key}: did not finish ({task['state']})")

    # 2. the job after an illegal memory access, on the same GPU
    checks = []
    for key in (expected or {}).get("recovery_after", []):
        crashed = [r for r in by_task.get(key, []) if r["verdict"] == "crashed"]
        if not crashed:
            problems.append(f"recovery: {key} has no crashed verification to recover from")
            continue
        first = crashed[0]
        after = [r for r in rows if r["device"] == first["device"] and r["agent"] == first["agent"]
                 and (r["assigned_ms"] or 0) > (first["assigned_ms"] or 0)]
        if not after:
            problems.append(f"recovery: no job ran on {first['device']} after {key}'s crash")
            continue
        nxt = after[0]
        passed_later = [r for r in after if r["verdict"] == "passed"]
        want_next = None
        if expected and nxt["task"] in expected["tasks"]:
            plan = expected["tasks"][nxt["task"]]["verifications"]
            if nxt["attempt"] <= len(plan):
                want_next = plan[nxt["attempt"] - 1]["verdict"]
        # The next job gets its own planned verdict (another planned crash is one: on one GPU
        # the sweep's relu tasks crash one after another); unplanned, it must not crash.
        if want_next is not None:
            ok = nxt["verdict"] == want_next
        else:
            ok = nxt["verdict"] not in ("crashed", "infra_error")
        ok = ok and bool(passed_later)
        checks.append({"check": "recovery after an illegal memory access", "task": key,
                       "crashed_job": first["job"], "device": first["device"],
                       "next_job": nxt["job"], "next_task": nxt["task"],
                       "next_verdict": nxt["verdict"], "next_expected": want_next,
                       "passed_after": len(passed_later), "ok": ok})
        if not ok:
            problems.append(f"recovery: the job after {key}'s crash ({nxt['task']}, job "
                            f"{nxt['job']}) got {nxt['verdict']}")

    # 3. the side stream is timed like the same kernel on the current stream
    def median(key):
        for r in by_task.get(key, []):
            if r["verdict"] == "passed" and r["profile"]:
                return r["profile"]["candidate"]["median_us"]
        return None
    for side in (expected or {}).get("side_stream", []):
        s, like = median(side["task"]), median(side["like"])
        ok = s is not None and like is not None and s >= side["min_fraction"] * like
        checks.append({"check": "side stream timed", "task": side["task"], "median_us": s,
                       "like": side["like"], "like_median_us": like,
                       "min_fraction": side["min_fraction"], "ok": ok})
        if not ok:
            problems.append(f"side stream: {side['task']} median {s} us vs {side['like']} {like} "
                            f"us (must be >= {side['min_fraction']}x)")

    # 4. a crash or a hang on one GPU disturbs no job running beside it on another
    if expected:
        def as_planned(r):
            plan = expected["tasks"].get(r["task"], {}).get("verifications", [])
            return r["attempt"] <= len(plan) and plan[r["attempt"] - 1]["verdict"] == r["verdict"]
        for bad in rows:
            if bad["verdict"] not in ("crashed", "timeout") or not bad["assigned_ms"]:
                continue
            beside = [r for r in rows
                      if r["device"] != bad["device"] and r["assigned_ms"] and r["finished_ms"]
                      and r["assigned_ms"] < bad["finished_ms"] and bad["assigned_ms"] < r["finished_ms"]]
            if not beside:
                continue  # one GPU: nothing ran beside it
            wrong = [f"{r['task']} #{r['attempt']} ({r['verdict']})" for r in beside if not as_planned(r)]
            checks.append({"check": f"jobs beside a {bad['verdict']} job", "task": bad["task"],
                           "job": bad["job"], "device": bad["device"], "beside": len(beside),
                           "devices_beside": len({r["device"] for r in beside}),
                           "not_as_planned": wrong, "ok": not wrong})
            if wrong:
                problems.append(f"isolation: beside {bad['task']}'s {bad['verdict']} job {bad['job']} "
                                f"on {bad['device']}: {', '.join(wrong)}")

    # 5. the devices: busy time over the campaign's device window (kforge report)
    devices = (load(os.path.join(out, "report", "report.json"), {}) or {}).get("device", {})
    baseline = None
    if args.baseline:
        baseline = (load(os.path.join(args.baseline, "report", "report.json"), {}) or {}).get("device", {})
        if not baseline.get("jobs_per_minute"):
            problems.append(f"baseline: no jobs per minute in {args.baseline}/report/report.json")
    devices_summary = {k: devices.get(k) for k in ("devices_used", "jobs", "window_seconds",
                                                   "jobs_per_minute", "mean_busy_devices")}
    devices_summary["per_device"] = devices.get("per_device", [])
    if baseline:
        devices_summary["baseline"] = {k: baseline.get(k) for k in
                                       ("devices_used", "jobs", "window_seconds", "jobs_per_minute")}
        if devices.get("jobs_per_minute") and baseline.get("jobs_per_minute"):
            devices_summary["jobs_per_minute_ratio"] = round(
                devices["jobs_per_minute"] / baseline["jobs_per_minute"], 2)

    # 6. overhead
    over = [dict(job=r["job"], task=r["task"], attempt=r["attempt"], verdict=r["verdict"],
                 **overhead(r)) for r in rows]
    keys = ["wall", "process_start", "imports", "device_init", "worker_ready", "load_reference",
            "load_candidate", "first_call", "precision", "profile", "teardown",
            "kernel_calls_timed_ms"]
    medians = {}
    for k in keys:
        vals = [o[k] for o in over if o.get(k) is not None]
        if vals:
            medians[k] = round(statistics.median(vals), 1)

    versions = load(os.path.join(out, "versions.json"), {})
    summary = {"ok": not problems, "problems": problems, "versions": versions,
               "verifications": [{k: v for k, v in r.items() if k not in ("message",)}
                                 | {"message": r["message"][:2000]} for r in rows],
               "checks": checks, "devices": devices_summary, "overhead_ms": over,
               "overhead_median_ms": medians}
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)

    lines = ["# kforge GPU end-to-end: summary", ""]
    for k in ("gpu", "capability", "driver", "torch", "torch_cuda", "triton", "python", "numpy"):
        if k in versions:
            lines.append(f"- {k}: {versions[k]}")
    lines += ["", f"**{'ALL AS EXPECTED' if not problems else f'{len(problems)} PROBLEM(S)'}**", ""]
    lines += [f"- {p}" for p in problems]
    lines += ["", "## Verifications", "",
              "| task | # | candidate | expected | verdict | ok | speedup | cand. us | ref. us | message |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for key, n, cand, want, got, ok, r in table:
        prof = (r or {}).get("profile") or {}
        msg = ((r or {}).get("message") or "").splitlines()
        msg = (msg[0] if msg else "")[:140].replace("|", "\\|")
        lines.append(f"| {key} | {n} | {cand} | {want} | {got} | {'yes' if ok else 'NO'} | "
                     f"{fmt(prof.get('speedup'), 3) if prof else '-'} | "
                     f"{fmt(prof['candidate']['median_us'], 1) if prof else '-'} | "
                     f"{fmt(prof['reference']['median_us'], 1) if prof else '-'} | {msg} |")
    lines += ["", "## Checks across jobs", ""]
    for c in checks:
        lines.append(f"- {c['check']}: {'ok' if c['ok'] else 'FAILED'} — " +
                     ", ".join(f"{k}={v}" for k, v in c.items() if k not in ("check", "ok")))
    lines += ["", "## Devices", "",
              f"{fmt(devices_summary['jobs'])} verify jobs on {fmt(devices_summary['devices_used'])} "
              f"device(s) in {fmt(devices_summary['window_seconds'], 1)} s (first assigned to last "
              f"finished): {fmt(devices_summary['jobs_per_minute'], 1)} jobs per minute."]
    if baseline:
        b = devices_summary["baseline"]
        lines.append(f"Baseline ({args.baseline}): {fmt(b['jobs'])} jobs on {fmt(b['devices_used'])} "
                     f"device(s) in {fmt(b['window_seconds'], 1)} s, {fmt(b['jobs_per_minute'], 1)} "
                     f"jobs per minute; ratio {fmt(devices_summary.get('jobs_per_minute_ratio'), 2)}x.")
    lines += ["", "| device | host | jobs | busy s | utilisation |", "|---|---|---|---|---|"]
    for d in devices_summary["per_device"]:
        u = d.get("utilisation")
        lines.append(f"| {d.get('device')} | {d.get('host')} | {d.get('jobs')} | "
                     f"{fmt(d.get('busy_seconds'), 1)} | {fmt(None if u is None else 100 * u, 1)}% |")
    lines += ["", "## Harness overhead per job (ms)", "",
              "wall = finished - assigned (coordinator clock); process_start = harness start - "
              "assigned; teardown = finished - harness end; first_call is part of precision; "
              "kernel_calls_timed_ms = the candidate's median x (warm-up + timed runs).", "",
              "| job | task | # | verdict | " + " | ".join(keys) + " |",
              "|---|---|---|---|" + "---|" * len(keys)]
    for o in over:
        lines.append(f"| {o['job']} | {o['task']} | {o['attempt']} | {o['verdict']} | " +
                     " | ".join(fmt(o.get(k), 1) for k in keys) + " |")
    lines.append("| | median | | | " + " | ".join(fmt(medians.get(k), 1) for k in keys) + " |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
