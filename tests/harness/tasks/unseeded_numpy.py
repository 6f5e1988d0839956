"""A broken task: its inputs come from a generator the harness cannot seed."""
import numpy as np

N = 4099


class Model:
    def forward(self, x):
        with np.errstate(invalid="ignore"):
            return np.sqrt(x)


def get_inputs():
    rng = np.random.default_rng()  # fresh OS entropy on every call
    return [rng.standard_normal(N).astype(np.float32)]


def get_init_inputs():
    return []
