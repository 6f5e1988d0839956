"""Replays the judge's precision check on outputs a GPU computed (bench/precision_dump.py), on
any host: for each task and candidate, the strict check, then the float64 second look on the
job's first SECOND_LOOKS draws that miss it (against the truth), then past them against the
reference, held to the looks' scales (JudgeRunner._within_reference_error's order).

    python3 bench/precision_replay.py DUMP_DIR [HARNESS_DIR]

Prints, per candidate, how many draws passed which way and the verdict, and its margin: the
factor k on the candidate's error (t + k (a - t)) at which the job starts to fail. An honest
kernel needs k well over 1, a cheat well under 1.
"""

import glob
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
harness = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(HERE), "agent",
                                                              "harness")
sys.path.insert(0, harness)
from kforge_verifier import compare  # noqa: E402

LOOKS = 8


def host(x):
    return compare.to_host_array(x, x.dtype.name)


def job(e, t, a):
    """-> (strict, looked, stand_in, passed) over the draws, in the judge's order."""
    atol, rtol = compare.tolerance_for(e.dtype.name)
    scales, counts = {}, [0, 0, 0]
    for ed, td, ad in zip(e, t, a):
        if compare.compare(host(ed), host(ad)).ok:  # the strict policy, its L2 guard too
            counts[0] += 1
            continue
        if counts[1] < LOOKS:
            if not compare.within_reference_error(host(ed), host(ad), host(td), atol, rtol):
                return counts, False
            for key, v in compare.reference_error_scale(host(ed), host(td), atol).items():
                scales[key] = max(scales.get(key, 0.0), v)
            counts[1] += 1
        else:
            if not scales or not compare.within_reference_error(host(ed), host(ad), host(ed), atol, rtol,
                                                                 ref_scale=dict(scales)):
                return counts, False
            counts[2] += 1
    return counts, True


def margin(e, t, a):
    """The factor on a's error at which the job fails (bisected in log2 over 1/256..256)."""
    lo, hi = -8.0, 8.0
    def passes(k):
        return job(e, t, (t + 2 ** k * (a - t)).astype(e.dtype))[1]
    if passes(hi):
        return float("inf")
    if not passes(lo):
        return 0.0
    for _ in range(12):
        mid = (lo + hi) / 2
        if passes(mid):
            lo = mid
        else:
            hi = mid
    return 2 ** hi


def main():
    for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.npz"))):
        d = np.load(path)
        e, t = d["e"], d["t"]
        name = os.path.basename(path)[:-4]
        print("%s: %d draws %s, reference max|e-t| %.3g" % (name, len(e), e.shape[1:],
                                                          np.abs(e - t).max()))
        for key in sorted(k for k in d.files if k.startswith("a_")):
            a = d[key].astype(e.dtype)
            (strict, looked, stand_in), ok = job(e, t, a)
            print("  %-28s %-6s strict %2d, looks %d, vs reference %2d; fails at k=%.3g" % (
                key[2:], "PASS" if ok else "FAIL", strict, looked, stand_in,
                margin(e, t, a.astype(np.float64))))


if __name__ == "__main__":
    main()
