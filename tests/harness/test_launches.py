"""The Triton launch counter (kforge_verifier/launches.py) against stand-ins for the three
shapes that triton.runtime.jit has had. Not Triton: each fake reproduces only how a launch
reaches the compiled kernel.

  2.x   JITFunction.__init__ sets self.run (an instance attribute; the class has no run) and
        KernelInterface.__getitem__ returns functools.partial(self.run, grid=grid)
  3.x   JITFunction.run(self, *args, grid, warmup, **kwargs) is a method and __getitem__
        returns lambda *a, **k: self.run(grid=grid, warmup=False, *a, **k)
  fast  as 3.x, but __getitem__'s proxy launches a cached kernel without calling run (a C
        fast path, as some builds have)

In every shape one kernel[grid](...) is one launch, warm-ups are none, and an autotuner's
benchmark runs inside one launch are not counted again.
"""

import functools
import importlib.util
import os
import sys
import types

import pytest

HARNESS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "agent", "harness", "kforge_verifier", "launches.py")


def _fake_triton(shape):
    """-> (triton module, jit module, list of real launches)."""
    launched = []

    class KernelInterface:
        if shape == "2.x":
            def __getitem__(self, grid):
                return functools.partial(self.run, grid=grid)
        elif shape == "3.x":
            def __getitem__(self, grid):
                return lambda *args, **kwargs: self.run(grid=grid, warmup=False, *args, **kwargs)
        else:
            def __getitem__(self, grid):
                def proxy(*args, **kwargs):
                    if getattr(self, "compiled", False):
                        launched.append((self.name, grid))  # straight to the kernel
                        return None
                    return self.run(grid=grid, warmup=False, *args, **kwargs)
                return proxy

    if shape == "2.x":
        class JITFunction(KernelInterface):
            def __init__(self, name):
                self.name = name

                def run(*args, grid=None, warmup=False, **kwargs):
                    if not warmup:
                        launched.append((self.name, grid))
                self.run = run

            def warmup(self, *args, **kwargs):
                return self.run(*args, warmup=True, **kwargs)
    else:
        class JITFunction(KernelInterface):
            def __init__(self, name):
                self.name = name
                self.compiled = False

            def run(self, *args, grid, warmup, **kwargs):
                self.compiled = True
                if not warmup:
                    launched.append((self.name, grid))

            def warmup(self, *args, grid, **kwargs):
                return self.run(grid=grid, warmup=True, *args, **kwargs)

    class Autotuner(KernelInterface):
        def __init__(self, fn, configs):
            self.fn = fn
            self.configs = configs

        def run(self, *args, grid=None, warmup=False, **kwargs):
            for _ in range(self.configs):  # benchmark every config, then the best one
                self.fn.run(*args, grid=grid, warmup=False, **kwargs)
            return self.fn.run(*args, grid=grid, warmup=warmup, **kwargs)

    triton = types.ModuleType("triton")
    runtime = types.ModuleType("triton.runtime")
    jit = types.ModuleType("triton.runtime.jit")
    jit.KernelInterface = KernelInterface
    jit.JITFunction = JITFunction
    jit.Autotuner = Autotuner
    triton.runtime = runtime
    runtime.jit = jit
    return triton, jit, launched


def _launches_module():
    spec = importlib.util.spec_from_file_location("kforge_launches_under_test", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["2.x", "3.x", "fast"])
def counted(request, monkeypatch):
    triton, jit, launched = _fake_triton(request.param)
    monkeypatch.setitem(sys.modules, "triton", triton)
    monkeypatch.setitem(sys.modules, "triton.runtime", triton.runtime)
    monkeypatch.setitem(sys.modules, "triton.runtime.jit", jit)
    launches = _launches_module()
    launches.install("triton")
    return request.param, jit, launched, launches


def test_every_launch_counts_once(counted):
    shape, jit, launched, launches = counted
    assert launches.available("triton")
    kernel = jit.JITFunction("add")
    for i in range(5):
        kernel[(i + 1,)](1, 2, n=3)
    assert launches.count() == 5 == len(launched)


def test_a_warm_up_is_not_a_launch(counted):
    shape, jit, launched, launches = counted
    kernel = jit.JITFunction("add")
    kernel.warmup(1, 2, grid=(1,))
    assert launches.count() == 0 and launched == []
    kernel[(1,)](1, 2)
    assert launches.count() == 1


def test_an_autotuned_launch_counts_once(counted):
    shape, jit, launched, launches = counted
    tuned = jit.Autotuner(jit.JITFunction("mm"), configs=3)
    tuned[(4,)](1, 2)
    tuned[(4,)](1, 2)
    assert launches.count() == 2
    assert len(launched) >= 2


def test_a_direct_run_counts_where_the_class_has_run(counted):
    shape, jit, launched, launches = counted
    kernel = jit.JITFunction("add")
    kernel.run(1, 2, grid=(1,), warmup=False)
    assert launches.count() == (0 if shape == "2.x" else 1)  # 2.x: run is per instance


def test_installing_twice_does_not_count_twice(counted):
    shape, jit, launched, launches = counted
    launches.install("triton")
    kernel = jit.JITFunction("add")
    kernel[(1,)](1)
    assert launches.count() == 1


def test_no_triton_no_counter(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # import triton raises ImportError
    launches = _launches_module()
    launches.install("triton")
    assert not launches.available("triton")
