"""Our solvers vs dask-ml and scikit-learn: passes and wall time to the optimum.

Usage: python bench/solvers.py [--rows 1000000] [--features 32] [--workers 2]
                               [--files 8] [--row-group-size 62500] [--timeout 300] [--quick]

One run, one dataset, one embedded LocalCluster (``--workers`` processes, one
thread each):

1. Writes a seeded, deliberately badly scaled dataset as Parquet into a temp
   dir: correlated standard-normal features (AR(1), rho=0.6) times
   ``logspace(-1, 1, d)`` plus offsets, labels drawn from a logistic model.
2. Loads it once with ``open_dataset(...).to_dask()`` into a
   ``DaskEvaluator`` (chunks cached in worker memory) and runs
   ``pipeline.fitting.fit`` for ``lbfgs``, ``newton`` and ``gd`` with default
   options, plus ``newton`` with ``tol=1e-10`` as a reference run.
3. Fits dask-ml's ``LogisticRegression(solver='lbfgs', penalty=None)`` on the
   same persisted dask arrays, and scikit-learn's ``LogisticRegression(C=inf)``
   (``lbfgs`` and ``newton-cholesky``) on the full numpy data in this process,
   once with the default BLAS/OpenMP thread count and once capped at 1 thread
   (oversubscribed threads spin and slow down badly when the cores are busy).
4. The reference optimum is the lowest final loss of all runs, each evaluated
   with our exact objective at the returned original-unit coefficients.  A
   method "reaches" the optimum at the first evaluated point whose loss is
   within ``1e-9`` (relative) of it; the table reports that pass count.

Pass counting (one pass = one sweep over the data):

* ours: ``Fit.n_passes`` (statistics pass included); per-iteration passes
  from ``result.history`` plus the statistics-pass offset.
* dask-ml: one per loss+gradient evaluation (counted by wrapping scipy's
  ``fmin_l_bfgs_b`` that dask-glm calls), plus one for dask-glm's
  mean/std normalization pass.
* scikit-learn: one per call of ``LinearModelLoss.loss / loss_gradient /
  gradient / gradient_hessian / gradient_hessian_product`` (its line search's
  extra ``X @ direction`` product is not counted separately).

"passes to gap" for the peers uses every evaluated point (line-search trials
included); for ours it uses the accepted iterates.  "~s to gap" is wall time
scaled by passes-to-gap / total passes.  A peer that raises or runs past
``--timeout`` seconds is reported in the table instead of stopping the run.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.cluster import ClusterSpec, connect
from pipeline.data import open_dataset
from pipeline.fitting import fit
from pipeline.objective import LogisticObjective
from pipeline.reduce import DaskEvaluator
from pipeline.solvers import SolverOptions

LABEL = "y"
TARGET_GAP = 1e-9


# --------------------------------------------------------------------------- data


def dataset_parameters(seed: int, n_features: int):
    """Scales, offsets, AR(1) mixing matrix and the generating ``[w, b]``."""
    rng = np.random.default_rng([seed, 0xDA7A])
    scales = np.logspace(-1, 1, n_features)
    offsets = rng.normal(0.0, 2.0, n_features)
    rho = 0.6
    lags = np.abs(np.subtract.outer(np.arange(n_features), np.arange(n_features)))
    mixing = np.linalg.cholesky(rho**lags)  # unit-variance, correlated columns
    beta = rng.normal(0.0, 2.0 / math.sqrt(n_features), n_features)  # per standardized unit
    w = beta / scales
    b = 0.3 - float(w @ offsets)
    return scales, offsets, mixing, np.append(w, b)


def write_dataset(directory: Path, rows: int, n_features: int, files: int, row_group_size: int, seed: int) -> None:
    scales, offsets, mixing, coef = dataset_parameters(seed, n_features)
    names = [f"f{j}" for j in range(n_features)]
    group = 0
    for index in range(files):
        start, stop = rows * index // files, rows * (index + 1) // files
        with pq.ParquetWriter(
            directory / f"part-{index:05d}.parquet",
            pa.schema([(n, pa.float64()) for n in names] + [(LABEL, pa.int8())]),
        ) as writer:
            for lo in range(start, stop, row_group_size):
                n = min(lo + row_group_size, stop) - lo
                rng = np.random.default_rng([seed, 1, group])
                group += 1
                X = (rng.standard_normal((n, n_features)) @ mixing.T) * scales + offsets
                proba = 1.0 / (1.0 + np.exp(-(X @ coef[:-1] + coef[-1])))
                y = (rng.random(n) < proba).astype(np.int8)
                table = pa.table({**{name: X[:, j] for j, name in enumerate(names)}, LABEL: y})
                writer.write_table(table, row_group_size=row_group_size)


# --------------------------------------------------------------------------- runs


class OutOfTime(Exception):
    pass


@dataclass
class Run:
    method: str
    wall: float | None = None
    total_passes: int | None = None
    n_iter: int | None = None
    converged: bool | None = None
    coef: np.ndarray | None = None  # original units, intercept last
    final_loss: float | None = None  # our exact objective at coef
    history: list[tuple[int, float]] = field(default_factory=list)  # (passes so far, loss)
    note: str = ""
    footnotes: list[str] = field(default_factory=list)  # warnings worth a line under the table


class Deadline:
    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()

    def check(self) -> None:
        if self.seconds is not None and time.perf_counter() - self.start > self.seconds:
            raise OutOfTime(f"stopped after {self.seconds:.0f} s")


def _failed(run: Run, exc: BaseException, started: float) -> Run:
    run.wall = time.perf_counter() - started
    if isinstance(exc, OutOfTime):
        run.note = f"TIMEOUT: {exc}"
    else:
        run.note = f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        traceback.print_exc(file=sys.stderr)
    return run


def run_ours(evaluator, solver: str, options: SolverOptions = SolverOptions(), label: str | None = None) -> Run:
    run = Run(label or f"ours {solver}")
    started = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = fit(evaluator, solver=solver, options=options)
        run.wall = time.perf_counter() - started
    except Exception as exc:  # noqa: BLE001 - reported in the table
        return _failed(run, exc, started)
    offset = result.n_passes - result.result.n_passes
    run.total_passes = result.n_passes
    run.n_iter = result.result.n_iter
    run.converged = result.result.converged
    run.coef = result.coef
    run.history = [(record.n_passes + offset, record.loss) for record in result.result.history]
    if not result.result.converged:
        run.note = result.result.message
    elif caught:
        run.note = "; ".join(str(w.message).splitlines()[0] for w in caught)
    return run


def run_dask_ml(client, X, y, timeout: float | None) -> Run:
    import dask_glm.algorithms as algorithms
    from dask_ml.linear_model import LogisticRegression

    run = Run("dask-ml lbfgs")
    n_samples = X.shape[0]
    deadline = Deadline(timeout)
    info: dict = {}
    original = algorithms.fmin_l_bfgs_b

    def counted_fmin(func, x0, *args, **kwargs):
        def counted(beta, *fargs):
            deadline.check()
            loss, grad = func(beta, *fargs)
            # +1: dask-glm's normalization (mean/std) pass before the solver
            run.history.append((len(run.history) + 2, float(loss) / n_samples))
            return loss, grad

        beta, loss, details = original(counted, x0, *args, **kwargs)
        info.update(details)
        return beta, loss, details

    model = LogisticRegression(solver="lbfgs", penalty=None, fit_intercept=True, max_iter=10_000)
    started = time.perf_counter()
    algorithms.fmin_l_bfgs_b = counted_fmin
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(X, y)
        run.footnotes = list(dict.fromkeys(f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught))
        run.wall = time.perf_counter() - started
    except Exception as exc:  # noqa: BLE001
        _failed(run, exc, started)
    finally:
        algorithms.fmin_l_bfgs_b = original
    run.total_passes = len(run.history) + 1
    if run.note:
        return run
    run.coef = np.append(np.asarray(model.coef_, dtype=np.float64), float(model.intercept_))
    run.n_iter = info.get("nit")
    run.converged = info.get("warnflag") == 0
    task = info.get("task")
    run.note = f"scipy: {task.decode() if isinstance(task, bytes) else task}"
    return run


def run_sklearn(X, y, solver: str, timeout: float | None, threads: int | None) -> Run:
    """``threads``: cap on BLAS/OpenMP threads (threadpoolctl); None = library default."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.linear_model._linear_loss import LinearModelLoss
    from threadpoolctl import threadpool_info, threadpool_limits

    default_threads = max((pool["num_threads"] for pool in threadpool_info()), default=1)
    run = Run(f"sklearn {solver} {threads or default_threads}thr")
    deadline = Deadline(timeout)
    depth = [0]
    patched = {}

    def counting(name, method):
        def wrapper(self, *args, **kwargs):
            deadline.check()
            depth[0] += 1
            try:
                value = method(self, *args, **kwargs)
            finally:
                depth[0] -= 1
            if depth[0] == 0:  # a top-level call: one pass over X
                passes = (run.history[-1][0] if run.history else 0) + 1
                loss = value if name == "loss" else value[0] if name == "loss_gradient" else None
                run.history.append((passes, float(loss) if loss is not None else math.nan))
            return value

        return wrapper

    for name in ("loss", "loss_gradient", "gradient", "gradient_hessian", "gradient_hessian_product"):
        patched[name] = getattr(LinearModelLoss, name)
        setattr(LinearModelLoss, name, counting(name, patched[name]))
    model = LogisticRegression(C=np.inf, solver=solver, max_iter=10_000)
    started = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=threads):
            warnings.simplefilter("always")
            model.fit(X, y)
        run.wall = time.perf_counter() - started
    except Exception as exc:  # noqa: BLE001
        _failed(run, exc, started)
    finally:
        for name, method in patched.items():
            setattr(LinearModelLoss, name, method)
    run.total_passes = run.history[-1][0] if run.history else 0
    if run.note:
        return run
    run.coef = np.append(model.coef_.ravel(), model.intercept_[0]).astype(np.float64)
    run.n_iter = int(np.max(model.n_iter_))
    not_converged = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    run.converged = not not_converged
    if caught:
        run.note = "; ".join(dict.fromkeys(str(w.message).splitlines()[0] for w in caught))
    return run


# --------------------------------------------------------------------------- report


def gap_of(loss: float, reference: float) -> float:
    return (loss - reference) / abs(reference)


def passes_to_gap(run: Run, reference: float) -> int | None:
    for passes, loss in run.history:
        if math.isfinite(loss) and gap_of(loss, reference) <= TARGET_GAP:
            return passes
    return None


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    import dask
    import distributed
    import scipy
    import sklearn

    def v(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return "?"

    return (
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"scikit-learn {sklearn.__version__}, dask {dask.__version__}, "
        f"distributed {distributed.__version__}, dask-ml {v('dask-ml')}, dask-glm {v('dask-glm')}, "
        f"pyarrow {pa.__version__}, pipeline {v('pipeline')}"
    )


def machine() -> str:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return f"{platform.system()} {platform.machine()}, {model}, {os.cpu_count()} logical cores ({usable} usable)"


def print_table(runs: list[Run], reference: float, reference_method: str) -> None:
    header = (
        f"{'method':<30}{'iters':>7}{'passes to gap<=1e-9':>21}{'total passes':>14}"
        f"{'wall s':>9}{'~s to gap':>11}{'final rel gap':>15}{'converged':>11}  note"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        reached = passes_to_gap(run, reference)
        if run.final_loss is not None:
            gap = gap_of(run.final_loss, reference)
            gap_text = f"{gap:.2e}" if gap > 0 else "0 (ref)" if run.method == reference_method else f"{gap:.1e}"
        else:
            gap_text = "-"
        to_gap = "never" if reached is None else str(reached)
        seconds = (
            "-"
            if reached is None or run.wall is None or not run.total_passes
            else f"{run.wall * reached / run.total_passes:.2f}"
        )
        print(
            f"{run.method:<30}{'-' if run.n_iter is None else run.n_iter:>7}{to_gap:>21}"
            f"{'-' if run.total_passes is None else run.total_passes:>14}"
            f"{'-' if run.wall is None else f'{run.wall:.2f}':>9}{seconds:>11}{gap_text:>15}"
            f"{'-' if run.converged is None else 'yes' if run.converged else 'NO':>11}  {run.note}"
        )


# --------------------------------------------------------------------------- main


def measure(
    rows: int,
    features: int = 32,
    workers: int = 2,
    files: int = 8,
    row_group_size: int = 62_500,
    seed: int = 0,
    timeout: float | None = 300.0,
    ours=("lbfgs", "newton", "gd"),
    sklearn_threads=(None, 1),
    reference_run: bool = True,
    log=print,
) -> tuple[list[Run], float, str]:
    """Write the dataset, run every method; ``(runs, reference loss, reference method)``."""
    with tempfile.TemporaryDirectory(prefix="bench-solvers-") as scratch:
        started = time.perf_counter()
        write_dataset(Path(scratch), rows, features, files, row_group_size, seed)
        log(f"wrote Parquet in {time.perf_counter() - started:.1f} s")
        dataset = open_dataset(scratch, LABEL)
        with connect(ClusterSpec(n_workers=workers)) as client:
            from distributed import wait

            evaluator = DaskEvaluator(client, dataset.to_dask(sorted(client.scheduler_info()["workers"])))
            wait(evaluator.arrays)
            evaluator.stats()  # warm-up: imports on the workers, not timed
            objective = LogisticObjective(evaluator)  # raw units, no penalty
            log(f"chunks: {len(dataset.chunks)} (persisted)")

            runs: list[Run] = []
            for solver in ours:
                runs.append(run_ours(evaluator, solver))
                log(f"  {runs[-1].method}: {runs[-1].wall:.2f} s")
            if reference_run:
                runs.append(run_ours(evaluator, "newton", SolverOptions(tol=1e-10), "ours newton tol=1e-10"))
                log(f"  {runs[-1].method}: {runs[-1].wall:.2f} s")

            X, y = evaluator.arrays[0], evaluator.arrays[1]
            runs.append(run_dask_ml(client, X, y, timeout))
            log(f"  {runs[-1].method}: {runs[-1].wall:.2f} s {runs[-1].note}")

            chunks = dataset.read_chunks()
            X_np = np.concatenate([chunk.X for chunk in chunks])
            y_np = np.concatenate([chunk.y for chunk in chunks])
            del chunks
            for solver in ("lbfgs", "newton-cholesky"):
                for threads in sklearn_threads:
                    runs.append(run_sklearn(X_np, y_np, solver, timeout, threads))
                    log(f"  {runs[-1].method}: {runs[-1].wall:.2f} s")
            del X_np, y_np

            for run in runs:
                if run.coef is not None:
                    run.final_loss = objective(run.coef)[0]

    finished = [run for run in runs if run.final_loss is not None and math.isfinite(run.final_loss)]
    best = min(finished, key=lambda run: run.final_loss)
    return runs, best.final_loss, best.method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="default 1,000,000 (40,000 with --quick)")
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--row-group-size", type=int, default=None, help="default 62,500 (2,500 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds after which a peer (dask-ml, scikit-learn) is stopped"
    )
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    args = parser.parse_args()
    rows = args.rows if args.rows is not None else 40_000 if args.quick else 1_000_000
    row_group_size = args.row_group_size or (2_500 if args.quick else 62_500)

    print(f"machine: {machine()}")
    print(f"versions: {versions()}")
    print(
        f"data: {rows:,} rows x {args.features} features float64 ({rows * args.features * 8 / 1e6:.0f} MB), "
        f"{args.files} files, row groups of {row_group_size:,}; feature scales logspace(-1, 1), "
        f"offsets N(0, 2), AR(1) correlation 0.6, seed {args.seed}"
    )
    print(f"cluster: embedded LocalCluster, {args.workers} worker processes x 1 thread, data persisted")
    sys.stdout.flush()
    runs, reference, best_method = measure(
        rows,
        args.features,
        args.workers,
        args.files,
        row_group_size,
        args.seed,
        args.timeout,
        log=lambda line: print(line, flush=True),
    )
    print()
    print(
        f"reference optimum: loss {reference!r} (lowest final loss, from {best_method}); "
        f"losses evaluated with pipeline's exact objective at each method's coefficients"
    )
    print_table(runs, reference, best_method)
    print()
    print(
        "passes: ours = Fit.n_passes (statistics pass included); dask-ml = loss+gradient evaluations "
        "+ 1 normalization pass; sklearn = LinearModelLoss loss/gradient/hessian calls. "
        "converged = the method's own flag. ~s to gap = wall s x passes-to-gap / total passes."
    )
    for run in runs:
        for line in run.footnotes:
            print(f"{run.method}: {line}")


if __name__ == "__main__":
    main()
