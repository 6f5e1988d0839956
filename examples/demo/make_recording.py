#!/usr/bin/env python3
"""Writes examples/demo/recording.jsonl, the replayed LLM of the demo campaign.

    python3 examples/demo/make_recording.py          # rewrite recording.jsonl
    python3 examples/demo/make_recording.py --check  # exit 1 if the file is out of date

The answers themselves are files under answers/: <op>.design.md is the Designer's answer
(prose and one ```aul block), <op>[.<variant>].py a candidate file that a Coder answer wraps
in a ```python block after one sentence of prose. SCRIPT below says which answer the run gets
for every question it will ask. A question is keyed "<op_name>/<task_id>/<role>/<n>", n
counting that role's calls for the task from 1 (coordinator/generation/conductor.cpp, ask_llm), so the
fix loop is planned here, key by key: see docs/demo.md for how the Conductor's rules turn
each verdict into the next question.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ANSWERS = os.path.join(HERE, "answers")
OUT = os.path.join(HERE, "recording.jsonl")

# The Coder's one sentence before its code block, per answer file.
CODER_PROSE = {
    "vector_add.tail_bug.py": "The design's 16-float blocks as an unrolled inner loop the compiler vectorises.",
    "vector_add.py": "The verifier found NaN in the last 3 elements: the block loop stopped at the last "
                     "whole block of 16 and never wrote the ragged tail; a scalar loop now finishes it.",
    "relu.py": "A flat, branch-free loop over all ROWS*N elements, as designed.",
    "softmax.naive.py": "Row by row: exponentiate, sum in double, scale by the reciprocal.",
    "softmax.py": "Three passes per row as designed: the maximum, so that exp(x - max) <= 1 cannot "
                  "overflow; a polynomial exp on 8 lanes with 8 partial sums; one multiply by the "
                  "reciprocal of their f64 total.",
    "softmax.fixed.py": "exp(x) overflowed to inf for inputs this large and inf/inf gave NaN; the kernel "
                        "now subtracts the row maximum first, as the design said, and uses a "
                        "vectorisable polynomial exp instead of the scalar libm call.",
    "row_sum.syntax_error.py": "Eight f64 accumulators per row, combined at the end, plus the ragged tail.",
    "row_sum.py": "Eight independent f64 accumulators per row, combined at the end, plus the ragged tail.",
    "row_sum.fixed.py": "The compiler stopped at line 15: the declaration `double s = 0.0` lacked its "
                        "semicolon; added.",
    "layernorm.fallback.py": "Two passes per row with f64 statistics; unusual inputs (non-contiguous or "
                             "not float32) take the library path.",
    "layernorm.py": "Two passes per row as designed: f64 mean and biased variance, then the affine "
                    "normalisation in one vectorised loop.",
    "layernorm.fixed.py": "The verifier rejects any call to torch's layer_norm, even on a path these "
                          "inputs never take; the fallback is gone and the kernel handles every float32 "
                          "input after .contiguous().",
    "gelu.py": "One fused pass: every intermediate stays in registers, tanh through a polynomial exp "
               "so that the loop vectorises.",
}

# (op_name, [task_id, ...], role, n, answer file). ".fixed" answers use the file without it.
SCRIPT = [
    # vector_add: the first kernel never writes the ragged tail. N=65536 is a multiple of the
    # block and passes; N=100003 leaves 3 elements unwritten (NaN poison) -> precision_mismatch
    # -> the rules choose fix_code -> coder/2 adds the tail loop.
    ("vector_add", ["N=65536", "N=100003"], "designer", 1, "vector_add.design.md"),
    ("vector_add", ["N=65536", "N=100003"], "coder", 1, "vector_add.tail_bug.py"),
    ("vector_add", ["N=100003"], "coder", 2, "vector_add.py"),
    # relu: right the first time.
    ("relu", ["N=1024", "N=4096"], "designer", 1, "relu.design.md"),
    ("relu", ["N=1024", "N=4096"], "coder", 1, "relu.py"),
    # softmax: for N=1000 the Coder forgets the max subtraction the design asked for; exp
    # overflows, inf/inf = NaN -> precision_mismatch -> fix_code -> coder/2.
    ("softmax", ["N=256", "N=1000"], "designer", 1, "softmax.design.md"),
    ("softmax", ["N=256"], "coder", 1, "softmax.py"),
    ("softmax", ["N=1000"], "coder", 1, "softmax.naive.py"),
    ("softmax", ["N=1000"], "coder", 2, "softmax.fixed.py"),
    # row_sum: for N=4096 a missing semicolon -> compile_error -> fix_code -> coder/2.
    ("row_sum", ["N=512", "N=4096"], "designer", 1, "row_sum.design.md"),
    ("row_sum", ["N=512"], "coder", 1, "row_sum.py"),
    ("row_sum", ["N=4096"], "coder", 1, "row_sum.syntax_error.py"),
    ("row_sum", ["N=4096"], "coder", 2, "row_sum.fixed.py"),
    # layernorm: for N=1024 the Coder keeps a torch fallback -> rejected (framework_op) ->
    # fix_code -> coder/2.
    ("layernorm", ["N=256", "N=1024"], "designer", 1, "layernorm.design.md"),
    ("layernorm", ["N=256"], "coder", 1, "layernorm.py"),
    ("layernorm", ["N=1024"], "coder", 1, "layernorm.fallback.py"),
    ("layernorm", ["N=1024"], "coder", 2, "layernorm.fixed.py"),
    # gelu: right the first time, and the fused kernel beats eager torch's chain of kernels.
    ("gelu", ["N=1024", "N=4096"], "designer", 1, "gelu.design.md"),
    ("gelu", ["N=1024", "N=4096"], "coder", 1, "gelu.py"),
]


def answer(answers, prose, role, name):
    path = os.path.join(answers, name.replace(".fixed", ""))
    with open(path, encoding="utf-8") as f:
        text = f.read().rstrip("\n")
    if role == "designer":
        return text + "\n"
    return prose[name] + "\n\n```python\n" + text + "\n```\n"


def render(script, prose, answers):
    """The recording's text for `script` (SCRIPT's form), answers from the directory `answers`."""
    lines = []
    seen = set()
    for op, task_ids, role, n, name in script:
        content = answer(answers, prose, role, name)
        for task_id in task_ids:
            key = f"{op}/{task_id}/{role}/{n}"
            assert key not in seen, f"{key} is scripted twice"
            seen.add(key)
            lines.append(json.dumps({"replay_key": key, "content": content}, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def main(out, text, argv):
    """Writes `text` to `out`, or with --check in argv returns 1 when `out` differs from it."""
    if "--check" in argv:
        with open(out, encoding="utf-8") as f:
            if f.read() != text:
                print(f"{out} is out of date: run {sys.argv[0]}", file=sys.stderr)
                return 1
        return 0
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {out}: {text.count(chr(10))} answers")
    return 0


if __name__ == "__main__":
    sys.exit(main(OUT, render(SCRIPT, CODER_PROSE, ANSWERS), sys.argv[1:]))
