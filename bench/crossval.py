"""Cross-validating an L2 path end to end: ours against scikit-learn and dask-ml.

Usage: python bench/crossval.py [--rows 1000000] [--features 32] [--points 20] [--folds 5] [--dask-ml-points 2]

The same Parquet data (``pipeline make-data``: standard-normal float64
features, a 0/1 label from a logistic model; 8 files), the same grid of
``--points`` L2 strengths (on the mean loss: from 1 down to 1e-4, evenly in
log), ``--folds`` folds; each contender in a fresh process, timed from
process start to the chosen model on disk:

* ``ours``: ``pipeline train DATA --label y --l2 1 --path 20 --cv 5`` with
  the defaults otherwise (an embedded cluster of 2 worker processes, auto
  cache and solver): per strength the 5 folds' fits and the fit on every
  row in lockstep, one pass over the data per step for all six; the passes
  are counted from the job's log;
* ``scikit-learn``: ``pyarrow`` -> numpy, ``LogisticRegressionCV(Cs=...,
  cv=KFold(5), solver="lbfgs")`` in memory (its warm-started path per fold,
  then a refit), with ``C = 1 / (l2 * n_train)`` (its objective is ours times
  ``l2 * n_train``);
* ``dask-ml``: ``dask_ml.model_selection.GridSearchCV`` of
  ``dask_ml.linear_model.LogisticRegression(solver="lbfgs", penalty="l2")``
  over ``--dask-ml-points`` of the strengths (every one of them refits every
  fold from scratch; the whole grid would take ``points / dask-ml-points``
  times as long: the projection is shown), on dask arrays persisted on a
  ``LocalCluster`` of 2 worker processes.

The table gives each one's time, our passes over the data, and the chosen
strength.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from categorical import timed  # (bench/ is the script's directory: on sys.path)
from inference import FILES, make_data

LARGEST = 1.0
RATIO = 1e-4

SKLEARN = textwrap.dedent(
    """
    import json, sys
    import numpy as np, pyarrow.dataset as ds
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import KFold
    data, out, folds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    strengths = json.loads(sys.argv[4])
    table = ds.dataset(data, format="parquet").to_table()
    y = table.column("y").to_numpy().astype(np.float64)
    names = [name for name in table.column_names if name != "y"]
    X = np.column_stack([table.column(name).to_numpy() for name in names])
    n_train = len(y) * (folds - 1) / folds
    Cs = [1.0 / (l2 * n_train) for l2 in strengths]
    model = LogisticRegressionCV(Cs=Cs, cv=KFold(folds), solver="lbfgs", max_iter=1000, scoring="neg_log_loss")
    model.fit(X, y)
    chosen = float(1.0 / (model.C_[0] * n_train))
    json.dump({"l2": chosen}, open(out, "w"))
    """
)

DASK_ML = textwrap.dedent(
    """
    import json, sys
    import dask.dataframe as dd
    from distributed import Client, LocalCluster, wait
    from dask_ml.linear_model import LogisticRegression
    from dask_ml.model_selection import GridSearchCV
    data, out, folds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    strengths = json.loads(sys.argv[4])
    if __name__ == "__main__":
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:
            frame = dd.read_parquet(data)
            features = [c for c in frame.columns if c != "y"]
            both = frame[features + ["y"]].to_dask_array(lengths=True).astype("float64")
            X, y = client.persist([both[:, :-1], both[:, -1]])
            wait([X, y])
            n_train = len(y) * (folds - 1) / folds
            grid = {"C": [1.0 / (l2 * n_train) for l2 in strengths]}
            search = GridSearchCV(LogisticRegression(solver="lbfgs", penalty="l2", max_iter=1000), grid, cv=folds)
            search.fit(X, y)
            json.dump({"l2": float(1.0 / (search.best_params_["C"] * n_train))}, open(out, "w"))
    """
)


def peer(name: str, script: str, arguments: list[str], timeout: float) -> float | None:
    """A peer's script in a fresh process: its seconds, or None after printing its failure's row."""
    started = time.perf_counter()
    try:
        return timed([sys.executable, "-c", script, *arguments], timeout)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"| {name} | failed after {time.perf_counter() - started:.0f} s: {_last_line(exc)} | – | – |", flush=True)
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--dask-ml-points", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma-separated: scikit-learn,dask-ml")
    parser.add_argument("--timeout", type=float, default=7200)
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    grid = [LARGEST * RATIO ** (k / (args.points - 1)) for k in range(args.points)]
    with tempfile.TemporaryDirectory(prefix="bench-crossval-") as scratch_dir:
        scratch = Path(scratch_dir)
        data = scratch / "data"
        make_data(data, args.rows, args.features, args.timeout)
        out = scratch / "ours"
        ours_s = timed(
            [sys.executable, "-m", "pipeline", "train", str(data), "--label", "y", "--l2", str(LARGEST),
             "--path", str(args.points), "--path-ratio", str(RATIO), "--cv", str(args.folds), "--out", str(out),
             "--quiet"],
            args.timeout,
        )  # fmt: skip
        log = (out / "job.log").read_text()
        passes = int(log.split(" cross-validation passes")[0].rsplit(" ", 1)[-1])
        chosen = json.loads((out / "model.json").read_text())["l2"]
        lines = [
            f"Cross-validating an L2 path: {args.rows:,} rows x {args.features} features (Parquet, {FILES} files), "
            f"{args.points} strengths x {args.folds} folds, process start to the chosen model:",
            "",
            "| contender | time | passes over the data | chosen l2 |",
            "| --- | --- | --- | --- |",
            f"| ours (2 workers, folds in lockstep) | {ours_s:.1f} s | {passes} | {chosen:.3g} |",
        ]
        print("\n".join(lines), flush=True)  # (each row as it comes: a peer may fail)
        if "scikit-learn" not in skip:
            found = scratch / "sklearn.json"
            arguments = [str(data), str(found), str(args.folds), json.dumps(grid)]
            seconds = peer("scikit-learn LogisticRegressionCV", SKLEARN, arguments, args.timeout)
            if seconds is not None:
                theirs = json.loads(found.read_text())["l2"]
                print(
                    f"| scikit-learn LogisticRegressionCV (in memory) | {seconds:.1f} s ({seconds / ours_s:.1f}x "
                    f"ours) | – | {theirs:.3g} |",
                    flush=True,
                )
        if "dask-ml" not in skip:
            subset = [grid[round(k)] for k in np.linspace(0, args.points - 1, args.dask_ml_points)]
            found = scratch / "dask-ml.json"
            arguments = [str(data), str(found), str(args.folds), json.dumps(subset)]
            seconds = peer("dask-ml GridSearchCV", DASK_ML, arguments, args.timeout)
            if seconds is not None:
                projected = seconds * args.points / len(subset)
                print(
                    f"| dask-ml GridSearchCV, {len(subset)} of the {args.points} strengths (2 workers) | "
                    f"{seconds:.1f} s; the whole grid ~{projected:.0f} s ({projected / ours_s:.1f}x ours) | – | – |",
                    flush=True,
                )


def _last_line(error: BaseException) -> str:
    """The last non-empty line of a peer's error (its exception)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1][:160] if lines else type(error).__name__


if __name__ == "__main__":
    main()
