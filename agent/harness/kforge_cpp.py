"""kforge_cpp: build a C++ source string into a shared library and call it through ctypes.

This is the helper that `cpp` candidates (CPU backend) use. The harness puts its directory on
sys.path, so a candidate just writes:

    import ctypes
    import kforge_cpp

    _lib = kforge_cpp.build(r'''
        extern "C" int vector_add(const float* x, const float* y, float* out, long n) {
            for (long i = 0; i < n; ++i) out[i] = x[i] + y[i];
            return 0;
        }
    ''')
    _lib.vector_add.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, kforge_cpp.c_ptr,
                                ctypes.c_long]
    _lib.vector_add.restype = ctypes.c_int

    class ModelNew:
        def forward(self, x, y):
            out = torch.empty_like(x)
            _lib.vector_add(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out), x.numel())
            return out

Contract:
  * `build(source, name="kernel", flags=())` compiles with `g++ -O2 -fPIC -std=c++17 <flags>`
    and links with `g++ -shared <flags>` (against the C library alone when that resolves
    every symbol, the way a plain `g++ -shared` links otherwise) into `<cache_dir>/<name>-<hash>.so` and returns a ctypes library. The hash covers
    the compiler, the flags and the source, so an unchanged source is compiled once per job
    directory (the cache directory is `$KFORGE_CPP_CACHE`, else `./.kforge_cpp` in the current
    directory, which the harness sets to the job directory). Exported functions must be
    `extern "C"`.
  * A failed compilation raises `CompileError`; its message carries the compiler's stderr
    (trimmed), which the harness reports as verdict compile_error.
  * Calls through a library returned by `build` (or, while the harness runs a cpp job,
    through any `ctypes.CDLL`) are counted: `native_calls()`. The harness uses the count to
    check that the candidate's forward really runs native code of its own, so a call counts
    only when the function called lies in a library the candidate built (`build`'s output,
    or a file under the job's directories: the cwd, `$KFORGE_CPP_CACHE`, the temporary
    directory; never the C library, `CDLL(None)` or a system library, also not when reached
    through the candidate's library, e.g. `lib.memcpy`), and the call passes at least one
    non-NULL pointer (a `ptr(...)`/c_void_p, a ctypes pointer, array or byref, an ndarray
    for an `ndpointer`, or an int for a pointer-typed argtype).
  * C++ exceptions must not cross the C boundary (they abort the process). Catch them in the
    extern "C" function and return an error code; turn `std::bad_alloc` into a code that the
    Python side raises as `MemoryError`, so the harness reports resource_exceeded.
"""

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading

__all__ = ["CompileError", "build", "native_calls", "ptr", "c_ptr", "install_ctypes_hook",
           "compiler_version", "CountingCDLL"]

# Pointer argument type for argtypes; pass `ptr(array_or_tensor)`.
c_ptr = ctypes.c_void_p

_STDERR_LIMIT = 8000
_lock = threading.Lock()
_calls = 0
_compilations = 0
_version_cache = {}


class CompileError(Exception):
    """The C++ compiler rejected the source; str(e) is the command and the compiler's stderr."""

    def __init__(self, message, stderr=""):
        super().__init__(message)
        self.stderr = stderr


def native_calls():
    """How many calls went through counted ctypes functions in this process so far."""
    return _calls


def compilations():
    """How many times build() ran the compiler in this process (a cache hit does not)."""
    return _compilations


def _count():
    global _calls
    _calls += 1  # the GIL makes this good enough; the count is a lower bound anyway


_PlainCDLL = ctypes.CDLL  # before install_ctypes_hook replaces it


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


_dladdr = None


def _object_of(address):
    """The real path of the loaded object that holds `address`, or None."""
    global _dladdr
    if _dladdr is None:
        try:
            fn = _PlainCDLL(None).dladdr
        except (OSError, AttributeError):
            try:
                fn = _PlainCDLL("libdl.so.2").dladdr
            except (OSError, AttributeError):
                return None
        fn.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
        fn.restype = ctypes.c_int
        _dladdr = fn
    info = _DlInfo()
    if not address or not _dladdr(address, ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.path.realpath(os.fsdecode(info.dli_fname))


_own_paths = set()  # real paths of the libraries build() produced


def _own_roots():
    """Directories whose libraries are the candidate's own: the job's working directory,
    the build cache, the temporary directory."""
    roots = [os.getcwd(), os.environ.get("KFORGE_CPP_CACHE") or "", tempfile.gettempdir()]
    out = []
    for r in roots:
        if r:
            out.append(os.path.join(os.path.realpath(r), ""))
    return out


def _is_own_library(path):
    if not path:
        return False
    path = os.path.realpath(path)
    return path in _own_paths or any(path.startswith(r) for r in _own_roots())


_POINTER_TYPES = (ctypes._Pointer, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_wchar_p,
                  ctypes.Array, ctypes.Structure, ctypes.Union)
_BYREF = type(ctypes.byref(ctypes.c_int()))


def _nonnull(arg):
    if arg is None:
        return False
    if isinstance(arg, (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_wchar_p)):
        return bool(arg.value)
    if isinstance(arg, ctypes._Pointer):
        return bool(arg)
    if isinstance(arg, int):
        return arg != 0
    return True


def _passes_pointer(args, argtypes):
    """Whether a call passes memory: a non-NULL pointer-like argument."""
    for i, arg in enumerate(args):
        if isinstance(arg, _POINTER_TYPES + (_BYREF,)) or hasattr(arg, "_as_parameter_") or \
                hasattr(arg, "__array_interface__"):
            if _nonnull(arg):
                return True
            continue
        if argtypes and i < len(argtypes) and isinstance(argtypes[i], type) and \
                issubclass(argtypes[i], _POINTER_TYPES) and _nonnull(arg):
            return True
    return False


class CountingCDLL(ctypes.CDLL):
    """A ctypes.CDLL whose foreign functions count their calls (see native_calls()): calls
    of functions that lie in a library the candidate built, passing a pointer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        base = self._FuncPtr
        verdicts = {}  # function address -> whether its calls count
        # a library loaded under another's handle (CDLL(path, handle=h)) is judged by
        # where each function actually is, so the name proves nothing: dladdr decides
        read = ctypes.c_void_p.from_address

        def counts(func):
            address = read(ctypes.addressof(func)).value
            ok = verdicts.get(address)
            if ok is None:
                ok = verdicts[address] = _is_own_library(_object_of(address))
            return ok

        class _CountingFuncPtr(base):
            _flags_ = base._flags_
            _restype_ = base._restype_

            def __call__(self, *call_args):
                if counts(self) and _passes_pointer(call_args, self.argtypes):
                    _count()
                return base.__call__(self, *call_args)

        self._FuncPtr = _CountingFuncPtr


def install_ctypes_hook():
    """Makes ctypes.CDLL, ctypes.cdll (and so numpy.ctypeslib.load_library) count calls.

    The harness calls this before it imports a cpp candidate; libraries loaded earlier are
    not affected. Idempotent.
    """
    if ctypes.CDLL is not CountingCDLL:
        ctypes.CDLL = CountingCDLL
        ctypes.cdll = ctypes.LibraryLoader(CountingCDLL)


def ptr(x):
    """The data pointer of a numpy array, torch tensor or ctypes object, as a c_void_p."""
    if hasattr(x, "data_ptr"):  # torch.Tensor
        return ctypes.c_void_p(x.data_ptr())
    if hasattr(x, "ctypes"):  # numpy.ndarray
        return ctypes.c_void_p(x.ctypes.data)
    return ctypes.cast(x, ctypes.c_void_p)


def _compiler(compiler=None):
    if compiler:
        return compiler
    env = os.environ.get("CXX")
    if env:
        return env
    return shutil.which("g++") or "/usr/bin/g++"


def compiler_version(compiler=None):
    """First line of `<compiler> --version`, or "" when it cannot be run."""
    cxx = _compiler(compiler)
    if cxx not in _version_cache:
        try:
            out = subprocess.run([cxx, "--version"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, timeout=30, check=False)
            _version_cache[cxx] = out.stdout.decode(errors="replace").splitlines()[0].strip()
        except (OSError, subprocess.SubprocessError, IndexError):
            _version_cache[cxx] = ""
    return _version_cache[cxx]


def _trim(text, limit=_STDERR_LIMIT):
    if len(text) <= limit:
        return text
    return text[:limit // 2] + "\n... [trimmed] ...\n" + text[-limit // 2:]


def _run_compiler(cmd, timeout_s):
    """None when `cmd` succeeded, else (exit status, cmd, its output)."""
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as e:
        raise CompileError(f"{' '.join(cmd)}: compiler timed out after {timeout_s} s",
                           "") from e
    if proc.returncode == 0:
        return None
    return proc.returncode, cmd, (proc.stderr + proc.stdout).decode(errors="replace")


def _link(cxx, flags, obj_path, lib_path, timeout_s):
    """Links the object into a shared library: first against the C library only, which is
    all most kernels need and skips reading libstdc++ (a third of a small build); an object
    that needs anything more (libstdc++, OpenMP, symbols of the loading process) fails that
    link on its undefined symbols and is linked as `g++ -shared` always links."""
    lean = [cxx, "-shared", "-fPIC", *flags, "-o", lib_path, obj_path, "-nodefaultlibs",
            "-lm", "-lc", "-lgcc", "-Wl,--no-undefined"]
    if _run_compiler(lean, timeout_s) is None:
        return None
    return _run_compiler([cxx, "-shared", "-fPIC", *flags, "-o", lib_path, obj_path],
                         timeout_s)


def build(source, name="kernel", flags=(), *, cache_dir=None, compiler=None, timeout_s=300):
    """Compiles `source` (C++) into a shared library, or reuses the cached one; returns a
    CountingCDLL. Raises CompileError with the compiler's stderr when compilation fails.

    flags: extra compiler flags, e.g. ("-fopenmp",) or ("-march=native", "-O3"); they come
    after the defaults, so "-O3" overrides "-O2".
    """
    global _compilations
    if not isinstance(source, str):
        raise TypeError("kforge_cpp.build: source must be a str")
    safe = "".join(c if (c.isalnum() or c in "_-") else "_" for c in str(name)) or "kernel"
    flags = [str(f) for f in flags]
    cxx = _compiler(compiler)
    directory = cache_dir or os.environ.get("KFORGE_CPP_CACHE") or os.path.join(
        os.getcwd(), ".kforge_cpp")
    key = hashlib.sha256("\0".join([cxx, compiler_version(cxx), " ".join(flags),
                                    source]).encode()).hexdigest()[:16]
    lib_path = os.path.join(directory, f"{safe}-{key}.so")
    with _lock:
        if not os.path.exists(lib_path):
            os.makedirs(directory, exist_ok=True)
            # unique temporary names: several processes may share a cache directory
            src_path = os.path.join(directory, f"{safe}-{key}.tmp{os.getpid()}.cpp")
            with open(src_path, "w", encoding="utf-8") as f:
                f.write(source)
            tmp_path = f"{lib_path}.tmp{os.getpid()}"
            obj_path = f"{tmp_path}.o"
            cmd = [cxx, "-O2", "-fPIC", "-std=c++17", "-pipe", *flags, "-c", "-o", obj_path,
                   src_path]
            try:
                err = _run_compiler(cmd, timeout_s)
                if err is None:
                    err = _link(cxx, flags, obj_path, tmp_path, timeout_s)
            finally:
                try:
                    os.unlink(obj_path)
                except OSError:
                    pass
            _compilations += 1
            if err is not None:
                for path in (tmp_path, src_path):
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
                raise CompileError(f"C++ compilation failed (exit {err[0]}): "
                                   f"{' '.join(err[1])}\n{_trim(err[2])}", err[2])
            os.replace(tmp_path, lib_path)
            os.replace(src_path, os.path.join(directory, f"{safe}-{key}.cpp"))  # for debugging
            cached = False
        else:
            cached = True
    _own_paths.add(os.path.realpath(lib_path))
    try:
        lib = CountingCDLL(lib_path)
    except OSError as e:
        text = str(e)
        if "map segment" in text or "Cannot allocate memory" in text:
            raise MemoryError(f"loading {lib_path}: {text}") from e
        raise CompileError(f"loading the built library failed (missing extern \"C\" symbol "
                           f"or a link error?): {text}", text) from e
    lib.kforge_path = lib_path
    lib.kforge_cached = cached
    return lib
