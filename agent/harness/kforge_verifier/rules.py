"""Static checks of the candidate's source (ast), before any of it runs.

Rule groups (each Violation names its rule):
  impl          the source contains code of its impl_type:
                  triton  a @triton.jit function AND a launch kernel[grid](...)
                  cuda_c  "__global__" in a string AND torch.utils.cpp_extension load_inline/load
                  cpp     kforge_cpp or ctypes imported AND a library built/loaded
                          (kforge_cpp.build, ctypes.CDLL, ctypes.cdll..., numpy.ctypeslib)
                  swft    swft imported
  framework_op  heavy framework computation (trace.HEAVY: matmul, conv, softmax, norms,
                attention, linalg, fft ...) called outside kernel code: torch./F./numpy./
                scipy. calls and the @ operator; for cuda_c also ATen calls (torch::matmul,
                at::softmax, .matmul( ...) in the C++/CUDA sources: the source that
                load_inline/load receives, folded where it is a constant expression (string
                constants, +, "".join, f-strings of constants, names bound once), scanned with
                its C/C++ comments removed; every other string constant of the candidate
                (where a source could come from by other ways) is scanned as it is, except
                docstrings and bare string statements, which never reach a compiler (unless
                the candidate reads __doc__). Method calls (x.softmax(), lib.softmax()) are
                left to the runtime trace, which sees what the called object is
  reference     importing or naming the reference module (it is the answer)
  integrity     reaching into the harness or the interpreter: importing inspect, gc,
                builtins, atexit, faulthandler, __main__ or the harness; sys.modules,
                sys._getframe, settrace/setprofile, meta_path; frame/traceback internals
                (.f_back, .f_locals, .tb_frame, .__traceback__, .__globals__ ...);
                exec/eval/compile/__import__;
                assigning attributes of torch/numpy/triton/ctypes/kforge_cpp/time/builtins;
                kforge_cpp's private names (kforge_cpp._count ...: its call counter);
                strings naming result.json or the harness

Code under `if __name__ == "__main__":` is ignored (the harness never runs it; a self-test
there may compare against torch). Code inside @triton.jit functions is kernel code and is
exempt from framework_op.
"""

import ast
import re
from dataclasses import dataclass

from . import trace


@dataclass
class Violation:
    rule: str
    message: str
    line: int = 0

    def __str__(self):
        where = f"line {self.line}: " if self.line else ""
        return f"[{self.rule}] {where}{self.message}"


FORBIDDEN_MODULES = ("inspect", "gc", "builtins", "__builtin__", "__main__", "atexit",
                     "faulthandler", "kforge_harness", "kforge_verifier")
FORBIDDEN_REFS = ("sys.modules", "sys._getframe", "sys.settrace", "sys.setprofile",
                  "sys.meta_path", "sys.path_hooks", "sys.path_importer_cache",
                  "threading.settrace", "threading.setprofile", "sys._current_frames")
# Frame and traceback internals: the way from a candidate's code to the harness's locals.
FORBIDDEN_ATTRS = ("f_back", "f_locals", "f_globals", "f_builtins", "tb_frame", "tb_next",
                   "gi_frame", "cr_frame", "ag_frame", "__traceback__", "__globals__",
                   "__closure__", "__subclasses__")
FORBIDDEN_CALLS = ("exec", "eval", "compile", "__import__", "breakpoint")
FORBIDDEN_NAMES = ("__builtins__", "__loader__", "__spec__")
FORBIDDEN_STRINGS = ("result.json", "kforge_harness", "kforge_verifier")
PROTECTED_ROOTS = ("torch", "numpy", "triton", "ctypes", "kforge_cpp", "time", "builtins",
                   "os", "sys", "mindspore", "scipy")
FRAMEWORK_ROOTS = ("torch", "numpy", "scipy", "mindspore")
NATIVE_LOADERS = ("kforge_cpp.build", "ctypes.CDLL", "ctypes.PyDLL", "ctypes.cdll.LoadLibrary",
                  "numpy.ctypeslib.load_library", "kforge_cpp.CountingCDLL")

_ATEN_RE = re.compile(
    r"\b(?:torch|at)::(?:native::)?(matmul|mm|bmm|addmm|baddbmm|einsum|tensordot|linear|"
    r"conv\w*|softmax|log_softmax|_softmax|layer_norm|batch_norm|group_norm|instance_norm|"
    r"scaled_dot_product_attention|cross_entropy|lstm|gru)\s*\(")
_ATEN_METHOD_RE = re.compile(r"\.\s*(matmul|mm|bmm|softmax|log_softmax|addmm)\s*\(")

# a raw string literal R"delim(...)delim" (optionally u8R, uR, UR, LR): not lexed, see below
_RAW_STRING_RE = re.compile(r'(?<![A-Za-z0-9_])(?:u8|u|U|L)?R"')


def _digit_separator(text, i):
    """Whether the ' at text[i] is inside a number (1'000, 0xFF'FF): the token before it is a
    preprocessing number, which starts with a digit (or .digit). After anything else (an
    identifier, a prefix u8/u/U/L, an operator) a ' opens a character literal."""
    j = i
    while j > 0 and (text[j - 1].isalnum() or text[j - 1] in "_.'" or
                     (text[j - 1] in "+-" and j > 1 and text[j - 2] in "eEpP")):
        j -= 1
    if j == i:
        return False
    first = text[j]
    return first.isdigit() or (first == "." and j + 1 < i and text[j + 1].isdigit())


def strip_cpp_comments(text):
    """`text` (C/C++/CUDA source) with its // and /* */ comments replaced by spaces; string
    and character literals are kept as they are. None when the source has a raw string literal,
    which this lexer does not follow: the caller then scans the text as it is. Where this
    lexer and the compiler could disagree, it keeps text (a comment it misses is scanned)."""
    if _RAW_STRING_RE.search(text):
        return None
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "/" and text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" ")
            i = j
        elif c == "/" and text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(" ")
            i = j
        elif c == '"' or (c == "'" and not _digit_separator(text, i)):
            # a string or character literal
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(text[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def aten_call(text):
    """The first ATen call in C++ text, or None."""
    m = _ATEN_RE.search(text) or _ATEN_METHOD_RE.search(text)
    return m.group(0).strip() if m else None


def _is_main_guard(node):
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    parts = [node.test.left] + list(node.test.comparators)
    names = {p.id for p in parts if isinstance(p, ast.Name)}
    consts = {p.value for p in parts if isinstance(p, ast.Constant)}
    return "__name__" in names and "__main__" in consts


class _Scanner:
    def __init__(self, impl_type, reference_names):
        self.impl_type = impl_type
        self.reference_names = tuple(reference_names)
        self.aliases = {}
        self.violations = []
        self.jit_names = set()
        self.jit_nodes = set()
        self.launches = []
        self.strings = []            # (text, line)
        self.imported_roots = set()
        self.calls = []              # (dotted, node)
        self.native = set()          # names bound to native libraries/extension modules
        self.defined = set()         # functions and methods the candidate defines itself
        self.string_nodes = []       # the ast.Constant of each entry of self.strings
        self.tree = None

    def add(self, rule, message, node=None):
        self.violations.append(Violation(rule, message, getattr(node, "lineno", 0) or 0))

    # --- names ------------------------------------------------------------------------------
    def dotted(self, node):
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Call):
            return self.dotted(node.func)
        return None

    def collect_aliases(self, tree):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    root = a.name.split(".")[0]
                    self.imported_roots.add(root)
                    if a.asname:
                        self.aliases[a.asname] = a.name
                    else:
                        self.aliases.setdefault(root, root)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                self.imported_roots.add(node.module.split(".")[0])
                for a in node.names:
                    self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"

    def _is_jit_decorator(self, dec):
        name = self.dotted(dec.func if isinstance(dec, ast.Call) else dec) or ""
        return name in ("triton.jit", "triton.runtime.jit", "triton.runtime.jit.jit",
                        "triton.runtime.jit.JITFunction")

    def collect_native(self, tree):
        """Names (and self.attrs) assigned from a library loader: their methods are the
        candidate's own compiled functions (a C function may well be called matmul)."""
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and \
                    isinstance(node.value, ast.Call):
                loader = self.dotted(node.value.func) or ""
                if not (loader in NATIVE_LOADERS or loader.startswith("ctypes.cdll.") or
                        loader.endswith(("cpp_extension.load_inline", "cpp_extension.load"))):
                    continue
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    name = self.dotted(t) if isinstance(t, (ast.Name, ast.Attribute)) else None
                    if name:
                        self.native.add(name)

    def collect_jit(self, tree):
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.defined.add(node.name)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    any(self._is_jit_decorator(d) for d in node.decorator_list):
                self.jit_names.add(node.name)
                for inner in ast.walk(node):
                    self.jit_nodes.add(id(inner))

    # --- the walk ---------------------------------------------------------------------------
    def scan(self, tree):
        self.tree = tree
        self.collect_aliases(tree)
        self.collect_jit(tree)
        self.collect_native(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    self.check_module(a.name, node)
            elif isinstance(node, ast.ImportFrom):
                if node.level and node.module is None:
                    for a in node.names:
                        self.check_module(a.name, node)
                elif node.module:
                    self.check_module(node.module, node)
                    for a in node.names:
                        self.check_module(f"{node.module}.{a.name}", node, leaf_only=True)
                        if node.module == "kforge_cpp" and a.name.startswith("_"):
                            self.add("integrity", f"kforge_cpp.{a.name} (kforge_cpp's "
                                     f"internals) is off limits to candidates", node)
            elif isinstance(node, ast.Call):
                self.visit_call(node)
            elif isinstance(node, ast.Attribute):
                ref = self.dotted(node)
                if (ref or "").startswith("kforge_cpp._"):
                    self.add("integrity", f"{ref} (kforge_cpp's internals) is off limits to "
                             f"candidates", node)
                elif ref in FORBIDDEN_REFS:
                    self.add("integrity", f"{ref} is off limits to candidates", node)
                elif node.attr in FORBIDDEN_ATTRS:
                    self.add("integrity", f".{node.attr} (interpreter internals) is off limits "
                             f"to candidates", node)
            elif isinstance(node, ast.Name):
                if node.id in FORBIDDEN_NAMES:
                    self.add("integrity", f"{node.id} is off limits to candidates", node)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                self.strings.append((node.value, node.lineno))
                self.string_nodes.append(node)
                self.check_string(node.value, node)
            elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
                targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) \
                    else [node.target]
                for target in targets:
                    self.check_assign_target(target)
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
                if id(node) not in self.jit_nodes:
                    self.add("framework_op", "the @ operator runs the framework's matmul; "
                             "compute it in your kernel", node)

    def check_module(self, name, node, leaf_only=False):
        parts = name.split(".")
        if leaf_only:
            parts = parts[-1:]
        for p in parts:
            if p in self.reference_names:
                self.add("reference", f"importing the reference ({name}) is not allowed: "
                         f"implement the operation", node)
                return
        root = name.split(".")[0]
        if not leaf_only and root in FORBIDDEN_MODULES:
            self.add("integrity", f"importing {name} is off limits to candidates", node)

    def check_string(self, text, node):
        for s in FORBIDDEN_STRINGS:
            if s in text:
                self.add("integrity", f"the string {s!r} is off limits to candidates", node)
        stripped = text.strip()
        if stripped in FORBIDDEN_ATTRS:
            self.add("integrity", f"the string {stripped!r} (interpreter internals) is off "
                     f"limits to candidates", node)
        for ref in self.reference_names:
            if stripped == ref or stripped.endswith(f"{ref}.py") or \
                    stripped.endswith(f"/{ref}"):
                self.add("reference", f"naming the reference ({text!r}) is not allowed", node)

    def check_assign_target(self, target):
        for t in (target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]):
            if isinstance(t, ast.Attribute):
                ref = self.dotted(t) or ""
                if ref.split(".")[0] in PROTECTED_ROOTS and ref.count(".") >= 1 and \
                        self._resolves_to_module(t.value):
                    self.add("integrity", f"assigning {ref} (monkeypatching a library) is "
                             f"not allowed", t)

    def _resolves_to_module(self, node):
        # torch.x = ..., np.linalg.x = ..., torch.Tensor.add = ...: the base is an imported name
        while isinstance(node, ast.Attribute):
            node = node.value
        return isinstance(node, ast.Name) and node.id in self.aliases

    def visit_call(self, node):
        func = node.func
        if isinstance(func, ast.Subscript):
            base = func.value
            name = base.id if isinstance(base, ast.Name) else \
                base.attr if isinstance(base, ast.Attribute) else None
            if name:
                self.launches.append(name)
            return
        dotted = self.dotted(func) or ""
        self.calls.append((dotted, node))
        if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS and \
                func.id not in self.aliases:
            self.add("integrity", f"{func.id}() (dynamic code) is off limits to candidates",
                     node)
        if dotted in ("getattr", "setattr", "delattr", "hasattr") and len(node.args) >= 2 and \
                (self.dotted(node.args[0]) or "") == "kforge_cpp" and \
                not (isinstance(node.args[1], ast.Constant) and
                     isinstance(node.args[1].value, str) and
                     not node.args[1].value.startswith("_")):
            self.add("integrity", f"{dotted}(kforge_cpp, ...) of a private or computed name "
                     f"is off limits to candidates", node)
        if dotted in ("setattr", "delattr") and node.args:
            target = self.dotted(node.args[0]) or ""
            if target.split(".")[0] in PROTECTED_ROOTS and self._resolves_to_module(
                    node.args[0]):
                self.add("integrity", f"{dotted}({target}, ...) (monkeypatching a library) "
                         f"is not allowed", node)
        if id(node) in self.jit_nodes:
            return
        root = dotted.split(".")[0]
        if root in FRAMEWORK_ROOTS and "." in dotted:
            tail = dotted.split(".")
            op = trace.normalize(tail[-1])
            qualified = ".".join(tail[1:])
            if trace.is_heavy(op) or trace.is_heavy(qualified) or root == "scipy" or \
                    any(p in ("linalg", "fft") for p in tail[1:-1]):
                self.add("framework_op", f"{dotted}() computes with the framework; implement "
                         f"it in your {self.impl_type} kernel", node)
                return
        # A method call (x.softmax(), lib.softmax()) is judged by what the object is, at run
        # time (trace.py), not by its name here: a ctypes function named like the op is fine.

    # --- ATen calls in cuda_c sources ------------------------------------------------------
    def check_aten(self):
        """Scans the C++/CUDA sources for ATen calls: each source argument of load_inline that
        folds to a constant text, without its comments; every other string constant as it
        is (a source may be put together in ways not followed here), except docstrings."""
        folder = _SourceFolder(self.tree, self.dotted)
        covered = folder.fold_sources()
        for text, line in folder.texts:
            stripped = strip_cpp_comments(text)
            found = aten_call(text if stripped is None else stripped)
            if found:
                self.violations.append(Violation(
                    "framework_op", f"the C++ source calls ATen ({found}...): compute it in "
                    f"your own CUDA kernel", line))
        skipped = set() if folder.reads_doc else folder.bare_strings
        for node in self.string_nodes:
            if id(node) in covered or id(node) in skipped:
                continue
            found = aten_call(node.value)
            if found:
                self.violations.append(Violation(
                    "framework_op", f"the C++ source calls ATen ({found}...): compute it in "
                    f"your own CUDA kernel", node.lineno))

    # --- impl_type presence -----------------------------------------------------------------
    def check_impl(self):
        impl = self.impl_type
        dotted_calls = [d for d, _ in self.calls]
        if impl == "triton":
            if not self.jit_names:
                self.add("impl", "no @triton.jit kernel: a triton candidate must define one")
            elif not any(n in self.jit_names for n in self.launches):
                self.add("impl", f"the @triton.jit kernel(s) {sorted(self.jit_names)} are never "
                         f"launched with kernel[grid](...)")
        elif impl == "cuda_c":
            if not any("__global__" in s for s, _ in self.strings):
                self.add("impl", "no __global__ CUDA kernel in the source: a cuda_c candidate "
                         "must define one in its CUDA source string")
            if not any(d.endswith(("cpp_extension.load_inline", "cpp_extension.load"))
                       for d in dotted_calls):
                self.add("impl", "the CUDA source is never built: call "
                         "torch.utils.cpp_extension.load_inline")
            self.check_aten()
        elif impl == "cpp":
            if not ({"kforge_cpp", "ctypes"} & self.imported_roots or
                    any(d.startswith("numpy.ctypeslib") for d in dotted_calls)):
                self.add("impl", "a cpp candidate must build its C++ with kforge_cpp.build (or "
                         "load a library with ctypes) and call it")
            elif not any(d in NATIVE_LOADERS or d.startswith("ctypes.cdll.")
                         for d in dotted_calls):
                self.add("impl", "no native library is built or loaded: call "
                         "kforge_cpp.build(source) and call its functions")
        elif impl == "swft":
            if "swft" not in self.imported_roots:
                self.add("impl", "a swft candidate must import swft")


_SOURCE_KEYWORDS = ("cpp_sources", "cuda_sources")
_STR_METHODS = ("strip", "lstrip", "rstrip")


class _Unfoldable(Exception):
    pass


class _SourceFolder:
    """Folds the source arguments of load_inline to the text the compiler gets, where they are
    constant expressions: string constants, +, "sep".join([...]), f-strings of constants,
    textwrap.dedent, .strip(), lists (joined with newlines, as load_inline does) and names
    bound exactly once to such an expression and read nowhere else."""

    def __init__(self, tree, dotted):
        self.tree = tree
        self.dotted = dotted
        self.texts = []           # (folded source, line)
        self.bare_strings = set()  # ids of string constants that are bare statements
        self.reads_doc = False    # the candidate may read a docstring (__doc__, vars ...)
        self.bindings = {}        # name -> binding nodes
        self.loads = {}           # name -> ids of the Name nodes that read it
        self.dynamic = False      # globals()/vars()/setattr ...: names may be rebound unseen
        for node in ast.walk(tree):
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and \
                    isinstance(node.value.value, str):
                self.bare_strings.add(id(node.value))
            elif isinstance(node, ast.Name):
                if node.id == "__doc__":
                    self.reads_doc = True
                if isinstance(node.ctx, ast.Load):
                    self.loads.setdefault(node.id, set()).add(id(node))
                else:
                    self.bindings.setdefault(node.id, []).append(node)
            elif isinstance(node, ast.Attribute):
                if node.attr in ("__doc__", "__dict__"):
                    self.reads_doc = True
                    self.dynamic = True
                if not isinstance(node.ctx, ast.Load):
                    self.bindings.setdefault(node.attr, []).append(node)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    "__doc__" in node.value:
                self.reads_doc = True
            elif isinstance(node, ast.arg):
                self.bindings.setdefault(node.arg, []).append(node)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for a in node.names:
                    name = a.asname or a.name.split(".")[0]
                    self.bindings.setdefault(name, []).append(node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.bindings.setdefault(node.name, []).append(node)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                self.bindings.setdefault(node.name, []).append(node)
            elif isinstance(node, (ast.Global, ast.Nonlocal)):
                for name in node.names:
                    self.bindings.setdefault(name, []).extend([node, node])
            elif isinstance(node, ast.Call):
                func = self.dotted(node.func) or ""
                if func in ("globals", "locals", "vars", "setattr", "delattr", "getattr",
                            "exec", "eval"):
                    dynamic_name = func != "getattr" or len(node.args) < 2 or not (
                        isinstance(node.args[1], ast.Constant))
                    if dynamic_name:
                        self.dynamic = True
                        self.reads_doc = True
            for field in ("name", "rest"):  # match patterns bind names too
                if type(node).__name__.startswith("Match") and \
                        isinstance(getattr(node, field, None), str):
                    self.bindings.setdefault(getattr(node, field), []).append(node)
        self.values = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                    isinstance(node.targets[0], ast.Name):
                self.values[id(node.targets[0])] = node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None and \
                    isinstance(node.target, ast.Name):
                self.values[id(node.target)] = node.value

    def source_args(self):
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Call):
                continue
            func = self.dotted(node.func) or ""
            if not func.endswith("cpp_extension.load_inline"):
                continue
            for arg in node.args[1:3]:
                yield arg
            for kw in node.keywords:
                if kw.arg in _SOURCE_KEYWORDS:
                    yield kw.value

    def fold_sources(self):
        """Folds every source argument; -> ids of the string constants that reach the
        compiler only through folded sources (scanned there, without comments)."""
        covered, names, reads = set(), set(), set()
        for arg in self.source_args():
            used, followed, visited = set(), set(), set()
            try:
                text = self.fold(arg, used, followed, visited, 0, top=True)
            except (_Unfoldable, RecursionError, ValueError, TypeError):
                continue
            self.texts.append((text, getattr(arg, "lineno", 0)))
            covered |= used
            names |= followed
            reads |= visited
        # a name read anywhere else may take its text to a compiler in another way
        for name in names:
            if not self.loads.get(name, set()) <= reads:
                covered -= self._constants_of(name)
        return covered

    def _constants_of(self, name):
        out = set()
        for b in self.bindings.get(name, []):
            value = self.values.get(id(b))
            if value is not None:
                out |= {id(n) for n in ast.walk(value) if isinstance(n, ast.Constant)}
        return out

    def fold(self, node, used, followed, visited, depth, top=False):
        if depth > 50:
            raise _Unfoldable
        rec = lambda n: self.fold(n, used, followed, visited, depth + 1)  # noqa: E731
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str):
                used.add(id(node))
                return node.value
            if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
                return str(node.value)
            raise _Unfoldable
        if isinstance(node, (ast.List, ast.Tuple)) and top:
            return "\n".join(self.fold(e, used, followed, visited, depth + 1) for e in node.elts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return rec(node.left) + rec(node.right)
        if isinstance(node, ast.JoinedStr):
            parts = []
            for v in node.values:
                if isinstance(v, ast.FormattedValue):
                    if v.conversion not in (-1, None) or v.format_spec is not None:
                        raise _Unfoldable
                    parts.append(rec(v.value))
                else:
                    parts.append(rec(v))
            return "".join(parts)
        if isinstance(node, ast.Name):
            if self.dynamic:
                raise _Unfoldable
            binds = self.bindings.get(node.id, [])
            if len(binds) != 1 or id(binds[0]) not in self.values:
                raise _Unfoldable
            followed.add(node.id)
            visited.add(id(node))
            return self.fold(self.values[id(binds[0])], used, followed, visited, depth + 1,
                             top=top)
        if isinstance(node, ast.Call) and not node.keywords:
            func = self.dotted(node.func) or ""
            if func == "textwrap.dedent" and len(node.args) == 1:
                import textwrap
                return textwrap.dedent(rec(node.args[0]))
            if isinstance(node.func, ast.Attribute) and not node.args and \
                    node.func.attr in _STR_METHODS:
                return getattr(rec(node.func.value), node.func.attr)()
            if isinstance(node.func, ast.Attribute) and node.func.attr == "join" and \
                    len(node.args) == 1 and isinstance(node.args[0], (ast.List, ast.Tuple)):
                sep = rec(node.func.value)
                return sep.join(rec(e) for e in node.args[0].elts)
        raise _Unfoldable


def check(source, impl_type, reference_names=("reference",), filename="candidate.py"):
    """-> list of Violations. Raises SyntaxError when the source does not parse."""
    tree = ast.parse(source, filename=filename)
    tree.body = [n for n in tree.body if not _is_main_guard(n)]
    scanner = _Scanner(impl_type, reference_names)
    scanner.scan(tree)
    scanner.check_impl()
    seen, unique = set(), []
    for v in scanner.violations:
        key = (v.rule, v.message, v.line)
        if key not in seen:
            seen.add(key)
            unique.append(v)
    return unique
