#!/usr/bin/python3
"""kforge Verifier v2, the judge: `kforge_judge.py --fd N` serves verify jobs from the agent
on descriptor N (docs/harness.md). It never runs candidate code."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kforge_verifier import entry  # noqa: E402

if __name__ == "__main__":
    sys.exit(entry.main("judge"))
