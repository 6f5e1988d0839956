"""Rows of the operator API as dataclasses: the Task object of schema/api.md (one row of
``kforge results``) and a CSV writer for lists of them."""

import csv
import dataclasses
import io
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class TaskResult:
    """A Task object of schema/api.md. ``task`` is the task's id, ``campaign`` its campaign's
    id; ``steps`` counts the steps used (designer, coder and verifier runs), ``speedup`` is
    ``None`` unless a profiled pass, ``best_step`` ``None`` or the seq of the coder step whose
    code passed. Fields the server adds later (version 1 only ever adds) land in ``extra``."""

    task: int
    campaign: int
    op_name: str
    task_id: str
    backend: str
    arch: str
    impl_type: str
    framework: str
    task_type: str
    state: str
    verdict: str = ""
    reason: str = ""
    steps: int = 0
    limit_steps: int = 0
    speedup: Optional[float] = None
    best_step: Optional[int] = None
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    created_ms: int = 0
    updated_ms: int = 0
    extra: Dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, doc):
        names = {f.name for f in dataclasses.fields(cls) if f.name != "extra"}
        known = {k: v for k, v in doc.items() if k in names}
        extra = {k: v for k, v in doc.items() if k not in names}
        return cls(**known, extra=extra)

    @property
    def finished(self):
        return self.state in FINISHED_STATES

    @property
    def passed(self):
        return self.state == "passed"

    def to_dict(self):
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out.update(self.extra)
        return out


FINISHED_STATES = ("passed", "failed", "cancelled")

# Every task and step verdict (schema/api.md, "Task"): the harness's verdicts, then what ends
# a task or a step without one. The words that explain a verdict are in ``reason``.
VERDICTS = ("passed", "compile_error", "runtime_error", "precision_mismatch", "timeout", "crashed",
            "resource_exceeded", "rejected", "infra_error", "llm_error", "garbled", "cancelled")

CSV_COLUMNS = [f.name for f in dataclasses.fields(TaskResult) if f.name != "extra"]


def to_csv(results: List[TaskResult], file=None):
    """Writes ``results`` as CSV (a header of the Task fields, one row each; ``None`` as an
    empty cell) to ``file`` (a text stream) when given; returns the text otherwise."""
    out = file if file is not None else io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        row = r.to_dict() if isinstance(r, TaskResult) else r
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in CSV_COLUMNS])
    return None if file is not None else out.getvalue()
