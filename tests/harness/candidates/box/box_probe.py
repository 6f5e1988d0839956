"""Adds with its own C++ kernel, but first checks the box it runs in, from the inside, and
refuses to load (compile_error naming what it found) if any wall is missing. A worker forked
from the zygote must be as contained as one started cold: the job's uid, cgroup and PID,
network and mount namespaces (a /proc showing only its own uid's processes, no host /run),
no_new_privs, the system-call filter, no controlling terminal, and no descriptor of the
zygote's or agent's."""
import ctypes
import importlib

import torch
import kforge_cpp

_os = importlib.import_module('o' + 's')
_socket = importlib.import_module('socket')


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _problems():
    found = []
    fds = {}
    for name in _os.listdir('/proc/self/fd'):
        try:
            fds[int(name)] = _os.readlink('/proc/self/fd/' + name)
        except OSError:
            pass
    sockets = sorted(fd for fd, target in fds.items() if target.startswith('socket:'))
    if sockets != [3]:
        found.append(f"sockets open: fds {sockets} (only the judge's, fd 3, expected)")
    if _os.getppid() != 0:  # a cold worker's parent is the namespace's init, pid 1
        found.append(f"not forked from the zygote (parent pid {_os.getppid()}, 0 expected)")
    if _os.getuid() == 0 or _os.geteuid() == 0:
        found.append("runs as root")
    if 'kforge-jobs' not in _read('/proc/self/cgroup'):
        found.append("not in a job cgroup: " + _read('/proc/self/cgroup').replace('\n', ' | '))
    names = sorted(n for _, n in _socket.if_nameindex())
    if names != ['lo']:
        found.append(f"network interfaces {names} (a namespace with only lo expected)")
    pids = [n for n in _os.listdir('/proc') if n.isdigit()]
    if len(pids) > 16:
        found.append(f"{len(pids)} processes visible (a PID namespace of its own expected)")
    foreign = []
    for pid in pids:
        try:
            if _os.stat('/proc/' + pid).st_uid != _os.getuid():
                foreign.append(pid)
        except OSError:
            pass  # gone meanwhile
    if foreign:
        found.append(f"processes {foreign} of other users visible in /proc (hidepid=invisible expected)")
    if _os.path.isdir('/run') and _os.listdir('/run'):
        found.append(f"the host's /run is visible: {sorted(_os.listdir('/run'))[:5]}")
    if 'NoNewPrivs:\t1' not in _read('/proc/self/status'):
        found.append("no_new_privs is not set")
    libc = ctypes.CDLL(None, use_errno=True)
    for name, args in (("ptrace(PTRACE_TRACEME)", (101, 0, 0, 0, 0)), ("unshare(CLONE_NEWUSER)", (272, 0x10000000)),
                       ("keyctl", (250, 0, -3, 0, 0, 0)), ("userfaultfd", (323, 1))):
        if libc.syscall(*args) != -1 or ctypes.get_errno() != 1:  # x86-64 numbers; EPERM from the filter
            found.append(f"{name} is not filtered (no seccomp filter)")
    try:
        _os.close(_os.open('/dev/tty', _os.O_RDWR | _os.O_NOCTTY))
        found.append("could open the agent's controlling terminal (/dev/tty)")
    except OSError:
        pass
    try:
        with open('/etc/kforge-box-probe', 'w') as f:
            f.write('x')
        found.append("could write /etc")
    except OSError:
        pass
    return found


_found = _problems()
if _found:
    raise RuntimeError("the worker is not boxed: " + "; ".join(_found))

_lib = kforge_cpp.build(r"""
extern "C" void vector_add(const float* x, const float* y, float* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = x[i] + y[i];
}
""", name="box_probe_add")
_lib.vector_add.argtypes = [kforge_cpp.c_ptr, kforge_cpp.c_ptr, kforge_cpp.c_ptr, ctypes.c_long]


class ModelNew(torch.nn.Module):
    def forward(self, x, y):
        x, y = x.contiguous(), y.contiguous()
        out = torch.empty_like(x)
        _lib.vector_add(kforge_cpp.ptr(x), kforge_cpp.ptr(y), kforge_cpp.ptr(out), x.numel())
        return out
