"""Exceptions raised by candidate code -> verdicts, with a trimmed traceback for the model.

Classification (first match wins):
  resource_exceeded  MemoryError; OSError with errno ENOMEM or EAGAIN (BlockingIOError from a
                     refused fork, a refused thread); messages "Cannot allocate memory",
                     "can't allocate memory", "out of memory", "can't start new thread",
                     "Resource temporarily unavailable"
  crashed            device faults that poison the process's device context: "illegal memory
                     access", "misaligned address", "unspecified launch failure",
                     "device-side assert", "an illegal instruction"
  compile_error      SyntaxError, ImportError (ModuleNotFoundError), kforge_cpp.CompileError,
                     triton's CompilationError, torch cpp_extension "Error building extension"
                     (only while loading, or at any time for the build errors)
  runtime_error      everything else (SystemExit included: the candidate must not exit)
"""

import errno
import os
import traceback

from . import verdicts

TRACEBACK_LINES = 30
MESSAGE_CHARS = 6000

_HARNESS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_RESOURCE_TEXT = ("cannot allocate memory", "can't allocate memory", "out of memory",
                  "can't start new thread", "resource temporarily unavailable",
                  "failed to allocate memory", "std::bad_alloc")
_CRASH_TEXT = ("illegal memory access", "misaligned address", "unspecified launch failure",
               "device-side assert", "illegal instruction", "an illegal address")
_BUILD_TEXT = ("error building extension",)


def _chain(exc):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_resource(exc):
    for e in _chain(exc):
        if isinstance(e, MemoryError):
            return True
        if isinstance(e, OSError) and e.errno in (errno.ENOMEM, errno.EAGAIN):
            return True
        if type(e).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
            return True
        text = str(e).lower()
        if any(t in text for t in _RESOURCE_TEXT):
            return True
    return False


_DEVICE_OOM_TEXT = ("cuda out of memory", "cuda error: out of memory", "npu out of memory",
                    "error_out_of_memory", "cudaerrormemoryallocation", "status_alloc_failed")


def is_device_oom(exc):
    """The device's memory ran out: torch's OutOfMemoryError, the runtime's and the driver's
    own words (cuMemCreate's CUDA_ERROR_OUT_OF_MEMORY, cuBLAS's CUBLAS_STATUS_ALLOC_FAILED)."""
    for e in _chain(exc):
        if type(e).__name__ == "OutOfMemoryError":
            return True
        text = str(e).lower()
        if any(t in text for t in _DEVICE_OOM_TEXT):
            return True
    return False


def is_compile(exc, loading):
    for e in _chain(exc):
        name = type(e).__name__
        module = type(e).__module__ or ""
        if name == "CompileError" and "kforge_cpp" in module:
            return True
        if name == "CompilationError" or (module.startswith("triton") and "Compil" in name):
            return True
        if any(t in str(e).lower() for t in _BUILD_TEXT):
            return True
        if loading and isinstance(e, (SyntaxError, ImportError)):
            return True
    return False


def is_crash(exc):
    return any(any(t in str(e).lower() for t in _CRASH_TEXT) for e in _chain(exc))


def classify(exc, loading=False):
    """-> verdict for an exception raised by candidate code (loading: while importing or
    constructing it)."""
    if is_resource(exc):
        return verdicts.RESOURCE_EXCEEDED
    if is_crash(exc):
        return verdicts.CRASHED
    if is_compile(exc, loading):
        return verdicts.COMPILE_ERROR
    if loading:
        return verdicts.COMPILE_ERROR
    return verdicts.RUNTIME_ERROR


def trim(text, limit=MESSAGE_CHARS):
    if len(text) <= limit:
        return text
    return "... [trimmed] ...\n" + text[-limit:]


def format_exception(exc):
    """The traceback without the harness's own frames, last TRACEBACK_LINES lines."""
    lines = []
    for part in traceback.TracebackException.from_exception(exc).format():
        lines.append(part)
    text = "".join(lines)
    out, skip = [], False
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith('File "'):
            path = stripped[6:].split('"', 1)[0]
            skip = os.path.abspath(path).startswith(_HARNESS_DIR + os.sep) and \
                "kforge_cpp.py" not in path
            if skip:
                continue
        elif skip and line.startswith("    "):
            continue  # source lines of a skipped frame
        else:
            skip = False
        out.append(line)
    if len(out) > TRACEBACK_LINES:
        out = ["... [earlier lines trimmed] ..."] + out[-TRACEBACK_LINES:]
    return trim("\n".join(out))


def describe(exc, what):
    """Message text: what failed + the trimmed traceback (compile errors: the compiler output)."""
    for e in _chain(exc):
        if type(e).__name__ == "CompileError" and "kforge_cpp" in (type(e).__module__ or ""):
            return trim(f"{what}: {e}")
    if isinstance(exc, SyntaxError) and not exc.__traceback__:
        return trim(f"{what}: {exc}")
    if isinstance(exc, SystemExit):
        return f"{what}: the candidate called exit({exc.code!r}); it must return its outputs"
    return trim(f"{what}:\n{format_exception(exc)}")
