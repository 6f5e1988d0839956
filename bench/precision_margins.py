"""How far honest float32 kernels and narrower-type ones are from the exact result, against
two yardsticks the judge could hold them to: the reference's own error (the float64 second
look's, docs/harness.md "Precision") and the output's sensitivity to float32 rounding of its
inputs (the result in float64 on inputs perturbed at float32's unit roundoff, the largest
move over 4 draws). The question for a precision check: is there a multiple of the yardstick
that every honest order of additions stays under and narrower inputs (TF32, float16) exceed?
CPU, numpy only; `--cuda` takes the reference's product from torch on the GPU (cuBLAS, whose
split sums come closer to float64 than a CPU BLAS: how much closer decides the budgets):

    /usr/bin/python3 bench/precision_margins.py
    /opt/torch/.venv/bin/python bench/precision_margins.py --cuda
"""

import sys

import numpy as np

U32 = 2.0 ** -24
rng = np.random.default_rng(3)


def tf32(x):
    bits = x.astype(np.float32).view(np.uint32)
    return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


def tiled(a, b):  # a GPU kernel's order: tiles of 32 products, added one after another
    acc = np.zeros((a.shape[0], b.shape[1]), np.float32)
    for k in range(0, a.shape[1], 32):
        acc += a[:, k:k + 32] @ b[k:k + 32]
    return acc


def softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


CASES = [  # name, epilogue, (M, K, N), inputs
    ("matmul, randn", lambda m: m, (64, 16384, 64), "randn"),
    ("softmax(matmul) over 256 columns, randn", softmax, (16, 8192, 256), "randn"),
    ("matmul minus its row mean, rand", lambda m: m - m.mean(1, keepdims=True),
     (16, 16384, 64), "rand"),
]


def product(a32, b32, cuda):
    """The reference's float32 product: numpy's BLAS, or torch's on the GPU (cuBLAS)."""
    if not cuda:
        return a32 @ b32
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False  # as the judge runs it
    return (torch.from_numpy(a32).cuda() @ torch.from_numpy(b32).cuda()).cpu().numpy()


def main():
    cuda = "--cuda" in sys.argv[1:]
    print(f"reference product: {'torch on the GPU (cuBLAS)' if cuda else 'numpy (CPU BLAS)'}")
    for name, f, (m, k, n), kind in CASES:
        draw = rng.random if kind == "rand" else rng.standard_normal
        a32, b32 = draw((m, k)).astype(np.float32), draw((k, n)).astype(np.float32)
        a, b = a32.astype(np.float64), b32.astype(np.float64)
        truth = f(a @ b)
        sens = np.zeros_like(truth)
        for _ in range(4):
            moved = f((a * (1 + U32 * rng.standard_normal(a.shape))) @
                      (b * (1 + U32 * rng.standard_normal(b.shape))))
            sens = np.maximum(sens, np.abs(moved - truth))
        ref = f(product(a32, b32, cuda).astype(np.float64))
        ref_max = np.abs(ref - truth).max()
        outs = {"reference": ref, "tiles of 32": f(tiled(a32, b32).astype(np.float64)),
                "TF32 inputs": f((tf32(a32) @ tf32(b32)).astype(np.float64)),
                "float16 inputs": f((a32.astype(np.float16).astype(np.float32) @
                                     b32.astype(np.float16).astype(np.float32))
                                    .astype(np.float64))}
        print(f"{name} ({m} x {k} x {n})")
        big = np.abs(truth) > 1e-30  # elements an exact zero does not make meaningless
        # a relative yardstick (for outputs of many scales): the reference's median relative
        # error, and the reference as accurate as float32 can be (the truth rounded: cuBLAS's
        # split sums come close to it)
        rel = np.abs(ref - truth)[big] / np.abs(truth[big])
        rounded = truth.astype(np.float32).astype(np.float64)
        rel_rounded = np.abs(rounded - truth)[big] / np.abs(truth[big])
        for label, out in outs.items():
            err = np.abs(out - truth)
            r = err[big] / np.maximum(sens[big], 1e-300)
            out_rel = err[big] / np.abs(truth[big])
            print(f"  {label:17s} error / sensitivity: median {np.median(r):9.3g}  "
                  f"p99.9 {np.quantile(r, 0.999):9.3g}  max {r.max():9.3g}   "
                  f"largest error / the reference's: {err.max() / ref_max:8.3g}   "
                  f"largest relative error / the reference's median one: "
                  f"{out_rel.max() / np.median(rel):8.3g} (over 100x: "
                  f"{np.mean(out_rel > 100 * np.median(rel)):.1%} of elements; against the "
                  f"rounded truth's median: {out_rel.max() / np.median(rel_rounded):8.3g})")


if __name__ == "__main__":
    main()
