"""Triton launchers built ahead for recent signatures (kforge_verifier/launchers.py), against
a stand-in for Triton's CUDA driver module: make_launcher turns argument types into a source,
compile_module_from_src builds it (here: records the build). Not Triton: the real path is
measured on a GPU (docs/performance.md); this checks what crosses from one job to the next and
what a hostile record can do."""

import importlib.util
import json
import os
import sys
import types

import pytest

HARNESS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "agent", "harness", "kforge_verifier", "launchers.py")

WARM_SIGNATURE = {0: "*fp32"}


def _fake_driver(monkeypatch):
    drv = types.ModuleType("triton.backends.nvidia.driver")
    drv.builds = []

    def make_launcher(constants, signature, tensordesc_meta=None):
        return f"launcher {sorted(signature.items())} {sorted(constants.items())} {tensordesc_meta}"

    def compile_module_from_src(src, name, library_dirs=None, include_dirs=None,
                                libraries=None):
        drv.builds.append({"src": src, "name": name, "library_dirs": library_dirs,
                           "include_dirs": include_dirs, "libraries": libraries})
        return types.SimpleNamespace(launch=lambda *a: None)

    drv.make_launcher = make_launcher
    drv.compile_module_from_src = compile_module_from_src
    names = ["triton", "triton.backends", "triton.backends.nvidia"]
    parent = None
    for name in names:
        module = types.ModuleType(name)
        if parent is not None:
            setattr(parent, name.rsplit(".", 1)[1], module)
        monkeypatch.setitem(sys.modules, name, module)
        parent = module
    parent.driver = drv
    monkeypatch.setitem(sys.modules, "triton.backends.nvidia.driver", drv)
    return drv


def _launch(drv, constants, signature):
    """What Triton's CudaLauncher does on a kernel's first launch: the source from the
    signature (through the module attribute), then the build, with Triton's own arguments."""
    src = drv.make_launcher(constants, signature, None)
    return drv.compile_module_from_src(src=src, name="__triton_launcher",
                                       library_dirs=["/triton/lib", "/usr/lib/x86_64"],
                                       include_dirs=["/triton/include"], libraries=["cuda"])


def _module():
    spec = importlib.util.spec_from_file_location("kforge_launchers_under_test", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def env(monkeypatch, tmp_path):
    drv = _fake_driver(monkeypatch)
    path = tmp_path / "triton-launchers.json"
    monkeypatch.setenv("KFORGE_JUDGE_LAUNCHERS_FILE", str(path))
    return drv, path


def test_a_signature_reaches_the_next_worker_and_is_built_before_its_candidate(env):
    drv, path = env
    worker = _module()  # job 1's worker: records what its candidate's kernel needed
    assert worker.record()
    _launch(drv, {(3,): 1024}, {0: "*fp32", 1: "*fp32", 2: "i32", 3: "constexpr"})
    seen = worker.take_seen()
    assert len(seen) == 1 and worker.take_seen() == []

    judge = _module()
    judge.note(seen)
    kept = json.loads(path.read_text())
    assert kept == seen

    drv.builds.clear()  # job 2's worker, warming up before any candidate exists
    nxt = _module()
    warmed = []
    built = nxt.prebuild(path.read_text(), lambda: (warmed.append(1),
                                                    _launch(drv, {}, WARM_SIGNATURE)))
    assert warmed == [1] and built == 1
    warm_build, ahead = drv.builds
    # the launcher job 1's kernel needed, from Triton's generator, with Triton's build arguments
    assert ahead["src"] == drv.make_launcher(
        {(3,): 1024}, {0: "*fp32", 1: "*fp32", 2: "i32", 3: "constexpr"}, None)
    assert {k: ahead[k] for k in ("name", "library_dirs", "include_dirs", "libraries")} == \
        {k: warm_build[k] for k in ("name", "library_dirs", "include_dirs", "libraries")}


@pytest.mark.parametrize("text", [
    repr(((({}, {0: '*fp32"); system("id'}),), {})),           # a quote: C code
    repr((({}, {0: "*fp32;\n}"}), {})),                          # a brace, a newline
    "((__import__('os').system('id'),), {})",                    # not a literal
    repr(((), {"x": "a" * 65})),                                 # an over-long word
    "(" * 200 + ")" * 200,                                       # nesting
    repr(((list(range(600)),), {})),                             # too many values
    repr(((1,), {})) + " " * 5000,                               # too long
    repr(({}, {})),                                              # not (args, kwargs)
    repr(((), {1: "x"})),                                        # a keyword that is no name
    repr(((b"bytes",), {})),                                     # a type make_launcher never gets
    "not python at all (",
])
def test_a_hostile_record_is_not_kept_nor_built(env, text):
    drv, path = env
    judge = _module()
    assert judge.valid(text) is None
    judge.note([text])
    assert not path.exists()
    nxt = _module()
    assert nxt.prebuild(json.dumps([text]), lambda: _launch(drv, {}, WARM_SIGNATURE)) == 0
    assert [b["src"] for b in drv.builds] == [drv.make_launcher({}, WARM_SIGNATURE, None)]


def test_the_judge_keeps_the_most_recent_few(env):
    _, path = env
    judge = _module()
    records = [repr((({}, {0: "*fp32", 1: f"i{n}"}), {})) for n in range(judge.MAX_KEPT + 3)]
    for r in records:
        judge.note([r])
    kept = json.loads(path.read_text())
    assert kept == list(reversed(records))[:judge.MAX_KEPT]
    judge.note([records[-judge.MAX_KEPT]])  # seen again: first, not twice
    kept = json.loads(path.read_text())
    assert kept[0] == records[-judge.MAX_KEPT] and len(kept) == len(set(kept)) == judge.MAX_KEPT
    judge.note([repr((({}, {0: f"i{n}"}), {})) for n in range(10)])  # at most a few per job
    assert sum(r.startswith("(({}, {0: 'i") for r in json.loads(path.read_text())) == \
        judge.MAX_PER_JOB


def test_no_warm_up_build_or_an_unreadable_file_builds_nothing_else(env):
    drv, _ = env
    worker = _module()
    assert worker.prebuild("{not json", lambda: _launch(drv, {}, WARM_SIGNATURE)) == 0
    assert len(drv.builds) == 1
    record = repr((({}, {0: "*fp16"}), {}))
    assert worker.prebuild(json.dumps([record]), lambda: None) == 0  # no template to follow
    assert len(drv.builds) == 1


def test_a_signature_triton_cannot_build_is_skipped(env):
    drv, _ = env

    def picky(constants, signature, tensordesc_meta=None):
        if "bad" in signature.values():
            raise KeyError("bad")
        return f"launcher {sorted(signature.items())}"
    drv.make_launcher = picky
    worker = _module()
    records = [repr((({}, {0: "bad"}), {})), repr((({}, {0: "*bf16"}), {}))]
    assert worker.prebuild(json.dumps(records), lambda: _launch(drv, {}, WARM_SIGNATURE)) == 1
    assert drv.builds[-1]["src"] == "launcher [(0, '*bf16')]"


def test_the_judge_seeds_its_own_cache_with_the_kept_signatures(env):
    # Where workers run as another user, the agent copies the judge's Triton cache into each
    # new worker's: the judge builds the warm-up kernel (and the driver utilities with it) once,
    # then the launcher of each newly kept signature once, between jobs.
    drv, path = env
    judge = _module()
    warm = lambda: _launch(drv, {}, WARM_SIGNATURE)  # noqa: E731
    assert judge.seed(warm) == 0
    assert [b["src"] for b in drv.builds] == [drv.make_launcher({}, WARM_SIGNATURE, None)]
    assert judge.seed(warm) == 0 and len(drv.builds) == 1  # nothing new: nothing run
    record = repr((({(3,): 64}, {0: "*fp16", 1: "i32", 3: "constexpr"}), {}))
    judge.note([record])
    drv.builds.clear()
    assert judge.seed(warm) == 1
    assert drv.builds[-1]["src"] == drv.make_launcher(
        {(3,): 64}, {0: "*fp16", 1: "i32", 3: "constexpr"}, None)
    assert judge.seed(warm) == 0  # built once

    # A restarted judge starts from the file the last one kept, and builds what is valid in it.
    hostile = repr((({}, {0: '*fp32"); system("id'}), {}))
    path.write_text(json.dumps([record, hostile]))
    drv.builds.clear()
    again = _module()
    assert again.seed(warm) == 1
    assert [b["src"] for b in drv.builds][1:] == [drv.make_launcher(
        {(3,): 64}, {0: "*fp16", 1: "i32", 3: "constexpr"}, None)]
