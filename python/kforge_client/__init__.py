"""kforge_client: the Python client of kforge's operator API (schema/api.md).

Standard library only. A Task is one kernel to generate, run by the coordinator:

    import asyncio
    from kforge_client import Task

    task = Task(op_name="relu", task_desc=open("relu.py").read(), task_id="N=1024",
                backend="cpu", arch="x86_64", impl_type="cpp", framework="torch",
                task_type="profile", limit_steps=6)
    success = asyncio.run(task.run())   # or: success = task.run_sync()
    print(task.id, task.state, task.verdict, task.speedup, task.cost_usd)

The coordinator is found at $KFORGE_COORDINATOR (default http://127.0.0.1:7780) and its
token in $KFORGE_TOKEN / $KFORGE_TOKEN_FILE, else in <data_dir>/api.token of a coordinator on
this host ($KFORGE_DATA, default kforge-data); pass Client(url=..., token_file=...) as
`client=` to choose.
See docs/python.md.
"""

from .client import DEFAULT_URL, Client, read_token_file
from .errors import (BadRequest, Conflict, KforgeError, NotFound, ServerError, Unauthorized, Unavailable,
                     Unreachable)
from .results import FINISHED_STATES, VERDICTS, TaskResult, to_csv
from .task import Campaign, Task

__all__ = [
    "Client", "DEFAULT_URL", "read_token_file",
    "Task", "Campaign",
    "TaskResult", "to_csv", "FINISHED_STATES", "VERDICTS",
    "KforgeError", "BadRequest", "Unauthorized", "NotFound", "Conflict", "ServerError", "Unavailable",
    "Unreachable",
]
__version__ = "0.1.0"
