"""The HTTP client of the operator API (schema/api.md), standard library only."""

import ipaddress
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request

from .errors import KforgeError, Unauthorized, Unreachable, error_for_status
from .results import TaskResult, to_csv

DEFAULT_URL = "http://127.0.0.1:7780"
API_PREFIX = "/api/v1/"


def read_token_file(path):
    """The token in ``path``, whitespace around it removed (as the coordinator reads it)."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as e:
        raise KforgeError(f"{path}: cannot read the API token file ({e.strerror or e})") from None
    if not token:
        raise KforgeError(f"{path}: the API token file is empty")
    return token


def _is_loopback(host):
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Client:
    """A connection to a coordinator's operator API.

    ``url`` defaults to ``$KFORGE_COORDINATOR``, else ``http://127.0.0.1:7780``. Every API
    request needs the coordinator's token; it is the first of: ``token``, the contents of
    ``token_file``, ``$KFORGE_TOKEN``, the contents of ``$KFORGE_TOKEN_FILE``, and
    ``<data_dir>/api.token`` where the coordinator creates it (``data_dir``, else
    ``$KFORGE_DATA``, else ``kforge-data``; without an explicit ``data_dir`` only for a
    coordinator on this host, so that a local token never goes elsewhere). ``timeout``
    (seconds) bounds each request.

    Failures raise :class:`kforge_client.KforgeError` subclasses: ``BadRequest`` (400),
    ``Unauthorized`` (401), ``NotFound`` (404), ``Conflict`` (409), ``Unavailable`` (503),
    ``ServerError`` (500 and anything else), ``Unreachable`` (no answer at all).
    """

    def __init__(self, url=None, token=None, token_file=None, timeout=30.0, data_dir=None):
        url = url or os.environ.get("KFORGE_COORDINATOR") or DEFAULT_URL
        if not (url.startswith("http://") or url.startswith("https://")):
            raise KforgeError(f"coordinator URL: expected the API's URL, e.g. http://head-node:7780, got {url!r}")
        self.url = url.rstrip("/")
        host = urllib.parse.urlsplit(self.url).hostname or ""
        self.token_source = "token=" if token else None
        if not token:
            token = None
            env_file = os.environ.get("KFORGE_TOKEN_FILE")
            data = data_dir or os.environ.get("KFORGE_DATA") or "kforge-data"
            default_file = os.path.join(data, "api.token")
            if token_file:
                token, self.token_source = read_token_file(token_file), token_file
            elif os.environ.get("KFORGE_TOKEN"):
                token, self.token_source = os.environ["KFORGE_TOKEN"].strip(), "$KFORGE_TOKEN"
            elif env_file:
                token, self.token_source = read_token_file(env_file), env_file
            elif (data_dir or _is_loopback(host)) and os.path.exists(default_file):
                token, self.token_source = read_token_file(default_file), default_file
        self.token = token or None
        self.timeout = timeout
        # A coordinator on this host is never reached through an http_proxy.
        handlers = [urllib.request.ProxyHandler({})] if _is_loopback(host) else []
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self):
        return f"Client({self.url!r}{', token=...' if self.token else ''})"

    # --- requests ---------------------------------------------------------------------------

    def _url(self, path, query):
        if not path.startswith("/"):
            path = API_PREFIX + path
        url = self.url + path
        if query:
            pairs = [(k, str(v)) for k, v in query.items() if v is not None and v != ""]
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        return url

    def request(self, method, path, body=None, query=None, text=False):
        """One request. ``path`` is under ``/api/v1/`` unless it starts with ``/``; ``body``
        is sent as JSON; ``query`` a dict (``None`` values left out). Returns the decoded
        JSON answer, or the text when ``text``."""
        url = self._url(path, query)
        headers = {"Accept": "text/plain" if text else "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise self._error(e.code, e.read(), method, url) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, (socket.timeout, TimeoutError)) or isinstance(e, (socket.timeout, TimeoutError)):
                raise Unreachable(
                    f"no answer from the coordinator at {self.url} to {method} {path} within {self.timeout:g} s "
                    f"(Client(timeout=...) allows longer); is the coordinator overloaded or stopped?"
                ) from None
            raise Unreachable(
                f"cannot reach the coordinator at {self.url} ({reason}); is kforge-coordinator running there "
                f"with --http? Pass Client(url=...) or set KFORGE_COORDINATOR to its API URL "
                f"(the 'api http://...' line it prints)"
            ) from None
        answer = raw.decode("utf-8", errors="replace")
        if text:
            return answer
        try:
            return json.loads(answer)
        except ValueError:
            raise KforgeError(f"{method} {url} answered something that is not JSON: {answer[:200]!r}") from None

    def _error(self, status, raw, method, url):
        text = raw.decode("utf-8", errors="replace") if raw else ""
        server = None
        try:
            doc = json.loads(text)
            if isinstance(doc, dict) and isinstance(doc.get("error"), str):
                server = doc["error"]
        except ValueError:
            pass
        if status == 401:
            why = f"refused the token sent (from {self.token_source})" if self.token else "needs its API token"
            return Unauthorized(
                f"{self.url} {why}: pass Client(token_file=FILE) with the coordinator's <data_dir>/api.token "
                f"(or the file coordinator.api_token_file names), Client(data_dir=DIR), or set KFORGE_TOKEN_FILE"
                + (f" (server: {server})" if server else ""),
                401,
                server,
            )
        cls = error_for_status(status)
        message = server if server is not None else f"HTTP {status} from {method} {url}"
        return cls(message, status, server)

    def get(self, path, **query):
        """``GET /api/v1/<path>?<query>``: the decoded JSON."""
        return self.request("GET", path, query=query)

    def post(self, path, body=None):
        """``POST /api/v1/<path>`` with ``body`` as JSON: the decoded JSON."""
        return self.request("POST", path, body={} if body is None else body)

    # --- the endpoints of schema/api.md -------------------------------------------------------

    def health(self):
        """``{"ok": true, "version", "schema_version"}``."""
        return self.get("health")

    def campaigns(self):
        """Every campaign (a list of Campaign dicts, oldest first)."""
        return self.get("campaigns")

    def campaign(self, campaign_id):
        """One Campaign dict."""
        return self.get(f"campaigns/{int(campaign_id)}")

    def submit_campaign(self, name, tasks, workflow="default", source="", search=None, timing=None):
        """POSTs an expanded campaign (``tasks``: TaskSpec dicts); ``{"id", "created",
        "tasks"}``. The server computes the content hash: the same campaign twice is one.
        ``search``: the search policy, the dict a Campaign shows (``{"strategy": "best_of_n",
        "samples": 4}``; fields left out take their defaults; ``None``: fix_loop); ``timing``:
        ``"kforge"`` (default) or ``"kernelbench"``. Both are part of the campaign's identity."""
        body = {"name": name, "workflow": workflow, "source": source, "tasks": list(tasks)}
        if search is not None:
            body["search"] = dict(search)
        if timing is not None:
            body["timing"] = timing
        return self.post("campaigns", body)

    def cancel_campaign(self, campaign_id):
        return self.post(f"campaigns/{int(campaign_id)}/cancel")

    def resume_campaign(self, campaign_id):
        return self.post(f"campaigns/{int(campaign_id)}/resume")

    def report(self, campaign_id):
        """The campaign's report document (docs/reports.md)."""
        return self.get(f"campaigns/{int(campaign_id)}/report")

    def progress(self, campaign_id, buckets=None, stall_s=None):
        """The campaign's Progress dict: elapsed time, tasks per hour, ETA, queue, whether it
        is stalled (no change for ``stall_s`` seconds, default 900), and the tasks ended per
        time bucket (``buckets``, default 30)."""
        return self.get(f"campaigns/{int(campaign_id)}/progress", buckets=buckets, stall_s=stall_s)

    def alerts(self, stall_s=None):
        """Alert dicts (``kind``: ``agent_lost``, ``campaign_stalled`` or ``nospace``, with
        ``message`` and ``since_ms``): lost agents, campaigns without a change for ``stall_s``
        seconds (default 900), the disk alarm. Empty when all is well."""
        return self.get("alerts", stall_s=stall_s)

    def llm(self, campaign=None):
        """LLM health: requests, errors, retries and latency since the coordinator started,
        and the calls stored (of ``campaign``, else of all)."""
        return self.get("llm", campaign=campaign)

    def compare(self, a, b, after=None, limit=None):
        """The Comparison of campaigns ``a`` and ``b``: a page of a's tasks (``limit``, default
        500), each beside b's task of the same op, task_id and target, with the speedup ratio
        b / a; ``counts`` cover the whole campaigns. ``after`` (a task id of ``a``) asks for the
        page after it (see :meth:`each_compared`)."""
        return self.get("compare", a=int(a), b=int(b), after=after, limit=limit)

    def each_compared(self, a, b, page=500):
        """Every row of :meth:`compare`, asked ``page`` rows at a time."""
        after = None
        while True:
            rows = self.compare(a, b, after=after, limit=page)["rows"]
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1]["a"]["task"]

    def tasks(self, campaign=None, state=None, op=None, verdict=None, limit=None, after=None):
        """Task dicts as the API answers them; every filter optional, ``op`` and ``verdict``
        match exactly. ``after`` (a task id) starts after that task: pages by id, fast at any
        depth (see :meth:`each_task`)."""
        return self.get("tasks", campaign=campaign, state=state, op=op, verdict=verdict, limit=limit, after=after)

    def each_task(self, campaign=None, state=None, op=None, verdict=None, page=1000):
        """Every matching task dict, by id, asked ``page`` at a time (``after=`` the last id
        seen): a campaign of a million tasks is never held whole, here or in the coordinator."""
        after = None
        while True:
            rows = self.tasks(campaign, state, op, verdict, limit=page, after=after)
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1]["task"]

    def results(self, campaign=None, state=None, op=None, verdict=None, limit=None):
        """As :meth:`tasks`, as :class:`TaskResult` dataclasses."""
        return [TaskResult.from_json(t) for t in self.tasks(campaign, state, op, verdict, limit)]

    def results_csv(self, campaign=None, state=None, op=None, verdict=None, file=None):
        """:meth:`results` as CSV text (or written to ``file``, page by page as they come)."""
        rows = (TaskResult.from_json(t) for t in self.each_task(campaign, state, op, verdict))
        return to_csv(rows, file)

    def submit_task(self, spec, workflow="default"):
        """POSTs one TaskSpec dict; ``{"task", "campaign", "created"}``. Posting the same
        task again finds the same task."""
        body = dict(spec)
        body["workflow"] = workflow
        return self.post("tasks", body)

    def task(self, task_id):
        """A Task dict plus ``task_desc``, ``trace`` (every step, in order) and ``jobs``."""
        return self.get(f"tasks/{int(task_id)}")

    def cancel_task(self, task_id):
        return self.post(f"tasks/{int(task_id)}/cancel")

    def resume_task(self, task_id):
        return self.post(f"tasks/{int(task_id)}/resume")

    def agents(self):
        """Agent dicts (devices, running jobs, liveness)."""
        return self.get("agents")

    def drain(self, agent, reason=None):
        """Stops giving the agent (an id or unique prefix) new jobs; its Agent dict.
        ``reason`` (one line) is kept and shown until the agent is undrained."""
        body = {} if reason is None else {"reason": reason}
        return self.post(f"agents/{urllib.parse.quote(agent, safe='')}/drain", body)

    def undrain(self, agent):
        return self.post(f"agents/{urllib.parse.quote(agent, safe='')}/undrain")

    def drain_host(self, host, reason=None):
        """Drains every agent of ``host``; their Agent dicts."""
        body = {} if reason is None else {"reason": reason}
        return self.post(f"hosts/{urllib.parse.quote(host, safe='')}/drain", body)

    def undrain_host(self, host):
        return self.post(f"hosts/{urllib.parse.quote(host, safe='')}/undrain")

    def cluster(self):
        """The cluster summary: hosts, devices by state, queue, running jobs, tasks per hour."""
        return self.get("cluster")

    def jobs(self, state=None, task=None, limit=None, offset=None):
        """Job dicts by id; every filter optional. Without ``limit`` every matching job;
        ``offset`` skips that many matching jobs first (pages, with ``limit``)."""
        return self.get("jobs", state=state, task=task, limit=limit, offset=offset)

    def timeline(self, campaign=None, buckets=None):
        return self.get("timeline", campaign=campaign, buckets=buckets)

    def metrics(self):
        """``GET /metrics``: the Prometheus text."""
        return self.request("GET", "/metrics", text=True)

    def metric(self, name, **labels):
        """One sample of :meth:`metrics` as a float (``None`` when absent), e.g.
        ``client.metric("kforge_tasks", state="passed")``."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            metric, _, rest = key.partition("{")
            if metric != name:
                continue
            have = ",".join(sorted(p for p in rest.rstrip("}").split(",") if p))
            if have == want:
                return float(value)
        return None
