"""examples/gpu-search's scripted Coder behind a real coordinator, on a CPU: `kforge run` of an
evolve campaign whose Coder is coder_server.py (an `openai` role), with a pool of C++ variants
made here from examples/demo's vector add (the Triton pool needs a GPU). What it checks is the
plumbing the GPU run relies on: the real Conductor's first, "make it faster" and fix prompts
reach the server, it recognises each parent by the marker line of the code it wrote earlier,
and the campaign ends with a winner from the pool. Needs kforge built (KFORGE_BUILD_DIR)."""
import json
import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("KFORGE_BUILD_DIR", os.path.join(ROOT, "build"))
KFORGE = os.path.join(BUILD, "cli", "kforge")
DEMO = os.path.join(ROOT, "examples", "demo")
SERVER = os.path.join(ROOT, "examples", "gpu-search", "coder_server.py")

CAMPAIGN = """name = "cpu-evolve"
workflow = "coder_only"
[defaults]
backend = "cpu"
arch = "x86_64"
impl_type = "cpp"
framework = "torch"
task_type = "profile"
limit_steps = 4
[[ops]]
op_name = "vector_add"
task_desc = "tasks/vector_add.py"
[ops.sweep]
N = 100003
[search]
strategy = "evolve"
islands = 2
island_size = 2
generations = 2
inspirations = 2
migrate_every = 1
"""


@pytest.mark.skipif(not os.access(KFORGE, os.X_OK), reason=f"{KFORGE} is not built")
def test_evolve_campaign_against_the_scripted_coder(tmp_path):
    pool = tmp_path / "pool" / "vector_add"
    pool.mkdir(parents=True)
    with open(os.path.join(DEMO, "answers", "vector_add.py"), encoding="utf-8") as f:
        good = f.read()
    with open(os.path.join(DEMO, "answers", "vector_add.tail_bug.py"), encoding="utf-8") as f:
        bad = f.read()  # drops the tail: fails at N = 100003
    for stem in ("0_a", "1_b", "2_c", "3_d"):
        (pool / f"{stem}.py").write_text(f"# kforge-variant: vector_add/{stem}\n{good}")
    (pool / "x_tail.py").write_text(f"# kforge-variant: vector_add/x_tail\n{bad}")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "vector_add.py").write_text(
        open(os.path.join(DEMO, "tasks", "vector_add.py"), encoding="utf-8").read())
    (tmp_path / "campaign.toml").write_text(CAMPAIGN)
    log = tmp_path / "answers.jsonl"
    server = subprocess.Popen([sys.executable, SERVER, "--pool", str(tmp_path / "pool"), "--log", str(log)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = server.stdout.readline()
        assert line.startswith("listening "), line
        url = f"http://127.0.0.1:{int(line.split()[1])}/v1"
        roles = "".join(f'[llm.{r}]\nprovider = "openai"\nbase_url = "{url}"\nmodel = "scripted"\n'
                        for r in ("designer", "coder"))
        (tmp_path / "kforge.toml").write_text(
            f'[agent]\ncpu_devices = 1\npython = "{sys.executable}"\n'
            f'harness_dir = "{os.path.join(ROOT, "agent", "harness")}"\n{roles}')
        r = subprocess.run([KFORGE, "run", "campaign.toml", "--data", "data", "--config", "kforge.toml"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=400)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        show = json.loads(subprocess.run([KFORGE, "show", "1", "--json", "--full", "--data", "data"],
                                         cwd=tmp_path, capture_output=True, text=True, check=True).stdout)
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()

    answers = [json.loads(x) for x in log.read_text().splitlines()]
    # Generation 1: four first prompts, samples 0-3 (seeds 0-3); generation 2: four children
    # of judged parents, improved when the parent passed, fixed when it failed.
    first = sorted((a["seed"], a["variant"]) for a in answers if a["kind"] == "code")
    assert first == [(0, "vector_add/1_b"), (1, "vector_add/0_a"), (2, "vector_add/2_c"),
                     (3, "vector_add/x_tail")]
    later = [a for a in answers if a["kind"] in ("improve", "fix")]
    assert len(later) == 4 and len(answers) == 8
    ladder = ["vector_add/0_a", "vector_add/1_b", "vector_add/2_c", "vector_add/3_d"]
    for a in later:
        if a["kind"] == "improve":
            assert a["parent"] in ladder, a
            assert a["variant"] == ladder[min(ladder.index(a["parent"]) + 1, 3)], a
        else:
            assert (a["parent"], a["variant"]) == ("vector_add/x_tail", "vector_add/1_b"), a
    assert any(a["kind"] == "improve" for a in later)
    verdicts = [s["verdict"] for s in show["trace"] if s["role"] == "verifier"]
    assert verdicts.count("precision_mismatch") == 1 and len(verdicts) == 8, verdicts
    assert show["state"] == "passed"
    assert re.search(r"^# kforge-variant: vector_add/\d_\w+$", show["code"], re.M)
