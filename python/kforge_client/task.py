"""The design's Task API over HTTP, and campaigns of tasks.

    task = Task(op_name="relu", task_desc=open("relu.py").read(), task_id="N=1024",
                backend="cpu", arch="x86_64", impl_type="cpp", framework="torch",
                task_type="profile", limit_steps=6)
    success = await task.run()   # True: the kernel passed; False: it failed or was cancelled

Methods that wait for the coordinator's work are coroutines (``run``, ``wait``) with
``*_sync`` twins; the rest are one request each and plain methods. A coroutine makes its
blocking HTTP requests in a worker thread (``asyncio.to_thread``) and sleeps with
``asyncio.sleep`` between polls, so several tasks can be awaited together with
``asyncio.gather``.
"""

import asyncio
import time

from .client import Client
from .errors import KforgeError
from .results import FINISHED_STATES, TaskResult

DEFAULT_POLL_INTERVAL = 1.0

_SPEC_FIELDS = ("op_name", "task_id", "task_desc", "backend", "arch", "impl_type", "framework", "task_type",
                "limit_steps", "candidate")


def _default_client(client):
    return client if client is not None else Client()


def _deadline(timeout):
    return None if timeout is None else time.monotonic() + timeout


def _check_deadline(deadline, what):
    if deadline is not None and time.monotonic() >= deadline:
        raise TimeoutError(f"{what} has not finished in time; it runs on (cancel() stops it)")


class _Polled:
    """``run``/``wait`` (asyncio) and ``run_sync``/``wait_sync`` around one blocking poll
    (``_finished_now``), shared by Task and Campaign."""

    async def run(self, timeout=None, poll_interval=None):
        """Submits, then waits until it has finished; True when it passed (a campaign: every
        task passed). ``timeout`` (seconds, default none) raises ``TimeoutError`` and leaves
        it running."""
        await asyncio.to_thread(self.submit)
        return await self.wait(timeout=timeout, poll_interval=poll_interval)

    async def wait(self, timeout=None, poll_interval=None):
        """Polls until it has finished; True when it passed. The HTTP calls run in a thread,
        so several can be awaited together (``asyncio.gather``)."""
        self._require_id()
        interval = poll_interval or self.poll_interval
        deadline = _deadline(timeout)
        while not await asyncio.to_thread(self._finished_now):
            _check_deadline(deadline, self._what())
            await asyncio.sleep(interval)
        return self.passed

    def run_sync(self, timeout=None, poll_interval=None):
        """:meth:`run` without an event loop (blocks the calling thread)."""
        self.submit()
        return self.wait_sync(timeout=timeout, poll_interval=poll_interval)

    def wait_sync(self, timeout=None, poll_interval=None):
        """:meth:`wait` without an event loop."""
        self._require_id()
        interval = poll_interval or self.poll_interval
        deadline = _deadline(timeout)
        while not self._finished_now():
            _check_deadline(deadline, self._what())
            time.sleep(interval)
        return self.passed


class Task(_Polled):
    """One kernel to generate: the TaskSpec of schema/api.md run by the coordinator's
    Conductor. ``backend``, ``arch``, ``impl_type`` and ``framework`` have no defaults: the
    coordinator checks the combination and answers a :class:`BadRequest` naming what is
    valid. ``task_type`` defaults to ``precision_only``, ``limit_steps`` to 10 (the server's
    defaults), ``candidate`` (the ``verify_only`` workflow's code) to none.

    After :meth:`run` (or :meth:`refresh`): ``id``, ``campaign``, ``state``, ``verdict``,
    ``reason``, ``speedup``, ``steps`` (the trace: a list of step dicts), ``code`` (the code
    that passed, or ``None``), ``cost_usd``, ``llm_calls``, ``prompt_tokens``,
    ``completion_tokens``, ``best_step``, ``jobs``, ``result`` (a :class:`TaskResult`)."""

    def __init__(self, op_name, task_desc, task_id="default", backend=None, arch=None, impl_type=None,
                 framework=None, task_type=None, limit_steps=None, candidate=None, workflow="default",
                 client=None, poll_interval=DEFAULT_POLL_INTERVAL):
        self.op_name = op_name
        self.task_desc = task_desc
        self.task_id = task_id
        self.backend = backend
        self.arch = arch
        self.impl_type = impl_type
        self.framework = framework
        self.task_type = task_type
        self.limit_steps = limit_steps
        self.candidate = candidate
        self.workflow = workflow
        self.client = client
        self.poll_interval = poll_interval
        self._reset()

    def _reset(self):
        self.id = None
        self._own_campaign = False  # submitted on its own: the task's campaign holds only it
        self.campaign = None
        self.created = None
        self.state = None
        self.verdict = None
        self.reason = None
        self.speedup = None
        self.best_step = None
        self.steps = []
        self.code = None
        self.cost_usd = 0.0
        self.llm_calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.jobs = []
        self.result = None

    def __repr__(self):
        where = f" id={self.id} {self.state}" if self.id else ""
        return f"<Task {self.op_name}/{self.task_id} {self.backend}/{self.arch}/{self.impl_type}{where}>"

    @property
    def _client(self):
        if self.client is None:
            self.client = Client()
        return self.client

    def spec(self):
        """The TaskSpec dict this task posts (fields left ``None`` take the server's default)."""
        out = {}
        for k in _SPEC_FIELDS:
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        return out

    @property
    def finished(self):
        return self.state in FINISHED_STATES

    @property
    def passed(self):
        return self.state == "passed"

    # --- one request each ---------------------------------------------------------------------

    def submit(self):
        """POSTs the task (the coordinator dedups by content: the same task again is the same
        task, resumed where it stood) and returns its id. Raises ``BadRequest`` for an
        invalid combination."""
        answer = self._client.submit_task(self.spec(), self.workflow)
        self.id = answer["task"]
        self.campaign = answer["campaign"]
        self.created = answer["created"]
        self._own_campaign = True
        return self.id

    def refresh(self):
        """Reads the task's state, trace and jobs; returns the Task dict the API answered."""
        self._require_id()
        doc = self._client.task(self.id)
        self._update(doc)
        return doc

    def cancel(self):
        """Cancels the task (``Conflict`` when it has finished); a waiting :meth:`run` then
        returns False."""
        self._require_id()
        self._update(self._client.cancel_task(self.id))

    def resume(self):
        """A cancelled task runs on from its recorded steps (``Conflict`` when it finished)."""
        self._require_id()
        self._update(self._client.resume_task(self.id))

    def poll(self):
        """Reads the task's row (state, verdict, step count, usage) without its trace: for a
        task submitted on its own, the row of ``GET /api/v1/tasks?campaign=<its campaign>``,
        which stays small however long the trace grows (a task of a Campaign is read with
        :meth:`refresh`). Once the task has finished, reads the trace too. Returns whether
        it has finished."""
        self._require_id()
        row = None
        if self._own_campaign:  # a campaign of one: its listing is this row
            row = next((r for r in self._client.tasks(campaign=self.campaign) if r.get("task") == self.id), None)
        if row is None:
            self.refresh()
            return self.finished
        self._update(row)
        if self.finished:
            self.refresh()
        return self.finished

    def _require_id(self):
        if self.id is None:
            raise KforgeError(f"{self!r} has not been submitted: call run() or submit() first")

    def _update(self, doc):
        self.result = TaskResult.from_json(doc)
        self.id = doc.get("task", self.id)
        self.campaign = doc.get("campaign", self.campaign)
        for k in ("state", "verdict", "reason", "speedup", "best_step", "llm_calls", "prompt_tokens",
                  "completion_tokens", "cost_usd"):
            if k in doc:
                setattr(self, k, doc[k])
        if "trace" in doc:
            self.steps = doc["trace"]
            self.code = doc.get("code")  # the server extracts it, as the Verifier ran it
        if "jobs" in doc:
            self.jobs = doc["jobs"]

    # --- waiting --------------------------------------------------------------------------------

    def _finished_now(self):  # one poll; True once the task has finished
        return self.poll()

    def _what(self):
        return f"task {self.id}"


class Campaign(_Polled):
    """Tasks submitted together (``POST /api/v1/campaigns``); the server computes the
    content hash, so submitting the same campaign again finds the same one. Each Task's
    own ``client`` and ``workflow`` are ignored here: the campaign's apply.

        campaign = Campaign("sweep", tasks=[Task(...), Task(...)])
        ok = await campaign.run()        # True when every task passed
        rows = campaign.results()        # [TaskResult]
    """

    def __init__(self, name, tasks=(), workflow="default", client=None, source="",
                 poll_interval=DEFAULT_POLL_INTERVAL, search=None):
        self.name = name
        self.tasks = list(tasks)
        self.workflow = workflow
        self.search = search  # the search policy dict (Client.submit_campaign); None: fix_loop
        self.client = client
        self.source = source
        self.poll_interval = poll_interval
        self.id = None
        self.created = None
        self.state = None
        self.info = None  # the last Campaign dict read

    @classmethod
    def from_id(cls, client, campaign_id):
        """The campaign the coordinator holds under ``campaign_id`` (``NotFound`` if none).
        Its ``tasks`` list is empty (the API gives no task specs back); ``results()`` and
        ``status()`` work."""
        client = _default_client(client)
        doc = client.campaign(campaign_id)
        c = cls(doc["name"], workflow=doc.get("workflow", "default"), client=client, search=doc.get("search"))
        c.id = doc["id"]
        c._update(doc)
        return c

    def __repr__(self):
        where = f" id={self.id} {self.state}" if self.id else ""
        return f"<Campaign {self.name!r} {len(self.tasks)} tasks{where}>"

    @property
    def _client(self):
        if self.client is None:
            self.client = Client()
        return self.client

    def submit(self):
        """POSTs the campaign; returns its id. ``created`` says whether it is new."""
        answer = self._client.submit_campaign(self.name, [t.spec() for t in self.tasks], self.workflow, self.source,
                                              search=self.search)
        self.id = answer["id"]
        self.created = answer["created"]
        for t in self.tasks:
            t.client = self._client
        return self.id

    def status(self):
        """The Campaign dict (state, task counts by state, LLM usage)."""
        self._require_id()
        doc = self._client.campaign(self.id)
        self._update(doc)
        return doc

    def cancel(self):
        """Cancels every unfinished task; the Campaign dict."""
        self._require_id()
        doc = self._client.cancel_campaign(self.id)
        self._update(doc)
        return doc

    def resume(self):
        """Cancelled tasks become pending again and run on; the Campaign dict."""
        self._require_id()
        doc = self._client.resume_campaign(self.id)
        self._update(doc)
        return doc

    def results(self, state=None, op=None, verdict=None):
        """The campaign's tasks as :class:`TaskResult` rows, by id."""
        self._require_id()
        return self._client.results(campaign=self.id, state=state, op=op, verdict=verdict)

    def report(self):
        self._require_id()
        return self._client.report(self.id)

    def progress(self, buckets=None, stall_s=None):
        """The campaign's Progress dict (:meth:`Client.progress`): ETA, tasks per hour, stalled."""
        self._require_id()
        return self._client.progress(self.id, buckets=buckets, stall_s=stall_s)

    @property
    def done(self):
        """No task pending or running (every one passed, failed or was cancelled)."""
        counts = (self.info or {}).get("tasks", {})
        return bool(self.info) and counts.get("pending", 0) == 0 and counts.get("running", 0) == 0

    @property
    def passed(self):
        counts = (self.info or {}).get("tasks", {})
        return self.done and counts.get("total", 0) == counts.get("passed", -1)

    def _require_id(self):
        if self.id is None:
            raise KforgeError(f"{self!r} has not been submitted: call run() or submit() first")

    def _update(self, doc):
        self.info = doc
        self.state = doc.get("state", self.state)

    def _bind_tasks(self):
        """Gives each Task of this campaign its server-side id and outcome, matching by
        content (the campaign's tasks are stored in the order given)."""
        if not self.tasks:
            return
        rows = self.results()
        taken = set()
        for t in self.tasks:
            for i, r in enumerate(rows):
                if i in taken or (r.op_name, r.task_id, r.backend, r.arch, r.impl_type) != (
                        t.op_name, t.task_id, t.backend, t.arch, t.impl_type):
                    continue
                taken.add(i)
                t.id = r.task
                t._own_campaign = False
                t._update(r.to_dict())
                break

    def _finished_now(self):  # one poll; True (with the Tasks bound) once no task is unfinished
        self.status()
        if self.done:
            self._bind_tasks()
        return self.done

    def _what(self):
        return f"campaign {self.id}"
