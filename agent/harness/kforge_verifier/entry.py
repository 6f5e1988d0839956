"""The command line of Verifier v2's three processes (kforge_judge.py, kforge_worker.py,
kforge_zygote.py): `--fd N` names the socket to the agent (the judge, the zygote) or to the
judge (a worker)."""

import argparse
import faulthandler

ROLES = {
    "judge": "kforge verification judge",
    "worker": "kforge candidate worker",
    "zygote": "kforge worker zygote",
}


def main(role, argv=None):
    parser = argparse.ArgumentParser(description=ROLES[role])
    parser.add_argument("--fd", type=int, default=3, help="the socket to serve")
    args = parser.parse_args(argv)
    faulthandler.enable()  # a fatal signal puts the Python stack on stderr
    if role == "judge":
        from . import judge
        return judge.serve(args.fd)
    if role == "worker":
        from . import worker
        worker.main(args.fd)
        return 0
    from . import zygote
    return zygote.main(args.fd)
