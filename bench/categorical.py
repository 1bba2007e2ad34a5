"""Categorical columns: the cost of a level column in the pass, and time to the optimum.

Usage: python bench/categorical.py [--pass-rows 8000000] [--rows 1000000]
                                   [--dask-ml-rows 10000] [--skip dask-ml]

1. **Pass cost** (in this process, one thread, the compiled loss pass of
   ``pipeline.fused``, standardized): ``--pass-rows`` rows of 16 numeric
   float64 columns, then the same with 8 categorical columns of 10 to
   10,000 levels (level codes decoded after the numeric columns, as the
   pipeline decodes them), then 24 numeric columns.  A categorical column's
   share is (16+8 cat - 16) / 8, a numeric column's (24 - 16) / 8; best of 3.
2. **Time to the optimum**, end to end, each contender in a fresh process
   (process start to coefficients on disk), on ``--rows`` rows of Parquet
   (16 numeric float64 columns and 8 string columns of those levels,
   dictionary-encoded as pyarrow writes them), L2 = 1e-4 on the mean loss
   (the same objective everywhere; C = 1 / (n * l2)):

   * ``ours``: ``pipeline train DATA --label y --l2 1e-4`` with the defaults
     (an embedded cluster of 2 worker processes, auto cache, auto solver);
   * ``scikit-learn``: ``pyarrow`` -> pandas, ``ColumnTransformer(
     OneHotEncoder(handle_unknown="ignore"), passthrough)`` (sparse) +
     ``LogisticRegression`` (lbfgs, ``max_iter=1000``);
   * ``dask-ml``: ``dask.dataframe.read_parquet`` -> ``categorize`` ->
     ``dask_ml.preprocessing.DummyEncoder`` -> dask array ->
     ``dask_ml.linear_model.LogisticRegression(solver="lbfgs")`` on a
     ``LocalCluster`` of 2 workers.  Its design is dense: N x 20,456
     float64 does not fit this machine at ``--rows``, so it runs on the first
     ``--dask-ml-rows`` rows (and ours and scikit-learn again on those).

   Every model's objective is then evaluated here (numpy, the same one-hot
   design) and compared with the lowest, so the table shows how close each
   got to the common optimum, not only how fast.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NUMERIC = 16
LEVELS = (10, 30, 100, 300, 1000, 3000, 6000, 10_000)
L2 = 1e-4
ROW_GROUP = 131_072


# --------------------------------------------------------------------------- 1. the pass


def pass_cost(rows: int, log=print) -> list[str]:
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    from pipeline.fused import fused_partials
    from pipeline.kernel import Categories, KernelSpec, level_top

    rng = np.random.default_rng(0)
    numeric = np.asfortranarray(rng.standard_normal((rows, NUMERIC + len(LEVELS))))
    codes = np.column_stack([rng.integers(0, k, rows) for k in LEVELS]).astype(np.float64)
    y = (rng.random(rows) < 0.5).astype(np.float64)
    categories = Categories(LEVELS, level_top(rows, 1.0))

    def spec(d: int, levels: Categories | None = None) -> KernelSpec:
        return KernelSpec(center=np.zeros(d), scale=np.ones(d), categories=levels)

    cases = {
        f"{NUMERIC} numeric": (np.asfortranarray(numeric[:, :NUMERIC]), spec(NUMERIC), NUMERIC + 1),
        f"{NUMERIC} numeric + {len(LEVELS)} categorical": (
            np.asfortranarray(np.column_stack([numeric[:, :NUMERIC], codes])),
            spec(NUMERIC, categories),
            NUMERIC + categories.n_levels + 1,
        ),
        f"{NUMERIC + len(LEVELS)} numeric": (numeric, spec(NUMERIC + len(LEVELS)), NUMERIC + len(LEVELS) + 1),
    }
    times = {}
    for name, (X, kernel_spec, n_coef) in cases.items():
        coef = rng.standard_normal(n_coef) * 0.01
        fused_partials(X[:1000], y[:1000], coef, None, kernel_spec)  # compile
        best = np.inf
        for _ in range(3):
            started = time.perf_counter()
            fused_partials(X, y, coef, None, kernel_spec)
            best = min(best, time.perf_counter() - started)
        times[name] = best
        log(f"  pass {name}: {best:.3f} s")
    base, cat, wide = times.values()
    per_cat, per_num = (cat - base) / len(LEVELS), (wide - base) / len(LEVELS)
    return [
        f"Loss pass, {rows:,} rows, one thread, compiled, standardized (best of 3):",
        "",
        "| design | seconds | per extra column |",
        "| --- | --- | --- |",
        f"| {NUMERIC} numeric | {base:.3f} | |",
        f"| + {len(LEVELS)} categorical ({sum(LEVELS):,} levels) | {cat:.3f} | {per_cat * 1e3:.1f} ms |",
        f"| + {len(LEVELS)} numeric | {wide:.3f} | {per_num * 1e3:.1f} ms |",
        "",
        f"A categorical column costs {per_cat / per_num:.2f}x a numeric column's share of the pass.",
    ]


# --------------------------------------------------------------------------- 2. time to the optimum


def make_data(path: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    path.mkdir(parents=True)
    X = rng.standard_normal((rows, NUMERIC))
    margin = X @ (rng.standard_normal(NUMERIC) * 0.3)
    columns = {f"x{j}": X[:, j] for j in range(NUMERIC)}
    for c, k in enumerate(LEVELS):
        # Zipf-like frequencies: a few common levels, a long tail
        weights = 1.0 / np.arange(1, k + 1)
        codes = rng.choice(k, rows, p=weights / weights.sum())
        margin += rng.standard_normal(k)[codes] * 0.5
        columns[f"c{c}"] = pa.array(np.char.add(f"v{c}_", codes.astype(str)))
    columns["y"] = (rng.random(rows) < 1 / (1 + np.exp(-margin))).astype(np.int8)
    pq.write_table(pa.table(columns), path / "part-0.parquet", row_group_size=ROW_GROUP)


SKLEARN = textwrap.dedent(
    """
    import json, sys, time
    import pyarrow.parquet as pq
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    data, out, l2 = sys.argv[1], sys.argv[2], float(sys.argv[3])
    frame = pq.read_table(data).to_pandas()
    y = frame.pop("y").to_numpy()
    cats = [c for c in frame.columns if c.startswith("c")]
    nums = [c for c in frame.columns if c.startswith("x")]
    encode = ColumnTransformer([("num", "passthrough", nums), ("cat", OneHotEncoder(handle_unknown="ignore"), cats)])
    model = make_pipeline(encode, LogisticRegression(C=1 / (l2 * len(y)), max_iter=1000)).fit(frame, y)
    names = [n.split("__", 1)[1] for n in model[0].get_feature_names_out()]
    names = [n if n.startswith("x") else n.replace("_", "=", 1) for n in names]
    json.dump({"names": names, "coef": model[-1].coef_.ravel().tolist(), "intercept": float(model[-1].intercept_[0]),
               "n_iter": int(model[-1].n_iter_[0])}, open(out, "w"))
    """
)

DASK_ML = textwrap.dedent(
    """
    import json, sys
    import dask.dataframe as dd
    from distributed import Client, LocalCluster
    from dask_ml.linear_model import LogisticRegression
    from dask_ml.preprocessing import DummyEncoder
    data, out, l2 = sys.argv[1], sys.argv[2], float(sys.argv[3])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \\
            Client(cluster):
        frame = dd.read_parquet(data).categorize()
        y = frame["y"].to_dask_array(lengths=True)
        encoded = DummyEncoder().fit(frame.drop(columns="y"))
        X = encoded.transform(frame.drop(columns="y")).astype("float64")
        names = list(X.columns)
        X = X.to_dask_array(lengths=True).persist()
        n = X.shape[0]
        model = LogisticRegression(solver="lbfgs", C=1 / (l2 * n), max_iter=1000).fit(X, y)
        coef = model.coef_.ravel().tolist()
    names = [n if n.startswith("x") else n.replace("_", "=", 1) for n in names]
    json.dump({"names": names, "coef": coef, "intercept": float(model.intercept_)}, open(out, "w"))
    """
)


def timed(command: list[str], timeout: float) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def run_all(data: Path, scratch: Path, contenders: list[str], timeout: float, log=print) -> dict:
    """``{name: (seconds, {feature: coef}, intercept)}``."""
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
            names, coef, intercept = model["features"], model["coef"], model["intercept"]
        else:
            script = SKLEARN if name == "scikit-learn" else DASK_ML
            seconds = timed([sys.executable, "-c", script, str(data), str(out), str(L2)], timeout)
            result = json.loads(out.read_text())
            names, coef, intercept = result["names"], result["coef"], result["intercept"]
        found[name] = (seconds, dict(zip(names, coef)), intercept)
        log(f"  {name}: {seconds:.1f} s")
    return found


def objective(data: Path, coef: dict, intercept: float) -> float:
    """Mean log-loss + l2/2 |w|^2 of a model given by feature name, evaluated here."""
    import pyarrow.parquet as pq

    table = pq.read_table(data)
    y = table.column("y").to_numpy().astype(np.float64)
    margin = np.full(len(y), intercept)
    for name in table.column_names:
        if name.startswith("x"):
            margin += table.column(name).to_numpy() * coef.get(name, 0.0)
        elif name.startswith("c"):
            values = table.column(name).to_pylist()
            margin += np.array([coef.get(f"{name}={v}", 0.0) for v in values])
    loss = np.mean(np.logaddexp(0.0, margin) - y * margin)
    return float(loss + 0.5 * L2 * sum(v * v for v in coef.values()))


def time_to_optimum(rows: int, contenders: list[str], scratch: Path, timeout: float, log=print) -> list[str]:
    data = scratch / f"data-{rows}"
    make_data(data, rows)
    found = run_all(data, scratch, contenders, timeout, log)
    values = {name: objective(data, coef, b) for name, (_, coef, b) in found.items()}
    best = min(values.values())
    ours = found["ours"][0]
    lines = [
        f"Time to the optimum, {rows:,} rows x ({NUMERIC} numeric + {len(LEVELS)} categorical, "
        f"{sum(LEVELS):,} levels), L2 {L2}, process start to coefficients on disk:",
        "",
        "| contender | seconds | vs ours | objective - best (relative) |",
        "| --- | --- | --- | --- |",
    ]
    for name, (seconds, _, _) in found.items():
        gap = (values[name] - best) / best
        lines.append(f"| {name} | {seconds:.1f} | {seconds / ours:.2f}x | {gap:.1e} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pass-rows", type=int, default=8_000_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dask-ml-rows", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--skip", default="", help="comma-separated: pass, scikit-learn, dask-ml")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    lines = []
    with tempfile.TemporaryDirectory(prefix="bench-categorical-") as scratch:
        scratch_dir = Path(scratch)
        if "pass" not in skip:
            lines += pass_cost(args.pass_rows) + [""]
        contenders = ["ours"] + [name for name in ("scikit-learn",) if name not in skip]
        lines += time_to_optimum(args.rows, contenders, scratch_dir, args.timeout) + [""]
        if "dask-ml" not in skip:
            lines += time_to_optimum(args.dask_ml_rows, contenders + ["dask-ml"], scratch_dir, args.timeout)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
