"""The worker zygote: forks candidate workers from one process that has already imported the
framework, so that a worker is ready in milliseconds instead of a second or more.

The zygote is trusted code, started by the agent as the agent's user, outside any box. It
never runs a candidate and never creates a device context (a forked CUDA context is unusable):
it only imports (numpy, torch, triton, this package) and forks. The box itself is made by the
agent exactly as for any job (common/sandbox.h): run_process starts a small holder program in
the job's cgroup and namespaces, as the job's uid. The zygote's child then enters that box
before anything of the candidate's can run:

  zygote --fork--> A (root, outside the box: setns into the holder's ipc, net, mount and pid
                      namespaces, opens the holder's cgroup.procs files)
                   A --fork--> B (in the box's PID namespace: joins the holder's cgroups, its
                      process group, leaves the controlling terminal, drops to the job's uid
                      and rlimits, no_new_privs, the system-call filter, closes every
                      descriptor but the judge's socket on 3, becomes the worker)

A stays outside to report how B ended (its exit status and the tail of its output), as
run_process does for a cold worker: B cannot signal or trace A (another uid). The agent kills
the box (holder, B and everything B started: cgroup.kill, the PID namespace's death) exactly
as for a cold worker, and only then asks for that report.

Messages (JSON on a SOCK_SEQPACKET socket, fd 3; see agent/verifier/verifier.h):
  -> {"ready": {"pid": n, "preloaded": [...]}}
  <- {"op": "spawn", "id": n, "holder": pid, "pid_ns": bool, "uid": n, "gid": n,
      "cwd": path, "env": {...}, "rlimits": [[resource, soft, hard], ...],
      "no_new_privs": bool, "device": "cpu"|"cuda"|..., "preload": "torch,triton",
      "syscall_filter": [[code, jt, jf, k], ...] (seccomp BPF; absent: none)}
      + 1 fd (the worker's end of its socket to the judge)
  -> {"spawned": id, "pid": n} | {"spawn_error": id, "message": text}
  -> {"exited": id, "exit_code": n, "signal": n, "stderr": text}   (when B has died)
"""

import ctypes
import fcntl
import os
import select
import signal
import struct
import sys
import termios
import time

from . import channel

_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWNET = 0x40000000
_CLONE_NEWPID = 0x20000000
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_OUTPUT_CAP = 64 << 10      # bytes of B's output kept (the tail)
_DRAIN_S = 2.0              # after B's death, how long its output pipe may stay open

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _prctl(option, value):
    _check(_libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl({option})")


def preload(names, device):
    """Imports what every worker needs; no device context (it would not survive fork)."""
    done = []
    if "torch" in names:
        try:
            import torch  # noqa: F401
            done.append("torch")
        except Exception:  # noqa: BLE001 - a job that needs it reports it
            pass
    if "triton" in names and device == "cuda" and os.environ.get("KFORGE_ZYGOTE_TRITON") == "1":
        # Off by default: each worker imports triton itself, after the fork, until importing
        # it here is shown not to touch the CUDA driver (a forked driver state is unusable).
        try:
            import triton  # noqa: F401
            import triton.language  # noqa: F401
            done.append("triton")
        except Exception:  # noqa: BLE001
            pass
    # The worker's own modules, so that B imports nothing before the candidate does.
    from . import errors, frameworks, launches, trace, verdicts, worker  # noqa: F401
    try:  # C++ candidates' helper, with `g++ --version` (part of its cache key) asked once here
        import kforge_cpp
        kforge_cpp.compiler_version()
    except Exception:  # noqa: BLE001 - a candidate that needs it reports it
        pass
    return done


def _mounts():
    """cgroup mounts: [(fstype, mount point, super options)] from /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rest = left.split(), right.split()
            if len(fields) >= 5 and len(rest) >= 3 and rest[0] in ("cgroup", "cgroup2"):
                out.append((rest[0], fields[4], set(rest[2].split(","))))
    return out


def _cgroups(pid):
    """{hierarchy (the controllers field): path} from /proc/PID/cgroup."""
    out = {}
    with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) == 3:
                out[parts[1]] = parts[2]
    return out


def _cgroup_procs_files(holder):
    """The cgroup.procs files of every hierarchy in which the holder's group is not ours."""
    mine, theirs = _cgroups("self"), _cgroups(holder)
    mounts = _mounts()
    files = []
    for hierarchy, path in theirs.items():
        if mine.get(hierarchy) == path:
            continue
        if hierarchy == "":
            where = [m for t, m, _ in mounts if t == "cgroup2"]
        else:
            want = set(hierarchy.split(","))
            where = [m for t, m, opts in mounts if t == "cgroup" and want <= opts]
        if not where:
            raise OSError(f"no mount of the cgroup hierarchy {hierarchy or 'v2'!r}")
        files.append(os.path.join(where[0], path.lstrip("/"), "cgroup.procs"))
    return files


def _enter_namespaces(holder, pid_ns):
    """In A: the holder's IPC, network and mount namespaces; its PID namespace for children.
    Only those that differ from ours (a box may lack some). Every namespace is opened before
    the first is entered: the box's mount namespace has a /proc of its own PID namespace."""
    kinds = [("ipc", _CLONE_NEWIPC), ("net", _CLONE_NEWNET), ("mnt", _CLONE_NEWNS)]
    if pid_ns:
        kinds.append(("pid", _CLONE_NEWPID))
    opened = []
    try:
        for name, flag in kinds:
            theirs = f"/proc/{holder}/ns/{name}"
            if os.stat(theirs).st_ino != os.stat(f"/proc/self/ns/{name}").st_ino:
                opened.append((name, flag, os.open(theirs, os.O_RDONLY | os.O_CLOEXEC)))
        for name, flag, fd in opened:
            _check(_libc.setns(fd, flag), f"setns({name})")
    finally:
        for _, _, fd in opened:
            os.close(fd)


def _leave_terminal():
    """The controlling terminal of whoever started the agent (root typing `kforge run`) is not
    the worker's: no reading the keys typed there, no typing into it (as run_process does)."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return  # there is none
    try:
        fcntl.ioctl(fd, termios.TIOCNOTTY)
    finally:
        os.close(fd)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _install_syscall_filter(program):
    """The agent's job_syscall_filter (common/sandbox.h), [[code, jt, jf, k], ...], as a
    cold worker gets it from run_process. Needs no_new_privs."""
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(raw, len(raw))
    prog = _SockFprog(len(program), ctypes.addressof(buf))
    _check(_libc.prctl(_PR_SET_SECCOMP, ctypes.c_ulong(_SECCOMP_MODE_FILTER), ctypes.byref(prog), 0, 0),
           "prctl(PR_SET_SECCOMP)")


def _become_worker(req, sock_fd, procs_fds, out_w, err_w):
    """In B: the rest of the box, then the worker. Raises OSError on any failure."""
    for fd in procs_fds:
        os.write(fd, b"0")
    if not req.get("pid_ns"):
        os.setpgid(0, int(req["holder"]))  # killed with the holder's process group
    os.chdir(req["cwd"])
    _leave_terminal()
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    os.dup2(sock_fd, 3)
    os.set_inheritable(3, True)
    top = os.sysconf("SC_OPEN_MAX")
    os.closerange(4, err_w)  # all but the report pipe, which closes last
    os.closerange(err_w + 1, top if top > 0 else 1 << 20)
    for resource, soft, hard in req.get("rlimits", []):
        import resource as res
        res.setrlimit(int(resource), (int(soft), int(hard)))
    if req.get("no_new_privs"):
        _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    uid, gid = int(req["uid"]), int(req["gid"])
    if uid != os.getuid() or gid != os.getgid():
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    _prctl(_PR_SET_DUMPABLE, 1)        # as after an exec: its own /proc files are its own
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # reset by the uid change; A's death ends B
    if req.get("syscall_filter"):
        _install_syscall_filter(req["syscall_filter"])
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in req.get("env", {}).items()})
    os.close(err_w)  # end-of-file for A: this process is the worker now


class Zygote:
    def __init__(self, fd):
        self.chan = channel.Channel(fd)

    def serve(self, preloaded):
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # A's are reaped by the kernel
        self.chan.send({"ready": {"pid": os.getpid(), "preloaded": preloaded}})
        while True:
            try:
                msg, fds = self.chan.recv()
            except channel.Closed:
                return 0
            except channel.ProtocolError:
                continue
            if msg.get("op") != "spawn" or len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = self._child(msg, fds[0])
                finally:
                    os._exit(code)
            os.close(fds[0])

    def _send(self, obj):
        try:
            self.chan.send(obj)
        except (channel.Closed, channel.ProtocolError, OSError):
            pass

    def _child(self, req, sock_fd):
        """A: enters the box's namespaces, forks B, reports B's start and end."""
        wid = req.get("id")
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            holder = int(req["holder"])
            procs = [os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in _cgroup_procs_files(holder)]
            _enter_namespaces(holder, bool(req.get("pid_ns")))
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()  # B's start-up report: EOF when it became the worker
        except (OSError, ValueError, KeyError) as e:
            self._send({"spawn_error": wid, "message": f"cannot enter the job's box: {e}"})
            return 1
        b = os.fork()
        if b == 0:
            try:
                self.chan.sock.detach()  # B must not hold (or later close) the zygote's socket
                os.close(out_r)
                os.close(err_r)
                _become_worker(req, sock_fd, procs, out_w, err_w)
            except BaseException as e:  # noqa: BLE001
                try:
                    os.write(err_w, f"{type(e).__name__}: {e}".encode()[:2000])
                finally:
                    os._exit(127)
            try:
                import faulthandler
                faulthandler.enable()  # a fatal signal puts the Python stack on stderr
                from . import worker
                worker.main(3)
            finally:
                os._exit(0)
        for fd in [sock_fd, out_w, err_w] + procs:
            os.close(fd)
        failure = b""
        while True:
            chunk = os.read(err_r, 4096)
            if not chunk:
                break
            failure += chunk
        os.close(err_r)
        if failure:
            os.waitpid(b, 0)
            self._send({"spawn_error": wid, "message": "cannot start the worker in the job's box: "
                        + failure.decode(errors="replace")})
            return 1
        self._send({"spawned": wid, "pid": b})
        return self._watch(wid, b, out_r)

    def _watch(self, wid, b, out_r):
        """A, once B runs: keeps the tail of B's output; reports B's end."""
        tail = bytearray()
        pidfd = os.pidfd_open(b)
        status, output_open, drain_until = None, True, None
        while output_open or status is None:
            wait = ([out_r] if output_open else []) + ([pidfd] if status is None else [])
            timeout = None if drain_until is None else max(0.0, drain_until - time.monotonic())
            ready, _, _ = select.select(wait, [], [], timeout)
            if pidfd in ready:
                _, status = os.waitpid(b, 0)
                drain_until = time.monotonic() + _DRAIN_S
            if out_r in ready:
                chunk = os.read(out_r, 1 << 16)
                if not chunk:
                    output_open = False
                tail += chunk
                if len(tail) > _OUTPUT_CAP:
                    del tail[:len(tail) - _OUTPUT_CAP]
            if drain_until is not None and time.monotonic() >= drain_until:
                break  # only what left B's box can hold the pipe: its output is abandoned
        report = {"exited": wid, "exit_code": -1, "signal": 0,
                  "stderr": tail.decode(errors="replace")}
        if os.WIFEXITED(status):
            report["exit_code"] = os.WEXITSTATUS(status)
        elif os.WIFSIGNALED(status):
            report["signal"] = os.WTERMSIG(status)
        self._send(report)
        return 0


def main(fd=3):
    names = os.environ.get("KFORGE_ZYGOTE_PRELOAD", "").split(",")
    device = os.environ.get("KFORGE_ZYGOTE_DEVICE", "cpu")
    preloaded = preload(names, device)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        # A device context made before the fork is unusable in every worker: never serve.
        sys.stderr.write("kforge zygote: the CUDA context was created while preloading\n")
        return 1
    return Zygote(fd).serve(preloaded)
