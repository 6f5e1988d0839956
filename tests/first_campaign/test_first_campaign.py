"""The README's "A first campaign", run as written (examples/kernelbench, docs/demo.md).

The shell block that follows the marker `<!-- first-campaign:` in README.md is run with bash
in a scratch directory that looks like a checkout after `./scripts/demo.sh`: examples/ is the
source tree's, build/ this build. No GPU, no model: the LLM is replayed. Then what a user
relies on: every problem became a task named with its KernelBench number, the fix loop went
as examples/kernelbench/make_recording.py plans it, the report exists and counts them all
correct, and the recording is up to date.
"""
import json
import os
import sqlite3
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("KFORGE_BUILD_DIR", os.path.join(ROOT, "build"))
EXAMPLE = os.path.join(ROOT, "examples", "kernelbench")

# op -> the verdicts of its verifier steps, in order, and the steps the task used.
PLANNED = {
    "12_matmul_with_diagonal_matrices": (["passed"], 3),
    "19_relu": (["passed"], 3),
    "23_softmax": (["passed"], 3),
    "26_gelu": (["precision_mismatch", "passed"], 5),
    "40_layernorm": (["rejected", "passed"], 5),
    "47_sum_reduction_over_a_dimension": (["passed"], 3),
}


def readme_block():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    at = text.index("<!-- first-campaign:")
    start = text.index("```sh\n", at) + len("```sh\n")
    return text[start:text.index("\n```", start) + 1]


def test_the_recording_is_up_to_date():
    r = subprocess.run([sys.executable, os.path.join(EXAMPLE, "make_recording.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_the_readme_first_campaign_runs_as_written(tmp_path):
    os.symlink(os.path.join(ROOT, "examples"), tmp_path / "examples")
    os.symlink(BUILD, tmp_path / "build")
    script = readme_block()
    assert "kforge import kernelbench examples/kernelbench" in script
    # Jobs run as other uids: their work directories go under TMPDIR, which they must traverse.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": os.environ.get("TMPDIR", "/tmp")}
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=360)
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr[-4000:]}"

    data = tmp_path / "demo-out" / "first"
    kforge = os.path.join(BUILD, "cli", "kforge")
    results = json.loads(subprocess.run([kforge, "results", "--json", "--data", str(data)],
                                        check=True, capture_output=True, text=True).stdout)
    got = {t["op_name"]: (t["task_id"], t["state"], t["steps"]) for t in results}
    assert got == {op: ("default", "passed", steps) for op, (_, steps) in PLANNED.items()}

    db = sqlite3.connect(f"file:{data / 'kforge.db'}?mode=ro", uri=True)
    verdicts = {}
    for op, verdict in db.execute("SELECT t.op_name, s.verdict FROM steps s JOIN tasks t ON t.id = s.task_id "
                                  "WHERE s.role = 'verifier' ORDER BY t.id, s.seq"):
        verdicts.setdefault(op, []).append(verdict)
    assert verdicts == {op: v for op, (v, _) in PLANNED.items()}

    report = json.load(open(data / "report" / "report.json", encoding="utf-8"))
    assert report["metrics"]["fast_0"]["count"] == len(PLANNED)
    assert report["metrics"]["fast_0"]["of"] == len(PLANNED)
    assert os.path.getsize(data / "report" / "index.html") > 0
