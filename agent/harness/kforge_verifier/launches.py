"""Counters that prove the candidate's forward ran its own kernel.

  cpp     every call through a ctypes foreign function (kforge_cpp.CountingCDLL; the harness
          also makes ctypes.CDLL / ctypes.cdll count before importing the candidate)
  triton  every triton.runtime.jit.JITFunction.run (kernel[grid](...) and autotuned launches)
  cuda_c  every call of a function of a module returned by torch.utils.cpp_extension's
          load_inline / load
  swft    no counter (no hardware to develop one against): available() is False

install() must run before the candidate is imported. count() is the total so far.
"""

import functools
import types

_counts = {"triton": 0, "cuda_c": 0}
_installed = set()


def _bump(kind):
    _counts[kind] += 1


def _install_cpp():
    import kforge_cpp
    kforge_cpp.install_ctypes_hook()
    return True


def _install_triton():
    try:
        from triton.runtime.jit import JITFunction
    except Exception:  # noqa: BLE001 - no triton: the candidate's import will fail anyway
        return False
    original = JITFunction.run
    if getattr(original, "_kforge_counting", False):
        return True

    @functools.wraps(original)
    def run(self, *args, **kwargs):
        if not kwargs.get("warmup", False):
            _bump("triton")
        return original(self, *args, **kwargs)

    run._kforge_counting = True
    JITFunction.run = run
    return True


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
