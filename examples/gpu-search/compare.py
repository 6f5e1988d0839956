#!/usr/bin/env python3
"""Puts the strategies of `scripts/gpu-e2e.sh search` side by side and writes OUT/summary.md
and OUT/summary.json (examples/gpu-search/README.md):

    python3 compare.py --out OUT [--strategies fix_loop,evolve,best_of_n] [--device-budget S]

OUT/<strategy>/ is what gpu-e2e.sh's session collected for that strategy's campaign:
report/report.json (kforge report: the winners' geomean speedup, each task's speedup and
device seconds, the device window and each device's utilisation), results.json, and
tasks/<id>.json (kforge show --json --full: the winner's code, whose first line names its
variant, and every verifier step). OUT/coder-server.jsonl is the scripted Coder's log.

The comparison: per op, each strategy's winner (speedup over the PyTorch reference, and which
variant); the geomean of the winners' speedups over the ops every compared strategy solved,
and its ratio to fix_loop's (goal: evolve >= 1.3x); each campaign's device utilisation (busy
time over its device window, first job assigned to last finished; goal >= 90%); every
variant's measured speedups (the real spread the search works with). Standard library only.
Exit status 0 when fix_loop and evolve both have a report, 1 otherwise (the goals are
reported, not enforced).
"""
import argparse
import json
import math
import os
import re
import statistics
import sys

MARKER = re.compile(r"^# kforge-variant: (\S+)$", re.M)
GOAL_RATIO = 1.3
GOAL_UTILISATION = 0.9


def load(path, default=None):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def variant_of(text):
    m = MARKER.search(text or "")
    return m.group(1).split("/", 1)[1] if m else None


def geomean(values):
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def fmt(v, digits=2, suffix=""):
    return "-" if v is None else f"{v:.{digits}f}{suffix}"


def strategy_result(out, strategy):
    """-> dict for one strategy's campaign, or None when it did not run."""
    d = os.path.join(out, strategy)
    report = load(os.path.join(d, "report", "report.json"))
    if not isinstance(report, dict):
        return None
    results = load(os.path.join(d, "results.json"), []) or []
    device = report.get("device", {}) or {}
    per_device = device.get("per_device", []) or []
    utilisation = (statistics.mean(p["utilisation"] for p in per_device if p.get("utilisation") is not None)
                   if any(p.get("utilisation") is not None for p in per_device) else None)
    tasks = {}
    measured = []  # (op, variant, speedup, verdict) of every judged candidate
    for t in report.get("tasks", []):
        show = load(os.path.join(d, "tasks", f"{t['task']}.json"), {}) or {}
        reason = t.get("reason") or ""
        tasks[t["op_name"]] = {
            "task": t["task"], "task_id": t.get("task_id"), "state": t.get("state"),
            "speedup": t.get("speedup"), "winner": variant_of(show.get("code")),
            "device_seconds": t.get("device_seconds"), "device_jobs": t.get("device_jobs"),
            "llm_calls": t.get("llm_calls"), "candidates": t.get("candidates"),
            "reason": reason[:300],
            "cut_by_wall": "campaign_max_wall_s" in reason,
            "stopped_by_device_budget": "max_device_seconds" in reason,
        }
        code = {}  # sample -> the variant its last coder step wrote
        for step in show.get("trace", []):
            sample = step.get("sample", 0)
            if step.get("role") == "coder":
                code[sample] = variant_of(step.get("output"))
            elif step.get("role") == "verifier" and step.get("verdict") != "infra_error":
                try:
                    doc = json.loads(step.get("output") or "{}")
                except ValueError:
                    doc = {}
                speedup = (doc.get("profile") or {}).get("speedup")
                measured.append((t["op_name"], code.get(sample), speedup, step.get("verdict")))
    return {
        "strategy": strategy, "tasks": tasks, "measured": measured,
        "geomean_report": ((report.get("metrics") or {}).get("speedup") or {}).get("geomean"),
        "passed": sum(1 for r in results if r.get("state") == "passed"), "of": len(results),
        "device_jobs": device.get("jobs"), "device_seconds": device.get("seconds"),
        "window_seconds": device.get("window_seconds"), "utilisation": utilisation,
        "mean_busy_devices": device.get("mean_busy_devices"),
        "wall_seconds": (report.get("wall") or {}).get("seconds"),
        "cut_by_wall": sum(1 for t in tasks.values() if t["cut_by_wall"]),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--strategies", default="fix_loop,evolve,best_of_n")
    ap.add_argument("--device-budget", type=float, help="the per-task max_device_seconds used")
    args = ap.parse_args()
    names = [s for s in args.strategies.split(",") if s]
    runs = {s: strategy_result(args.out, s) for s in names}
    ran = [s for s in names if runs[s]]
    ops = []
    for s in ran:
        ops += [op for op in runs[s]["tasks"] if op not in ops]

    # The geomean over the ops that every strategy that ran solved (so that a failed task
    # does not favour a strategy), and the ratio to fix_loop's.
    common = [op for op in ops if all((runs[s]["tasks"].get(op) or {}).get("speedup") for s in ran)]
    for s in ran:
        runs[s]["geomean_common"] = geomean([runs[s]["tasks"][op]["speedup"] for op in common])
    base = runs.get("fix_loop")
    for s in ran:
        g, b = runs[s]["geomean_common"], base and base["geomean_common"]
        runs[s]["ratio_to_fix_loop"] = g / b if g and b else None

    spread = {}  # op -> variant -> [speedups]
    for s in ran:
        for op, variant, speedup, verdict in runs[s]["measured"]:
            entry = spread.setdefault(op, {}).setdefault(variant or "?", {"speedups": [], "verdicts": []})
            entry["verdicts"].append(verdict)
            if speedup:
                entry["speedups"].append(speedup)

    evolve = runs.get("evolve")
    goals = {
        "evolve_ratio": evolve and evolve["ratio_to_fix_loop"],
        "evolve_ratio_met": bool(evolve and evolve["ratio_to_fix_loop"]
                                 and evolve["ratio_to_fix_loop"] >= GOAL_RATIO),
        "utilisation": {s: runs[s]["utilisation"] for s in ran},
        "utilisation_met": {s: bool(runs[s]["utilisation"] and runs[s]["utilisation"] >= GOAL_UTILISATION)
                            for s in ran},
    }
    versions = load(os.path.join(args.out, "versions.json"), {}) or {}
    summary = {"versions": versions, "device_budget_s": args.device_budget, "ops": ops,
               "common_ops": common, "goals": goals, "not_run": [s for s in names if not runs[s]],
               "strategies": {s: {k: v for k, v in runs[s].items() if k != "measured"} for s in ran},
               "variants": {op: {v: {"median_speedup": statistics.median(e["speedups"]) if e["speedups"] else None,
                                     "n": len(e["verdicts"]), "verdicts": sorted(set(e["verdicts"]))}
                                 for v, e in sorted(vs.items())} for op, vs in spread.items()}}
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)

    lines = ["# kforge GPU search: fix_loop vs evolve (vs best_of_n) at equal device-second budget", ""]
    for k in ("gpu", "driver", "torch", "triton", "python"):
        if k in versions:
            lines.append(f"- {k}: {versions[k]}")
    lines.append(f"- per-task budget: max_device_seconds = {fmt(args.device_budget, 0)} for every strategy")
    if summary["not_run"]:
        lines.append(f"- not run (time ran out or failed): {', '.join(summary['not_run'])}")
    lines += ["", "## Result", ""]
    if evolve and base:
        lines.append(f"**evolve / fix_loop geomean: {fmt(goals['evolve_ratio'])}x** (goal >= {GOAL_RATIO}x: "
                     f"{'met' if goals['evolve_ratio_met'] else 'NOT met'}), over the {len(common)} ops "
                     f"every strategy solved ({', '.join(common) or 'none'}).")
    lines += ["", "| strategy | passed | winners' geomean (common ops) | report geomean | vs fix_loop | "
              "verify jobs | device s | window s | utilisation | tasks cut by wall budget |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for s in ran:
        r = runs[s]
        u = r["utilisation"]
        lines.append(f"| {s} | {r['passed']}/{r['of']} | {fmt(r['geomean_common'], 3)} | "
                     f"{fmt(r['geomean_report'], 3)} | {fmt(r['ratio_to_fix_loop'])}x | "
                     f"{fmt(r['device_jobs'], 0)} | {fmt(r['device_seconds'], 1)} | "
                     f"{fmt(r['window_seconds'], 1)} | {fmt(None if u is None else 100 * u, 1, '%')}"
                     f"{'' if goals['utilisation_met'].get(s) else ' (< 90%)'} | {r['cut_by_wall']} |")
    lines += ["", "## Winners per op (speedup over the PyTorch reference, variant, device s used)", "",
              "| op | " + " | ".join(ran) + " |", "|---|" + "---|" * len(ran)]
    for op in ops:
        cells = []
        for s in ran:
            t = runs[s]["tasks"].get(op)
            if not t:
                cells.append("-")
                continue
            flag = " (wall cut)" if t["cut_by_wall"] else ""
            cells.append(f"{fmt(t['speedup'], 3)} {t['winner'] or '(none)'}, "
                         f"{fmt(t['device_seconds'], 1)} s{flag}")
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    lines += ["", "## Every variant as measured (all strategies' verifications)", "",
              "| op | variant | verifications | verdicts | median speedup |", "|---|---|---|---|---|"]
    for op in ops:
        for v, e in sorted(summary["variants"].get(op, {}).items()):
            lines.append(f"| {op} | {v} | {e['n']} | {', '.join(e['verdicts'])} | "
                         f"{fmt(e['median_speedup'], 3)} |")
    answers = []
    try:
        with open(os.path.join(args.out, "coder-server.jsonl"), encoding="utf-8") as f:
            answers = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        pass
    kinds = {}
    for a in answers:
        kinds[a.get("kind")] = kinds.get(a.get("kind"), 0) + 1
    lines += ["", f"Scripted Coder: {len(answers)} answers ("
              + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: str(kv[0]))) + ")."]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    return 0 if runs.get("fix_loop") and evolve else 1


if __name__ == "__main__":
    sys.exit(main())
