"""The fused compiled kernel vs a plain numpy/BLAS pass vs the numpy reference.

Usage: OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python bench/fused_kernel.py \
    [--rows 1000000] [--features 32] [--repeat 5] [--order F]

All three run in this process on the same in-memory float64 data and print one
table (best of ``--repeat``).  The fused result is also checked to be equal
(``==``) to the reference's before anything is timed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pipeline import fused
from pipeline.kernel import KernelSpec, chunk_partials


def best_of(repeat, fn):
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def plain_pass(X, y, coef):
    margin = X @ coef[:-1] + coef[-1]
    residual = 1.0 / (1.0 + np.exp(-margin)) - y
    return X.T @ residual, residual.sum(), (np.logaddexp(0.0, margin) - y * margin).sum()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--order", choices=["C", "F"], default="F")
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()
    if not fused.AVAILABLE:
        raise SystemExit("pipeline.fused is not available here (numba missing or exp differs)")
    rng = np.random.default_rng(0)
    X = np.asarray(rng.standard_normal((args.rows, args.features)), order=args.order)
    y = (rng.random(args.rows) < 0.5).astype(np.float64)
    coef = rng.normal(0, 0.2, args.features + 1)
    weights = rng.random(args.rows) + 0.5
    spec = KernelSpec(center=rng.normal(0, 0.1, args.features),
                      scale=rng.random(args.features) + 0.5)
    megabytes = X.nbytes / 1e6

    # Warm up (compile or load the cache) and check equality once.
    small = slice(0, min(args.rows, 50_000))
    Xs, ys = X[small], y[small]
    assert fused.fused_partials(Xs, ys, coef) == chunk_partials(Xs, ys, coef)
    if not args.skip_reference:
        assert fused.fused_partials(X, y, coef) == chunk_partials(X, y, coef)
        assert (fused.fused_partials(X, y, coef, weights, spec)
                == chunk_partials(X, y, coef, weights, spec))

    def timed(fn):
        return best_of(args.repeat, fn)

    plain = timed(lambda: plain_pass(X, y, coef))
    ref = None if args.skip_reference else timed(lambda: chunk_partials(X, y, coef))
    ref_ws = None if args.skip_reference else timed(
        lambda: chunk_partials(X, y, coef, weights, spec))
    # (name, seconds, the matching reference's seconds)
    rows = [("plain numpy/BLAS gradient+loss", plain, ref),
            ("reference chunk_partials (numpy)", ref, ref),
            ("fused_partials", timed(lambda: fused.fused_partials(X, y, coef)), ref),
            ("reference, weights+standardize", ref_ws, ref_ws),
            ("fused_partials, weights+standardize",
             timed(lambda: fused.fused_partials(X, y, coef, weights, spec)), ref_ws)]
    print(f"{args.rows} rows x {args.features} features, float64 {args.order}-order "
          f"({megabytes:.0f} MB), one process, best of {args.repeat}")
    print(f"{'pass':<38}{'seconds':>9}{'rows/s':>14}{'vs plain':>10}{'vs ref':>9}")
    for name, seconds, reference in rows:
        if seconds is None:
            continue
        vs_ref = f"{seconds / reference:>8.2f}x" if reference else f"{'-':>9}"
        print(f"{name:<38}{seconds:>9.3f}{args.rows / seconds:>14,.0f}"
              f"{seconds / plain:>9.2f}x{vs_ref}")

if __name__ == "__main__":
    main()
