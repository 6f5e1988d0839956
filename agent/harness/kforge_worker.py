#!/usr/bin/python3
"""kforge Verifier v2, the candidate worker: `kforge_worker.py --fd N` runs one candidate for
the judge on descriptor N, then is killed (docs/harness.md). Untrusted by design."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kforge_verifier import entry  # noqa: E402

if __name__ == "__main__":
    sys.exit(entry.main("worker"))
