"""Multinomial logistic regression: the cost of a pass, and time to the optimum.

Usage: python bench/multinomial.py [--pass-rows 1000000] [--rows 1000000] [--skip pass,scikit-learn]

1. **Pass cost** (in this process, one thread; BLAS limited to one thread
   too): ``--pass-rows`` rows x 16 float64 features, K = 3, 10 and 100
   classes.  Ours: the compiled multinomial loss pass of ``pipeline.fused``
   (standardized; exact sums of the K(d+1) gradient columns and the loss).
   Plain numpy on the same data: ``Z = X @ W.T + b`` (BLAS), the row max,
   ``exp``, the sums, ``log``, the residuals and ``R.T @ X`` (BLAS) -- a
   pass with numpy's own exp/log and BLAS's summation order, which is
   neither exact nor the same bits on another CPU.  Best of 3.
2. **Time to the optimum**, end to end, each contender in a fresh process
   (process start to coefficients on disk), on ``--rows`` rows of Parquet,
   10 classes, 16 badly scaled float64 features (spreads 1e-2 to 1e3), an
   integer label; L2 = 1e-4 on the mean loss (C = 1 / (n * l2)):

   * ``ours``: ``pipeline train DATA --label y --l2 1e-4`` with the defaults
     (an embedded cluster of 2 worker processes, auto cache, auto solver);
   * ``scikit-learn``: ``pyarrow`` -> numpy, ``LogisticRegression`` (lbfgs,
     multinomial, ``max_iter=1000``) on the raw features, and again behind
     ``StandardScaler`` (its usual remedy for bad scaling; the penalty then
     falls on the standardized coefficients, a slightly different objective,
     so only its time is comparable); and its ``newton-cholesky`` solver
     with ``tol=1e-12`` (insensitive to the scaling: the reference optimum,
     whose coefficients ours are compared with, in units of each feature's
     spread);
   * dask-ml has no multinomial model (its ``LogisticRegression`` is binary
     only), so it has no row.

   Every model's objective is then evaluated here (numpy, original units)
   and compared with the lowest.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from categorical import timed  # (bench/ is the script's directory: on sys.path)

ROOT = Path(__file__).resolve().parent.parent
FEATURES = 16
CLASSES = (3, 10, 100)
TRAIN_CLASSES = 10
L2 = 1e-4
ROW_GROUP = 131_072


# --------------------------------------------------------------------------- 1. the pass


def pass_cost(rows: int, log=print) -> list[str]:
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    from threadpoolctl import threadpool_limits

    from pipeline.fused import fused_partials
    from pipeline.kernel import KernelSpec

    rng = np.random.default_rng(0)
    X = np.asfortranarray(rng.standard_normal((rows, FEATURES)))
    lines = [
        f"Loss pass, {rows:,} rows x {FEATURES} features, one thread, best of 3:",
        "",
        "| classes | ours (exact, compiled) | plain numpy (BLAS + np.exp) | ours / numpy |",
        "| --- | --- | --- | --- |",
    ]
    for k in CLASSES:
        y = rng.integers(0, k, rows).astype(np.float64)
        coef = rng.standard_normal(k * (FEATURES + 1)) * 0.1
        spec = KernelSpec(center=np.zeros(FEATURES), scale=np.ones(FEATURES), n_classes=k)
        blocks = coef.reshape(k, FEATURES + 1)
        codes = y.astype(np.int64)
        rows_index = np.arange(rows)

        def plain():
            margin = X @ blocks[:, :-1].T + blocks[:, -1]
            top = margin.max(axis=1, keepdims=True)
            shifted = np.exp(margin - top)
            total = shifted.sum(axis=1, keepdims=True)
            loss = (np.log(total[:, 0]) + top[:, 0] - margin[rows_index, codes]).sum()
            residual = shifted / total
            residual[rows_index, codes] -= 1.0
            return loss, residual.T @ X, residual.sum(axis=0)

        def ours():
            return fused_partials(X, y, coef, None, spec)

        ours_time, plain_time = np.inf, np.inf
        with threadpool_limits(1):
            fused_partials(X[:1000], y[:1000], coef, None, spec)  # compile
            plain()
            for _ in range(3):
                started = time.perf_counter()
                ours()
                ours_time = min(ours_time, time.perf_counter() - started)
                started = time.perf_counter()
                plain()
                plain_time = min(plain_time, time.perf_counter() - started)
        log(f"  K={k}: ours {ours_time:.3f} s, numpy {plain_time:.3f} s")
        lines.append(f"| {k} | {ours_time:.3f} s | {plain_time:.3f} s | {ours_time / plain_time:.2f}x |")
    return lines


# --------------------------------------------------------------------------- 2. time to the optimum


def make_data(path: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    path.mkdir(parents=True)
    spread = np.logspace(-2, 3, FEATURES)
    X = rng.standard_normal((rows, FEATURES)) * spread + rng.standard_normal(FEATURES) * spread
    W = rng.standard_normal((TRAIN_CLASSES, FEATURES)) / spread
    margin = (X - X.mean(axis=0)) @ W.T
    proba = np.exp(margin - margin.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    y = (rng.random(rows)[:, None] > np.cumsum(proba, axis=1)).sum(axis=1).clip(0, TRAIN_CLASSES - 1)
    columns = {f"x{j}": X[:, j] for j in range(FEATURES)}
    columns["y"] = y.astype(np.int16)
    pq.write_table(pa.table(columns), path / "part-0.parquet", row_group_size=ROW_GROUP)


SKLEARN = textwrap.dedent(
    """
    import json, sys, warnings
    import numpy as np
    import pyarrow.parquet as pq
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    data, out, l2, scaled, solver = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "scaled", sys.argv[5]
    table = pq.read_table(data)
    y = table.column("y").to_numpy()
    X = np.column_stack([table.column(n).to_numpy() for n in table.column_names if n != "y"])
    tol = 1e-12 if solver == "newton-cholesky" else 1e-4
    model = LogisticRegression(C=1 / (l2 * len(y)), solver=solver, tol=tol, max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if scaled:
            fitted = make_pipeline(StandardScaler(), model).fit(X, y)
            scaler = fitted[0]
            coef = model.coef_ / scaler.scale_
            intercept = model.intercept_ - coef @ scaler.mean_
        else:
            model.fit(X, y)
            coef, intercept = model.coef_, model.intercept_
    json.dump({"coef": coef.tolist(), "intercept": intercept.tolist(), "n_iter": int(model.n_iter_[0])},
              open(out, "w"))
    """
)


def objective(data: Path, coef: np.ndarray, intercept: np.ndarray) -> float:
    """Mean cross-entropy + l2/2 |W|^2 in original units, evaluated here."""
    import pyarrow.parquet as pq

    table = pq.read_table(data)
    y = table.column("y").to_numpy().astype(np.int64)
    X = np.column_stack([table.column(f"x{j}").to_numpy() for j in range(FEATURES)])
    margin = X @ coef.T + intercept
    top = margin.max(axis=1)
    loss = top + np.log(np.exp(margin - top[:, None]).sum(axis=1)) - margin[np.arange(len(y)), y]
    return float(loss.mean() + 0.5 * L2 * (coef * coef).sum())


def time_to_optimum(rows: int, contenders: list[str], scratch: Path, timeout: float, log=print) -> list[str]:
    data = scratch / f"data-{rows}"
    make_data(data, rows)
    found = {}
    for name in contenders:
        out = scratch / f"{name}.json"
        if name == "ours":
            model_dir = scratch / "ours"
            seconds = timed(
                [sys.executable, "-m", "pipeline", "train", str(data), "--label", "y", "--l2", str(L2),
                 "--out", str(model_dir), "--quiet", "--overwrite"],
                timeout,
            )  # fmt: skip
            model = json.loads((model_dir / "model.json").read_text())
            coef, intercept = np.array(model["coef"]), np.array(model["intercept"])
        else:
            scaled = "scaled" if "Scaler" in name else "raw"
            solver = "newton-cholesky" if "newton" in name else "lbfgs"
            seconds = timed([sys.executable, "-c", SKLEARN, str(data), str(out), str(L2), scaled, solver], timeout)
            result = json.loads(out.read_text())
            coef, intercept = np.array(result["coef"]), np.array(result["intercept"])
        found[name] = (seconds, objective(data, coef, intercept), coef - coef.mean(axis=0))
        log(f"  {name}: {seconds:.1f} s")
    best = min(value for _, value, _ in found.values())
    ours = found["ours"][0]
    lines = [
        f"Time to the optimum, {rows:,} rows x {FEATURES} badly scaled features, {TRAIN_CLASSES} classes, "
        f"L2 {L2}, process start to coefficients on disk:",
        "",
        "| contender | seconds | vs ours | objective - best (relative) | coef - ours (max, x spread) |",
        "| --- | --- | --- | --- | --- |",
    ]
    spread = np.logspace(-2, 3, FEATURES)
    for name, (seconds, value, coef) in found.items():
        difference = np.abs((coef - found["ours"][2]) * spread).max()
        lines.append(
            f"| {name} | {seconds:.1f} | {seconds / ours:.2f}x | {(value - best) / best:.1e} | {difference:.1e} |"
        )
    lines.append("| dask-ml | - | - | no multinomial model | |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pass-rows", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--skip", default="", help="comma-separated: pass, scikit-learn")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    lines = []
    with tempfile.TemporaryDirectory(prefix="bench-multinomial-") as scratch:
        if "pass" not in skip:
            lines += pass_cost(args.pass_rows) + [""]
        sklearn = ["scikit-learn", "scikit-learn + StandardScaler", "scikit-learn newton-cholesky (reference)"]
        contenders = ["ours"] + ([] if "scikit-learn" in skip else sklearn)
        lines += time_to_optimum(args.rows, contenders, Path(scratch), args.timeout)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
