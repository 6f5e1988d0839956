"""A real kforge cluster for the Python client's tests (fixtures in conftest.py): kforge-coordinator and kforge-agent
as processes on a temporary directory, the LLM replayed from the demo's recording
(examples/demo/recording.jsonl), every candidate really verified on this host's CPU.

The binaries come from $KFORGE_BUILD_DIR (ctest sets it), else <source>/build.
"""

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(SOURCE, "python"))
BUILD = os.environ.get("KFORGE_BUILD_DIR") or os.path.join(SOURCE, "build")
COORDINATOR = os.path.join(BUILD, "coordinator", "kforge-coordinator")
AGENT = os.path.join(BUILD, "agent", "kforge-agent")
DEMO = os.path.join(SOURCE, "examples", "demo")


START_DEADLINE_S = 30.0


def replay_config(coordinator="", llm=""):
    """A cluster's kforge.toml: the demo's recording replayed for both LLM roles, one agent
    running the harness of this checkout uncontained (its work dir is under the test's
    root-only directory). `coordinator`, `llm`: more lines for [coordinator] and for each
    [llm.*] role."""
    recording = os.path.join(DEMO, "recording.jsonl")
    return f"""
[coordinator]
heartbeat_ms = 200
{coordinator}
[agent]
contain = false
harness_dir = "{os.path.join(SOURCE, 'agent', 'harness')}"
work_dir = "@DIR@/work"
[llm.designer]
provider = "replay"
recording = "{recording}"
{llm}
[llm.coder]
provider = "replay"
recording = "{recording}"
{llm}
"""


def demo_task(op, n):
    """The demo's task file for `op` with its swept constant N rewritten to `n`, as the
    campaign's sweep does (the value replaced, the comment kept); task_id "N=<n>" is what
    the recording's replay keys name."""
    with open(os.path.join(DEMO, "tasks", op + ".py"), encoding="utf-8") as f:
        text = f.read()
    out, count = re.subn(r"^(N\s*=\s*)[^#\n]*?(\s*(#.*)?)$", lambda m: m.group(1) + str(n) + m.group(2), text,
                         count=1, flags=re.M)
    assert count == 1, f"{op}.py has no N constant"
    return out


def demo_spec(op, n, **overrides):
    """Task(...) keyword arguments for a demo task on this host's CPU."""
    spec = dict(op_name=op, task_desc=demo_task(op, n), task_id=f"N={n}", backend="cpu", arch="x86_64",
                impl_type="cpp", framework="torch", task_type="precision_only", limit_steps=6)
    spec.update(overrides)
    return spec


def wait_for(predicate, timeout, what, logs=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}\n{logs()}")
        time.sleep(0.05)


class Process:
    """A child process whose stderr goes to a log file and whose stdout lines are queued."""

    def __init__(self, argv, log_path, cwd):
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=self._log,
                                     stdin=subprocess.DEVNULL)
        self.lines = queue.Queue()
        self.stdout = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            self.stdout.append(line)
            self.lines.put(line)
        self.lines.put(None)  # EOF

    def expect(self, prefix, deadline):
        """The next stdout line starting with `prefix`, read before `deadline` (monotonic)."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.argv[0]} printed no '{prefix}' line in time\n{self.log()}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait()
                raise AssertionError(f"{self.argv[0]} exited ({self.proc.returncode}) before printing "
                                     f"'{prefix}'\n{self.log()}")
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def log(self, tail=60):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            lines = []
        out = self.stdout + lines[-tail:]
        return f"--- {os.path.basename(self.log_path)}\n" + "\n".join(out)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Cluster:
    """One coordinator (optionally with an agent) on its own directory; "@DIR@" in the
    configuration text stands for that directory. ``data_dir``: the coordinator's data
    directory, if not <dir>/data."""

    def __init__(self, name, config_text, agent=True, data_dir=None, fixed_ports=False):
        self.dir = tempfile.mkdtemp(prefix=f"kforge-py-{name}-")
        self.data_dir = data_dir or os.path.join(self.dir, "data")
        self.config = os.path.join(self.dir, "kforge.toml")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(config_text.replace("@DIR@", self.dir))
        self.agent = None
        # fixed_ports: the same ports across restart_coordinator(), so the agent and clients
        # find the new process where the old one was.
        listen, http = ("tcp://127.0.0.1:*", "127.0.0.1:0") if not fixed_ports else \
            (f"tcp://127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}")
        self._coordinator_argv = [
            COORDINATOR, "--data", self.data_dir, "--listen", listen, "--http", http, "--config",
            self.config, "--prompts", os.path.join(SOURCE, "prompts")]
        self.starts = 0
        self.restart_coordinator()
        # Created by the coordinator at its first start (unless the config names one).
        self.token_file = os.path.join(self.data_dir, "api.token")
        if agent:
            fixtures = os.path.join(self.dir, "fixtures")  # empty: no GPUs, no nvidia-smi run
            os.makedirs(fixtures)
            self.agent = Process(
                [AGENT, "--config", self.config, "--coordinator", self.endpoint, "--state",
                 os.path.join(self.dir, "agent"), "--cpu-devices", "2", "--no-probe", "--device-fixtures", fixtures],
                os.path.join(self.dir, "agent.log"), self.dir)

    def restart_coordinator(self, kill=False):
        """Starts the coordinator (again: SIGKILL first with kill=True) and waits until it
        listens."""
        if kill:
            self.coordinator.proc.kill()
            self.coordinator.proc.wait()
            self.coordinator.stop()
        self.starts += 1
        deadline = time.monotonic() + START_DEADLINE_S
        self.coordinator = Process(self._coordinator_argv,
                                   os.path.join(self.dir, f"coordinator-{self.starts}.log"), self.dir)
        self.endpoint = self.coordinator.expect("listening ", deadline)
        self.url = self.coordinator.expect("api ", deadline)

    def logs(self):
        return "\n".join(p.log() for p in (self.coordinator, self.agent) if p is not None)

    def stop(self):
        for p in (self.agent, self.coordinator):
            if p is not None:
                p.stop()

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_binaries():
    missing = [p for p in (COORDINATOR, AGENT) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"not built: {', '.join(missing)} (cmake --build build --target kforge-coordinator "
                    f"kforge-agent, or set KFORGE_BUILD_DIR)")


TOKEN = "s3cret-token-for-tests"
