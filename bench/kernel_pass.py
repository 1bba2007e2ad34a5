"""One gradient+loss pass: our exact kernel vs a plain numpy/BLAS pass vs Parquet decode.

Usage: python bench/kernel_pass.py [--rows 1000000] [--features 32] [--repeat 5]

Everything runs in this process on one core's worth of work (set
OMP_NUM_THREADS=1 / OPENBLAS_NUM_THREADS=1 for a one-core number), on the same
in-memory data, and prints one table with times and ratios side by side.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.kernel import chunk_partials


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
    parser.add_argument("--row-group-size", type=int, default=131_072)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = np.asfortranarray(rng.standard_normal((args.rows, args.features)))
    y = (rng.random(args.rows) < 0.5).astype(np.float64)
    coef = rng.normal(0, 0.2, args.features + 1)
    megabytes = X.nbytes / 1e6

    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "data.parquet")
        table = pa.table({f"f{j}": X[:, j] for j in range(args.features)} | {"y": y})
        pq.write_table(table, path, row_group_size=args.row_group_size)
        decode = best_of(args.repeat, lambda: pq.read_table(path))

    plain = best_of(args.repeat, lambda: plain_pass(X, y, coef))
    exact = best_of(args.repeat, lambda: chunk_partials(X, y, coef))
    print(f"{args.rows} rows x {args.features} features, float64 ({megabytes:.0f} MB), best of {args.repeat}")
    print(f"{'pass':<34}{'seconds':>9}{'rows/s':>14}{'MB/s':>9}{'vs plain':>10}")
    for name, seconds in [
        ("plain numpy/BLAS gradient+loss", plain),
        ("exact kernel (pure numpy)", exact),
        ("pyarrow Parquet decode", decode),
    ]:
        print(f"{name:<34}{seconds:>9.3f}{args.rows / seconds:>14,.0f}"
              f"{megabytes / seconds:>9.0f}{seconds / plain:>9.2f}x")


if __name__ == "__main__":
    main()
