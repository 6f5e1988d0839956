#!/usr/bin/python3
"""kforge Verifier v2, the candidate worker: `kforge_worker.py --fd N` runs one candidate for
the judge on descriptor N, then is killed (docs/harness.md). Untrusted by design."""

import argparse
import faulthandler
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description="kforge candidate worker")
    parser.add_argument("--fd", type=int, default=3, help="the judge's socket")
    args = parser.parse_args(argv)
    faulthandler.enable()  # a fatal signal puts the Python stack on stderr
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    from kforge_verifier import worker
    worker.main(args.fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
