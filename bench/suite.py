"""Everything side by side, in one run: end to end first, then passes, solvers, memory.

Usage: python bench/suite.py [--e2e-rows 1000000,8000000] [--pass-rows 1000000]
                             [--solver-rows 1000000,8000000] [--timeout 300]
                             [--newton-max-rows 2000000] [--quick] [--e2e-only]

Runs, one after another on this machine (nothing else should be running):

0. ``bench/e2e.py``'s measurement for each of ``--e2e-rows`` x 32: process
   start -> ``model.json`` with the defaults, ours (2 workers and in-process)
   vs dask-ml vs scikit-learn + StandardScaler, each in a fresh process
   started on a warm page cache (one round: ``bench/e2e.py --rounds N`` for
   medians), with the phase breakdown; printed as its own table first.
1. ``bench/passes.py``'s measurement on ``--pass-rows`` x 32 (standard-normal
   features, int8 label, 8 snappy files of 62,500-row row groups): one core in
   this process — a plain numpy/BLAS gradient+loss pass, our fused exact kernel,
   pyarrow's decode — then our loss pass on fresh embedded LocalClusters of 1
   and 2 worker processes for each cache mode (``memory``, ``disk``, ``none``),
   with each worker's peak RSS (VmHWM).
2. ``bench/solvers.py``'s measurement for each of ``--solver-rows`` x 32
   (badly scaled, correlated features): time and passes until the loss is within
   1e-9 (relative) of the best optimum found, for our ``lbfgs`` and ``gd``
   (``newton`` too up to ``--newton-max-rows``), dask-ml's
   ``LogisticRegression(solver='lbfgs')`` on the same persisted dask arrays
   (2 workers), and scikit-learn in memory in this process (1 BLAS thread).

The table's ``vs`` column is the ratio that each target is stated in: a pass
against the plain numpy pass (per worker: seconds x workers / plain seconds),
a decode against the plain pass, a time-to-optimum against dask-ml's on the
same data.  See the two scripts' docstrings for the details of each
measurement.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import e2e  # noqa: E402
import passes  # noqa: E402
import solvers  # noqa: E402


def _seconds_to_gap(run, reference):
    reached = solvers.passes_to_gap(run, reference)
    if reached is None or run.wall is None or not run.total_passes:
        return reached, None
    return reached, run.wall * reached / run.total_passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pass-rows", type=int, default=1_000_000)
    parser.add_argument("--solver-rows", default="1000000,8000000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds after which a peer (dask-ml, scikit-learn) is stopped"
    )
    parser.add_argument(
        "--newton-max-rows",
        type=int,
        default=2_000_000,
        help="run our newton only up to this many rows (its Hessian pass is slow)",
    )
    parser.add_argument("--quick", action="store_true", help="small smoke run (100k / 40k rows)")
    parser.add_argument("--e2e-rows", default="1000000,8000000")
    parser.add_argument("--e2e-only", action="store_true", help="only the end-to-end table")
    args = parser.parse_args()
    if args.quick:
        args.pass_rows, args.solver_rows, args.repeat, args.e2e_rows = 100_000, "40000", 3, "100000"
    solver_rows = [int(n) for n in args.solver_rows.split(",")]
    load_at_start = os.getloadavg()
    started = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {line}", file=sys.stderr, flush=True)

    import tempfile

    e2e_lines = []
    with tempfile.TemporaryDirectory(prefix="pipeline-suite-e2e-") as scratch:
        for rows in (int(n) for n in args.e2e_rows.split(",")):
            runs = e2e.measure(rows, 32, Path(scratch), max(args.timeout, 900.0), set(), log)
            e2e_lines += e2e.table(rows, 32, runs)
    print("\n".join(e2e.HEADER + e2e_lines) + "\n")
    if args.e2e_only:
        return

    log(f"passes on {args.pass_rows:,} rows")
    measured = passes.measure(args.pass_rows, repeat=args.repeat, row_group_size=min(62_500, args.pass_rows // 16 or 1))
    plain = measured["plain"]
    table = []  # (section, what, data, workers, seconds, rows/s, MB/s, vs, passes, peak RSS)
    pass_data = f"{args.pass_rows / 1e6:g}M x 32"
    for label, workers, seconds, rss in measured["rows"]:
        factor = workers if isinstance(workers, int) else 1
        first_time = "load" in label or "first pass" in label
        table.append(
            (
                "pass",
                label,
                pass_data,
                workers,
                seconds,
                args.pass_rows / seconds,
                measured["megabytes"] / seconds,
                ""
                if first_time
                else f"{seconds * factor / plain:.2f}x plain" + ("/worker" if isinstance(workers, int) else ""),
                "",
                rss.split(" [")[0],
            )
        )

    for rows in solver_rows:
        log(f"solvers on {rows:,} rows")
        ours = ("lbfgs", "gd") + (("newton",) if rows <= args.newton_max_rows else ())
        runs, reference, best = solvers.measure(
            rows,
            row_group_size=min(62_500, rows // 16 or 1),
            timeout=args.timeout,
            ours=ours,
            sklearn_threads=(1,),
            reference_run=rows <= args.newton_max_rows,
            log=log,
        )
        dask_ml = next(run for run in runs if run.method.startswith("dask-ml"))
        _, dask_ml_s = _seconds_to_gap(dask_ml, reference)
        for run in runs:
            if "tol=" in run.method:
                continue  # the reference run, not a method
            reached, seconds = _seconds_to_gap(run, reference)
            vs = "" if seconds is None or dask_ml_s is None else f"{seconds / dask_ml_s:.2f}x dask-ml"
            what = f"to gap 1e-9: {run.method}" + (f" ({run.note})" if "TIMEOUT" in run.note else "")
            table.append(
                (
                    "optimum",
                    what,
                    f"{rows / 1e6:g}M x 32",
                    2 if not run.method.startswith("sklearn") else "-",
                    seconds,
                    None,
                    None,
                    vs,
                    "never" if reached is None else reached,
                    "",
                )
            )

    print(f"machine: {solvers.machine()}")
    print(f"versions: {solvers.versions()}")
    print(
        f"load average at start: {', '.join(f'{v:.2f}' for v in load_at_start)}; "
        f"whole run {time.perf_counter() - started:.0f} s; command: python bench/suite.py " + " ".join(sys.argv[1:])
    )
    header = (
        f"| {'measurement':<52} | {'data':<10} | {'workers':>7} | {'seconds':>8} | {'rows/s':>7} "
        f"| {'MB/s':>5} | {'vs':<22} | {'passes':>6} | {'peak RSS MiB/worker':<19} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for _, what, data, workers, seconds, rate, mbs, vs, n_passes, rss in table:
        print(
            f"| {what:<52} | {data:<10} | {workers!s:>7} | "
            f"{'-' if seconds is None else f'{seconds:.3f}':>8} | "
            f"{'' if rate is None else f'{rate / 1e6:.1f}M':>7} | "
            f"{'' if mbs is None else f'{mbs:.0f}':>5} | {vs:<22} | {n_passes!s:>6} | {rss:<19} |"
        )


if __name__ == "__main__":
    main()
