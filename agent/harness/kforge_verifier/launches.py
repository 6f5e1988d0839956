"""Counters that prove the candidate's forward ran its own kernel.

  cpp     every call through a ctypes foreign function (kforge_cpp.CountingCDLL; the harness
          also makes ctypes.CDLL / ctypes.cdll count before importing the candidate)
  triton  every launch through kernel[grid](...) (KernelInterface.__getitem__'s launcher:
          plain, autotuned and heuristics kernels, any Triton version), and every direct
          JITFunction.run(..., warmup=False) outside such a launch; one count per launch
  cuda_c  every call of a function of a module returned by torch.utils.cpp_extension's
          load_inline / load
  swft    no counter (no hardware to develop one against): available() is False

install() must run before the candidate is imported. count() is the total so far.
"""

import functools
import threading
import types

_counts = {"triton": 0, "cuda_c": 0}
_installed = set()


def _bump(kind):
    _counts[kind] += 1


def _install_cpp():
    import kforge_cpp
    kforge_cpp.install_ctypes_hook()
    return True


_triton_depth = threading.local()  # > 0 inside a counted Triton launch


def _count_triton(call, warmup):
    """Runs call(); counts it as one launch unless it is a warm-up (compile only) or runs
    inside a launch already counted (an autotuner's benchmark runs, JITFunction.run under
    kernel[grid](...))."""
    depth = getattr(_triton_depth, "n", 0)
    if depth == 0 and not warmup:
        _bump("triton")
    _triton_depth.n = depth + 1
    try:
        return call()
    finally:
        _triton_depth.n = depth


def _counting_getitem(original):
    @functools.wraps(original)
    def __getitem__(self, grid):
        launcher = original(self, grid)

        def launch(*args, **kwargs):
            return _count_triton(lambda: launcher(*args, **kwargs), kwargs.get("warmup", False))
        return launch

    __getitem__._kforge_counting = True
    return __getitem__


def _counting_run(original):
    @functools.wraps(original)
    def run(self, *args, **kwargs):
        return _count_triton(lambda: original(self, *args, **kwargs), kwargs.get("warmup", False))

    run._kforge_counting = True
    return run


def _install_triton():
    """Counts at kernel[grid]: triton 2.0-2.2 keep run as an instance attribute (set in
    JITFunction.__init__, so the class has none to patch), and a launcher may reach the
    compiled kernel without JITFunction.run on a cache hit (a C fast path). The launcher that
    __getitem__ returns is called for every launch in every version. JITFunction.run, where the
    class defines it (triton >= 3.0), also counts direct calls. -> whether anything counts."""
    try:
        from triton.runtime import jit
    except Exception:  # noqa: BLE001 - no triton: the candidate's import will fail anyway
        return False
    counting = False
    for cls in (getattr(jit, "KernelInterface", None), getattr(jit, "JITFunction", None)):
        if isinstance(cls, type) and callable(vars(cls).get("__getitem__")):
            original = vars(cls)["__getitem__"]
            if not getattr(original, "_kforge_counting", False):
                cls.__getitem__ = _counting_getitem(original)
            counting = True
    cls = getattr(jit, "JITFunction", None)
    if isinstance(cls, type) and callable(vars(cls).get("run")):
        original = vars(cls)["run"]
        if not getattr(original, "_kforge_counting", False):
            cls.run = _counting_run(original)
        counting = True
    return counting


class _CountingModule(types.ModuleType):
    """Proxy of a compiled extension module whose functions count their calls."""

    def __init__(self, module):
        super().__init__(module.__name__, getattr(module, "__doc__", None))
        object.__setattr__(self, "_kforge_module", module)

    def __getattr__(self, name):
        value = getattr(object.__getattribute__(self, "_kforge_module"), name)
        if callable(value) and not isinstance(value, type):
            @functools.wraps(value)
            def counted(*args, **kwargs):
                _bump("cuda_c")
                return value(*args, **kwargs)
            return counted
        return value


def _install_cuda_c():
    try:
        import torch.utils.cpp_extension as ext
    except Exception:  # noqa: BLE001
        return False
    for name in ("load_inline", "load"):
        original = getattr(ext, name)
        if getattr(original, "_kforge_counting", False):
            continue

        def make(original):
            @functools.wraps(original)
            def loader(*args, **kwargs):
                module = original(*args, **kwargs)
                if isinstance(module, types.ModuleType):
                    return _CountingModule(module)
                return module
            loader._kforge_counting = True
            return loader

        setattr(ext, name, make(original))
    return True


_INSTALLERS = {"cpp": _install_cpp, "triton": _install_triton, "cuda_c": _install_cuda_c}
COUNTED = tuple(_INSTALLERS)  # impl_types whose launches a worker counts


def install(impl_type):
    installer = _INSTALLERS.get(impl_type)
    if installer is not None and installer():
        _installed.add(impl_type)


def available(impl_type):
    return impl_type in _installed


def count():
    total = _counts["triton"] + _counts["cuda_c"]
    if "cpp" in _installed:
        import kforge_cpp
        total += kforge_cpp.native_calls()
    return total
