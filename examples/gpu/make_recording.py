#!/usr/bin/env python3
"""Writes examples/gpu/recording.jsonl (the replayed LLM of the GPU campaigns) and, for each
campaign, the verdict each verification must get: expected.json for campaign.toml (one GPU,
one task per op) and sweep-expected.json for sweep.toml (the same ops over shapes, for hosts
with several GPUs). The recording holds every key either campaign asks for.

    python3 examples/gpu/make_recording.py          # rewrite the three files
    python3 examples/gpu/make_recording.py --check  # exit 1 if one is out of date

The pattern is examples/demo/make_recording.py's: answers/<op>.design.md is the Designer's
answer, answers/<op>[.<variant>].py a candidate that a Coder answer wraps in a ```python
block after one sentence. PLAN below lists, per op, the Coder's answers in the order the
Conductor asks for them (coder/1, coder/2, ...) with the verdict the Verifier must give
each; the task ids come from the campaign files (campaign.toml: single-point sweeps, one
task per op; sweep.toml: several points per op, the same answers for every point). A
question is keyed "<op_name>/<task_id>/<role>/<n>" (coordinator/generation/conductor.cpp, ask_llm).
With no [llm.conductor], a failed verification is followed by a code fix (coder/2) while
limit_steps allows it (coordinator/generation/conductor_rules.h): ops with one answer have
limit_steps = 3 in campaign.toml, ops with a fix 5. tests/gpu_campaign_test.cpp replays
these verdicts through the Conductor's rules and checks that every key it would ask for is
here.
"""
import json
import os
import sys
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
ANSWERS = os.path.join(HERE, "answers")
RECORDING = os.path.join(HERE, "recording.jsonl")
# campaign file -> its expected verdicts
CAMPAIGNS = {os.path.join(HERE, "campaign.toml"): os.path.join(HERE, "expected.json"),
             os.path.join(HERE, "sweep.toml"): os.path.join(HERE, "sweep-expected.json")}

# op -> (Designer answer, [(Coder answer, expected verdict, the Coder's sentence), ...])
PLAN = {
    "vector_add": ("vector_add.design.md", [
        ("vector_add.py", "passed",
         "One program per 1024 elements as designed, the ragged last block masked."),
    ]),
    "relu": ("relu.design.md", [
        ("relu.out_of_bounds.py", "crashed",
         "A flat pass over all elements, 1024 per program."),
        ("relu.py", "passed",
         "The verifier reports an illegal memory access: the store used an offset 2**40 "
         "elements past the output and no mask; it now writes out_ptr + offs under the mask."),
    ]),
    "gelu": ("gelu.design.md", [
        ("gelu.py", "passed",
         "One fused pass, x / (1 + exp(-2u)) as designed: one exp per element."),
    ]),
    "scale_bias_relu": ("scale_bias_relu.design.md", [
        ("scale_bias_relu.py", "passed",
         "The three element-wise steps fused in one kernel; scale and bias indexed by column."),
    ]),
    "row_sum": ("row_sum.design.md", [
        ("row_sum.py", "passed",
         "One program per row, the row loaded whole and reduced with tl.sum."),
    ]),
    "rms_norm": ("rms_norm.design.md", [
        ("rms_norm.py", "passed",
         "One program per row: mean of squares, reciprocal square root, scale, in registers."),
    ]),
    "softmax": ("softmax.design.md", [
        ("softmax.naive.py", "precision_mismatch",
         "One program per row: exp, sum, divide."),
        ("softmax.py", "passed",
         "exp(x) overflowed to inf for inputs this large and inf/inf gave NaN, as the "
         "verifier says; the kernel now subtracts the row maximum first, as the design said."),
    ]),
    "layernorm": ("layernorm.design.md", [
        ("layernorm.fallback.py", "rejected",
         "The row-per-program kernel as designed, with F.layer_norm as a safety net should "
         "the launch fail."),
        ("layernorm.py", "passed",
         "The verifier rejects torch's layer_norm even on a path these inputs never take; "
         "the fallback is gone and the Triton kernel handles every input after .contiguous()."),
    ]),
    "matmul": ("matmul.design.md", [
        ("matmul.py", "passed",
         "128 x 128 tiles, K in slices of 64, grouped program order, fp32 accumulator."),
    ]),
    "vector_add_side_stream": ("vector_add.design.md", [
        ("vector_add.side_stream.py", "passed",
         "The vector add, launched on its own CUDA stream so that it overlaps other work."),
    ]),
    "gelu_cached": ("gelu.design.md", [
        ("gelu.cached.py", "rejected",
         "The fused GELU; an output already computed for the same input buffer is reused."),
    ]),
    "vector_add_cached": ("vector_add.design.md", [
        ("vector_add.cached.py", "precision_mismatch",
         "The vector add, with the last result kept for the same buffers (the launch still "
         "happens)."),
    ]),
    "row_sum_hang": ("row_sum.design.md", [
        ("row_sum.hang.py", "timeout",
         "A persistent variant: 1024 programs walk the rows with a grid stride."),
    ]),
}

# After the first verification of each of this op's tasks (an illegal memory access) the
# next job on the same GPU must pass: the fault poisons one process's CUDA context, not the GPU.
RECOVERY_AFTER = ["relu"]
# The side-stream candidate must be timed like the same kernel on the current stream at the
# same point: its median at least this fraction of vector_add's (without the device-wide
# synchronisation it would measure only the launch).
SIDE_STREAM = {"task": "vector_add_side_stream", "like": "vector_add", "min_fraction": 0.8}


def task_ids(op):
    """The op's task ids as kforge expands campaign.toml (docs/campaigns.md: keys sorted,
    values as Python writes them; one point per single value)."""
    sweep = op.get("sweep", {})
    if not sweep:
        return ["default"]
    keys = sorted(sweep)
    points = [[]]
    for key in keys:
        values = sweep[key] if isinstance(sweep[key], list) else [sweep[key]]
        points = [p + [(key, v)] for p in points for v in values]
    return [",".join(f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}" for k, v in p)
            for p in points]


def load_campaign(path):
    with open(path, "rb") as f:
        campaign = tomllib.load(f)
    ops = campaign["ops"]
    names = {op["op_name"] for op in ops}
    if not names <= set(PLAN):
        raise SystemExit(f"{os.path.basename(path)}: ops without a plan {sorted(names - set(PLAN))}")
    return campaign, ops


def answer(role, name, prose=""):
    with open(os.path.join(ANSWERS, name), encoding="utf-8") as f:
        text = f.read().rstrip("\n")
    if role == "designer":
        return text + "\n"
    return prose + "\n\n```python\n" + text + "\n```\n"


def render(path, answers):
    """-> the expected.json text of the campaign file at path; appends its questions' answers
    to answers (replay key -> content)."""
    campaign, ops = load_campaign(path)
    default_limit = campaign.get("defaults", {}).get("limit_steps", 10)
    expected = {}
    for op in ops:
        name = op["op_name"]
        design, coder = PLAN[name]
        limit = op.get("limit_steps", default_limit)
        steps = 1 + 2 * len(coder)
        if steps > limit:
            raise SystemExit(f"{name}: {len(coder)} coder answers need limit_steps >= {steps}")
        for task_id in task_ids(op):
            answers[f"{name}/{task_id}/designer/1"] = answer("designer", design)
            for n, (file, _, prose) in enumerate(coder, start=1):
                answers[f"{name}/{task_id}/coder/{n}"] = answer("coder", file, prose)
            final = coder[-1][1]
            expected[f"{name}/{task_id}"] = {
                "op_name": name, "task_id": task_id,
                "state": "passed" if final == "passed" else "failed",
                "steps": steps,
                "verifications": [{"candidate": f"answers/{file}", "verdict": verdict}
                                  for file, verdict, _ in coder],
            }
    side = [{"task": k, "like": f"{SIDE_STREAM['like']}/{v['task_id']}",
             "min_fraction": SIDE_STREAM["min_fraction"]}
            for k, v in expected.items() if v["op_name"] == SIDE_STREAM["task"]]
    for pair in side:
        if pair["like"] not in expected:
            raise SystemExit(f"{os.path.basename(path)}: {pair['task']} has no {pair['like']} "
                             "to be timed against")
    doc = {
        "campaign": campaign["name"],
        "tasks": expected,
        "recovery_after": [k for k, v in expected.items() if v["op_name"] in RECOVERY_AFTER],
        "side_stream": side,
    }
    return json.dumps(doc, indent=1) + "\n"


def main():
    answers, outputs = {}, {}
    for campaign, expected in CAMPAIGNS.items():
        outputs[expected] = render(campaign, answers)
    outputs[RECORDING] = "".join(
        json.dumps({"replay_key": k, "content": v}, ensure_ascii=False) + "\n"
        for k, v in answers.items())
    if "--check" in sys.argv[1:]:
        stale = []
        for path, text in outputs.items():
            try:
                with open(path, encoding="utf-8") as f:
                    if f.read() != text:
                        stale.append(path)
            except FileNotFoundError:
                stale.append(path)
        for path in stale:
            print(f"{path} is out of date: run {sys.argv[0]}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in outputs.items():
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
