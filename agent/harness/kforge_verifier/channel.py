"""The judge's link to a candidate worker: messages on a socket, arrays in shared memory.

Messages are JSON objects, one per SOCK_SEQPACKET packet (at most MAX_MESSAGE bytes), with
optional descriptors (SCM_RIGHTS). Nothing is ever unpickled: the worker runs the candidate,
so whatever it sends is hostile data, parsed with limits and never executed.

Values cross as a JSON tree (encode/decode): arrays are {"a": {dtype, shape, off, n, fw}}
whose bytes sit in an Arena, a memfd mapped by both processes; scalars, None, strings,
lists, tuples and dicts are spelled out. The judge writes inputs into its input arena and
reads outputs from the output arena by copying them out (a snapshot) the moment the worker
answers: later writes by the candidate never reach what the judge compares.
"""

import ctypes as C
import fcntl
import json
import mmap
import os
import select
import socket
import time

import numpy as np

MAX_MESSAGE = 1 << 20       # bytes of one JSON message
MAX_DEPTH = 16              # nesting of a value tree
MAX_ITEMS = 100_000         # leaves of a value tree
MAX_DIMS = 16
MAX_FDS = 4


class Closed(Exception):
    """The peer closed the socket (or died)."""


class Timeout(Exception):
    """No message before the deadline."""


class ProtocolError(Exception):
    """A message that breaks the protocol (size, JSON, shape of the value tree)."""


class Channel:
    """One end of a SOCK_SEQPACKET socket pair."""

    def __init__(self, fd):
        self.sock = socket.socket(fileno=fd)

    def close(self):
        self.sock.close()

    def send(self, obj, fds=()):
        # UTF-8 on the wire; a lone surrogate (a candidate's text can hold one) becomes "?",
        # since strict JSON readers (the agent's) refuse its \ud800 escape
        data = json.dumps(obj, separators=(",", ":"), allow_nan=False,
                          ensure_ascii=False).encode("utf-8", "replace")
        if len(data) > MAX_MESSAGE:
            raise ProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
        try:
            if fds:
                socket.send_fds(self.sock, [data], list(fds))
            else:
                self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Closed(str(e)) from None

    def recv(self, deadline=None):
        """-> (obj, fds). deadline: time.monotonic() value, None waits forever."""
        if deadline is not None:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.sock], [], [], max(left, 0.0))
            if not ready:
                raise Timeout()
        try:
            data, fds, flags, _ = socket.recv_fds(self.sock, MAX_MESSAGE + 1, MAX_FDS)
        except ConnectionResetError as e:
            raise Closed(str(e)) from None
        if not data:
            for fd in fds:
                os.close(fd)
            raise Closed("end of stream")
        if len(data) > MAX_MESSAGE or flags & socket.MSG_TRUNC:
            for fd in fds:
                os.close(fd)
            raise ProtocolError(f"message larger than {MAX_MESSAGE} bytes")
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError) as e:  # RecursionError: nested too deeply
            for fd in fds:
                os.close(fd)
            raise ProtocolError(f"not JSON: {e}") from None
        if not isinstance(obj, dict):
            for fd in fds:
                os.close(fd)
            raise ProtocolError("a message must be a JSON object")
        return obj, fds


class _Bump:
    """Bump allocation in a buffer of `size` bytes, offsets aligned to ALIGN; reset() frees
    everything at once (one call's values)."""
    ALIGN = 64
    KIND = "arena"

    def reset(self):
        self.used = 0

    def alloc(self, nbytes):
        off = (self.used + self.ALIGN - 1) & ~(self.ALIGN - 1)
        if off + nbytes > self.size:
            raise ProtocolError(f"{self.KIND} of {self.size} bytes is full ({off + nbytes} needed)")
        self.used = off + nbytes
        return off


class Arena(_Bump):
    """A shared byte buffer (memfd + mmap). The creator sizes it; the peer maps its fd."""

    def __init__(self, size, fd=None, name="kforge-arena"):
        self.size = max(int(size), mmap.PAGESIZE)
        if fd is None:
            fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            os.ftruncate(fd, self.size)
            # the peer may be hostile: a buffer it shrank would kill our reads with SIGBUS
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                        fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        self.fd = fd
        self.map = mmap.mmap(fd, self.size)
        self.used = 0

    def close(self):
        try:
            self.map.close()
        except BufferError:
            pass  # arrays still view it: freed with them
        os.close(self.fd)


# --- dtypes -----------------------------------------------------------------------------------
# torch dtypes without a numpy twin travel as raw integers of the same width.
# dtypes numpy lacks travel as same-sized ints (signed: torch before 2.3 has no uint16)
_RAW = {"bfloat16": "int16", "float8_e4m3fn": "int8", "float8_e5m2": "int8"}
_NUMPY = {"float64", "float32", "float16", "complex128", "complex64", "int64", "int32",
          "int16", "int8", "uint8", "uint16", "uint32", "uint64", "bool"}


def _np_dtype(name):
    if name in _NUMPY:
        return np.dtype(name)
    if name in _RAW:
        return np.dtype(_RAW[name])
    raise ProtocolError(f"unsupported dtype {name!r}")


def _is_torch_tensor(x):
    t = type(x)
    return t.__module__.startswith("torch") and hasattr(x, "data_ptr") and hasattr(x, "dtype")


def array_bytes_view(x):
    """-> (dtype name, shape, framework, numpy view of the bytes). Copies only when the
    array is not contiguous on the host."""
    if isinstance(x, np.ndarray):
        # not np.ascontiguousarray, which makes a 0-d array (np.sum's result) one of shape (1,)
        a = x if x.flags.c_contiguous else np.ascontiguousarray(x)
        return a.dtype.name, list(a.shape), "numpy", a.reshape(-1).view(np.uint8)
    if _is_torch_tensor(x):
        import torch
        t = x.detach()
        name = str(t.dtype).replace("torch.", "")
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        if name in _RAW:
            t = t.view(getattr(torch, _RAW[name]))
        if t.is_conj():
            t = t.resolve_conj()
        if hasattr(t, "resolve_neg"):
            t = t.resolve_neg()
        a = t.numpy()
        return name, list(x.shape), "torch", a.reshape(-1).view(np.uint8)
    raise TypeError(f"not an array: {type(x).__name__}")


def encode(value, arena, depth=0):
    """value -> JSON tree; array bytes go into `arena`."""
    if depth > MAX_DEPTH:
        raise ProtocolError("value nested too deeply")
    if isinstance(value, np.ndarray) or _is_torch_tensor(value):
        name, shape, fw, raw = array_bytes_view(value)
        off = arena.alloc(raw.nbytes)
        arena.map[off:off + raw.nbytes] = raw.tobytes() if not raw.flags.c_contiguous else raw
        dev = getattr(getattr(value, "device", None), "type", "cpu")
        return {"a": {"dtype": name, "shape": shape, "off": off, "n": int(raw.nbytes),
                      "fw": fw, "dev": dev}}
    if value is None:
        return {"n": 1}
    if isinstance(value, (bool, np.bool_)):
        return {"b": bool(value)}
    if isinstance(value, (int, np.integer)):
        return {"i": str(int(value)), "t": type(value).__name__}
    if isinstance(value, (float, np.floating)):
        return {"f": repr(float(value)), "t": type(value).__name__}
    if isinstance(value, str):
        return {"s": value[:4096]}
    if isinstance(value, tuple):
        return {"tu": [encode(v, arena, depth + 1) for v in value]}
    if isinstance(value, list):
        return {"l": [encode(v, arena, depth + 1) for v in value]}
    if isinstance(value, dict):
        return {"d": [[str(k), encode(v, arena, depth + 1)] for k, v in value.items()]}
    # the worker reports other types by name; the judge fails the comparison with it
    return {"o": type(value).__module__ + "." + type(value).__qualname__}


class Opaque:
    """A value the other side could not send (its type name); never equal to anything."""

    def __init__(self, type_name):
        self.type_name = str(type_name)[:200]

    def __repr__(self):
        return f"<{self.type_name}>"


def decode(tree, arena, device="cpu", copy=True, count=None):
    """JSON tree -> value. Arrays are copied out of the arena (copy=True: a snapshot the
    peer cannot change) or viewed in place (copy=False, the worker's zero-copy inputs)."""
    count = count if count is not None else [0]
    return _decode(tree, arena, device, copy, count, 0)


def _decode(tree, arena, device, copy, count, depth):
    count[0] += 1
    if depth > MAX_DEPTH or count[0] > MAX_ITEMS:
        raise ProtocolError("value too large or nested too deeply")
    if not isinstance(tree, dict) or len(tree) < 1:
        raise ProtocolError("malformed value")
    if "a" in tree:
        return _decode_array(tree["a"], arena, device, copy)
    if "n" in tree:
        return None
    if "b" in tree:
        return bool(tree["b"])
    if "i" in tree:
        try:
            v = int(str(tree["i"])[:40])
        except ValueError:
            raise ProtocolError("malformed integer") from None
        return _np_scalar(tree.get("t"), v)
    if "f" in tree:
        try:
            v = float(str(tree["f"])[:64])
        except ValueError:
            raise ProtocolError("malformed float") from None
        return _np_scalar(tree.get("t"), v)
    if "s" in tree:
        return str(tree["s"])[:4096]
    if "tu" in tree and isinstance(tree["tu"], list):
        return tuple(_decode(v, arena, device, copy, count, depth + 1) for v in tree["tu"])
    if "l" in tree and isinstance(tree["l"], list):
        return [_decode(v, arena, device, copy, count, depth + 1) for v in tree["l"]]
    if "d" in tree and isinstance(tree["d"], list):
        out = {}
        for item in tree["d"]:
            if not (isinstance(item, list) and len(item) == 2):
                raise ProtocolError("malformed dict entry")
            out[str(item[0])[:256]] = _decode(item[1], arena, device, copy, count, depth + 1)
        return out
    if "o" in tree:
        return Opaque(tree["o"])
    raise ProtocolError("unknown value kind")


def _np_scalar(type_name, v):
    if isinstance(type_name, str) and type_name in _NUMPY and type_name not in ("bool",):
        return np.dtype(type_name).type(v)
    return v


def _decode_array(meta, arena, device, copy):
    if not isinstance(meta, dict):
        raise ProtocolError("malformed array")
    name = meta.get("dtype")
    shape = meta.get("shape")
    off, n = meta.get("off"), meta.get("n")
    if not isinstance(name, str) or not isinstance(shape, list) or len(shape) > MAX_DIMS or \
            not all(isinstance(d, int) and d >= 0 for d in shape) or \
            not isinstance(off, int) or not isinstance(n, int):
        raise ProtocolError("malformed array")
    dt = _np_dtype(name)
    numel = 1
    for d in shape:
        numel *= d
    if numel * dt.itemsize != n or off < 0 or off + n > arena.size:
        raise ProtocolError(f"array of dtype {name} and shape {shape} does not fit its "
                            f"{n} bytes at offset {off}")
    if copy:
        flat = np.frombuffer(arena.map, dtype=dt, count=numel, offset=off).copy()
    else:
        flat = np.frombuffer(arena.map, dtype=dt, count=numel, offset=off)
    arr = flat.reshape(shape)
    if meta.get("fw") == "torch":
        import torch
        t = torch.from_numpy(arr) if arr.flags.writeable else torch.from_numpy(arr.copy())
        if name in _RAW:
            t = t.view(getattr(torch, name))
        if device != "cpu" and meta.get("dev", device) != "cpu":  # a host tensor stays one
            t = t.to(device)
        return t
    return arr


def total_array_bytes(value, depth=0):
    """Bytes the arrays in a (nested) value need in an arena, with alignment slack."""
    if isinstance(value, np.ndarray):
        return value.nbytes + 64
    if _is_torch_tensor(value):
        return value.numel() * value.element_size() + 64
    if depth < MAX_DEPTH and isinstance(value, (list, tuple)):
        return sum(total_array_bytes(v, depth + 1) for v in value)
    if depth < MAX_DEPTH and isinstance(value, dict):
        return sum(total_array_bytes(v, depth + 1) for v in value.values())
    return 0


# --- device memory shared across processes (CUDA VMM, file descriptors) -----------------------
# On a GPU the inputs and outputs stay in device memory: the judge allocates two buffers with
# the driver's virtual memory management (cuMemCreate), exports each as a POSIX file descriptor
# and sends the descriptors to the worker over the channel (SCM_RIGHTS), as it does for host
# arenas. The worker imports and maps them. Arrays travel as byte ranges of them, the way host
# arrays travel in an Arena. Nothing crosses the host.
# Why not cudaIpcGetMemHandle: a legacy IPC handle is resolved through the exporter's process
# id, and the boxed worker lives in its own PID namespace, where the judge's id means nothing.
# A descriptor is a capability: it opens in any namespace that can reach the device.

_POSIX_FD = 1          # CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR
_PINNED = 1            # CU_MEM_ALLOCATION_TYPE_PINNED
_ON_DEVICE = 1         # CU_MEM_LOCATION_TYPE_DEVICE
_READ_WRITE = 3        # CU_MEM_ACCESS_FLAGS_PROT_READWRITE


def _driver():
    """libcuda through ctypes, with the signatures DeviceArena uses; the calling thread has
    the device's primary context current (the one torch computes in)."""
    import torch
    torch.empty(1, device="cuda")  # the runtime makes the primary context current here
    lib = C.CDLL("libcuda.so.1")
    u64, size, vp = C.c_uint64, C.c_size_t, C.c_void_p
    for name, args in (("cuMemGetAllocationGranularity", [C.POINTER(size), vp, C.c_int]),
                       ("cuMemCreate", [C.POINTER(u64), size, vp, u64]),
                       ("cuMemExportToShareableHandle", [vp, u64, C.c_int, u64]),
                       ("cuMemImportFromShareableHandle", [C.POINTER(u64), vp, C.c_int]),
                       ("cuMemAddressReserve", [C.POINTER(u64), size, size, u64, u64]),
                       ("cuMemMap", [u64, size, size, u64, u64]),
                       ("cuMemSetAccess", [u64, size, vp, size]),
                       ("cuMemUnmap", [u64, size]),
                       ("cuMemAddressFree", [u64, size]),
                       ("cuMemRelease", [u64]),
                       ("cuGetErrorName", [C.c_int, C.POINTER(C.c_char_p)])):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, C.c_int
    return lib


class _Location(C.Structure):  # CUmemLocation
    _fields_ = [("type", C.c_int), ("id", C.c_int)]


class _AllocProp(C.Structure):  # CUmemAllocationProp
    _fields_ = [("type", C.c_int), ("requestedHandleTypes", C.c_int), ("location", _Location),
                ("win32HandleMetaData", C.c_void_p), ("compressionType", C.c_ubyte),
                ("gpuDirectRDMACapable", C.c_ubyte), ("usage", C.c_ushort),
                ("reserved", C.c_ubyte * 4)]


class _AccessDesc(C.Structure):  # CUmemAccessDesc
    _fields_ = [("location", _Location), ("flags", C.c_int)]


class _CudaBuffer:
    """A raw device pointer that torch.as_tensor can view (__cuda_array_interface__)."""

    def __init__(self, ptr, nbytes):
        self.__cuda_array_interface__ = {"shape": (nbytes,), "typestr": "|u1",
                                         "data": (ptr, False), "version": 3, "strides": None}


class DeviceArena(_Bump):
    """Device memory the judge allocates and exports (fd=None) or the worker imports from the
    descriptor it was sent (fd given: the arena owns it from then on). `fd` is what to send."""
    ALIGN = 256
    KIND = "device arena"

    def __init__(self, size, fd=None):
        import torch
        self.lib = lib = _driver()
        self.used = 0
        self.handle = self.ptr = None
        self.fd = fd
        device = torch.cuda.current_device()
        prop = _AllocProp(type=_PINNED, requestedHandleTypes=_POSIX_FD,
                          location=_Location(_ON_DEVICE, device))
        grain = C.c_size_t()
        self._check("cuMemGetAllocationGranularity", C.byref(grain), C.byref(prop), 0)
        g = max(grain.value, 1)
        self.size = (max(int(size), 4096) + g - 1) // g * g
        handle = C.c_uint64()
        try:
            if fd is None:
                self._check("cuMemCreate", C.byref(handle), self.size, C.byref(prop), 0)
                self.handle = handle.value
                out = C.c_int(-1)
                self._check("cuMemExportToShareableHandle", C.byref(out), self.handle,
                            _POSIX_FD, 0)
                self.fd = out.value
            else:
                self._check("cuMemImportFromShareableHandle", C.byref(handle), C.c_void_p(fd),
                            _POSIX_FD)
                self.handle = handle.value
            ptr = C.c_uint64()
            self._check("cuMemAddressReserve", C.byref(ptr), self.size, 0, 0, 0)
            self.ptr = ptr.value
            self._check("cuMemMap", self.ptr, self.size, 0, self.handle, 0)
            access = _AccessDesc(location=_Location(_ON_DEVICE, device), flags=_READ_WRITE)
            self._check("cuMemSetAccess", self.ptr, self.size, C.byref(access), 1)
        except OSError:
            self.close()
            raise
        self.tensor = torch.as_tensor(_CudaBuffer(self.ptr, self.size), device="cuda")

    def _check(self, name, *args):
        rc = getattr(self.lib, name)(*args)
        if rc != 0:
            text = C.c_char_p()
            self.lib.cuGetErrorName(rc, C.byref(text))
            raise OSError(f"{name} failed: {(text.value or b'?').decode()} ({rc})")

    def close(self):
        self.tensor = None
        if self.ptr is not None:
            self.lib.cuMemUnmap(self.ptr, self.size)
            self.lib.cuMemAddressFree(self.ptr, self.size)
            self.ptr = None
        if self.handle is not None:
            self.lib.cuMemRelease(self.handle)
            self.handle = None
        if self.fd is not None and self.fd >= 0:
            os.close(self.fd)
            self.fd = None


def _is_device_tensor(x):
    return _is_torch_tensor(x) and getattr(x, "device", None) is not None and \
        x.device.type == "cuda"


def encode_device(value, arena, depth=0):
    """encode() for a DeviceArena: CUDA tensors are copied into it on the device; everything
    else is spelled out as by encode() (host arrays are refused: they do not belong here)."""
    if depth > MAX_DEPTH:
        raise ProtocolError("value nested too deeply")
    if _is_device_tensor(value):
        import torch
        t = value.detach().contiguous()
        name = str(t.dtype).replace("torch.", "")
        _np_dtype(name)  # a dtype the other side can name
        n = t.numel() * t.element_size()
        off = arena.alloc(n)
        if n:
            arena.tensor[off:off + n].copy_(t.reshape(-1).view(torch.uint8))
        return {"a": {"dtype": name, "shape": list(t.shape), "off": off, "n": n, "fw": "torch",
                      "dev": "cuda"}}
    if isinstance(value, (tuple, list)):
        key = "tu" if isinstance(value, tuple) else "l"
        return {key: [encode_device(v, arena, depth + 1) for v in value]}
    if isinstance(value, dict):
        return {"d": [[str(k), encode_device(v, arena, depth + 1)] for k, v in value.items()]}
    if isinstance(value, np.ndarray) or _is_torch_tensor(value):
        return {"o": "host array (" + type(value).__name__ + ") where a CUDA tensor was expected"}
    return encode(value, None, depth)


def decode_device(tree, arena, copy=True, count=None):
    """decode() for a DeviceArena: views into it (copy=False) or private copies."""
    count = count if count is not None else [0]
    count[0] += 1
    if count[0] > MAX_ITEMS or not isinstance(tree, dict):
        raise ProtocolError("malformed value")
    if "a" in tree:
        import torch
        meta = tree["a"]
        if not isinstance(meta, dict):
            raise ProtocolError("malformed array")
        name, shape, off, n = meta.get("dtype"), meta.get("shape"), meta.get("off"), meta.get("n")
        if not isinstance(name, str) or not isinstance(shape, list) or len(shape) > MAX_DIMS or \
                not all(isinstance(d, int) and d >= 0 for d in shape) or \
                not isinstance(off, int) or not isinstance(n, int):
            raise ProtocolError("malformed array")
        dt = _np_dtype(name)
        numel = 1
        for d in shape:
            numel *= d
        if numel * dt.itemsize != n or off < 0 or off + n > arena.size:
            raise ProtocolError(f"array of dtype {name} and shape {shape} does not fit")
        raw = arena.tensor[off:off + n]
        if copy:
            raw = raw.clone()
        return raw.view(getattr(torch, name)).reshape(shape)
    if "tu" in tree and isinstance(tree["tu"], list):
        return tuple(decode_device(v, arena, copy, count) for v in tree["tu"])
    if "l" in tree and isinstance(tree["l"], list):
        return [decode_device(v, arena, copy, count) for v in tree["l"]]
    if "d" in tree and isinstance(tree["d"], list):
        return {str(k)[:256]: decode_device(v, arena, copy, count) for k, v in
                (item for item in tree["d"] if isinstance(item, list) and len(item) == 2)}
    return decode(tree, None, count=count)


def put(value, arena):
    """encode() or encode_device(), by the kind of arena."""
    if isinstance(arena, DeviceArena):
        return encode_device(value, arena)
    return encode(value, arena)


def take(tree, arena, device="cpu", copy=True):
    """decode() or decode_device(), by the kind of arena. The tree is the peer's: whatever in
    it numpy or torch refuses (an integer out of range, an impossible shape, a dtype this
    torch lacks) is the peer's protocol error, not ours."""
    try:
        if isinstance(arena, DeviceArena):
            return decode_device(tree, arena, copy)
        return decode(tree, arena, device, copy)
    except (ValueError, TypeError, OverflowError, AttributeError, IndexError,
            RecursionError, MemoryError) as e:
        raise ProtocolError(f"{type(e).__name__}: {e}"[:300]) from None


def all_on_cuda(value, depth=0):
    """Whether every array in a (nested) value is a CUDA tensor (and there is one)."""
    if _is_torch_tensor(value):
        return _is_device_tensor(value)
    if isinstance(value, np.ndarray):
        return False
    if depth < MAX_DEPTH and isinstance(value, (list, tuple)):
        flags = [f for f in (all_on_cuda(v, depth + 1) for v in value) if f is not None]
        return all(flags) if flags else None
    return None  # no array here
