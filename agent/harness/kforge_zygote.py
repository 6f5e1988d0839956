#!/usr/bin/python3
"""kforge Verifier v2, the worker zygote: `kforge_zygote.py --fd N` imports the framework once
and forks candidate workers into the boxes the agent makes (kforge_verifier/zygote.py)."""

import argparse
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description="kforge worker zygote")
    parser.add_argument("--fd", type=int, default=3, help="the agent's socket")
    args = parser.parse_args(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    from kforge_verifier import zygote
    return zygote.main(args.fd)


if __name__ == "__main__":
    sys.exit(main())
