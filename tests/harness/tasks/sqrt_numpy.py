"""Square root of normal samples: negative inputs give NaN, which the candidate must keep."""
import numpy as np

N = 4099


class Model:
    def forward(self, x):
        with np.errstate(invalid="ignore"):
            return np.sqrt(x)


def get_inputs():
    return [np.random.randn(N).astype(np.float32)]


def get_init_inputs():
    return []
