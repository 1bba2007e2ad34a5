"""Command line: ``pipeline make-data | train | demo``.

Catches only :class:`~pipeline.errors.PipelineError`: it is printed as
``ErrorName: message`` on stderr, without a traceback, and the exit status is
``EXIT_ERROR``.  Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

from .config import CACHE_MODES, MEMORY_FRACTION, SOLVERS, TrainConfig
from .errors import ConfigError, ConvergenceWarning, PipelineError
from .model import Model
from .reduce import ClusterSpec
from .objective import Penalty
from .solvers import IterationRecord, SolverOptions
from .synth import make_data
from .train import train

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_MISMATCH = 3


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except PipelineError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `pipeline train ... | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="Exact, distributed logistic regression on Dask from partitioned Parquet.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    make = commands.add_parser("make-data", help="write a seeded synthetic dataset as Parquet")
    make.add_argument("out", metavar="OUT", help="directory to create")
    make.add_argument("--rows", type=int, required=True)
    make.add_argument("--features", type=int, required=True)
    make.add_argument("--files", type=int, default=1)
    make.add_argument("--row-group-size", type=int, default=65536)
    make.add_argument("--seed", type=int, default=0)
    make.set_defaults(handler=_make_data)

    fit = commands.add_parser("train", help="train a model on a Parquet dataset")
    fit.add_argument("data", metavar="DATA", help="Parquet directory, file or glob (any fsspec URL)")
    fit.add_argument("--label", required=True, help="label column (values 0/1)")
    fit.add_argument("--features", type=_name_list, default=None,
                     help="comma-separated feature columns (default: every numeric column)")
    fit.add_argument("--weight-col", default=None, help="column of sample weights (>= 0)")
    fit.add_argument("--class-weight", type=_class_weight, default=None,
                     help="'balanced' or '0:a,1:b' (multiplies the sample weights by class)")
    fit.add_argument("--solver", choices=SOLVERS, default="lbfgs")
    fit.add_argument("--max-iter", type=int, default=SolverOptions.max_iter)
    fit.add_argument("--tol", type=float, default=SolverOptions.tol,
                     help="stop when the projected gradient's |g|_inf <= tol")
    fit.add_argument("--ftol", type=float, default=SolverOptions.ftol,
                     help="stop when an iteration changes the loss by <= ftol (relative); 0 disables")
    fit.add_argument("--history-size", type=int, default=SolverOptions.history_size,
                     help="L-BFGS memory (pairs kept)")
    fit.add_argument("--l2", type=float, default=None, help="L2 strength: + l2/2 ||w||^2")
    fit.add_argument("--l1", type=float, default=None, help="L1 strength: + l1 ||w||_1")
    fit.add_argument("--reg", type=float, default=None,
                     help="elastic net strength lambda (with --alpha), instead of --l2/--l1")
    fit.add_argument("--alpha", type=float, default=None,
                     help="elastic net mix: l1 = reg*alpha, l2 = reg*(1-alpha)")
    fit.add_argument("--no-standardize", dest="standardize", action="store_false",
                     help="solve on raw features (the optimum is the same; the path is slower)")
    fit.add_argument("--init", metavar="DIR", default=None, help="warm start from DIR/model.json")
    where = fit.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="address of a running Dask scheduler")
    where.add_argument("--workers", type=int, default=None,
                       help="worker processes of the embedded local cluster (default 2)")
    where.add_argument("--in-process", action="store_true", help="no Dask: numpy in this process")
    fit.add_argument("--cache", choices=CACHE_MODES, default="auto",
                     help="decoded chunks between passes: in worker memory, on worker disk, "
                          "or none (re-read Parquet); auto picks memory if it fits, else disk")
    fit.add_argument("--memory-fraction", type=float, default=MEMORY_FRACTION,
                     help="share of the cluster's worker memory that --cache memory may use")
    fit.add_argument("--out", required=True, metavar="DIR", help="output directory for model.json")
    fit.add_argument("--overwrite", action="store_true", help="replace an existing model.json")
    fit.add_argument("--quiet", action="store_true", help="no per-iteration lines")
    fit.set_defaults(handler=_train)

    demo = commands.add_parser(
        "demo", help="generate data, train on a local cluster and in-process, compare"
    )
    demo.add_argument("--rows", type=int, default=100_000)
    demo.add_argument("--features", type=int, default=8)
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--out", metavar="DIR", default=None,
                      help="keep data and models here (default: a temporary directory)")
    demo.set_defaults(handler=_demo)
    return parser


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(","))


def _class_weight(text: str):
    if text == "balanced":
        return text
    try:
        pairs = dict(part.split(":") for part in text.strip("{} ").split(","))
        weights = {int(key.strip()): float(value) for key, value in pairs.items()}
        if set(weights) != {0, 1}:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'balanced' or '0:a,1:b' (weights for labels 0 and 1), got {text!r}"
        ) from None
    return (weights[0], weights[1])


def _penalty(args) -> Penalty:
    if args.reg is not None or args.alpha is not None:
        if args.l1 is not None or args.l2 is not None:
            raise ConfigError("give either --reg/--alpha or --l2/--l1, not both")
        return Penalty.elastic_net(args.reg or 0.0, 0.0 if args.alpha is None else args.alpha)
    return Penalty(l2=args.l2 or 0.0, l1=args.l1 or 0.0)


def _make_data(args) -> int:
    paths = make_data(args.out, args.rows, args.features, args.files, args.row_group_size, args.seed)
    print(f"wrote {args.rows} rows x {args.features} features to {len(paths)} file(s) in {args.out}")
    return 0


def _train(args) -> int:
    if args.in_process:
        cluster = None
    else:
        cluster = ClusterSpec(scheduler=args.scheduler, n_workers=args.workers or 2)
    config = TrainConfig(
        data=args.data,
        label=args.label,
        features=args.features,
        weight=args.weight_col,
        class_weight=args.class_weight,
        solver=args.solver,
        options=SolverOptions(max_iter=args.max_iter, tol=args.tol, ftol=args.ftol,
                              history_size=args.history_size),
        penalty=_penalty(args),
        standardize=args.standardize,
        init=args.init,
        cluster=cluster,
        cache=args.cache,
        memory_fraction=args.memory_fraction,
        out=args.out,
        overwrite=args.overwrite,
    )
    _run(config, quiet=args.quiet)
    print(f"model written to {Path(args.out) / 'model.json'}")
    return 0


def _run(config: TrainConfig, quiet: bool = False) -> Model:
    where = (
        "in-process" if config.cluster is None
        else config.cluster.scheduler or f"local cluster, {config.cluster.n_workers} worker processes"
    )
    print(f"training on {config.data} ({where})")
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = train(config, progress=None if quiet else _print_iteration, notify=print)
    for warning in caught:
        kind = "ConvergenceWarning" if issubclass(warning.category, ConvergenceWarning) else "warning"
        print(f"{kind}: {warning.message}", file=sys.stderr)
    elapsed = time.perf_counter() - started
    status = "converged" if model.converged else "NOT converged"
    print(
        f"{status} after {model.n_iter} iterations, {model.n_passes} passes, {elapsed:.1f} s "
        f"({model.message}); n_samples={model.n_samples} loss={model.loss_history[-1]!r}"
    )
    print(f"digest {model.digest}")
    return model


def _print_iteration(record: IterationRecord) -> None:
    print(
        f"iter {record.iteration:4d}  loss {record.loss:.12f}  |grad|inf {record.grad_norm:.3e}"
        f"  step {record.step:.3e}  passes {record.n_passes}"
        f"  {record.rows_per_s / 1e6:.2f} M rows/s  {record.elapsed_s:.1f} s",
        flush=True,
    )


def _demo(args) -> int:
    with tempfile.TemporaryDirectory(prefix="pipeline-demo-") as scratch:
        root = Path(args.out) if args.out else Path(scratch)
        one, many = root / "data-1-file", root / "data-7-files"
        make_data(str(one), args.rows, args.features, files=1, row_group_size=args.rows, seed=7)
        make_data(str(many), args.rows, args.features, files=7, row_group_size=4999, seed=7)
        print(f"generated {args.rows} rows x {args.features} features twice: "
              f"1 file / 1 row group, and 7 files / row groups of 4999 rows")
        distributed = _run(TrainConfig(
            data=str(many), label="y", out=str(root / "model-cluster"), overwrite=True,
            cluster=ClusterSpec(n_workers=args.workers),
        ), quiet=True)
        local = _run(TrainConfig(
            data=str(one), label="y", out=str(root / "model-in-process"), overwrite=True,
            cluster=None,
        ), quiet=True)
    print(f"coef      {distributed.coef}")
    print(f"intercept {distributed.intercept!r}")
    same = (
        distributed.digest == local.digest
        and distributed.loss_history == local.loss_history
        and distributed.gradient == local.gradient
    )
    if same:
        print(f"IDENTICAL: {args.workers}-worker cluster on 7 files == in-process on 1 file "
              f"(digest, {len(local.loss_history)} losses, final gradient bit for bit)")
        return 0
    print("MISMATCH: the cluster and in-process runs differ", file=sys.stderr)
    return EXIT_MISMATCH


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
