"""The candidate worker: the disposable process that runs one candidate for the judge.

Started ahead of any job (warm: numpy, the framework and the device context loaded), it waits
on its socket (fd 3) for the judge. It runs exactly one candidate and is then killed with
everything it started. Nothing here is trusted: the candidate shares this process and can
change any of it. The judge therefore takes only data from the worker (outputs it compares
itself, counters and trace summaries it treats as hints) and decides everything else.

Messages (JSON, see channel.py); every request gets one answer:
  -> {"ready": {...}}                              once, at start (before any candidate)
  <- {"op": "arenas", "in": n, "out": n, "device": 0|1} + 2 fds
                                                    the judge's shared buffers: memfds, or
                                                    CUDA VMM allocations (device: 1)
  <- {"op": "ping"}                                 -> {"pong": 1}
  <- {"op": "setup", framework, backend, threads, device_cap}
                                                    -> {"ok": 1} | {"error": {...}}: the
                                                    framework and the device, before any
                                                    candidate code exists here (trusted)
  <- {"op": "load", source, impl_type, framework, backend, op_name, threads, seed,
      init: value, reference_names: [...]}          -> {"ok": 1} | {"error": {...}}
  <- {"op": "call", inputs: value, seed, trace}     -> {"out": value, "aliases": [...],
                                                        "problems": [...], "launches": n,
                                                        "trace": {...}} | {"error": {...}}
"""

import importlib.abc
import importlib.util
import os
import sys
import time

from . import channel, errors, frameworks, launchers, launches, trace, verdicts


class _BlockReference(importlib.abc.MetaPathFinder):
    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            raise ImportError(f"importing the reference ({fullname}) is not allowed")
        return None


def _describe(exc, what):
    try:
        return errors.describe(exc, what)
    except BaseException:  # noqa: BLE001 - an exception whose __str__ raises
        return f"{what}: an exception of type {type(exc).__name__} (its text cannot be read)"


def _classify(exc, loading=False):
    try:
        return errors.classify(exc, loading)
    except BaseException:  # noqa: BLE001
        return verdicts.COMPILE_ERROR if loading else verdicts.RUNTIME_ERROR


def _error(exc, what, loading=False):
    return {"error": {"verdict": _classify(exc, loading), "message": _describe(exc, what)}}


class Worker:
    def __init__(self, chan, warm=None):
        self.chan = chan
        self.warm = warm or {}  # what the warm-up did (a diagnostic for the judge's result)
        self.fw = None
        self.call = None
        self.impl_type = ""
        self.in_arena = None
        self.out_arena = None
        self.received_ns = 0  # when the request being served arrived (perf_counter_ns)

    def serve(self):
        self.chan.send({"ready": {"pid": os.getpid(), "python": sys.version.split()[0],
                                  "warm": self.warm}})
        while True:
            try:
                msg, fds = self.chan.recv()
                self.received_ns = time.perf_counter_ns()
            except channel.Closed:
                return
            op = msg.get("op")
            if op == "arenas":
                reply = self.arenas(msg, fds)
            elif op == "ping":
                reply = self.ping()
            elif op == "setup":
                reply = self.setup(msg)
            elif op == "load":
                reply = self.load(msg)
            elif op == "call":
                reply = self.run(msg)
            else:
                reply = {"error": {"verdict": verdicts.RUNTIME_ERROR,
                                   "message": f"unknown request {op!r}"}}
            self.chan.send(reply)

    def ping(self):
        return {"pong": 1}

    def arenas(self, msg, fds):
        try:
            if msg.get("device"):
                self.in_arena = channel.DeviceArena(msg["in"], fd=fds[0])
                self.out_arena = channel.DeviceArena(msg["out"], fd=fds[1])
            else:
                self.in_arena = channel.Arena(msg["in"], fd=fds[0])
                self.out_arena = channel.Arena(msg["out"], fd=fds[1])
        except (OSError, ImportError, channel.ProtocolError, KeyError, IndexError) as e:
            return {"error": {"verdict": verdicts.RUNTIME_ERROR, "message": f"arenas: {e}"}}
        return {"ok": 1}

    def setup(self, msg):
        """The framework, its threads, the device context and the candidate's device memory
        cap (judge.DeviceMemory). No candidate code has run in this process yet, so the judge
        takes a failure here as the host's (infra_error)."""
        try:
            self.fw = frameworks.get(msg["framework"], msg["backend"])
            self.fw.set_threads(int(msg.get("threads", 1)))
            self.fw.init_device()
            self.fw.cap_device_memory(msg.get("device_cap"))
        except BaseException as e:  # noqa: BLE001
            return {"error": {"verdict": verdicts.INFRA_ERROR,
                              "message": getattr(e, "message", None) or _describe(e, "setup")}}
        return {"ok": 1}

    def load(self, msg):
        self.impl_type = msg["impl_type"]
        threads = int(msg.get("threads", 1))
        if self.fw is None:
            return {"error": {"verdict": verdicts.RUNTIME_ERROR,
                              "message": "load before setup (a protocol error)"}}
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS"):
            os.environ[var] = str(threads)  # read when the candidate's library loads
        os.environ.setdefault("KFORGE_CPP_CACHE", os.path.join(os.getcwd(), ".kforge_cpp"))
        path = os.path.join(os.getcwd(), "candidate.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(msg["source"])
        launches.install(self.impl_type)
        if self.impl_type == "triton":
            launchers.record()
        sys.meta_path.insert(0, _BlockReference(msg.get("reference_names", [])))
        try:
            init = channel.decode(msg["init"], None if isinstance(
                self.in_arena, channel.DeviceArena) else self.in_arena, self.fw.device, copy=True)
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            spec = importlib.util.spec_from_file_location("kforge_candidate", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules["kforge_candidate"] = module
            spec.loader.exec_module(module)
        except BaseException as e:  # noqa: BLE001
            return _error(e, "loading the candidate failed", loading=True)
        op_name = msg.get("op_name", "")
        fn_name = f"{op_name}_{self.impl_type}_{msg['framework']}" if op_name else ""
        # the judge's reference worker loads the task's Model (the judge names the class)
        model_cls = getattr(module, str(msg.get("class_name", "ModelNew")), None)
        try:
            if model_cls is not None:
                self.fw.seed(int(msg.get("seed", 0)))
                with self.fw.no_grad():
                    model = self.fw.prepare_model(model_cls(*init))
                self.call = _callable_of(self.fw, model)
            elif fn_name and callable(getattr(module, fn_name, None)):
                self.call = getattr(module, fn_name)
            else:
                want = "class ModelNew" + (f" or a function {fn_name}" if fn_name else "")
                return {"error": {"verdict": verdicts.COMPILE_ERROR,
                                  "message": f"the candidate defines no {want} (it must take "
                                             f"the reference Model's constructor arguments "
                                             f"and inputs)"}}
        except BaseException as e:  # noqa: BLE001
            return _error(e, "constructing the candidate's ModelNew failed", loading=True)
        return {"ok": 1}

    def run(self, msg):
        fw = self.fw
        if self.call is None:
            return {"error": {"verdict": verdicts.RUNTIME_ERROR, "message": "no candidate"}}
        # private: the candidate gets copies of its inputs, not views of the shared device
        # buffer (KFORGE_VERIFIER_CUDA_IPC_PRIVATE); what it wrote into them goes back after
        # the checked calls, where the judge looks for inputs modified in place
        private = bool(msg.get("private")) and isinstance(self.in_arena, channel.DeviceArena)
        t_start = time.perf_counter_ns()
        inputs = channel.take(msg["inputs"], self.in_arena, fw.device, copy=private)
        fw.synchronize()
        t_taken = time.perf_counter_ns()
        before = launches.count()
        log = None
        try:
            with fw.no_grad():
                if msg.get("seed") is not None:
                    fw.seed(int(msg["seed"]))
                if msg.get("trace") and fw.name == "torch":
                    out, log = trace.trace_torch(fw.torch, fw.overlaps, self.call, inputs)
                elif msg.get("trace") and fw.name == "numpy":
                    out, log = trace.trace_numpy(self.call, inputs, fw.overlaps)
                else:
                    out = self.call(*inputs)
                if msg.get("notify"):
                    self.chan.send({"returned": 1})  # the judge's finishing limit starts
                fw.synchronize()
        except BaseException as e:  # noqa: BLE001
            return _error(e, f"the candidate raised during {msg.get('what', 'a call')}")
        t_called = time.perf_counter_ns()
        delta = launches.count() - before
        if private and (msg.get("notify") or msg.get("writeback")):
            try:
                views = channel.take(msg["inputs"], self.in_arena, fw.device, copy=False)
                for dst, src in zip(fw.arrays(views), fw.arrays(inputs)):
                    if dst.shape == src.shape and dst.dtype == src.dtype:
                        dst.copy_(src)
                fw.synchronize()
            except BaseException as e:  # noqa: BLE001
                return _error(e, f"the candidate's inputs after {msg.get('what', 'a call')}")
        leaves = frameworks.flatten_outputs(out)
        in_arrays = fw.arrays(inputs)
        problems = []
        for i, leaf in enumerate(leaves):
            p = fw.output_problem(leaf)
            if p:
                problems.append(f"output {i} is {p}")
        aliases = [any(fw.overlaps(leaf, a) for a in in_arrays) for leaf in leaves]
        summary = None
        if log is not None:
            summary = {"ops": sorted(log.ops)[:500],
                       "max_numel": {k: int(v) for k, v in list(log.max_numel.items())[:500]},
                       "producers": [log.producer(leaf) for leaf in leaves]}
            log.release()
        t_checked = time.perf_counter_ns()
        self.out_arena.reset()
        try:
            tree = channel.put(leaves, self.out_arena)
            fw.synchronize()  # the copies are in the shared buffer before the answer
        except channel.ProtocolError as e:
            return {"error": {"verdict": verdicts.PRECISION_MISMATCH,
                              "message": f"the candidate's outputs do not fit: {e}"}}
        t_put = time.perf_counter_ns()
        # where the call's time went, as the worker saw it: diagnostics (profile.breakdown_us),
        # never part of a verdict or a time (the worker is the candidate's process)
        phases = {"take": t_taken - t_start, "call": t_called - t_taken, "checks": t_checked - t_called,
                  "put": t_put - t_checked, "launcher_build": launchers.take_build_ns(),
                  "received_at": self.received_ns, "replied_at": time.perf_counter_ns()}
        reply = {"out": tree, "aliases": aliases, "problems": problems,
                 "launches": delta if launches.available(self.impl_type) else None,
                 "trace": summary, "phases_ns": phases}
        seen = launchers.take_seen()  # signatures whose launchers Triton built (hints)
        if seen:
            reply["launchers"] = seen
        return reply


def _callable_of(fw, model):
    if fw.name == "torch" and isinstance(model, fw.torch.nn.Module):
        return model
    forward = getattr(model, "forward", None)
    if callable(forward):
        return forward
    if callable(model):
        return model
    raise TypeError(f"{type(model).__name__} has neither forward() nor __call__")


def main(fd=3):
    chan = channel.Channel(fd)
    preload = os.environ.get("KFORGE_WORKER_PRELOAD", "").split(",")
    cuda = os.environ.get("KFORGE_WORKER_DEVICE") == "cuda"
    warm = {}
    t0 = time.perf_counter()
    if "torch" in preload:
        try:
            import torch  # noqa: F401 - warm: the framework is loaded before any job
            if cuda and torch.cuda.is_available():
                torch.empty(1, device="cuda")
        except Exception:  # noqa: BLE001 - reported when a job needs it
            pass
    if "triton" in preload and cuda:
        cache = os.environ.get("TRITON_CACHE_DIR", "")
        warm["seeded_files"] = sum(len(f) for _, _, f in os.walk(cache)) if cache else 0
        try:  # and the launchers of recent jobs' signatures, built ahead (launchers.py)
            warm["launchers_built"] = launchers.prebuild(
                os.environ.get("KFORGE_WORKER_LAUNCHERS", ""), launchers.warm_kernel)
        except Exception as e:  # noqa: BLE001 - a candidate that needs triton reports it
            warm["error"] = _describe(e, "warm-up")[:200]
    warm["ms"] = round((time.perf_counter() - t0) * 1e3, 1)
    Worker(chan, warm).serve()
