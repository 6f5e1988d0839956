"""Outputs of real kernels on a GPU, saved for the float64 second look's budgets to be tuned on
this machine against what the card computes (docs/harness.md, "Precision"): for each task and
draw, the reference in float32 (cuBLAS), the truth (the reference in float64 on the device),
and each candidate's output. Draws of the task's own inputs, and of a variant whose even rows
of the first input are 50x smaller (rows of another logit scale: the red team's TF32 case).

    /opt/torch/.venv/bin/python bench/precision_dump.py OUT_DIR [DRAWS]

Writes OUT_DIR/<task>[-small_rows].npz: e (draws x output), t (float64), a_<candidate> each.
Replay on any host with `python3 bench/precision_replay.py OUT_DIR`.
"""

import importlib.util
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(os.path.dirname(HERE), "tests", "harness")

TASKS = {
    "softmax_long_matmul": ("tasks/softmax_long_matmul_torch.py",
                            ["softmax_matmul_triton_ieee", "softmax_matmul_triton_tf32"]),
    "matmul_big_row": ("tasks/matmul_big_row_torch.py",
                       ["matmul_triton_ieee", "matmul_triton_tf32"]),
}


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HARNESS, path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    out_dir = sys.argv[1]
    draws = int(sys.argv[2]) if len(sys.argv) > 2 else 24
    os.makedirs(out_dir, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    for task_name, (task_path, cands) in TASKS.items():
        task = load(task_path, "task_" + task_name)
        ref = task.Model().cuda()
        models = {c: load("candidates/%s.py" % c, c).ModelNew().cuda() for c in cands}
        for variant in ("", "-small_rows"):
            rec = {"e": [], "t": []}
            for d in range(draws):
                torch.manual_seed(1000 + d)
                inputs = task.get_inputs()
                if variant:
                    inputs[0][::2] *= 0.02
                x = [i.cuda() for i in inputs]
                with torch.no_grad():
                    rec["e"].append(ref(*x).cpu().numpy())
                    rec["t"].append(ref.double()(*[i.double() for i in x]).cpu().numpy())
                    ref.float()
                    for c, m in models.items():
                        rec.setdefault("a_" + c, []).append(m(*x).cpu().numpy())
            path = os.path.join(out_dir, task_name + variant + ".npz")
            np.savez_compressed(path, **{k: np.stack(v) for k, v in rec.items()})
            e, t = np.stack(rec["e"]), np.stack(rec["t"])
            line = ["%s%s: %d draws, reference max|e-t| %.3g" % (task_name, variant, draws,
                                                                   np.abs(e - t).max())]
            for k in rec:
                if k.startswith("a_"):
                    line.append("%s %.3g" % (k[2:], np.abs(np.stack(rec[k]) - t).max()))
            print("; ".join(line), flush=True)


if __name__ == "__main__":
    main()
