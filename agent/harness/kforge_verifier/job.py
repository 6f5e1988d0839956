"""job.json -> JobSpec. Missing keys take the defaults below; bad values are input errors."""

import json
import math
import os
from dataclasses import dataclass, field

from . import verdicts

BACKENDS = ("cuda", "ascend", "cpu")
IMPL_TYPES = ("triton", "cuda_c", "cpp", "swft")
FRAMEWORKS = ("torch", "numpy", "mindspore")
TASK_TYPES = ("precision_only", "profile")
TOLERANCES = ("strict", "fractional")


@dataclass
class JobSpec:
    job_dir: str                       # absolute; the harness's cwd
    op_name: str = ""                  # names the function form: {op_name}_{impl_type}_{framework}
    backend: str = "cpu"               # cuda | ascend | cpu
    arch: str = ""                     # informational (e.g. "x86_64", "sm_90", "ascend910b")
    impl_type: str = "cpp"             # triton | cuda_c | cpp | swft
    framework: str = "torch"           # torch | numpy | mindspore
    task_type: str = "precision_only"  # precision_only | profile
    trials: int = 3                    # precision trials, fresh inputs each; at least 1
    seed: int = 0                      # trial t uses seed + t
    tolerance: str = "strict"          # strict (every element) | fractional (AIKG's policy)
    atol: float = None                 # overrides the table's atol for every float dtype
    rtol: float = None                 # overrides the table's rtol (or the fractional limit)
    warmup: int = 5                    # profiling warm-up runs per side
    runs: int = 50                     # profiling timed runs per side
    suspicious_speedup: float = 10.0   # speedups above this are flagged
    threads: int = 1                   # CPU threads for the job (torch, OpenMP, MKL, BLAS)
    reference: str = "reference.py"    # relative to job_dir
    candidate: str = "candidate.py"    # relative to job_dir
    extra: dict = field(default_factory=dict)  # unknown keys, kept for the record

    @property
    def reference_path(self):
        return os.path.join(self.job_dir, self.reference)

    @property
    def candidate_path(self):
        return os.path.join(self.job_dir, self.candidate)


_INT_KEYS = {"trials": 1, "seed": None, "warmup": 0, "runs": 1, "threads": 1}
_STR_CHOICES = {"backend": BACKENDS, "impl_type": IMPL_TYPES, "framework": FRAMEWORKS,
                "task_type": TASK_TYPES, "tolerance": TOLERANCES}


def load(job_dir):
    """Reads DIR/job.json. Raises verdicts.Failure (input error) when it is unusable."""
    job_dir = os.path.abspath(job_dir)
    path = os.path.join(job_dir, "job.json")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise verdicts.input_error(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise verdicts.input_error(f"{path}: cannot read job: {e}") from None
    if not isinstance(raw, dict):
        raise verdicts.input_error(f"{path}: expected a JSON object")
    return parse(raw, job_dir)


def parse(raw, job_dir):
    spec = JobSpec(job_dir=os.path.abspath(job_dir))
    known = set(spec.__dataclass_fields__) - {"job_dir", "extra"}
    for key, value in raw.items():
        if key not in known:
            spec.extra[key] = value
            continue
        if value is None and key in ("atol", "rtol"):
            continue
        if key in _STR_CHOICES:
            if value not in _STR_CHOICES[key]:
                raise verdicts.input_error(
                    f"job.json: {key} must be one of {'|'.join(_STR_CHOICES[key])}, got {value!r}")
        elif key in _INT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise verdicts.input_error(f"job.json: {key} must be an integer, got {value!r}")
            low = _INT_KEYS[key]
            if low is not None and value < low:
                raise verdicts.input_error(f"job.json: {key} must be >= {low}, got {value}")
        elif key in ("atol", "rtol", "suspicious_speedup"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value) or value < 0:
                raise verdicts.input_error(
                    f"job.json: {key} must be a non-negative number, got {value!r}")
            value = float(value)
        elif not isinstance(value, str):
            raise verdicts.input_error(f"job.json: {key} must be a string, got {value!r}")
        setattr(spec, key, value)
    for key in ("reference", "candidate"):
        rel = getattr(spec, key)
        if not rel or os.path.isabs(rel) or ".." in rel.replace("\\", "/").split("/"):
            raise verdicts.input_error(f"job.json: {key} must be a path inside the job "
                                       f"directory, got {rel!r}")
        if not rel.endswith(".py"):
            raise verdicts.input_error(f"job.json: {key} must name a .py file, got {rel!r}")
    return spec
