#!/usr/bin/env python3
"""Writes examples/kernelbench/recording.jsonl, the replayed LLM of the first campaign.

    python3 examples/kernelbench/make_recording.py          # rewrite recording.jsonl
    python3 examples/kernelbench/make_recording.py --check  # exit 1 if the file is out of date

The layout is examples/demo's (docs/demo.md, "The recording"), and so is the code that
renders it: answers/<op>.design.md is the Designer's answer, answers/<op>[.<variant>].py a
candidate that a Coder answer wraps in a ```python block after one sentence of prose. The op
names are the ones `kforge import kernelbench` gives the problem files (19_ReLU.py: 19_relu),
and every problem is one task, task_id "default".
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "demo"))
import make_recording as demo  # noqa: E402

# The Coder's one sentence before its code block, per answer file.
CODER_PROSE = {
    "12_matmul_with_diagonal_matrices.py": "Row i of diag(A) @ B is A[i] times row i of B: one streaming "
                                           "pass, and the N x N matrix is never built.",
    "19_relu.py": "A flat, branch-free loop over every element, as designed.",
    "23_softmax.py": "Three passes per row as designed: the maximum, so that exp(x - max) <= 1 cannot "
                     "overflow; a polynomial exp on 8 lanes with 8 partial sums; one multiply by the "
                     "reciprocal of their f64 total.",
    "26_gelu.tanh.py": "GELU in one fused pass, with tanh.",
    "26_gelu.fixed.py": "The outputs differed by up to 5e-4: the kernel used the tanh approximation of "
                        "GELU, the reference is the exact form with erf, as the design said. Now erf "
                        "(Abramowitz-Stegun 7.1.26, error < 1.5e-7) on a polynomial exp, so the loop "
                        "vectorises.",
    "40_layernorm.fallback.py": "Two passes per row with f64 statistics, then the affine normalisation; "
                                "strided inputs take the library path.",
    "40_layernorm.fixed.py": "The verifier rejects any call to torch's layer_norm, even on a path these "
                             "inputs never take; the fallback is gone and the kernel handles every input "
                             "after .contiguous().",
    "47_sum_reduction_over_a_dimension.py": "The rows of each batch item added into one row of f64 "
                                            "accumulators, along contiguous memory.",
}

D = ["default"]
# (op_name, [task_id], role, n, answer file). ".fixed" answers use the file without it.
SCRIPT = [
    # Right the first time: designer/1, coder/1, verified.
    ("12_matmul_with_diagonal_matrices", D, "designer", 1, "12_matmul_with_diagonal_matrices.design.md"),
    ("12_matmul_with_diagonal_matrices", D, "coder", 1, "12_matmul_with_diagonal_matrices.py"),
    ("19_relu", D, "designer", 1, "19_relu.design.md"),
    ("19_relu", D, "coder", 1, "19_relu.py"),
    ("23_softmax", D, "designer", 1, "23_softmax.design.md"),
    ("23_softmax", D, "coder", 1, "23_softmax.py"),
    # The tanh approximation instead of the exact GELU: precision_mismatch -> the rules choose
    # fix_code -> coder/2.
    ("26_gelu", D, "designer", 1, "26_gelu.design.md"),
    ("26_gelu", D, "coder", 1, "26_gelu.tanh.py"),
    ("26_gelu", D, "coder", 2, "26_gelu.fixed.py"),
    # A torch fallback on a path the inputs never take: rejected (framework_op) -> fix_code.
    ("40_layernorm", D, "designer", 1, "40_layernorm.design.md"),
    ("40_layernorm", D, "coder", 1, "40_layernorm.fallback.py"),
    ("40_layernorm", D, "coder", 2, "40_layernorm.fixed.py"),
    ("47_sum_reduction_over_a_dimension", D, "designer", 1, "47_sum_reduction_over_a_dimension.design.md"),
    ("47_sum_reduction_over_a_dimension", D, "coder", 1, "47_sum_reduction_over_a_dimension.py"),
]

if __name__ == "__main__":
    text = demo.render(SCRIPT, CODER_PROSE, os.path.join(HERE, "answers"))
    sys.exit(demo.main(os.path.join(HERE, "recording.jsonl"), text, sys.argv[1:]))
