"""The emulated triton.language (see triton/__init__.py): blocks are numpy arrays."""
import math as _pymath

import numpy as np

float16 = np.float16
float32 = np.float32
float64 = np.float64
int32 = np.int32
int64 = np.int64

_state = {"pid": (0, 0, 0), "grid": (1, 1, 1)}


class constexpr:  # noqa: N801 - Triton's name; only used as an annotation
    pass


class Block(np.ndarray):
    """A numpy array with Triton's .to(dtype)."""

    def to(self, dtype):
        return np.asarray(self).astype(dtype).view(Block)


def _block(a):
    return np.asarray(a).view(Block)


class Pointer:
    """A flat buffer and element offsets into it (an int or an array of ints)."""

    def __init__(self, buf, offs):
        self.buf = buf
        self.offs = offs

    def __add__(self, other):
        if isinstance(other, Pointer):
            raise TypeError("pointer + pointer")
        return Pointer(self.buf, self.offs + (np.asarray(other) if isinstance(other, np.ndarray)
                                              else other))

    __radd__ = __add__

    def __sub__(self, other):
        return self + (-np.asarray(other))


def program_id(axis):
    return int(_state["pid"][axis])


def num_programs(axis):
    return int(_state["grid"][axis])


# Triton's compile-time limits on block shapes (python/triton/language/semantic.py arange,
# _utils.validate_block_shape, dot): the emulator raises where Triton's front end would
# refuse to compile, so a kernel that only the emulator accepts fails here too.
TRITON_MAX_TENSOR_NUMEL = 1048576
MIN_DOT_SIZE = 16


class CompilationError(Exception):
    """What Triton raises for the limits below (there: triton.compiler.CompilationError)."""


def _is_power_of_2(n):
    return n > 0 and n & (n - 1) == 0


def _check_shape(shape):
    numel = 1
    for d in shape:
        if not isinstance(d, (int, np.integer)) or not _is_power_of_2(int(d)):
            raise CompilationError(f"Shape element {d} must be a power of 2")
        numel *= int(d)
    if numel > TRITON_MAX_TENSOR_NUMEL:
        raise CompilationError(f"numel ({numel}) exceeds triton maximum tensor numel "
                               f"({TRITON_MAX_TENSOR_NUMEL})")


def arange(start, end):
    if not isinstance(start, (int, np.integer)) or not isinstance(end, (int, np.integer)):
        raise CompilationError("arange's arguments must be of type tl.constexpr")
    if end <= start or not _is_power_of_2(int(end - start)):
        raise CompilationError("arange's range must be a power of 2")
    if end - start > TRITON_MAX_TENSOR_NUMEL:
        raise CompilationError(f"end - start must be less than or equal to "
                               f"TRITON_MAX_TENSOR_NUMEL = {TRITON_MAX_TENSOR_NUMEL}")
    return _block(np.arange(start, end, dtype=np.int32))


def zeros(shape, dtype):
    _check_shape(shape)
    return _block(np.zeros(shape, dtype=dtype))


def full(shape, value, dtype):
    _check_shape(shape)
    return _block(np.full(shape, value, dtype=dtype))


def cdiv(a, b):
    return (a + b - 1) // b


def _where_valid(ptr, mask, what):
    offs = np.asarray(ptr.offs, dtype=np.int64)
    m = np.ones(offs.shape, dtype=bool) if mask is None else \
        np.broadcast_to(np.asarray(mask, dtype=bool), offs.shape)
    sel = offs[m]
    if sel.size and (sel.min() < 0 or sel.max() >= ptr.buf.size):
        bad = sel[(sel < 0) | (sel >= ptr.buf.size)][0]
        raise RuntimeError(f"emulated illegal memory access: {what} at element {int(bad)} of a "
                           f"buffer of {ptr.buf.size}")
    return offs, m, sel


def load(ptr, mask=None, other=None):
    offs, m, sel = _where_valid(ptr, mask, "load")
    if other is None:
        fill = np.nan if np.issubdtype(ptr.buf.dtype, np.floating) else 0
    else:
        fill = other
    out = np.full(offs.shape, fill, dtype=ptr.buf.dtype)
    out[m] = ptr.buf[sel]
    return _block(out)


def store(ptr, value, mask=None):
    offs, m, sel = _where_valid(ptr, mask, "store")
    val = np.broadcast_to(np.asarray(value).astype(ptr.buf.dtype), offs.shape)
    ptr.buf[sel] = val[m]


def _reduce(fn, x, axis):
    x = np.asarray(x)
    return _block(fn(x, axis=axis).astype(x.dtype))


def sum(x, axis=None):  # noqa: A001 - Triton's name
    return _reduce(np.sum, x, axis)


def max(x, axis=None):  # noqa: A001
    return _reduce(np.max, x, axis)


def min(x, axis=None):  # noqa: A001
    return _reduce(np.min, x, axis)


def exp(x):
    return _block(np.exp(np.asarray(x)))


def sqrt(x):
    return _block(np.sqrt(np.asarray(x)))


class math:  # noqa: N801 - Triton's tl.math namespace (the part the candidates use)
    @staticmethod
    def erf(x):
        x = np.asarray(x)
        return _block(np.vectorize(_pymath.erf, otypes=[x.dtype])(x))


def where(cond, a, b):
    a, b = np.asarray(a), np.asarray(b)
    dtype = a.dtype if a.ndim else (b.dtype if b.ndim else np.result_type(a, b))
    return _block(np.where(cond, a, b).astype(dtype))


def maximum(a, b):
    return _block(np.maximum(a, b))


def minimum(a, b):
    return _block(np.minimum(a, b))


def dot(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise CompilationError(f"tl.dot of shapes {a.shape} and {b.shape}")
    if a.shape[0] < MIN_DOT_SIZE or a.shape[1] < MIN_DOT_SIZE or b.shape[1] < MIN_DOT_SIZE:
        raise CompilationError(f"Input shapes should have M >= {MIN_DOT_SIZE}, N >= "
                               f"{MIN_DOT_SIZE} and K >= {MIN_DOT_SIZE}")
    if a.dtype != b.dtype:
        raise CompilationError(f"tl.dot operands of dtypes {a.dtype} and {b.dtype}")
    # float16 products are exact in float32; the accumulator (out_dtype) is float32
    return _block(np.matmul(a.astype(np.float32), b.astype(np.float32)))
