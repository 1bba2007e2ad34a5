"""Coefficient inference end to end: ours out-of-core against statsmodels in memory.

Usage: python bench/inference.py [--rows 2000000] [--features 16] [--skip statsmodels]

Each contender runs in a fresh process, timed from process start to the
standard errors on disk, on the same Parquet data (``pipeline make-data``:
standard-normal float64 features, a 0/1 label from a logistic model; 8
files):

* ``ours``: ``pipeline train DATA --label y --inference nonrobust`` (and
  ``hc0``) with the defaults otherwise: an embedded cluster of 2 worker
  processes, auto cache, auto solver; the model, its covariance and the
  likelihood statistics in ``model.json``;
* ``statsmodels``: ``pyarrow`` -> numpy, ``sm.Logit(y, [X, 1]).fit()``
  (Newton, its defaults) with ``cov_type="nonrobust"`` (and ``"HC0"``),
  everything in memory.

The table gives the seconds, the largest relative difference of the
coefficients and of the standard errors from statsmodels', and the peak
memory of the process that held the data (ours: the coordinator; its
workers hold the decoded chunks).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from categorical import timed  # (bench/ is the script's directory: on sys.path)

FILES = 8

STATSMODELS = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np, pyarrow.dataset as ds, statsmodels.api as sm
    data, cov_type, out = sys.argv[1:4]
    table = ds.dataset(data, format="parquet").to_table()
    y = table.column("y").to_numpy().astype(np.float64)
    names = [name for name in table.column_names if name != "y"]
    X = np.column_stack([table.column(name).to_numpy() for name in names] + [np.ones(len(y))])
    result = sm.Logit(y, X).fit(disp=0, cov_type=cov_type)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    json.dump({"params": result.params.tolist(), "bse": result.bse.tolist(), "peak_kib": peak}, open(out, "w"))
    """
)


def make_data(data: Path, rows: int, features: int, timeout: float) -> None:
    """``pipeline make-data`` into ``data``: :data:`FILES` files of 131,072-row row groups."""
    timed(
        [sys.executable, "-m", "pipeline", "make-data", str(data), "--rows", str(rows),
         "--features", str(features), "--files", str(FILES), "--row-group-size", "131072"],
        timeout,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--skip", default="", help="comma-separated: statsmodels")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as scratch_dir:
        scratch = Path(scratch_dir)
        data = scratch / "data"
        make_data(data, args.rows, args.features, args.timeout)
        lines = [
            f"Coefficient inference, {args.rows:,} rows x {args.features} features (Parquet, {FILES} files), "
            "process start to standard errors on disk:",
            "",
            "| covariance | ours (2 workers, out-of-core capable) | statsmodels Logit (in memory) | ours / statsmodels "
            "| max rel. diff coef | max rel. diff std err | statsmodels peak RSS |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for ours_type, their_type in (("nonrobust", "nonrobust"), ("hc0", "HC0")):
            out = scratch / f"ours-{ours_type}"
            ours_s = timed(
                [sys.executable, "-m", "pipeline", "train", str(data), "--label", "y", "--inference", ours_type,
                 "--out", str(out), "--quiet"],
                args.timeout,
            )  # fmt: skip
            model = json.loads((out / "model.json").read_text())
            coef = np.append(model["coef"], model["intercept"])
            std_err = np.array(model["inference"]["std_err"])
            if "statsmodels" in skip:
                lines.append(f"| {ours_type} | {ours_s:.1f} s | – | – | – | – | – |")
                continue
            found = scratch / f"statsmodels-{ours_type}.json"
            theirs_s = timed([sys.executable, "-c", STATSMODELS, str(data), their_type, str(found)], args.timeout)
            theirs = json.loads(found.read_text())
            coef_gap = float(np.max(np.abs(coef - theirs["params"]) / np.abs(theirs["params"])))
            se_gap = float(np.max(np.abs(std_err - theirs["bse"]) / np.abs(theirs["bse"])))
            lines.append(
                f"| {ours_type} | {ours_s:.1f} s | {theirs_s:.1f} s | {ours_s / theirs_s:.2f}x | {coef_gap:.1e} "
                f"| {se_gap:.1e} | {theirs['peak_kib'] / 2**20:.2f} GiB |"
            )
        own_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        lines.append("")
        lines.append(f"(largest child process RSS of the run: {own_peak / 2**20:.2f} GiB)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
