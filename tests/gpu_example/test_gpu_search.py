"""examples/gpu-search's variant pool on a host without a GPU: every variant passes the
harness's static rules, and under triton_emulator/ (NOT Triton; see test_gpu_example.py) at
small, ragged shapes every variant of an op's ladder matches the reference within the strict
tolerance while every x_ variant (broken on purpose) does not. Whether Triton compiles them
and how fast they are is the GPU run's job (scripts/gpu-e2e.sh search)."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SEARCH = os.path.join(ROOT, "examples", "gpu-search")
sys.path.insert(0, SEARCH)
sys.path.insert(0, HERE)

import coder_server  # noqa: E402
import test_gpu_example as gx  # noqa: E402  (the emulator, task loading and comparison)

from kforge_verifier import rules  # noqa: E402

POOL = coder_server.Pool(os.path.join(SEARCH, "variants"))
VARIANTS = sorted(POOL.code)


@pytest.mark.parametrize("name", VARIANTS)
def test_static_rules(name):
    violations = rules.check(POOL.code[name], "triton", ("reference",), filename=name + ".py")
    assert violations == [], [str(v) for v in violations]


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_under_the_emulator(name):
    op, stem = name.split("/")
    mod = gx.task_module(op)
    cand = gx.load(os.path.join(SEARCH, "variants", op, stem + ".py"), "gpu_search_candidate")
    model = cand.ModelNew()
    results = []
    for seed in (0, 1):
        out = model(*gx.inputs(mod, seed))
        results.append(gx.check_close(gx.reference(mod, gx.inputs(mod, seed)), out))
    if stem.startswith("x_"):
        assert not any(r.ok for r in results), f"{name} is meant to fail verification"
    else:
        assert all(r.ok for r in results), [r.message for r in results]
