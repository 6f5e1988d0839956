"""Atomic writes of DIR/stage and DIR/result.json.

result.json is written once, at the end, by writing DIR/.result.json.tmp<pid>, fsync, and
rename(2) over DIR/result.json: the parent sees either no file or the whole document.
Non-finite floats (NaN, +-Inf) are not valid JSON; they are written as the strings "nan",
"inf" and "-inf".
"""

import json
import math
import os


def sanitize(value):
    """A copy of `value` that json.dumps(allow_nan=False) accepts."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {str(k): sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize(v) for v in value]
    kind = getattr(getattr(value, "dtype", None), "kind", None)  # numpy scalars
    if kind == "b":
        return bool(value)
    if kind in ("i", "u"):
        return int(value)
    if kind == "f":
        return sanitize(float(value))
    return str(value)


def _write_atomic(path, data, fsync):
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def write_stage(job_dir, stage):
    """Records the stage about to start, so the parent can attribute a crash."""
    _write_atomic(os.path.join(job_dir, "stage"), stage + "\n", fsync=False)


def write_result(job_dir, doc):
    _write_atomic(os.path.join(job_dir, "result.json"),
                  json.dumps(sanitize(doc), indent=1, allow_nan=False) + "\n", fsync=True)
