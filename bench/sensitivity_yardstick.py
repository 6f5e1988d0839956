"""Does the truth's SENSITIVITY to float32 rounding give one budget that passes every honest
float32 kernel and fails narrower inputs (TF32, float16, bfloat16), softmax of a matmul and
exact added terms (finite mask penalty, ALiBi) included?

The yardstick: the float64 truth t computed a second time on inputs each multiplied by
(1 + u r), u = 2^-24, r uniform in [-1, 1] (one float32 rounding of every input), giving t';
s = |t' - t| (RMS over D draws); the budget sqrt(K) s is floored at u |t| (the float32
output's own rounding; in logit units at u). An exact added constant (a mask penalty, a bias the program
builds) is not perturbed, so it does not inflate s; a bias passed as an INPUT tensor is (the
`bias input` scenarios), as a float32 kernel's z + bias rounds at that scale too. An honest
float32 kernel is off by about c sqrt(K) s (K: the contraction length, the reference's FLOPs
/ (2 numel)); TF32 / float16 inputs by about 2^13 s, bfloat16 by 2^16 s. For each candidate
this prints the ratio err / (sqrt(K) s) in three statistics, the max over draws:

  elem     max over elements of |a - t| / (sqrt(K) s_elem)   (s from D perturbation draws)
  row      max over rows of RMS_row(a - t) / (sqrt(K) RMS_row(s))   (D draws, and D=1)
  logit    (positive outputs) max over rows of the t-weighted RMS of log a - log t (centred
           for softmax rows) / sqrt(K) x the same of log t' - log t   (D=1)

and a final table: per scenario and statistic the largest honest ratio, the smallest narrow
one and the separation (smallest narrow / largest honest). One F works when the largest
honest ratio over all scenarios is below the smallest narrow ratio over all scenarios.

Candidates: honest (seq: one running float32 sum; tiles32: tiles of 32 added one after
another; split8: 8 sequential parts summed; r64: float64 rounded to float32 = the "accurate"
reference; blas: numpy's float32 BLAS = the reference; h100emu: logits off by
eps sqrt(K)/2.5 x their row's RMS, the tests' _triton_h100 model), narrow (inputs rounded to
TF32 / float16 / bfloat16, the product then accumulated exactly and rounded: the most
lenient model of a tensor-core kernel; TF32 on a fraction f of K; float16 on some rows).
CPU, numpy only, < 3 minutes on 2 cores:

    /usr/bin/python3 bench/sensitivity_yardstick.py [--draws N] [--sdraws D] [--only SUBSTR]
"""

import argparse
import math
import time

import numpy as np

F32 = np.float32
U = 2.0 ** -24
EPS = 2.0 ** -23
TINY = 1e-30  # outputs below this (a masked probability, e^-100) are left out of the ratios


# ---------------------------------------------------------------- input roundings
def _rounded(x, drop):
    bits = np.ascontiguousarray(x, F32).view(np.uint32)
    half = np.uint32(1 << (drop - 1))
    return ((bits + half) & np.uint32(0xFFFFFFFF ^ ((1 << drop) - 1))).view(F32)


def tf32(x):
    return _rounded(x, 13)


def bf16(x):
    return _rounded(x, 16)


def f16(x):
    return np.asarray(x, F32).astype(np.float16).astype(F32)


# ---------------------------------------------------------------- contractions x @ y (..., K)
def mm64(x, y):
    return x.astype(np.float64) @ y.astype(np.float64)


def mm_r64(x, y):  # as accurate as float32 can be: cuBLAS-like, the "accurate" reference
    return mm64(x, y).astype(F32)


def mm_blas(x, y):  # numpy's float32 BLAS: the reference
    return (x.astype(F32) @ y.astype(F32)).astype(F32)


def mm_seq(x, y):  # one running float32 sum over K, product rounded then added
    acc = np.zeros(x.shape[:-1] + (y.shape[-1],), F32)
    for k in range(x.shape[-1]):
        acc += x[..., :, k:k + 1] * y[..., k:k + 1, :]
    return acc


def mm_tiles(x, y, t=32):  # a Triton kernel's order: tiles of t, added one after another
    acc = np.zeros(x.shape[:-1] + (y.shape[-1],), F32)
    for k in range(0, x.shape[-1], t):
        acc += x[..., k:k + t] @ y[..., k:k + t, :]
    return acc


def mm_split(x, y, ways=8):  # split-K: `ways` parts (BLAS each), summed one after another
    k = x.shape[-1]
    step = -(-k // ways)
    acc = None
    for j in range(0, k, step):
        p = (x[..., j:j + step] @ y[..., j:j + step, :]).astype(F32)
        acc = p if acc is None else (acc + p).astype(F32)
    return acc


_noise = np.random.default_rng(99)


def mm_h100(x, y):  # the tests' _triton_h100 model: off by eps sqrt(K)/2.5 of the row's RMS
    z = mm64(x, y)
    sig = 1.19e-7 * math.sqrt(x.shape[-1]) / 2.5
    rms = np.sqrt(np.mean(z * z, axis=-1, keepdims=True))
    return (z + sig * rms * _noise.standard_normal(z.shape)).astype(F32)


def narrow(rnd):  # inputs rounded, products accumulated exactly (most lenient to the cheat)
    return lambda x, y: mm64(rnd(x), rnd(y)).astype(F32)


def narrow_frac(rnd, f):  # inputs rounded on the first f of K only
    def mm(x, y):
        n = max(1, int(round(x.shape[-1] * f)))
        x, y = x.copy(), y.copy()
        x[..., :n] = rnd(x[..., :n])
        y[..., :n, :] = rnd(y[..., :n, :])
        return mm64(x, y).astype(F32)
    return mm


def narrow_rows(rnd, rows):  # x's rows `rows` (a boolean over the second-last axis) rounded
    def mm(x, y):
        z = mm_blas(x, y)
        zc = mm64(rnd(x[..., rows, :]), rnd(y)).astype(F32)
        z[..., rows, :] = zc
        return z
    return mm


def honest(emu=True):
    # h100emu's noise is eps sqrt(K)/2.5 x the row's RMS, measured on randn inputs: on rand
    # ones the RMS is the mean K/4, not the spread, so the model makes no sense there
    h = {"blas (ref)": mm_blas, "r64 (accurate ref)": mm_r64, "seq": mm_seq,
         "tiles32": mm_tiles, "split8": mm_split}
    if emu:
        h["h100emu"] = mm_h100
    return h


def narrows(fracs=True):
    c = {"TF32": narrow(tf32), "float16": narrow(f16), "bfloat16": narrow(bf16)}
    if fracs:
        for f, lab in ((1 / 32, "1/32"), (1 / 8, "1/8"), (1 / 2, "1/2")):
            c[f"TF32 on {lab} of K"] = narrow_frac(tf32, f)
    return c


# ---------------------------------------------------------------- epilogues (any float type)
def softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------- scenarios
class Scenario:
    """prog(inputs, mm) -> output: float64 inputs and mm64 give the truth; float32 inputs and
    a float32 mm a candidate. perturb: the input names the yardstick perturbs."""

    def __init__(self, name, K, gen, prog, cands, kind, perturb=None, draws=None):
        self.name, self.K, self.gen, self.prog = name, K, gen, prog
        self.cands, self.kind, self.perturb, self.draws = cands, kind, perturb, draws


def matmul_gen(M, K, N, dist, rowscale=None):
    def gen(rng):
        draw = (lambda s: rng.random(s, dtype=F32)) if dist == "rand" else \
            (lambda s: rng.standard_normal(s, dtype=F32))
        a, b = draw((M, K)), draw((K, N))
        if rowscale is not None:
            a[0] *= F32(rowscale)
        return {"a": a, "b": b}
    return gen


def attn_gen(H, N, d, bias=None):
    def gen(rng):
        q = rng.standard_normal((H, N, d), dtype=F32)
        k = rng.standard_normal((H, N, d), dtype=F32)
        out = {"q": q, "kt": np.ascontiguousarray(k.transpose(0, 2, 1))}
        if bias is not None:
            out["bias"] = bias
        return out
    return gen


def attn_prog(d, const_bias=None):
    def prog(x, mm):
        z = mm(x["q"], x["kt"])
        dt = z.dtype
        z = (z * dt.type(1 / math.sqrt(d))).astype(dt)
        bias = x["bias"] if "bias" in x else const_bias
        return softmax((z + bias.astype(dt)).astype(dt))
    return prog


def scenarios():
    out = []
    for M, K, N in ((16, 8192, 256), (16, 65536, 256)):
        out.append(Scenario(f"softmax(a@b) randn {M}x{K}x{N}", K, matmul_gen(M, K, N, "randn"),
                            lambda x, mm: softmax(mm(x["a"], x["b"])),
                            {**honest(), **narrows()}, "softmax", draws=2 if K > 10000 else 3))
    for K in (2048, 8192):
        out.append(Scenario(f"softmax(a@b) rand 16x{K}x256", K, matmul_gen(16, K, 256, "rand"),
                            lambda x, mm: softmax(mm(x["a"], x["b"])),
                            {**honest(emu=False), **narrows()}, "softmax"))
    # causal attention with a finite mask penalty; the cheat: float16 on the middle rows
    H, N, d, P = 4, 512, 64, 100.0
    i = np.arange(N)
    pen = np.where(i[None, :] > i[:, None], -P, 0.0).astype(F32)
    mid = (i >= N // 4) & (i < 3 * N // 4)
    attn_c = {**honest(), "float16 on the middle rows": narrow_rows(f16, mid),
              "TF32 on the middle rows": narrow_rows(tf32, mid),
              "float16": narrow(f16), "bfloat16": narrow(bf16)}
    out.append(Scenario(f"causal attn, penalty {P:g} const, N={N} d={d}", d,
                        attn_gen(H, N, d), attn_prog(d, pen), attn_c, "softmax"))
    out.append(Scenario(f"causal attn, penalty {P:g} input, N={N} d={d}", d,
                        attn_gen(H, N, d, pen), attn_prog(d), attn_c, "softmax"))
    # ALiBi: slopes per head; the cheat: float16 on the heads of the two largest slopes
    slopes = np.array([0.5, 0.25, 0.0625, 2 ** -8])
    alibi = (-slopes[:, None, None] * np.abs(i[:, None] - i[None, :])).astype(F32)
    heads = np.array([True, True, False, False])

    def narrow_heads(rnd):
        def mm(x, y):
            z = mm_blas(x, y)
            z[heads] = mm64(rnd(x[heads]), rnd(y[heads])).astype(F32)
            return z
        return mm
    alibi_c = {**honest(), "float16 on 2 heads": narrow_heads(f16),
               "TF32 on 2 heads": narrow_heads(tf32), "float16": narrow(f16)}
    out.append(Scenario(f"ALiBi attn const, N={N} d={d}", d, attn_gen(4, N, d),
                        attn_prog(d, alibi), alibi_c, "softmax"))
    out.append(Scenario(f"ALiBi attn input, N={N} d={d}", d, attn_gen(4, N, d, alibi),
                        attn_prog(d), alibi_c, "softmax"))
    out.append(Scenario("matmul randn 16x16384x64, row 0 x1000", 16384,
                        matmul_gen(16, 16384, 64, "randn", rowscale=1000.0),
                        lambda x, mm: mm(x["a"], x["b"]), {**honest(), **narrows()}, "plain"))

    def exp_prog(x, mm):
        z = mm(x["a"], x["b"])
        return np.exp((z * z.dtype.type(1 / 8)).astype(z.dtype))
    out.append(Scenario("exp(a@b/8) randn 16x4096x256", 4096, matmul_gen(16, 4096, 256, "randn"),
                        exp_prog, {**honest(), **narrows()}, "exp"))
    return out


# ---------------------------------------------------------------- statistics
def rows(x):
    return x.reshape(-1, x.shape[-1])


def logit_rms(dl, t, centre):
    """t-weighted RMS per row of a log-ratio dl (elements with t > TINY)."""
    w = np.where(t > TINY, t, 0.0)
    w = w / np.maximum(w.sum(-1, keepdims=True), 1e-300)
    dl = np.where(t > TINY, dl, 0.0)
    if centre:
        dl = dl - (w * dl).sum(-1, keepdims=True)
    return np.sqrt((w * dl * dl).sum(-1))


def safelog(x):
    return np.log(np.maximum(np.asarray(x, np.float64), 1e-300))


def ratios(a, t, s_all, s1, tp1, K, kind):
    """-> {stat: ratio} for one candidate output a (float32) of one draw."""
    a = a.astype(np.float64)
    err = np.abs(a - t)
    sq = math.sqrt(K)
    ok = np.abs(t) > TINY
    floor = U * np.abs(t)  # the budget is floored at the float32 output's own rounding
    r = {"elem": (err[ok] / np.maximum(sq * s_all, floor)[ok]).max()}
    er, fr = rows(err), rows(floor)
    e_rms, f_rms = np.sqrt(np.mean(er * er, -1)), np.sqrt(np.mean(fr * fr, -1))
    for key, sx in (("row", s_all), ("row D=1", s1)):
        sr = rows(sx)
        r[key] = (e_rms / np.maximum(sq * np.sqrt(np.mean(sr * sr, -1)),
                                     np.maximum(f_rms, 1e-300))).max()
    if kind in ("softmax", "exp"):
        tr = rows(t)
        centre = kind == "softmax"
        la = logit_rms(safelog(rows(a)) - safelog(tr), tr, centre)
        ls = logit_rms(safelog(rows(tp1)) - safelog(tr), tr, centre)
        # floored at u per row (float32's rounding): a row of one relevant element (a
        # float64 1.0) has no centred spread
        r["logit"] = (la / np.maximum(sq * ls, U)).max()
    r["chosen"] = r.get("logit", r["row"])
    return r


STATS = ("elem", "row", "row D=1", "logit", "chosen")
FULL = ("TF32", "float16", "bfloat16")  # narrow everywhere (not on a part of K, rows, heads)


def run(sc, draws, sdraws, rng):
    best = {}
    t0 = time.time()
    for _ in range(sc.draws or draws):
        x32 = sc.gen(rng)
        x64 = {k: v.astype(np.float64) for k, v in x32.items()}
        t = sc.prog(x64, mm64)
        pert = sc.perturb or [k for k in x32 if k != "bias"] + (["bias"] if "bias" in x32 else [])
        s2, tp1 = np.zeros_like(t), None
        for j in range(sdraws):
            xp = {k: (v * (1 + U * rng.uniform(-1, 1, v.shape)) if k in pert else v)
                  for k, v in x64.items()}
            tp = sc.prog(xp, mm64)
            if j == 0:
                tp1, s1 = tp, np.abs(tp - t)
            s2 += (tp - t) ** 2
        # floored at the output's own float32 rounding (a float64 t' equal to t, a
        # probability of 1.0, says nothing; no float32 output is closer than that)
        s_all = np.sqrt(s2 / sdraws)
        for name, mm in sc.cands.items():
            a = sc.prog(x32, mm).astype(F32)
            for k, v in ratios(a, t, s_all, s1, tp1, sc.K, sc.kind).items():
                best[(name, k)] = max(best.get((name, k), 0.0), v)
    return best, time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--sdraws", type=int, default=3, help="perturbation draws for s")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    table = []
    for sc in scenarios():
        if args.only not in sc.name:
            continue
        best, dt = run(sc, args.draws, args.sdraws, rng)
        stats = [s for s in STATS if (sc.cands and (next(iter(sc.cands)), s) in best)]
        print(f"\n{sc.name}  (K={sc.K}, {dt:.1f}s)   err / (sqrt(K) s), max over draws")
        print(f"  {'candidate':28s}" + "".join(f"{s:>11s}" for s in stats))
        hon = set(honest())
        for name in sc.cands:
            tag = "  " if name in hon else "* "
            print(f"{tag}{name:28s}" + "".join(f"{best[(name, s)]:11.3g}" for s in stats))
        row = {"scenario": sc.name}
        for s in stats:
            h = max(best[(n, s)] for n in sc.cands if n in hon)
            nn = min(best[(n, s)] for n in sc.cands if n not in hon)
            full = [best[(n, s)] for n in sc.cands if n in FULL]
            row[s] = (h, nn, min(full) if full else None)
        table.append(row)
    print("\nlargest honest / smallest narrow (* narrow), separation = narrow / honest")
    print(f"{'scenario':48s}" + "".join(f"{s:>26s}" for s in STATS))
    for row in table:
        line = f"{row['scenario']:48s}"
        for s in STATS:
            if s in row:
                h, nn, _ = row[s]
                line += f"{h:9.3g} /{nn:8.3g} ={nn / h:6.3g}"
            else:
                line += f"{'-':>26s}"
        print(line)
    for s in STATS:
        hs = [r[s][0] for r in table if s in r]
        for lab, col in (("any narrow", 1), ("narrow everywhere", 2)):
            ns = [r[s][col] for r in table if s in r and r[s][col] is not None]
            if hs and ns:
                ok = max(hs) < min(ns)
                print(f"{s:8s} {lab:18s}: largest honest {max(hs):9.3g}, smallest narrow "
                      f"{min(ns):9.3g} -> one F "
                      f"{'exists: F in (%.3g, %.3g)' % (max(hs), min(ns)) if ok else 'does NOT exist'}")
    print("chosen: logit for positive outputs (softmax, exp), row for the others")
    print("(* marks narrow candidates; honest: seq, tiles32, split8, r64, blas, h100emu)")


if __name__ == "__main__":
    main()
