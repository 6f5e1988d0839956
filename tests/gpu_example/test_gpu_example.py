"""examples/gpu on a host without a GPU (docs/gpu-validation.md).

What can be checked here, and is:
  - every task and answer file compiles; recording.jsonl and expected.json are up to date
    (make_recording.py --check);
  - the harness's static rules give each candidate the verdict expected.json plans where
    they decide it (the PyTorch fallback: rejected) and nothing for the others;
  - the references run on CPU torch at small shapes and are deterministic under the seed;
  - every candidate's kernels run under triton_emulator/ (NOT Triton: a numpy emulation of
    the API subset they use; see its docstring) at small, ragged shapes: the correct ones
    match the reference within the harness's strict tolerance, and the broken ones break the
    way they are meant to (an emulated illegal memory access, NaN from overflow, stale
    answers for rewritten buffers).
What cannot: whether Triton compiles them, GPU rounding, timing, the hang (a GPU-side loop),
CUDA streams. That is the GPU run's job (scripts/gpu-e2e.sh).
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EXAMPLE = os.path.join(ROOT, "examples", "gpu")
sys.path.insert(0, os.path.join(ROOT, "agent", "harness"))
sys.path.insert(0, os.path.join(HERE, "triton_emulator"))

from kforge_verifier import compare, rules  # noqa: E402

import triton  # noqa: E402  (the emulator)

assert triton.__version__.endswith("cpu-emulator"), "the emulator must shadow any real triton here"

with open(os.path.join(EXAMPLE, "expected.json"), encoding="utf-8") as f:
    EXPECTED = json.load(f)

# Small shapes with ragged edges (not multiples of any block), per task file.
SMALL = {
    "vector_add": {"N": 3001},
    "relu": {"BATCH": 7, "DIM": 333},
    "gelu": {"BATCH": 7, "DIM": 333},
    "scale_bias_relu": {"ROWS": 9, "COLS": 250},
    "row_sum": {"ROWS": 6, "COLS": 1000},
    "rms_norm": {"ROWS": 6, "COLS": 1000},
    "softmax": {"ROWS": 6, "COLS": 1000},
    "layernorm": {"ROWS": 6, "COLS": 1000},
    "matmul": {"M": 200, "N": 136, "K": 100},
}
TASK_OF = {"vector_add_side_stream": "vector_add", "vector_add_cached": "vector_add",
           "gelu_cached": "gelu", "row_sum_hang": "row_sum"}


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def task_module(task):
    module = load(os.path.join(EXAMPLE, "tasks", f"{task}.py"), f"gpu_task_{task}")
    for key, value in SMALL[task].items():
        assert hasattr(module, key), f"tasks/{task}.py has no constant {key}"
        setattr(module, key, value)
    return module


def inputs(task_mod, seed):
    torch.manual_seed(seed)
    return task_mod.get_inputs()


def reference(task_mod, args):
    """The task's Model on CPU torch; a float16 matmul (no CPU kernel in every torch build)
    is computed in float32 and rounded, as cuBLAS does with its float32 accumulator."""
    model = task_mod.Model(*task_mod.get_init_inputs())
    if task_mod.__name__.endswith("_matmul"):
        return model(*(a.float() for a in args)).half()
    return model(*args)


def check_close(expected, actual):
    e = compare.to_host_array(expected.detach().float().numpy() if expected.dtype == torch.float16
                              else expected.detach().numpy(), str(expected.dtype).split(".")[1])
    a = compare.to_host_array(actual.detach().float().numpy() if actual.dtype == torch.float16
                              else actual.detach().numpy(), str(actual.dtype).split(".")[1])
    return compare.compare(e, a, "strict")


PLANNED = [(v["op_name"], ver["candidate"], ver["verdict"])
           for v in EXPECTED["tasks"].values() for ver in v["verifications"]]


def test_files_compile():
    for sub in ("tasks", "answers"):
        for name in sorted(os.listdir(os.path.join(EXAMPLE, sub))):
            if name.endswith(".py"):
                path = os.path.join(EXAMPLE, sub, name)
                with open(path, encoding="utf-8") as f:
                    compile(f.read(), path, "exec")  # SyntaxError on a broken file


def test_recording_and_expected_are_up_to_date():
    r = subprocess.run([sys.executable, os.path.join(EXAMPLE, "make_recording.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_every_answer_file_is_planned():
    planned = {c for _, c, _ in PLANNED}
    on_disk = {f"answers/{n}" for n in os.listdir(os.path.join(EXAMPLE, "answers"))
               if n.endswith(".py")}
    assert planned == on_disk


@pytest.mark.parametrize("op,candidate,verdict", PLANNED)
def test_static_rules(op, candidate, verdict):
    with open(os.path.join(EXAMPLE, candidate), encoding="utf-8") as f:
        violations = rules.check(f.read(), "triton", ("reference",), filename=candidate)
    if candidate.endswith(".fallback.py"):
        assert verdict == "rejected"
        assert [v.rule for v in violations] == ["framework_op"], violations
    else:
        assert violations == [], [str(v) for v in violations]


@pytest.mark.parametrize("task", sorted(SMALL))
def test_reference_runs_and_is_seeded(task):
    mod = task_module(task)
    a, b = inputs(mod, 3), inputs(mod, 3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    out = reference(mod, a)
    assert torch.isfinite(out.float()).all()


def run_candidate(candidate, task, seed=0):
    """-> (task module, candidate module, ModelNew(), inputs, the reference's output)."""
    mod = task_module(task)
    cand = load(os.path.join(EXAMPLE, candidate), "gpu_candidate")
    args = inputs(mod, seed)
    expected = reference(mod, inputs(mod, seed))
    return mod, cand, cand.ModelNew(), args, expected


CORRECT = [(op, c) for op, c, v in PLANNED if v == "passed" and "side_stream" not in c]


@pytest.mark.parametrize("op,candidate", CORRECT)
def test_correct_kernels_match_the_reference_under_the_emulator(op, candidate):
    task = TASK_OF.get(op, op)
    mod, _, model, args, expected = run_candidate(candidate, task)
    for seed in (0, 1):
        out = model(*inputs(mod, seed))
        result = check_close(reference(mod, inputs(mod, seed)), out)
        assert result.ok, result.message


def test_side_stream_kernel_is_correct_apart_from_the_stream(monkeypatch):
    class FakeStream:
        def wait_stream(self, other):
            pass

    class FakeContext:
        def __init__(self, stream):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: FakeStream())
    monkeypatch.setattr(torch.cuda, "stream", FakeContext)
    mod, _, model, args, expected = run_candidate("answers/vector_add.side_stream.py", "vector_add")
    assert check_close(expected, model(*args)).ok


def test_out_of_bounds_store_faults():
    mod, _, model, args, expected = run_candidate("answers/relu.out_of_bounds.py", "relu")
    with pytest.raises(RuntimeError, match="illegal memory access"):
        model(*args)


def test_naive_softmax_overflows_to_nan():
    mod, _, model, args, expected = run_candidate("answers/softmax.naive.py", "softmax")
    out = model(*args)
    assert torch.isnan(out).any()
    result = check_close(expected, out)
    assert not result.ok and "NaN" in result.message


@pytest.mark.parametrize("candidate,task,launches_on_hit",
                         [("answers/gelu.cached.py", "gelu", False),
                          ("answers/vector_add.cached.py", "vector_add", True)])
def test_cached_answers_go_stale_when_the_buffers_are_rewritten(candidate, task, launches_on_hit):
    mod, cand, model, args, expected = run_candidate(candidate, task)
    first = model(*args)
    assert check_close(expected, first).ok  # right the first time
    kernels = [v for v in vars(cand).values() if isinstance(v, triton.JITFunction)]
    before = sum(k.launches for k in kernels)
    fresh = inputs(mod, 7)
    for buf, new in zip(args, fresh):
        buf.copy_(new)  # what the harness does between timed runs
    again = model(*args)
    assert (sum(k.launches for k in kernels) > before) == launches_on_hit
    assert not check_close(reference(mod, inputs(mod, 7)), again).ok


def test_the_hang_has_a_zero_stride():
    # The GPU-side loop cannot be run to completion anywhere; its stride is 0 at this shape.
    with open(os.path.join(EXAMPLE, "answers", "row_sum.hang.py"), encoding="utf-8") as f:
        source = f.read()
    assert "programs // rows" in source and "min(rows, 1024)" in source
    rows = load(os.path.join(EXAMPLE, "tasks", "row_sum.py"), "gpu_task_rows").ROWS
    assert min(rows, 1024) // rows == 0


def test_the_emulator_refuses_what_triton_refuses_to_compile():
    tl = triton.language
    for bad in (lambda: tl.arange(0, 1000), lambda: tl.arange(0, 1 << 21),
                lambda: tl.zeros((128, 96), dtype=tl.float32),
                lambda: tl.dot(tl.zeros((16, 8), tl.float16), tl.zeros((8, 16), tl.float16)),
                lambda: tl.dot(tl.zeros((16, 16), tl.float16), tl.zeros((16, 16), tl.float32))):
        with pytest.raises(tl.CompilationError):
            bad()


# The row kernels hold a whole row in one block: at the campaign's width (COLS = 4096) the
# block is exactly the row, no lane masked off.
FULL_WIDTH = ["row_sum", "rms_norm", "softmax", "layernorm"]


@pytest.mark.parametrize("op", FULL_WIDTH)
def test_row_kernels_at_the_campaigns_row_width(op, monkeypatch):
    cols = load(os.path.join(EXAMPLE, "tasks", f"{op}.py"), f"gpu_task_width_{op}").COLS
    assert cols == 4096
    monkeypatch.setitem(SMALL, op, {"ROWS": 3, "COLS": cols})
    mod, _, model, args, expected = run_candidate(f"answers/{op}.py", op)
    result = check_close(expected, model(*args))
    assert result.ok, result.message
