"""The dashboard (coordinator/operator/dashboard/index.html), end to end in a real headless Chromium.

Real data first: `kforge run` drives tests/fixtures/dashboard/campaign.toml (five demo tasks,
the LLM replayed from examples/demo/recording.jsonl, every candidate really compiled, checked
and timed), then tests/fixtures/dashboard/hostile.toml (a verify_only campaign whose name,
task_id, task file and Verifier message carry HTML), and one op_name is made hostile in the
database before the coordinator opens it. Then kforge-coordinator serves that data directory
and Chromium renders `/#campaign=N`, `/#task=N`, ... with --dump-dom; the assertions compare
the rendered page with the API's JSON, fetched here with urllib.

    /usr/bin/python3 -m pytest -q tests/dashboard          (ctest -R dashboard_e2e)

The buttons are clicked in a Chromium driven over the DevTools protocol (class Browser: a
websocket client of a few lines, no package), and their effect is read back from the API.

Run as a script it takes the screenshots for docs/ instead (docs/dashboard.md):

    /usr/bin/python3 tests/dashboard/test_dashboard.py --screenshots docs \\
        --campaign examples/demo/campaign.toml

Environment: KFORGE_BUILD_DIR (default <source>/build), KFORGE_SOURCE_DIR (default: found
from this file).
"""
import argparse
import base64
import json
import math
import os
import queue
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from html.parser import HTMLParser
from pathlib import Path

try:
    import pytest
except ImportError:  # run as a script without pytest
    pytest = None

SOURCE = Path(os.environ.get("KFORGE_SOURCE_DIR") or Path(__file__).resolve().parents[2])
BUILD = Path(os.environ.get("KFORGE_BUILD_DIR") or SOURCE / "build")
KFORGE = BUILD / "cli" / "kforge"
COORDINATOR = BUILD / "coordinator" / "kforge-coordinator"
AGENT = BUILD / "agent" / "kforge-agent"
CHROMIUM = Path("/usr/bin/chromium")
FIXTURES = SOURCE / "tests" / "fixtures" / "dashboard"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "dashboard-test-token-5f1c"

# Written into the store before the coordinator starts (the campaign format allows only
# letters, digits, _ - . in an op_name; the API and the store take any text).
HOSTILE_OP = "evil<img src=1 onerror=\"document.body.dataset.pwned='op_name'\">"


# ---- helpers -------------------------------------------------------------------------------------

def fmt_int(n):
    return f"{round(n):,}"


def fmt_cost(c):
    return f"${c:.4f}"


def fmt_x(s):
    return "-" if s is None else f"{s:.2f}x"


def recording_with_tokens(dst):
    """The demo's recording with token counts added: it has none, and a token panel showing
    only zeros tests little. The counts are estimates (about 4 characters a token for the
    answer; a flat prompt size, larger for fix prompts, which carry code and the Verifier's
    message). Replayed answers cost $0 whatever their tokens (docs/llm.md)."""
    out = []
    for line in (SOURCE / "examples" / "demo" / "recording.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        n = int(entry["replay_key"].rsplit("/", 1)[1])
        entry["completion_tokens"] = math.ceil(len(entry["content"]) / 4)
        entry["prompt_tokens"] = 1900 if n == 1 else 3100
        out.append(json.dumps(entry))
    Path(dst).write_text("\n".join(out) + "\n")


def run_campaign(campaign, data, log, config=None, timeout=240):
    cmd = [str(KFORGE), "run", str(campaign), "--data", str(data), "--cpu-devices", "2"]
    if config:
        cmd += ["--config", str(config)]
    with open(log, "wb") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, timeout=timeout)
    tail = Path(log).read_text(errors="replace")[-3000:]
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout.decode()}\n{tail}"
    return proc.stdout.decode()


class Coordinator:
    """kforge-coordinator on a data directory; `url` once it printed `api http://...`, and
    `endpoint`, the agents' (ZeroMQ) address it printed before."""

    def __init__(self, data, workdir, config=None, deadline_s=30):
        cmd = [str(COORDINATOR), "--data", str(data), "--listen", "tcp://127.0.0.1:*", "--http", "127.0.0.1:0"]
        if config:
            cmd += ["--config", str(config)]
        self.log = Path(workdir) / "coordinator.log"
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(self.log, "wb"), text=True)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in self.proc.stdout], daemon=True).start()
        self.url = self.endpoint = None
        end = time.monotonic() + deadline_s
        while self.url is None:
            left = end - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"the coordinator printed no 'api' line within {deadline_s} s "
                                     f"(exit {self.proc.returncode}):\n{self.log.read_text(errors='replace')[-2000:]}")
            try:
                line = lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line.startswith("listening "):
                self.endpoint = line.split()[1].strip()
            if line.startswith("api "):
                self.url = line.split()[1].strip()
        # The token the coordinator created at its first start (none when the config names a file).
        token_file = Path(data) / "api.token"
        self.token = token_file.read_text().strip() if token_file.exists() else None

    def page(self, fragment=""):
        """The dashboard's URL with the token in its fragment (as `kforge dashboard` prints it)
        and `fragment` ("#campaign=1") after it."""
        rest = fragment.lstrip("#")
        return f"{self.url}/#token={self.token}" + (f"&{rest}" if rest else "")

    def get(self, path, token="default"):
        """The API's JSON; with this coordinator's own token unless `token` says otherwise (None: none)."""
        token = self.token if token == "default" else token
        req = urllib.request.Request(self.url + path)
        if token:
            req.add_header("Authorization", "Bearer " + token)
        with urllib.request.urlopen(req, timeout=20) as r:
            return json.load(r)

    def post(self, path, body):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": "Bearer " + self.token,
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def chromium(url, workdir, *extra, timeout=90):
    """Chromium headless on `url` with a fresh profile; its stdout (the DOM with --dump-dom)."""
    profile = tempfile.mkdtemp(prefix="chromium-", dir=workdir)
    cmd = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000", *extra, url]
    with open(Path(workdir) / "chromium.log", "ab") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, timeout=timeout)
    shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, f"chromium exited {proc.returncode} on {url}"
    page = proc.stdout.decode("utf-8", errors="replace")
    if "--dump-dom" in extra:  # kept for a look when an assertion fails
        pages = sorted(Path(workdir).glob("page-*.html"))
        (Path(workdir) / f"page-{len(pages) + 1:02d}.html").write_text(f"<!-- {url} -->\n" + page)
    return page


class Browser:
    """A headless Chromium on one page, driven over the DevTools protocol: evaluate JavaScript
    in the page, wait for a condition with a deadline. The websocket is written here (RFC 6455,
    text frames only): the standard library has none, and the test installs no package."""

    def __init__(self, url, workdir, deadline_s=30):
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-cdp-", dir=workdir))
        self.proc = subprocess.Popen(
            [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "--window-size=1440,1100", "--hide-scrollbars", url],
            stdout=subprocess.DEVNULL, stderr=open(Path(workdir) / "chromium-cdp.log", "ab"))
        end = time.monotonic() + deadline_s
        port_file = self.profile / "DevToolsActivePort"
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            assert time.monotonic() < end and self.proc.poll() is None, "chromium opened no DevTools port"
            time.sleep(0.05)  # polling a file chromium writes once; no event to wait on
        port = int(port_file.read_text().splitlines()[0])
        while True:  # the page target appears once the page is created
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
            if pages:
                break
            assert time.monotonic() < end, "chromium shows no page"
            time.sleep(0.05)
        ws = pages[0]["webSocketDebuggerUrl"]
        path = ws.split(str(port), 1)[1]
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.next_id = 0

    def _send(self, text):
        data, mask = text.encode(), os.urandom(4)
        n = len(data)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            assert chunk, "chromium closed the DevTools connection"
            out += chunk
        return out

    def _recv(self):
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            message += self._read(n)
            if b0 & 0x80:  # the last fragment
                return message.decode()

    def call(self, method, **params):
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:  # events come in between; the answer carries our id
            msg = json.loads(self._recv())
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return msg["result"]

    def eval(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in r, r
        return r["result"].get("value")

    def wait(self, expression, what, deadline_s=20):
        """Waits until `expression` is truthy in the page (the page refreshes itself)."""
        end = time.monotonic() + deadline_s
        # !!: a DOM node comes back by value as {}; try: the page may not be there yet
        while not self.eval(f"(() => {{ try {{ return !!({expression}); }} catch (e) {{ return false; }} }})()"):
            assert time.monotonic() < end, f"waited {deadline_s} s for {what}"
            time.sleep(0.1)

    def click(self, element_id):
        assert self.eval(f"!!document.getElementById({json.dumps(element_id)})"), f"no #{element_id} on the page"
        self.eval(f"document.getElementById({json.dumps(element_id)}).click()")

    def close(self):
        self.sock.close()
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)


# The page has drawn its data: the API answered and no panel still says "loading...".
DRAWN = ("document.documentElement.dataset.state === 'ready' && "
         "!document.getElementById('main').textContent.includes('loading...')")


def screenshot(url, path, workdir):
    """A 1440x1100 PNG of `url` once the page has drawn its data (not at a fixed time: a
    capture taken before the API answered shows "loading...")."""
    browser = Browser(url, workdir)
    try:
        browser.wait(DRAWN, f"{url} to draw its data", deadline_s=60)
        browser.call("Emulation.setDeviceMetricsOverride", width=1440, height=1100, deviceScaleFactor=1, mobile=False)
        browser.wait(DRAWN, f"{url} to draw its data at 1440x1100")
        png = browser.call("Page.captureScreenshot", format="png")["data"]
    finally:
        browser.close()
    Path(path).write_bytes(base64.b64decode(png))
    return check_png(path, 1440, 1100)


def check_png(path, width, height):
    """A PNG of that size whose pixels are not all alike (a blank page is one colour)."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert ihdr and ihdr[:2] == (width, height), f"{path}: size {ihdr and ihdr[:2]}, expected {(width, height)}"
    raw = zlib.decompress(idat)
    distinct = len(set(raw))
    assert len(data) > 30_000 and distinct > 64, f"{path}: {len(data)} bytes, {distinct} distinct byte values: blank?"
    return len(data)


class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []

    def text(self):
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def child(self, tag):
        return next(c for c in self.children if isinstance(c, Node) and c.tag == tag)

    def classes(self):
        return (self.attrs.get("class") or "").split()

    def all(self, tag=None, cls=None, **attrs):
        return [n for n in self.iter() if (tag is None or n.tag == tag) and (cls is None or cls in n.classes())
                and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def one(self, tag=None, cls=None, **attrs):
        found = self.all(tag, cls, **attrs)
        assert len(found) == 1, f"expected one <{tag or '*'} class={cls} {attrs}>, found {len(found)}"
        return found[0]


class Dom(HTMLParser):
    """The dumped DOM as a tree (text unescaped, as a user reads it)."""
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.html = html
        self.root = self.cur = Node("#document", [], None)
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.cur)
        self.cur.children.append(node)
        if tag not in self.VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, attrs, self.cur))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.children.append(data)

    def by_id(self, id_):
        return self.root.one(id=id_)

    def state(self):
        return self.root.one("html").attrs.get("data-state")


def render(world, fragment):
    dom = Dom(chromium(world["coordinator"].page(fragment), world["tmp"], "--dump-dom"))
    assert dom.state() == "ready", f"{fragment}: the page is in state {dom.state()!r}, not ready"
    return dom


# ---- the data, built once ---------------------------------------------------------------------

def second_campaign(tmp):
    """Two of the campaign's tasks again, under another name: the comparison's other side
    (the replayed answers are keyed by op and task, so they are the same; the timings are not)."""
    demo = SOURCE / "examples" / "demo" / "tasks"
    path = Path(tmp) / "second.toml"
    path.write_text(
        'name = "dashboard-e2e-again"\nworkflow = "default"\n\n[defaults]\nbackend = "cpu"\narch = "x86_64"\n'
        'impl_type = "cpp"\nframework = "torch"\ntask_type = "profile"\nlimit_steps = 6\n\n'
        f'[[ops]]\nop_name = "vector_add"\ntask_desc = "{demo / "vector_add.py"}"\n[ops.sweep]\nN = [65536]\n\n'
        f'[[ops]]\nop_name = "gelu"\ntask_desc = "{demo / "gelu.py"}"\n[ops.sweep]\nN = [1024]\n')
    return path


def build_world(tmp, campaign=FIXTURES / "campaign.toml", hostile=True):
    """`campaign` run with `kforge run`, then the second campaign of the comparison and (hostile)
    the hostile one; then a coordinator serving the data."""
    tmp = Path(tmp)
    data = tmp / "data"
    recording_with_tokens(tmp / "recording.jsonl")
    (tmp / "kforge.toml").write_text(
        "[agent]\ncpu_devices = 2\n\n"
        f"[llm.designer]\nprovider = \"replay\"\nrecording = \"{tmp / 'recording.jsonl'}\"\n\n"
        f"[llm.coder]\nprovider = \"replay\"\nrecording = \"{tmp / 'recording.jsonl'}\"\n")
    t0 = time.monotonic()
    run_campaign(campaign, data, tmp / "run.log", tmp / "kforge.toml")
    run_campaign(second_campaign(tmp), data, tmp / "second.log", tmp / "kforge.toml")
    if hostile:
        run_campaign(FIXTURES / "hostile.toml", data, tmp / "hostile.log")
        db = sqlite3.connect(data / "kforge.db")
        with db:
            n = db.execute("UPDATE tasks SET op_name = ? WHERE op_name = 'evil'", (HOSTILE_OP,)).rowcount
        db.close()
        assert n == 1
    runs_s = time.monotonic() - t0
    coordinator = Coordinator(data, tmp)
    return {"tmp": tmp, "data": data, "coordinator": coordinator, "url": coordinator.url, "api": coordinator.get,
            "runs_s": runs_s}


if pytest is not None:
    @pytest.fixture(scope="module")
    def world(request):
        if not CHROMIUM.exists():
            pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package (scripts/setup.sh does)")
        for exe in (KFORGE, COORDINATOR, AGENT):
            assert exe.exists(), f"{exe} is not built: cmake --build {BUILD} --target kforge kforge-coordinator kforge-agent"
        # A directory of its own (pytest's numbered ones are pruned by other pytest runs).
        tmp = Path(tempfile.mkdtemp(prefix="kforge-dashboard-"))
        w = build_world(tmp)
        try:
            campaigns = w["api"]("/api/v1/campaigns")
            w["main"] = next(c for c in campaigns if c["name"] == "dashboard-e2e")
            w["again"] = next(c for c in campaigns if c["name"] == "dashboard-e2e-again")
            w["hostile"] = next(c for c in campaigns if c["name"].startswith("hostile"))
            yield w
        finally:
            w["coordinator"].stop()
            if request.session.testsfailed:
                print(f"\ndashboard test: data, logs and pages kept in {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


def test_campaign_view_matches_the_api(world):
    api, main = world["api"], world["main"]
    campaigns = api("/api/v1/campaigns")
    tasks = api(f"/api/v1/tasks?campaign={main['id']}")
    timeline = api(f"/api/v1/timeline?campaign={main['id']}&buckets=60")
    agents = api("/api/v1/agents")
    dom = render(world, f"#campaign={main['id']}")

    # Every campaign, with its state, counts and LLM usage as the API reports them.
    for c in campaigns:
        row = dom.by_id(f"campaign-{c['id']}")
        assert row.one(cls="c-name").text() == c["name"]
        assert row.one(cls="c-state").text() == c["state"]
        for state in ("passed", "failed", "cancelled", "running", "pending"):
            assert row.one(cls=f"n-{state}").text() == fmt_int(c["tasks"][state]), (c["name"], state)
        assert row.one(cls="c-total").text() == fmt_int(c["tasks"]["total"])
        assert row.one(cls="c-calls").text() == fmt_int(c["llm"]["calls"])
        assert row.one(cls="c-tokens").text() == fmt_int(c["llm"]["prompt_tokens"] + c["llm"]["completion_tokens"])
        assert row.one(cls="c-cost").text() == fmt_cost(c["llm"]["cost_usd"])
    assert "sel" in dom.by_id(f"campaign-{main['id']}").classes()
    main = next(c for c in campaigns if c["id"] == main["id"])
    assert main["tasks"]["passed"] >= 1 and main["tasks"]["failed"] >= 1 and main["llm"]["completion_tokens"] > 0, main

    # The LLM panel of the selected campaign.
    assert dom.by_id("llm-calls").text() == fmt_int(main["llm"]["calls"])
    assert dom.by_id("llm-prompt").text() == fmt_int(main["llm"]["prompt_tokens"])
    assert dom.by_id("llm-completion").text() == fmt_int(main["llm"]["completion_tokens"])
    assert dom.by_id("llm-cost").text() == fmt_cost(main["llm"]["cost_usd"])

    # One row per task, with the API's values.
    rows = [n for n in dom.by_id("task-table").all("tr") if "data-task" in n.attrs]
    assert [int(r.attrs["data-task"]) for r in rows] == [t["task"] for t in tasks]
    for r, t in zip(rows, tasks):
        assert r.one(cls="t-op").text() == t["op_name"]
        assert r.one(cls="t-id").text() == t["task_id"]
        assert r.one(cls="t-state").text() == t["state"]
        assert r.one(cls="t-verdict").text() == (t["verdict"] or "-")
        assert r.one(cls="t-steps").text() == f"{t['steps']}/{t['limit_steps']}"
        assert r.one(cls="t-speedup").text() == fmt_x(t["speedup"])
    assert dom.by_id("task-count").text() == f"{len(tasks)} of {len(tasks)} tasks"

    # The speedup histogram holds every passed, timed task.
    timed = [t for t in tasks if t["state"] == "passed" and t["speedup"]]
    hist = dom.by_id("speedup-hist")
    assert hist.tag == "svg" and int(hist.attrs["data-count"]) == len(timed) > 0
    assert sum(int(b.attrs["data-n"]) for b in hist.all("rect", cls="bin")) == len(timed)
    assert len(hist.all("circle", cls="rug")) == len(timed)
    assert hist.one("line", cls="one") and "1x" in [t.text() for t in hist.all("text")]

    # The device chart: one busy bar per timeline bucket, the API's device-seconds.
    chart = dom.by_id("devices-chart")
    busy = chart.all("rect", cls="busy")
    assert chart.tag == "svg" and int(chart.attrs["data-buckets"]) == len(timeline["busy"]) == len(busy) == 60
    for rect, seconds in zip(busy, timeline["busy"]):
        assert abs(float(rect.attrs["data-busy"]) - seconds) < 1e-6
    assert sum(timeline["busy"]) > 0 and int(chart.attrs["data-capacity"]) >= 1

    # The agents table: every agent with its state and devices.
    table = dom.by_id("agents-table")
    for a in agents:
        row = next(r for r in table.all("tr") if r.attrs.get("id", "").startswith("agent-") and a["id"][:12] in r.text())
        assert a["state"] in row.text() and len(row.all(cls="device")) == len(a["devices"])


def test_filters_in_the_hash(world):
    main = world["main"]
    tasks = world["api"](f"/api/v1/tasks?campaign={main['id']}")
    failed = [t for t in tasks if t["state"] == "failed"]
    verdict = failed[0]["verdict"]
    dom = render(world, f"#campaign={main['id']}&verdict={verdict}")
    rows = [int(n.attrs["data-task"]) for n in dom.by_id("task-table").all("tr") if "data-task" in n.attrs]
    assert rows == [t["task"] for t in tasks if t["verdict"] == verdict]
    select = dom.root.one("select", name="verdict")
    assert [o.text() for o in select.all("option") if "selected" in o.attrs] == [verdict]
    dom = render(world, f"#campaign={main['id']}&state=passed&op=vector_add")
    rows = [int(n.attrs["data-task"]) for n in dom.by_id("task-table").all("tr") if "data-task" in n.attrs]
    assert rows == [t["task"] for t in tasks if t["state"] == "passed" and t["op_name"] == "vector_add"] and rows


def test_trace_of_a_task_fixed_after_a_failed_verification(world):
    api, main = world["api"], world["main"]
    tasks = api(f"/api/v1/tasks?campaign={main['id']}")
    fixed = next(t for t in tasks if t["state"] == "passed" and t["steps"] > 3)
    detail = api(f"/api/v1/tasks/{fixed['task']}")
    dom = render(world, f"#task={fixed['task']}")       # the task alone: its campaign is found

    assert dom.root.one(cls="tr-op").text() == detail["op_name"]
    assert dom.root.one(cls="tr-id").text() == detail["task_id"]
    assert dom.root.one(cls="tr-speedup").text() == fmt_x(detail["speedup"])
    assert "sel" in dom.by_id(f"campaign-{detail['campaign']}").classes()
    steps = dom.by_id("steps").all("details", cls="step")
    assert len(steps) == len(detail["trace"]) >= 5
    for node, step in zip(steps, detail["trace"]):
        summary = node.child("summary")  # its own, not those of the folds inside it
        assert summary.one(cls="role").text() == f"#{step['seq']} {step['role']}"
        if step["verdict"]:
            assert step["verdict"] in [b.text() for b in summary.all(cls="badge")]
        if step["role"] == "verifier":
            doc = json.loads(step["output"])
            msg = node.one("pre", cls="msg")
            assert msg.text() == doc["message"] and f"v-{doc['verdict']}" in msg.classes()
            if doc.get("profile", {}).get("speedup"):
                assert node.one(cls="step-speedup").text() == fmt_x(doc["profile"]["speedup"])
    verdicts = [s["verdict"] for s in detail["trace"] if s["role"] == "verifier"]
    assert verdicts[-1] == "passed" and verdicts[0] != "passed"

    # The code that passed, shown as code: a line of its C++ appears in a <pre>.
    best = next(s for s in detail["trace"] if s["seq"] == detail["best_step"])
    line = next(l for l in best["output"].splitlines() if 'extern "C"' in l)
    code = [p.text() for p in dom.root.all("pre", cls="code")]
    assert any(line in c for c in code)
    assert any(best["output"].split("```python\n", 1)[1].split("```")[0] == c for c in code)
    assert dom.by_id("task-desc").text() == detail["task_desc"]


def test_hostile_text_is_shown_as_text(world):
    api, hostile = world["api"], world["hostile"]
    [task] = api(f"/api/v1/tasks?campaign={hostile['id']}")
    detail = api(f"/api/v1/tasks/{task['task']}")
    message = json.loads(detail["trace"][0]["output"])["message"]
    assert task["op_name"] == HOSTILE_OP and "<img" in task["task_id"] and "<script>" in hostile["name"]
    assert "<img src=1 onerror=" in message and "<img src=1 onerror=" in detail["task_desc"]

    for fragment in (f"#campaign={hostile['id']}", f"#task={task['task']}"):
        dom = render(world, fragment)
        # No element was made from the data: the page itself has no <img>, no <b>, one <script>.
        made = [(n.tag, n.attrs) for n in dom.root.all("img") + dom.root.all("b")]
        assert not made, f"{fragment}: elements made from the data: {made}"
        assert len(dom.root.all("script")) == 1, fragment
        assert "data-pwned" not in dom.root.one("body").attrs, fragment
        assert "<img" not in dom.html, fragment            # serialised as &lt;img: text, not a tag
        # ... and the text is there, exactly, for a user to read.
        assert dom.by_id(f"campaign-{hostile['id']}").one(cls="c-name").text() == hostile["name"]
        row = dom.by_id(f"task-{task['task']}")
        assert row.one(cls="t-op").text() == HOSTILE_OP and row.one(cls="t-id").text() == task["task_id"]
        options = [o.text() for o in dom.root.one("select", name="op").all("option")]
        assert HOSTILE_OP in options
    # (the last one rendered is the trace)
    assert dom.root.one(cls="tr-op").text() == HOSTILE_OP
    assert dom.root.one("pre", cls="msg").text() == message
    assert dom.by_id("task-desc").text() == detail["task_desc"]


def test_unknown_task_says_so(world):
    dom = render(world, "#task=999999")
    assert "no task 999999" in dom.by_id("trace").text()


def test_screenshot(world):
    shot = world["tmp"] / "campaign.png"
    size = screenshot(world["coordinator"].page(f"#campaign={world['main']['id']}"), shot, world["tmp"])
    assert size > 30_000


def test_token_form_and_empty_state(world):
    tmp = world["tmp"] / "auth"
    tmp.mkdir()
    (tmp / "token").write_text(TOKEN + "\n")
    (tmp / "kforge.toml").write_text(f"[coordinator]\napi_token_file = \"{tmp / 'token'}\"\n")
    c = Coordinator(tmp / "data", tmp, config=tmp / "kforge.toml")
    try:
        try:
            c.get("/api/v1/campaigns", token=None)
            raise AssertionError("the API answered without its token")
        except urllib.error.HTTPError as e:
            assert e.code == 401
        assert c.get("/api/v1/campaigns", token=TOKEN) == []

        dom = Dom(chromium(c.url + "/#campaign=1", tmp, "--dump-dom"))
        assert dom.state() == "auth"
        form = dom.by_id("auth")
        assert "hidden" not in form.attrs and form.one("input", type="password")
        assert "hidden" in dom.by_id("main").attrs

        dom = Dom(chromium(c.url + "/#token=wrong", tmp, "--dump-dom"))
        assert dom.state() == "auth" and "refused" in dom.by_id("auth-msg").text()

        dom = Dom(chromium(c.url + f"/#token={TOKEN}", tmp, "--dump-dom"))
        assert dom.state() == "ready" and "hidden" in dom.by_id("auth").attrs
        assert "No campaigns yet" in dom.by_id("campaigns").text()
        assert TOKEN not in dom.html
    finally:
        c.stop()


def test_progress_alerts_and_llm_health_match_the_api(world):
    api, main = world["api"], world["main"]
    progress = api(f"/api/v1/campaigns/{main['id']}/progress?buckets=48")
    llm = api(f"/api/v1/llm?campaign={main['id']}")
    dom = render(world, f"#campaign={main['id']}")

    # Progress: the campaign ran to its end, so its counts and clock are settled.
    t = progress["tasks"]
    assert t["finished"] == main["tasks"]["passed"] + main["tasks"]["failed"] and t["remaining"] == 0
    assert dom.by_id("p-done").text() == f"{fmt_int(t['finished'])} / {fmt_int(t['total'])}"
    assert dom.by_id("p-eta").text() == "done" and progress["eta_ms"] is None
    assert dom.by_id("p-rate").text() == f"{progress['tasks_per_hour']:.1f}"
    assert dom.by_id("p-queue").text() == fmt_int(progress["queue"]["pending_tasks"])
    assert dom.by_id("p-last-hour").text() == fmt_int(progress["last_hour"]["tasks_finished"])
    chart = dom.by_id("outcome-chart")
    assert int(chart.attrs["data-buckets"]) == len(progress["outcomes"]["passed"]) == 48
    for state in ("passed", "failed", "cancelled"):
        drawn = sum(int(r.attrs["data-n"]) for r in chart.all("rect", cls=f"o-{state}"))
        assert drawn == sum(progress["outcomes"][state]) == main["tasks"][state], state
        assert dom.root.one(cls=f"o-sum-{state}").text() == fmt_int(main["tasks"][state])

    # LLM health: this coordinator's counters (it asked nothing since it started) and the
    # campaign's stored calls.
    assert llm["live"] is True and llm["stored"]["calls"] == main["llm"]["calls"] > 0
    assert dom.by_id("llm-errors").text() == fmt_int(llm["requests"]["error"])
    assert dom.by_id("llm-retries").text() == fmt_int(llm["retries"])
    assert dom.by_id("llm-stored-calls").text() == fmt_int(llm["stored"]["calls"])
    assert dom.by_id("llm-stored-errors").text() == fmt_int(llm["stored"]["errors"])


def test_drain_buttons_and_the_lost_agent_alert(world):
    """A real agent joins, is drained and undrained with the page's buttons, then is killed
    (no goodbye): the coordinator marks it lost and the page's alert says so."""
    c, api = world["coordinator"], world["api"]
    known = {a["id"] for a in api("/api/v1/agents")}
    state_dir = world["tmp"] / "agent-state"
    agent = subprocess.Popen([str(AGENT), "--coordinator", c.endpoint, "--state", str(state_dir), "--cpu-devices", "1",
                              "--no-probe"], stdout=subprocess.DEVNULL, stderr=open(world["tmp"] / "agent.log", "wb"))
    try:
        new = lambda: [a for a in api("/api/v1/agents") if a["id"] not in known]
        wait_for(lambda: any(a["state"] == "live" for a in new()), "the agent to register")
        [me] = new()
        mark = cls_of(me["id"])
        browser = Browser(c.page(f"#campaign={world['main']['id']}"), world["tmp"])
        try:
            browser.wait(f"document.getElementById('agent-drain-{mark}')", "the agent's drain button")
            browser.click(f"agent-drain-{mark}")
            browser.click(f"agent-drain-{mark}")
            wait_for(lambda: new()[0]["drained"], "the agent drained")
            assert new()[0]["drain_reason"] == "drained from the dashboard"
            browser.wait(f"document.getElementById('agent-undrain-{mark}')", "the agent's undrain button")
            browser.click(f"agent-undrain-{mark}")
            browser.click(f"agent-undrain-{mark}")
            wait_for(lambda: not new()[0]["drained"], "the agent undrained")
        finally:
            browser.close()
    finally:
        agent.kill()  # SIGKILL: no goodbye, the heartbeats stop
        agent.wait()
    wait_for(lambda: new()[0]["state"] == "lost", "the coordinator to mark the agent lost")
    alerts = api("/api/v1/alerts")
    mine = [a for a in alerts if a["kind"] == "agent_lost" and a["agent"] == me["id"]]
    assert len(mine) == 1 and me["host"] in mine[0]["message"]
    dom = render(world, f"#campaign={world['main']['id']}")
    shown = dom.by_id("alert-list").all("li", cls="alert")
    assert [n.attrs["data-kind"] for n in shown] == [a["kind"] for a in alerts]
    assert [n.one(cls="alert-msg").text() for n in shown] == [a["message"] for a in alerts]
    assert [n.attrs.get("data-agent") for n in shown if n.attrs["data-kind"] == "agent_lost"] == \
        [a["agent"] for a in alerts if a["kind"] == "agent_lost"]


def cls_of(text):
    """The page's cls(): an API value as it appears in an element id."""
    return "".join(ch for ch in text if ch.isalnum() and ch.isascii() or ch in "_-")


def test_two_campaigns_compared(world):
    main, again = world["main"], world["again"]
    cmp = world["api"](f"/api/v1/compare?a={main['id']}&b={again['id']}")
    assert cmp["counts"]["paired"] == 2 and cmp["counts"]["only_a"] == main["tasks"]["total"] - 2
    dom = render(world, f"#compare={main['id']}&with={again['id']}")
    assert "hidden" in dom.by_id("tasks").attrs and "hidden" in dom.by_id("overview").attrs
    rows = [n for n in dom.by_id("compare-table").all("tr") if "data-task" in n.attrs]
    assert [int(r.attrs["data-task"]) for r in rows] == [r["a"]["task"] for r in cmp["rows"]]
    for node, row in zip(rows, cmp["rows"]):
        assert node.one(cls="cmp-op").text() == row["op_name"]
        a, b = node.all(cls="cmp-speedup")
        assert a.text() == fmt_x(row["a"]["speedup"])
        assert b.text() == (fmt_x(row["b"]["speedup"]) if row["b"] else "-")
        assert node.one(cls="cmp-ratio").text() == fmt_x(row["ratio"])
    paired = [r for r in cmp["rows"] if r["ratio"] is not None]
    assert len(paired) == cmp["page"]["both_timed"] == 2   # both sides passed and were timed
    assert dom.by_id("cmp-paired").text() == "2"
    assert dom.by_id("cmp-geo-ratio").text() == fmt_x(cmp["page"]["geomean_ratio"])


# The action message (#action-msg) says `%s`.
ACTION_SAID = "document.getElementById('action-msg').textContent.includes('%s')"


def test_buttons_call_the_api(world):
    """Cancel and requeue a task, cancel and requeue a campaign, by clicking the page's buttons
    (each asks for a second click); the effect is read back from the API."""
    c = world["coordinator"]
    task_desc = (SOURCE / "examples" / "demo" / "tasks" / "vector_add.py").read_text()
    candidate = (FIXTURES / "hostile_candidate.py").read_text()
    spec = {"op_name": "held", "task_desc": task_desc, "backend": "cpu", "arch": "x86_64", "impl_type": "cpp",
            "framework": "torch", "candidate": candidate}
    # No agent is live: the tasks wait for a device, unfinished, until cancelled.
    made = c.post("/api/v1/campaigns", {"name": "actions", "workflow": "verify_only",
                                        "tasks": [dict(spec, task_id="one"), dict(spec, task_id="two")]})
    campaign, (one, two) = made["id"], made["task_ids"]
    state = lambda t: c.get(f"/api/v1/tasks/{t}")["state"]
    browser = Browser(c.page(f"#task={one}"), world["tmp"])
    try:
        browser.wait("document.getElementById('task-cancel')", "the task's cancel button")
        browser.click("task-cancel")
        assert state(one) != "cancelled"                  # the first click only arms it
        assert browser.eval("document.getElementById('task-cancel').textContent") == "confirm cancel task?"
        browser.click("task-cancel")
        wait_for(lambda: state(one) == "cancelled", "task cancelled")
        assert state(two) in ("pending", "running")
        browser.wait("document.getElementById('task-requeue')", "the requeue button")
        assert "cancelled task" in browser.eval("document.getElementById('action-msg') ? "
                                                "document.getElementById('action-msg').textContent : ''")
        browser.click("task-requeue")
        browser.click("task-requeue")
        wait_for(lambda: state(one) in ("pending", "running"), "task requeued")
        browser.wait(ACTION_SAID % "requeued task", "the page to draw the state after the requeue")

        browser.eval(f"location.hash = '#campaign={campaign}'")
        browser.wait("document.getElementById('campaign-cancel')", "the campaign's cancel button")
        browser.click("campaign-cancel")
        browser.click("campaign-cancel")
        wait_for(lambda: c.get(f"/api/v1/campaigns/{campaign}")["tasks"]["cancelled"] == 2, "campaign cancelled")
        assert c.get(f"/api/v1/campaigns/{campaign}")["state"] == "cancelled"
        # The message is drawn only with what was loaded after the action (not beside the
        # buttons of the state before it, where "requeue" would vanish on the next draw).
        browser.wait(ACTION_SAID % "cancelled campaign", "the page to draw the state after the cancel")
        browser.wait("document.getElementById('campaign-requeue')", "the campaign's requeue button")
        browser.click("campaign-requeue")
        browser.click("campaign-requeue")
        wait_for(lambda: c.get(f"/api/v1/campaigns/{campaign}")["tasks"]["cancelled"] == 0, "campaign requeued")
        # Leave nothing running for the tests after this one.
        c.post(f"/api/v1/campaigns/{campaign}/cancel", {})
    finally:
        browser.close()


def wait_for(condition, what, deadline_s=20):
    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end, f"waited {deadline_s} s for {what}"
        time.sleep(0.1)


def test_api_unreachable(world):
    # The page opened from a file: no API behind it.
    dom = Dom(chromium((SOURCE / "coordinator" / "operator" / "dashboard" / "index.html").as_uri() + "#campaign=1",
                       world["tmp"], "--dump-dom"))
    assert dom.state() == "error"
    banner = dom.by_id("banner")
    assert "hidden" not in banner.attrs and "Cannot reach the API" in banner.text()
    assert "Cannot reach the API" in dom.by_id("campaigns").text()


# ---- screenshots for docs/ --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description="take the dashboard screenshots for docs/")
    ap.add_argument("--screenshots", required=True, help="directory for dashboard.png, dashboard-task.png and dashboard-compare.png")
    ap.add_argument("--campaign", default=str(FIXTURES / "campaign.toml"))
    args = ap.parse_args()
    out = Path(args.screenshots).resolve()
    with tempfile.TemporaryDirectory(prefix="kforge-dashboard-") as tmp:
        w = build_world(tmp, Path(args.campaign).resolve(), hostile=False)
        try:
            c, again = w["api"]("/api/v1/campaigns")
            tasks = w["api"](f"/api/v1/tasks?campaign={c['id']}")
            fixed = next(t for t in tasks if t["state"] == "passed" and t["steps"] > 3)
            screenshot(w["coordinator"].page(f"#campaign={c['id']}"), out / "dashboard.png", tmp)
            screenshot(w["coordinator"].page(f"#campaign={c['id']}&task={fixed['task']}"), out / "dashboard-task.png", tmp)
            screenshot(w["coordinator"].page(f"#compare={c['id']}&with={again['id']}"), out / "dashboard-compare.png", tmp)
            print(f"wrote {out / 'dashboard.png'}, {out / 'dashboard-task.png'} and {out / 'dashboard-compare.png'} "
                  f"(campaign runs took {w['runs_s']:.0f} s)")
        finally:
            w["coordinator"].stop()


if __name__ == "__main__":
    main()
