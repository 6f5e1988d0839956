"""Runtime tracing of framework ops during one forward call, and the integrity snapshot.

A traced call records every torch function/method (torch.overrides.TorchFunctionMode) or
numpy ufunc/array function (inputs wrapped in an ndarray subclass with __array_ufunc__ and
__array_function__) that the forward calls directly; ops called inside other ops are not
seen. Names are normalised (Tensor.__add__, torch.add, np.add -> "add"; mm, bmm, dot, matmul
-> "matmul"; add.reduce -> "sum").

Each op is either
  * layout/allocation (ALLOWED): shapes, views, copies, dtype/device moves, allocation,
    pointers. Allocation (ALLOC) yields fresh, untainted memory; the others propagate taint
    from their inputs to their results;
  * computation: everything else. Its results are "tainted": produced by the framework.
    Tainted results are kept alive for the rest of the call, so their memory cannot be reused
    and an overlap test with the outputs is exact.

The runner derives three rules from a candidate's trace (see runner.check_trace):
  heavy     the candidate called a HEAVY op (matmul, conv, softmax, norms, attention, ...)
  cover     the candidate called, at the reference's sizes, every compute op the reference
            calls: it re-did the reference's computation with the framework
  provenance an output overlaps memory produced by a framework compute op: the framework,
            not the candidate's kernel, wrote it
"""

import numpy as np

ALIASES = {
    "mm": "matmul", "bmm": "matmul", "dot": "matmul", "vdot": "matmul", "mv": "matmul",
    "inner": "matmul", "addmm": "matmul", "addbmm": "matmul", "baddbmm": "matmul",
    "addmv": "matmul", "addr": "matmul", "chain_matmul": "matmul", "rmatmul": "matmul",
    "multiply": "mul", "rmul": "mul", "subtract": "sub", "rsub": "sub", "true_divide": "div",
    "divide": "div", "truediv": "div", "rtruediv": "div", "rdiv": "div",
    "floor_divide": "floordiv", "rfloordiv": "floordiv", "radd": "add", "power": "pow",
    "rpow": "pow", "negative": "neg", "absolute": "abs", "amax": "max", "amin": "min",
    "add.reduce": "sum", "multiply.reduce": "prod", "maximum.reduce": "max",
    "minimum.reduce": "min", "add.accumulate": "cumsum", "multiply.accumulate": "cumprod",
    "logical_and.reduce": "all", "logical_or.reduce": "any", "clip": "clamp",
    "conv2d": "conv2d", "_convolution": "convolution", "_softmax": "softmax",
    "special_softmax": "softmax", "mod": "remainder", "fmod": "remainder", "rmod": "remainder",
    "sqrt": "sqrt", "rsqrt": "rsqrt", "arctan2": "atan2", "greater": "gt", "less": "lt",
    "greater_equal": "ge", "less_equal": "le", "equal": "eq", "not_equal": "ne",
}

# Layout, movement, allocation, introspection: not computation.
ALLOC = frozenset({
    "empty", "empty_like", "empty_strided", "zeros", "zeros_like", "ones", "ones_like",
    "full", "full_like", "new_empty", "new_zeros", "new_ones", "new_full", "new_tensor",
    "new_empty_strided", "tensor", "as_tensor", "from_numpy", "arange", "zero", "fill",
    "ndarray", "frombuffer", "empty_aligned",
})
ALLOWED = ALLOC | frozenset({
    "attr", "size", "dim", "ndimension", "numel", "nelement", "stride", "storage_offset",
    "is_contiguous", "element_size", "data_ptr", "storage", "untyped_storage",
    "_typed_storage", "is_floating_point", "is_complex", "is_tensor", "get_device", "type",
    "is_pinned", "is_shared", "is_set_to", "dtype", "device", "shape", "ndim", "result_type",
    "promote_types", "can_cast", "broadcast_shapes", "may_share_memory", "shares_memory",
    "item", "tolist", "numpy", "cpu", "cuda", "npu", "to", "float", "half", "double",
    "bfloat16", "int", "long", "bool", "byte", "char", "short", "contiguous", "clone",
    "detach", "requires_grad", "view", "view_as", "reshape", "reshape_as", "flatten",
    "unflatten", "ravel", "squeeze", "unsqueeze", "expand", "expand_as", "broadcast_to",
    "broadcast_tensors", "broadcast_arrays", "permute", "transpose", "t", "movedim",
    "moveaxis", "swapaxes", "swapdims", "rollaxis", "narrow", "select", "split", "chunk",
    "unbind", "tensor_split", "array_split", "as_strided", "unfold", "cat", "concat",
    "concatenate", "stack", "hstack", "vstack", "dstack", "copy", "copyto", "setitem",
    "getitem", "ascontiguousarray", "asfortranarray", "asarray", "asanyarray", "array",
    "require", "atleast_1d", "atleast_2d", "atleast_3d", "expand_dims", "pin_memory",
    "record_stream", "share_memory", "len", "iter", "format", "repr", "str", "hash",
    "bool_", "index", "reduce_ex", "deepcopy", "setstate", "getstate", "contains",
    "array_wrap", "array_priority", "dlpack", "dlpack_device", "ctypes", "manual_seed",
    "set_num_threads", "get_num_threads", "is_nonzero", "is_same_size", "iscontiguous",
    "shape_as_tensor", "sym_size", "sym_stride", "sym_numel", "resize", "set",
})

# Computation that a kernel candidate must not leave to the framework at all.
HEAVY = frozenset({
    "matmul", "einsum", "tensordot", "outer", "ger", "kron", "linear", "bilinear",
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "convolution", "conv_tbc", "convolve", "correlate", "softmax", "log_softmax", "softmin",
    "scaled_dot_product_attention", "multi_head_attention_forward", "layer_norm",
    "group_norm", "batch_norm", "instance_norm", "rms_norm", "local_response_norm",
    "lstm", "gru", "rnn_tanh", "rnn_relu", "embedding_bag", "cross_entropy", "nll_loss",
})
HEAVY_PREFIXES = ("linalg.", "fft.", "scipy.")
# Long sums: ops whose float32 results carry rounding that grows with their contraction.
CONTRACTIONS = frozenset({
    "matmul", "linear", "bilinear", "einsum", "tensordot", "conv1d", "conv2d", "conv3d",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "scaled_dot_product_attention",
})
# Ops that draw random numbers (in another dtype they may draw others).
RANDOM = frozenset({
    "rand", "randn", "randint", "rand_like", "randn_like", "randint_like", "randperm",
    "normal", "bernoulli", "multinomial", "uniform", "exponential", "geometric", "cauchy",
    "log_normal", "random", "poisson", "dropout", "dropout1d", "dropout2d", "dropout3d",
    "alpha_dropout", "feature_alpha_dropout", "feature_dropout", "rrelu", "fused_dropout",
    "native_dropout", "standard_normal", "permutation", "shuffle", "choice", "integers",
})


def normalize(name):
    """Raw function name -> the name used by the rules."""
    name = name or "?"
    if name in ("__get__", "__set__"):
        return "attr"
    base = name
    if base.startswith("__") and base.endswith("__"):
        base = base[2:-2]
        if base.startswith("i") and base[1:] in ("add", "sub", "mul", "truediv", "floordiv",
                                                 "matmul", "pow", "mod", "and", "or", "xor",
                                                 "lshift", "rshift"):
            base = base[1:]
    base = base.rstrip("_") or base  # in-place variants
    if base in ("float", "int", "bool", "complex", "index") and name.startswith("__"):
        return "item"  # __float__, __int__, __bool__: scalar conversion
    return ALIASES.get(base, base)


# Operands passed by keyword, in the order of their functions' signatures (matmul(input,
# other), addmm(input, mat1, mat2), linear(input, weight, bias), sdpa(query, key, value) ...).
_OPERAND_NAMES = ("input", "mat1", "batch1", "weight", "mat2", "batch2", "other", "vec",
                  "query", "key", "value", "bias")


def _numel(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


def min_flops(op, arrays, kw_arrays, outs):
    """A lower bound on the floating-point operations (a multiply-add is 2) any algorithm
    needs for one traced op, from its operands' shapes; 0 where none is known. Only the
    contractions count (elementwise work is bounded by the bytes instead), each at the least
    it can cost: matmul 2 x out x k; a convolution 2 x out x (input channels / groups), its
    kernel's taps not counted (Winograd and FFT algorithms need fewer multiplies than taps);
    attention half of its two products (causal masking). Never raises on odd shapes: 0."""
    try:
        shapes = [tuple(getattr(a, "shape", ())) for a in arrays + kw_arrays]
        out = _numel(getattr(outs[0], "shape", ())) if outs else 0
        if op == "matmul" and len(shapes) >= 2:
            a, b = shapes[-2], shapes[-1]  # mm(a, b); addmm(c, a, b): the last two operands
            if not a or not b or (len(a) == 1 and len(b) == 1 and out > 1):
                return 0  # an outer product (addr): no contraction
            # the contracted size, in either order (rmatmul comes as (b, a)); the lesser
            # where both fit, none where neither does
            ks = [a[-1]] if a[-1] == (b[-2] if len(b) >= 2 else b[-1]) else []
            ks += [b[-1]] if b[-1] == (a[-2] if len(a) >= 2 else a[-1]) else []
            return 2 * out * int(min(ks)) if ks else 0
        if op == "linear" and len(shapes) >= 2 and shapes[1]:
            return 2 * out * int(shapes[1][-1])  # weight [out_features, in_features]
        if op in ("conv1d", "conv2d", "conv3d") and len(shapes) >= 2 and \
                len(shapes[1]) >= 3:
            return 2 * out * int(shapes[1][1])  # weight [C_out, C_in / groups, *taps]
        if op.startswith("conv_transpose") and len(shapes) >= 2 and len(shapes[1]) >= 3:
            return 2 * _numel(shapes[0]) * int(shapes[1][1])  # weight [C_in, C_out / g, ...]
        if op == "scaled_dot_product_attention" and len(shapes) >= 3 and \
                min(len(x) for x in shapes[:3]) >= 2:
            q, k, v = shapes[:3]
            batch = _numel(q[:-2])
            return batch * q[-2] * k[-2] * (q[-1] + v[-1])
    except (TypeError, ValueError, IndexError):
        pass
    return 0


def is_heavy(op):
    return op in HEAVY or op.startswith(HEAVY_PREFIXES)


class TraceLog:
    """What one forward call did with the framework."""

    def __init__(self, overlaps, keep_results=True):
        self._overlaps = overlaps
        self._keep = keep_results
        self.ops = []            # compute ops, in call order (normalised)
        self.max_numel = {}      # compute op -> largest result size seen
        self.all_ops = {}        # every op (normalised) -> count, for diagnostics
        self._tainted = []       # (result array, producing op)
        self.errors = 0          # tracing errors (ignored)
        self.flops = 0           # a lower bound on the call's arithmetic (min_flops)

    def _arrays(self, obj, is_array, depth=0):
        if is_array(obj):
            yield obj
        elif depth < 4 and isinstance(obj, (list, tuple)):
            for item in obj:
                yield from self._arrays(item, is_array, depth + 1)
        elif depth < 4 and isinstance(obj, dict):
            for item in obj.values():
                yield from self._arrays(item, is_array, depth + 1)

    def producer(self, x):
        """The compute op whose result overlaps x, or None."""
        for t, op in reversed(self._tainted):
            if self._overlaps(x, t):
                return op
        return None

    def record(self, op, args, kwargs, result, is_array):
        """Logs one framework call. Never raises: tracing must never break the candidate (an
        error is counted in `errors` and the call goes on)."""
        try:
            self._record(op, args, kwargs, result, is_array)
        except Exception:  # noqa: BLE001
            self.errors += 1

    def _record(self, op, args, kwargs, result, is_array):
        self.all_ops[op] = self.all_ops.get(op, 0) + 1
        outs = list(self._arrays(result, is_array))
        if op in ALLOWED:
            if op in ALLOC or not self._keep:
                return
            source = None
            for a in self._arrays((args, kwargs), is_array):
                source = self.producer(a)
                if source:
                    break
            if source:
                targets = outs + ([args[0]] if op in ("setitem", "copy", "copyto") and args
                                  and is_array(args[0]) else [])
                self._tainted.extend((t, source) for t in targets)
            return
        self.ops.append(op)
        named = [(kwargs or {}).get(k) for k in _OPERAND_NAMES]
        self.flops += min_flops(op, list(self._arrays(args, is_array)),
                                list(self._arrays(named, is_array)), outs)
        size = 0
        for t in outs:
            size = max(size, int(np.prod(getattr(t, "shape", ()) or (1,))))
        self.max_numel[op] = max(self.max_numel.get(op, 0), size)
        if self._keep:
            self._tainted.extend((t, op) for t in outs)

    def release(self):
        self._tainted = []


def _span(x, torch=None):
    """(low, high) byte addresses of a host ndarray or a CPU tensor, or None."""
    if isinstance(x, np.ndarray):
        if x.size == 0:
            return None
        low, high = np.byte_bounds(x.view(np.ndarray))
        return low, high
    if torch is not None and isinstance(x, torch.Tensor):
        if x.device.type != "cpu" or x.numel() == 0 or x.layout != torch.strided:
            return None
        start = x.data_ptr()
        lo = sum((n - 1) * st for n, st in zip(x.shape, x.stride()) if st < 0)
        hi = sum((n - 1) * st for n, st in zip(x.shape, x.stride()) if st > 0)
        es = x.element_size()
        return start + lo * es, start + (hi + 1) * es
    return None


def trace_torch(torch, overlaps, fn, args):
    """Calls fn(*args) under a TorchFunctionMode. -> (result, TraceLog).

    numpy computation in a torch job is traced too: an ndarray the call gets from a tensor
    (x.numpy(), np.asarray(x), np.array(x) ...) is a tracing ndarray (see trace_numpy), so a
    forward that does its work with numpy on its inputs' memory is seen like one that does it
    with torch; its ops share the log (and provenance: torch.from_numpy of a numpy result
    overlaps that result)."""
    from torch.overrides import TorchFunctionMode

    def both_overlap(a, b):
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            return overlaps(a, b)
        sa, sb = _span(a, torch), _span(b, torch)
        return bool(sa and sb and sa[0] < sb[1] and sb[0] < sa[1])

    log = TraceLog(both_overlap)
    is_array = lambda x: isinstance(x, (torch.Tensor, np.ndarray))  # noqa: E731
    hooks = _NumpyHooks(log, is_array, also=lambda x: isinstance(x, torch.Tensor))

    class _Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            result = func(*args, **kwargs)
            name = normalize(getattr(func, "__name__", ""))
            log.record(name, args, kwargs, result, is_array)
            if name in ("numpy", "array") and type(result) is np.ndarray:
                result = result.view(hooks.Traced)  # x.numpy(), x.__array__()
            return result

    restore = hooks.patch()
    try:
        with _Mode():
            result = fn(*args)
    finally:
        restore()
    return result, log


class _NumpyHooks:
    """The tracing ndarray subclass and the patched np.asarray & co. for one traced call."""

    def __init__(self, log, is_nd, also=None):
        self.log = log
        self.also = also  # other objects whose np.asarray(...) is traced (torch tensors)
        hooks = self

        class Traced(np.ndarray):
            pass

        self.Traced = Traced

        def _ufunc(self, ufunc, method, *inputs, **kwargs):
            inputs = hooks.unwrap(inputs)
            kwargs = hooks.unwrap(kwargs)
            result = getattr(ufunc, method)(*inputs, **kwargs)
            name = ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"
            log.record(normalize(name), inputs, kwargs, result, is_nd)
            return hooks.wrap(result)

        def _function(self, func, types, fargs, fkwargs):
            fargs = hooks.unwrap(fargs)
            fkwargs = hooks.unwrap(fkwargs)
            result = func(*fargs, **fkwargs)
            module = getattr(func, "__module__", "") or ""
            name = func.__name__
            for sub in ("linalg", "fft"):
                if module.startswith(f"numpy.{sub}"):
                    name = f"{sub}.{name}"
            log.record(normalize(name), fargs, fkwargs, result, is_nd)
            return hooks.wrap(result)

        def _setitem(self, key, value):
            np.ndarray.__setitem__(self, key, hooks.unwrap(value))
            log.record("setitem", (self.view(np.ndarray), hooks.unwrap(value)), {}, None, is_nd)

        def _method(op, name):
            # ndarray methods that neither hook above sees: decided by the object called
            original = getattr(np.ndarray, name)

            def method(self, *a, **k):
                plain = self.view(np.ndarray)
                result = original(plain, *hooks.unwrap(a), **hooks.unwrap(k))
                log.record(op, (plain,) + tuple(hooks.unwrap(a)), k, result, is_nd)
                return hooks.wrap(result)
            method.__name__ = name
            return method

        Traced.__array_ufunc__ = _ufunc
        Traced.__array_function__ = _function
        Traced.__setitem__ = _setitem
        Traced.dot = _method("matmul", "dot")
        Traced.astype = _method("to", "astype")    # layout: carries the taint
        Traced.copy = _method("clone", "copy")

    def unwrap(self, obj, depth=0):
        if isinstance(obj, self.Traced):
            return obj.view(np.ndarray)
        if depth < 4 and isinstance(obj, tuple):
            return tuple(self.unwrap(x, depth + 1) for x in obj)
        if depth < 4 and isinstance(obj, list):
            return [self.unwrap(x, depth + 1) for x in obj]
        if depth < 4 and isinstance(obj, dict):
            return {k: self.unwrap(v, depth + 1) for k, v in obj.items()}
        return obj

    def wrap(self, obj):
        if type(obj) is np.ndarray:
            return obj.view(self.Traced)
        if isinstance(obj, tuple):
            return tuple(self.wrap(x) for x in obj)
        return obj

    def patch(self):
        """np.asarray and friends return base-class arrays for subclass inputs, which would
        end the trace at the first `x = np.ascontiguousarray(x)`; while the call runs, the
        module attributes are wrappers that keep traced inputs traced. -> restore()"""
        patched = {}
        hooks = self

        def keep(original):
            def wrapper(obj, *a, **k):
                result = original(hooks.unwrap(obj), *a, **k)
                traced = isinstance(obj, hooks.Traced) or (
                    hooks.also is not None and hooks.also(obj))
                if traced and type(result) is np.ndarray:
                    hooks.log.record(normalize(original.__name__), (obj,), k, result,
                                     lambda x: x is obj or isinstance(x, np.ndarray))
                    return result.view(hooks.Traced)
                return result
            wrapper.__name__ = getattr(original, "__name__", "wrapper")
            wrapper.__doc__ = getattr(original, "__doc__", None)
            return wrapper

        for attr in ("asarray", "ascontiguousarray", "asfortranarray", "array", "require",
                     "copy", "asanyarray"):
            original = getattr(np, attr, None)
            if original is not None:
                patched[attr] = original
                setattr(np, attr, keep(original))

        def restore():
            for attr, original in patched.items():
                setattr(np, attr, original)
        return restore


def trace_numpy(fn, args, overlaps):
    """Calls fn(*args) with ndarray inputs viewed as a tracing subclass. -> (result, log)."""
    log = TraceLog(overlaps)
    hooks = _NumpyHooks(log, lambda x: isinstance(x, np.ndarray))
    restore = hooks.patch()
    try:
        result = fn(*hooks.wrap(tuple(args)))
    finally:
        restore()
    return result, log


class IntegritySnapshot:
    """Identities of the callables in framework and harness namespaces, taken before the
    candidate is imported; changed() lists what the candidate replaced since."""

    def __init__(self, namespaces):
        self._items = []
        for label, obj in namespaces:
            try:
                names = dict(vars(obj))
            except TypeError:
                continue
            self._items.append((label, obj, {k: v for k, v in names.items()
                                             if callable(v) or isinstance(
                                                 v, (staticmethod, classmethod, property))}))

    def changed(self):
        out = []
        missing = object()
        for label, obj, before in self._items:
            now = vars(obj)
            for key, value in before.items():
                if now.get(key, missing) is not value:
                    out.append(f"{label}.{key}")
        return out
