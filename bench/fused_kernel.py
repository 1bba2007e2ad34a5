"""The fused compiled kernels vs a plain numpy/BLAS pass vs the numpy reference.

Usage: OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python bench/fused_kernel.py \
    [--rows 1000000] [--features 32] [--repeat 5] [--order F] [--dtype float64] [--skip-reference]

Everything runs in this process on the same in-memory data (float64, or
float32 with ``--dtype float32``: the plain pass then runs on the same values
widened to float64) and prints
one table (best of ``--repeat``; the slow numpy references of the statistics
and Hessian passes best of ``--reference-repeat``): the loss pass, the
statistics pass (``fused_stats``) and the loss pass with Newton's Hessian
(``fused_partials``, ``spec.hessian``), then each compiled pass's cost relative
to the compiled loss pass.  Each fused result is checked to be equal (``==``)
to the reference's before anything is timed.

The loss and Hessian passes are the one-sweep ``fused.fused_partials``, the
compiled loss pass wherever numba imports (``fused.AVAILABLE``): its exp/log
are the pipeline's own (``pipeline.elementary_jit``, the numba twins of the
reference's ``pipeline.elementary``), so it gives the reference's bits on every
CPU, AVX-512 ones included; it is checked equal to the reference on a slice of
the data (and, unless ``--skip-reference``, on all of it) before it is timed.
The plain numpy/BLAS pass (numpy's exp/log, BLAS products) is the speed
baseline; it is not exact and not checked.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pipeline import fused
from pipeline.kernel import KernelSpec, chunk_partials, chunk_stats, triangle_size


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
    parser.add_argument(
        "--reference-repeat", type=int, default=1, help="runs of the slow statistics and Hessian references"
    )
    parser.add_argument("--order", choices=["C", "F"], default="F")
    parser.add_argument(
        "--dtype", choices=["float64", "float32"], default="float64", help="the features' type (float32: narrow data)"
    )
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()
    if not (fused.AVAILABLE and fused.STATS_AVAILABLE):
        raise SystemExit("pipeline.fused is not available here (numba missing)")
    partials = fused.fused_partials
    name = "fused_partials"
    rng = np.random.default_rng(0)
    X = np.asarray(rng.standard_normal((args.rows, args.features)), order=args.order, dtype=args.dtype)
    y = (rng.random(args.rows) < 0.5).astype(np.float64)
    coef = rng.normal(0, 0.2, args.features + 1)
    weights = rng.random(args.rows) + 0.5
    spec = KernelSpec(center=rng.normal(0, 0.1, args.features), scale=rng.random(args.features) + 0.5)
    hessian = KernelSpec(hessian=True)
    megabytes = X.nbytes / 1e6

    # Warm up (compile or load the cache) and check equality once.
    # the reference Hessian holds a (rows, (d+1)(d+2)/2) block: fewer rows when wide
    small = slice(0, min(args.rows, 50_000, max(64, 2**24 // triangle_size(args.features + 1))))
    Xs, ys, ws = X[small], y[small], weights[small]
    check_coef = coef
    assert partials(Xs, ys, check_coef, None, KernelSpec()) == chunk_partials(Xs, ys, check_coef)
    assert partials(Xs, ys, check_coef, ws, spec.with_hessian(True)) == chunk_partials(
        Xs, ys, check_coef, ws, spec.with_hessian(True)
    )
    assert partials(Xs, ys, check_coef, None, hessian) == chunk_partials(Xs, ys, check_coef, None, hessian)
    assert fused.fused_stats(Xs, ys, ws) == chunk_stats(Xs, ys, ws)
    if not args.skip_reference:
        assert partials(X, y, check_coef, None, KernelSpec()) == chunk_partials(X, y, check_coef)
        assert partials(X, y, check_coef, weights, spec) == chunk_partials(X, y, check_coef, weights, spec)
        assert fused.fused_stats(X, y) == chunk_stats(X, y)

    def timed(fn, repeat=args.repeat):
        return best_of(repeat, fn)

    skip = args.skip_reference
    slow = args.reference_repeat
    # the baseline runs on float64 (for float32 features: the same values widened)
    wide = X if X.dtype == np.float64 else np.asarray(X, dtype=np.float64, order=args.order)
    plain = timed(lambda: plain_pass(wide, y, coef))
    ref = None if skip else timed(lambda: chunk_partials(X, y, coef))
    ref_ws = None if skip else timed(lambda: chunk_partials(X, y, coef, weights, spec))
    ref_stats = None if skip else timed(lambda: chunk_stats(X, y), slow)
    ref_hessian = None if skip else timed(lambda: chunk_partials(X, y, coef, None, hessian), slow)
    loss = timed(lambda: partials(X, y, coef, None, KernelSpec()))
    stats = timed(lambda: fused.fused_stats(X, y))
    stats_w = timed(lambda: fused.fused_stats(X, y, weights))
    with_hessian = timed(lambda: partials(X, y, coef, None, hessian))
    # (name, seconds, the matching reference's seconds)
    rows = [
        ("plain numpy/BLAS gradient+loss", plain, ref),
        ("reference chunk_partials (numpy)", ref, ref),
        (name, loss, ref),
        ("reference, weights+standardize", ref_ws, ref_ws),
        (f"{name}, weights+standardize", timed(lambda: partials(X, y, coef, weights, spec)), ref_ws),
        ("reference chunk_stats (numpy)", ref_stats, ref_stats),
        ("fused_stats", stats, ref_stats),
        ("fused_stats, weights", stats_w, None),
        ("reference chunk_partials, Hessian", ref_hessian, ref_hessian),
        (f"{name}, Hessian", with_hessian, ref_hessian),
    ]
    print(
        f"{args.rows} rows x {args.features} features, {args.dtype} {args.order}-order "
        f"({megabytes:.0f} MB), one process, best of {args.repeat} "
        f"(statistics and Hessian references: best of {slow})"
    )
    print(f"{'pass':<38}{'seconds':>9}{'rows/s':>14}{'vs plain':>10}{'vs ref':>9}")
    for name, seconds, reference in rows:
        if seconds is None:
            continue
        vs_ref = f"{seconds / reference:>8.2f}x" if reference else f"{'-':>9}"
        print(f"{name:<38}{seconds:>9.3f}{args.rows / seconds:>14,.0f}{seconds / plain:>9.2f}x{vs_ref}")
    print(
        f"statistics pass / compiled loss pass: {stats / loss:.2f}x "
        f"(weighted {stats_w / loss:.2f}x); Hessian pass / compiled loss pass: "
        f"{with_hessian / loss:.2f}x"
    )


if __name__ == "__main__":
    main()
