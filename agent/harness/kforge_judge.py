#!/usr/bin/python3
"""kforge Verifier v2, the judge: `kforge_judge.py --fd N` serves verify jobs from the agent
on descriptor N (docs/harness.md). It never runs candidate code."""

import argparse
import faulthandler
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description="kforge verification judge")
    parser.add_argument("--fd", type=int, default=3, help="the agent's socket")
    args = parser.parse_args(argv)
    faulthandler.enable()
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    from kforge_verifier import judge
    return judge.serve(args.fd)


if __name__ == "__main__":
    sys.exit(main())
