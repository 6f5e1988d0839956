#!/usr/bin/python3
"""kforge Verifier v2, the worker zygote: `kforge_zygote.py --fd N` imports the framework once
and forks candidate workers into the boxes the agent makes (kforge_verifier/zygote.py)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kforge_verifier import entry  # noqa: E402

if __name__ == "__main__":
    sys.exit(entry.main("zygote"))
