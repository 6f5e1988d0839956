"""Triton launchers built ahead of the job, by trusted code, for the signatures of recent jobs.

The first launch of a Triton kernel with a new argument signature builds a small C extension
(Triton's "launcher": gcc on a source that make_launcher generates from the argument types,
about 0.2 s) into TRITON_CACHE_DIR. Each worker has a cache of its own, so that a candidate
cannot leave a launcher, a kernel or anything else for the next job; so every job paid that
build inside its first call.

Here the signatures travel, never what was built:
  1. the worker records the arguments Triton passes to make_launcher (argument types and
     constexpr values: data) and its call replies carry them to the judge ("launchers");
  2. the judge keeps the most recent distinct ones that pass `valid` (at most MAX_KEPT), in
     the file the agent names in KFORGE_JUDGE_LAUNCHERS_FILE;
  3. the agent hands that file's text to each new worker (KFORGE_WORKER_LAUNCHERS), which,
     while it warms up and before any candidate exists, builds their launchers into its own
     cache through Triton's own path: make_launcher's source, the build arguments Triton
     itself used for the warm-up kernel's launcher.
The judge also builds them, with Triton's driver utilities (`cuda_utils`, 0.4 s of gcc) and
the warm-up kernel, into its own cache (`seed`), and the agent copies that cache into each
new worker's: the worker then finds them all built and warms up in a fraction of the time.
Where workers run as another user than the judge, a worker can change its own copy, never
the judge's. A candidate whose kernel has one of those signatures finds its launcher built. A hostile
candidate can only choose which well-formed signatures later workers build ahead (each string
matches a strict pattern, so nothing it sends can become C code; the source is Triton's),
at the cost of their warm-up time; nothing it wrote is compiled or loaded by another job.
"""

import ast
import json
import os
import re
import time

MAX_KEPT = 8           # signatures the judge keeps, most recent first
MAX_PER_JOB = 4        # signatures taken from one job's replies
MAX_RECORD_CHARS = 4096
_MAX_NODES = 512
_MAX_DEPTH = 6
# Triton's type strings ("*fp32", "i32", "constexpr", "nvTmaDesc", "tensordesc<fp16[64, 64]>")
# and constexpr names: no quotes, parentheses, braces, semicolons, backslashes or newlines.
_WORD = re.compile(r"[A-Za-z0-9_*<>\[\], .+-]{0,64}\Z")

_seen = []        # the worker's records (repr text), in order
_build_ns = [0]   # the worker's time in compile_module_from_src since the last take
_kept = []        # the judge's signatures, most recent first
_seeded = set()   # the judge's signatures it built into its own cache (tried: built or not)
_seed_warm = [False]


# --- the rule both sides apply ------------------------------------------------------------

def valid(text):
    """text (untrusted) -> its (args, kwargs) for make_launcher when it is a well-formed
    record, else None. Only literals: dicts, tuples, lists, small ints, floats, bools, None
    and strings matching _WORD, at most _MAX_NODES of them, _MAX_DEPTH deep."""
    if not isinstance(text, str) or len(text) > MAX_RECORD_CHARS:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    nodes = [0]

    def ok(v, depth):
        nodes[0] += 1
        if nodes[0] > _MAX_NODES or depth > _MAX_DEPTH:
            return False
        if v is None or isinstance(v, (bool, float)):
            return True
        if isinstance(v, int):
            return -(1 << 63) <= v < (1 << 64)
        if isinstance(v, str):
            return _WORD.match(v) is not None
        if isinstance(v, (tuple, list)):
            return all(ok(x, depth + 1) for x in v)
        if isinstance(v, dict):
            return all(ok(k, depth + 1) and ok(x, depth + 1) for k, x in v.items())
        return False

    if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], tuple) and
            isinstance(value[1], dict) and all(isinstance(k, str) for k in value[1])):
        return None
    return value if ok(value, 0) else None


# --- the worker (untrusted once a candidate is loaded; records only) ----------------------

def _driver():
    from triton.backends.nvidia import driver
    return driver


def record():
    """Wraps Triton's make_launcher so that each call's arguments are recorded. Before the
    candidate is imported (it may undo this: then nothing is recorded, nothing else changes)."""
    try:
        drv = _driver()
    except Exception:  # noqa: BLE001 - no Triton's CUDA driver: nothing to record
        return False
    original = getattr(drv, "make_launcher", None)
    if not callable(original) or getattr(original, "_kforge_recording", False):
        return callable(original)

    def make_launcher(*args, **kwargs):
        if len(_seen) < MAX_PER_JOB:
            try:
                text = repr((tuple(args), dict(kwargs)))
                if text not in _seen:
                    _seen.append(text)
            except Exception:  # noqa: BLE001 - an argument whose repr fails: not recorded
                pass
        return original(*args, **kwargs)

    make_launcher._kforge_recording = True
    drv.make_launcher = make_launcher
    build = getattr(drv, "compile_module_from_src", None)
    if callable(build):  # and the time its builds (or cache hits) take: a diagnostic
        def compile_module_from_src(*args, **kwargs):
            t0 = time.perf_counter_ns()
            try:
                return build(*args, **kwargs)
            finally:
                _build_ns[0] += time.perf_counter_ns() - t0

        drv.compile_module_from_src = compile_module_from_src
    return True


def take_seen():
    """The records since the last call (for the judge, in a call reply)."""
    out = list(_seen)
    _seen.clear()
    return out


def take_build_ns():
    """Nanoseconds spent getting launchers (built, or loaded from the cache) since the last
    call."""
    ns, _build_ns[0] = _build_ns[0], 0
    return ns


def prebuild(text, warm):
    """Warm-up, before any candidate: runs `warm` (launches one kernel of the harness's own)
    and builds the launchers of the judge's signatures (`text`, the file's JSON list) into
    this worker's own cache, with the build arguments Triton used for the warm-up kernel's
    launcher. -> how many were built."""
    records = [r for r in (valid(t) for t in _loads(text)) if r is not None]
    drv = _driver()
    build = drv.compile_module_from_src
    used = []

    def capture(*args, **kwargs):
        used.append((args, kwargs))
        return build(*args, **kwargs)

    drv.compile_module_from_src = capture
    try:
        warm()
    finally:
        drv.compile_module_from_src = build
    template = next(((a, k) for a, k in used if _name_of(a, k) == "__triton_launcher"), None)
    if template is None or not records:
        return 0
    built = 0
    for args, kwargs in records:
        try:
            src = drv.make_launcher(*args, **kwargs)
            a, k = template
            if "src" in k:
                build(*a, **{**k, "src": src})
            else:
                build(src, *a[1:], **k)
            built += 1
        except Exception:  # noqa: BLE001 - a signature this Triton cannot build: skipped
            continue
    return built


def warm_kernel():
    """Compiles and launches a one-line kernel, so that the candidate's compile finds Triton's
    compiler stack (LLVM, the CUDA backend, the driver utilities) loaded and built."""
    import torch
    import triton
    import triton.language as tl

    @triton.jit
    def _kforge_warm(x_ptr):
        tl.store(x_ptr, tl.load(x_ptr) + 1.0)

    x = torch.zeros(1, device="cuda")
    _kforge_warm[(1,)](x)
    torch.cuda.synchronize()


def _name_of(args, kwargs):
    if "name" in kwargs:
        return kwargs["name"]
    return args[1] if len(args) > 1 else None


def _loads(text):
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value[:MAX_KEPT] if isinstance(value, list) else []


# --- the judge (trusted) ------------------------------------------------------------------

def seed(warm=warm_kernel):
    """The judge (trusted, between jobs): builds into its own Triton cache (TRITON_CACHE_DIR,
    the seed the agent copies into new workers' caches) the warm-up kernel, Triton's driver
    utilities and the launchers of kept signatures not built yet. -> how many launchers were
    built now."""
    if not _seed_warm[0]:  # a restarted judge: the signatures the last one kept
        path = os.environ.get("KFORGE_JUDGE_LAUNCHERS_FILE")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(MAX_KEPT * (MAX_RECORD_CHARS + 8))
        except (OSError, TypeError):
            text = ""
        for t in _loads(text):
            if valid(t) is not None and t not in _kept:
                _kept.append(t)
    pending = [t for t in _kept if t not in _seeded]
    if _seed_warm[0] and not pending:
        return 0
    _seed_warm[0] = True
    _seeded.update(pending)  # tried once: one Triton cannot build is not tried again
    return prebuild(json.dumps(pending), warm)


def note(records):
    """Keeps the valid ones of one job's records (a call reply's "launchers": untrusted) and
    rewrites the file when the kept list changes."""
    if not isinstance(records, list):
        return
    changed = False
    for text in records[:MAX_PER_JOB]:
        if valid(text) is None:
            continue
        if _kept and _kept[0] == text:
            continue
        if text in _kept:
            _kept.remove(text)
        _kept.insert(0, text)
        changed = True
    del _kept[MAX_KEPT:]
    path = os.environ.get("KFORGE_JUDGE_LAUNCHERS_FILE")
    if changed and path:
        try:
            tmp = f"{path}.tmp{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(_kept, f)
            os.replace(tmp, path)
        except OSError:
            pass
