"""Command line: ``pipeline make-data | train | submit | resume | status | list | logs | cancel |
predict | evaluate | report | demo``.

Catches only :class:`~pipeline.errors.PipelineError`: it is printed as
``ErrorName: message`` on stderr, without a traceback, and the exit status is
``EXIT_ERROR``.  Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import logging
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

from .cluster import ClusterSpec, connect, embedded_worker_count, leave_ctrl_c_to_the_command
from .config import CACHE_MODES, TrainConfig, check_job_name, check_output_root, environment_root, output_roots
from .data import local_path
from .errors import (
    ClusterError,
    ColumnNotFoundError,
    ConfigError,
    DatasetNotFoundError,
    JobCancelled,
    JobError,
    JobFileError,
    ModelFileError,
    OutputError,
    PipelineError,
)
from .jobfile import (
    KEYS,
    JobSource,
    config_from_mapping,
    in_file_words,
    in_flag_words,
    job_config,
    job_source,
    read_job_file,
    source_of,
)
from .jobs import (
    UNANSWERED,
    cancel_orphaned,
    check_job_output,
    config_of,
    coordinator_gone,
    find_job,
    gone_coordinator,
    list_jobs,
    request_cancel,
    run_job,
    submit_detached,
)
from .model import Model
from .outputs import PATH_DIR, JobDocument, OutputDir, inside_data
from .predict import (
    binary_threshold,
    check_metrics_target,
    check_split_key,
    evaluate,
    predict,
    rows_of,
    split_of,
)
from .report import path_text, summary_text, write_report
from .solvers import IterationRecord
from .synth import make_data
from .tiers import kernels_mode

__all__ = ["main"]


def _worker_leaves_ctrl_c_to_the_cli() -> None:
    """In a process the ``pipeline`` command started -- an embedded
    cluster's worker, whose start (multiprocessing's spawn) runs the
    command's main script, so this module, first -- a terminal's Ctrl-C,
    which reaches the whole process group, is ignored: the command handles
    it (it cancels the job and stops the cluster); each worker printed a
    ``KeyboardInterrupt`` traceback of its own.  Under ``python -m
    pipeline`` spawn does not run a package's ``__main__`` again, and the
    workers' preload (:func:`pipeline.cluster.dask_setup`) does the same
    once each has started."""
    # (spawn names the child before it runs the parent's main module in it; parent_process() is set only after)
    if multiprocessing.parent_process() is not None or multiprocessing.current_process().name != "MainProcess":
        leave_ctrl_c_to_the_command()


_worker_leaves_ctrl_c_to_the_cli()


class _ClientShutDown(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" for the waits of
    a ``client.gather`` that a Ctrl-C or SIGTERM interrupted (distributed's
    ``AllExit``, when the client closes under them): a traceback apiece
    after the command's own one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return type(error).__name__ != "AllExit"


EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_MISMATCH = 3
EXIT_CANCELLED = 4
#: Seconds ``pipeline cancel`` waits for the job to stop; poll interval of --follow.
CANCEL_WAIT_S = 30.0
FOLLOW_POLL_S = 0.25
#: Seconds between --follow's checks that the job's coordinator is still there
FOLLOW_GONE_CHECK_S = 2.0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    words = _joined_values(sys.argv[1:] if argv is None else list(argv))
    command = next((word for word in words if not word.startswith("-")), None)
    if command is not None:
        sub = _command_parser(parser, command)
        if isinstance(sub, _Parser) and sub is not parser:
            sub.hints = _did_you_mean(sub, words)
    args, unknown = parser.parse_known_args(words)
    if unknown:  # the command's own usage, not the top-level one
        _command_parser(parser, args.command).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not any(isinstance(each, _ClientShutDown) for each in logging.getLogger("asyncio").filters):
        logging.getLogger("asyncio").addFilter(_ClientShutDown())
    previous = None
    with contextlib.suppress(ValueError):  # (not the main thread: signals stay as they are)
        previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        kernels_mode()  # a bad PIPELINE_KERNELS is refused before any command runs
        with _tls_configuration(args):
            return args.handler(args)
    except PipelineError as exc:
        print(f"{type(exc).__name__}: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        print("interrupted" + (f" ({exc})" if str(exc) else ""), file=sys.stderr)
        return 128 + signal.SIGTERM if str(exc) == TERMINATED else 130
    except BrokenPipeError:  # e.g. `pipeline train ... | head`: the reader left
        _to_devnull(sys.stdout)
        return EXIT_ERROR
    finally:
        if previous is not None:  # (main() called in a process of its own, a test's: as it was)
            signal.signal(signal.SIGTERM, previous)


#: what a SIGTERM (``docker stop``, systemd, ``timeout``) raises as: a Ctrl-C
#: that says where it came from, so an attached job ends ``cancelled`` (and
#: resumable), as with Ctrl-C, rather than ``running`` with no process
TERMINATED = "SIGTERM"


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt(TERMINATED)


def _say(text: str, stream=None) -> None:
    """``print``, except that a reader that left (a closed pipe: ``| head``, a
    dropped session) does not stop the job: what follows goes to /dev/null."""
    stream = sys.stdout if stream is None else stream
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):
            _to_devnull(stream)


def _to_devnull(stream) -> None:
    """What is written to ``stream`` from now on goes to /dev/null (its reader left)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def one_line(message: str) -> str:
    """An error message on one line: a library's multi-line text (pyarrow's
    on a corrupt page, for one) joined with '; ', control characters escaped."""
    escaped = (ch if ch.isprintable() or ch in "\n\r" else ch.encode("unicode_escape").decode() for ch in message)
    printable = "".join(escaped)
    return "; ".join(part.strip() for part in printable.splitlines() if part.strip())


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The sub-parser of ``command`` (for its usage line in errors), or
    ``parser`` for a command it does not have."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command, parser)
    return parser


#: Options whose value may begin with '-' (a class of a -1/1 label: ``-1:1,1:5``)
DASH_VALUES = ("--class-weight",)


def _joined_values(words: list[str]) -> list[str]:
    """``--class-weight -1:1,1:5`` as ``--class-weight=-1:1,1:5``: argparse
    takes a value beginning with '-' for an option ("expected one argument")."""
    joined: list[str] = []
    k = 0
    while k < len(words):
        word = words[k]
        if word == "--":
            return joined + words[k:]
        following = words[k + 1] if k + 1 < len(words) else ""
        if word in DASH_VALUES and following.startswith("-") and not following.startswith("--") and ":" in following:
            joined.append(f"{word}={words[k + 1]}")
            k += 2
            continue
        joined.append(word)
        k += 1
    return joined


#: How alike a mistyped option and a real one must be for a suggestion
#: (difflib's ratio: ``--lable`` for ``--label`` is 0.86, ``--l2`` for ``--l1`` 0.75)
SUGGEST_CUTOFF = 0.75


def _did_you_mean(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """``"--lable: did you mean --label?"`` for each ``--option`` in ``words``
    (up to a ``--`` separator) that ``parser`` does not know but one of its
    options resembles."""
    known = [name for action in parser._actions for name in action.option_strings if name.startswith("--")]
    hints = []
    for word in words:
        if word == "--":
            break
        name = word.split("=", 1)[0]
        if not name.startswith("--") or name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=SUGGEST_CUTOFF)
        if close:
            hints.append(f"{name}: did you mean {close[0]}?")
    return hints


def _add_tls(parser: argparse.ArgumentParser) -> None:
    """TLS for a tls:// scheduler, for the commands that only connect to one
    (train and submit take the cluster.tls_* job keys instead)."""
    parser.add_argument("--tls-ca-file", metavar="PEM", help="CA certificate(s) of a tls:// scheduler")
    parser.add_argument("--tls-cert", metavar="PEM", help="this client's certificate")
    parser.add_argument("--tls-key", metavar="PEM", help="this client's key (unless in --tls-cert)")


@contextlib.contextmanager
def _tls_configuration(args):
    """``--tls-*`` as Dask configuration, for every client this command opens."""
    given = {name: getattr(args, name, None) for name in ("tls_ca_file", "tls_cert", "tls_key")}
    if not any(given.values()):
        yield
        return
    for name, path in given.items():
        if path and not os.path.isfile(path):
            raise ConfigError(f"--{name.replace('_', '-')}: no file {path}")
    import dask

    with dask.config.set(
        {
            "distributed.comm.tls.ca-file": given["tls_ca_file"],
            "distributed.comm.tls.client.cert": given["tls_cert"],
            "distributed.comm.tls.client.key": given["tls_key"],
            "distributed.comm.require-encryption": True,
        }
    ):
        yield


class _Parser(argparse.ArgumentParser):
    """A parser of whole option names only: argparse's abbreviations took
    ``--over`` for ``--overwrite`` (a finished model replaced) and a cut-short
    typo for whichever option it began."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        #: suggestions for the mistyped options of this command line
        #: (:func:`_did_you_mean`), added to any error it ends with: a missing
        #: ``--label`` is reported while the mistyped ``--lable`` is the cause
        self.hints: list[str] = []

    def error(self, message: str) -> NoReturn:
        if self.hints:
            message = f"{message} ({'; '.join(self.hints)})"
        super().error(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pipeline",
        description="Exact, distributed logistic regression on Dask from partitioned Parquet.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    make = commands.add_parser("make-data", help="write a seeded synthetic dataset as Parquet")
    make.add_argument("out", metavar="OUT", help="directory to create")
    make.add_argument("--rows", type=int, required=True, help="rows to write")
    make.add_argument("--features", type=int, required=True, help="standard-normal float64 feature columns")
    make.add_argument("--files", type=int, default=1, help="Parquet files to spread the rows over (default 1)")
    make.add_argument("--row-group-size", type=int, default=65536, help="rows per row group (default 65536)")
    make.add_argument("--seed", type=int, default=0, help="the data's seed (default 0): the same seed, the same values")
    make.set_defaults(handler=_make_data)

    fit = commands.add_parser(
        "train",
        help="train a model on a Parquet dataset (an attached job)",
        # (argparse would list every option here, 30 lines above a usage error)
        usage="pipeline train DATA --label COLUMN (--out DIR | --name NAME) [options]  (options: pipeline train -h)",
    )
    fit.add_argument("data", metavar="DATA", help="Parquet directory, file or glob (any fsspec URL)")
    _add_config_options(fit, job_file=False)
    fit.add_argument("--quiet", action="store_true", help="no per-iteration lines")
    fit.set_defaults(handler=_train)

    submit = commands.add_parser(
        "submit",
        help="run a job file: attached (follow it here) or --detach (on the cluster)",
        usage="pipeline submit JOB.toml [--detach] [--quiet] [overrides]  (options: pipeline submit -h)",
    )
    submit.add_argument("job", metavar="JOB.toml", help="job file (see jobs/)")
    _add_config_options(submit, job_file=True)
    submit.add_argument(
        "--detach", action="store_true", help="start the coordinator on the cluster, print the job id and return"
    )
    submit.add_argument("--quiet", action="store_true", help="no per-iteration lines")
    submit.set_defaults(handler=_submit)

    resume = commands.add_parser("resume", help="continue a job from its last checkpoint")
    resume.add_argument(
        "out", metavar="OUTPUT_DIR", help="the job's output directory, or its id (looked up on --scheduler)"
    )
    where = resume.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="address of a running Dask scheduler")
    where.add_argument(
        "--workers",
        type=int,
        default=None,
        help="embedded local cluster size (default: one worker per core, each with at least 1 GiB)",
    )
    where.add_argument("--in-process", action="store_true", help="no Dask: numpy in this process")
    resume.add_argument(
        "--cache",
        choices=CACHE_MODES,
        default=None,
        help="decoded chunks between passes, instead of the job's (the model is the same in every mode)",
    )
    resume.add_argument("--detach", action="store_true", help="resume on the cluster and return")
    resume.add_argument("--quiet", action="store_true", help="no per-iteration lines")
    _add_tls(resume)
    resume.set_defaults(handler=_resume)

    status = commands.add_parser("status", help="state and progress of a job (or of every job)")
    status.add_argument("job", metavar="JOB_ID", nargs="?", help="job id or output directory")
    status.add_argument(
        "--scheduler", metavar="ADDRESS", help="scheduler holding the job index (default: $DASK_SCHEDULER_ADDRESS)"
    )
    status.add_argument("--json", action="store_true", help="print job.json")
    _add_tls(status)
    status.set_defaults(handler=_status)

    listing = commands.add_parser("list", help="jobs known to a scheduler")
    listing.add_argument(
        "--scheduler", metavar="ADDRESS", help="scheduler holding the job index (default: $DASK_SCHEDULER_ADDRESS)"
    )
    _add_tls(listing)
    listing.set_defaults(handler=_list)

    logs = commands.add_parser("logs", help="a job's log")
    logs.add_argument("job", metavar="JOB_ID", help="job id or output directory")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    logs.add_argument(
        "--scheduler", metavar="ADDRESS", help="scheduler holding the job index (default: $DASK_SCHEDULER_ADDRESS)"
    )
    _add_tls(logs)
    logs.set_defaults(handler=_logs)

    cancel = commands.add_parser("cancel", help="stop a running job (its checkpoint stays usable)")
    cancel.add_argument("job", metavar="JOB_ID", help="job id or output directory")
    cancel.add_argument(
        "--scheduler", metavar="ADDRESS", help="scheduler holding the job index (default: $DASK_SCHEDULER_ADDRESS)"
    )
    cancel.add_argument(
        "--wait", type=float, default=CANCEL_WAIT_S, help="seconds to wait for the job to stop (default %(default)s)"
    )
    _add_tls(cancel)
    cancel.set_defaults(handler=_cancel)

    score = commands.add_parser("predict", help="score a Parquet dataset into Parquet files")
    score.add_argument("model", metavar="MODEL_DIR", help="directory with model.json")
    score.add_argument("data", metavar="DATA", help="Parquet dataset to score (no label needed)")
    score.add_argument("--out", required=True, metavar="DIR", help="output directory (one file per chunk)")
    score.add_argument(
        "--columns", type=_column_names, default=(), metavar="a,b", help="columns copied to the output (e.g. an id)"
    )
    score.add_argument(
        "--threshold", type=float, default=None, help="prediction = proba > threshold (binary models; default 0.5)"
    )
    score.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    _add_where(score)
    _add_tls(score)
    score.set_defaults(handler=_predict)

    judge = commands.add_parser("evaluate", help="metrics of a model on a labelled Parquet dataset")
    judge.add_argument("model", metavar="MODEL_DIR", help="directory with model.json")
    judge.add_argument("data", metavar="DATA", help="labelled Parquet dataset")
    judge.add_argument("--label", default=None, help="label column (default: the model's)")
    judge.add_argument(
        "--threshold", type=float, default=None, help="prediction = proba > threshold (binary models; default 0.5)"
    )
    judge.add_argument(
        "--split",
        choices=("all", "train", "validation"),
        default="all",
        help="rows to evaluate: all (default), or one part of the train/validation "
        "split the model was trained with (read from MODEL_DIR/job.json)",
    )
    judge.add_argument(
        "--out", default=None, metavar="FILE", help="where to write the metrics (default MODEL_DIR/metrics.json)"
    )
    judge.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a metrics file of another evaluation (another model, data or rows; "
        "the same evaluation's is always replaced)",
    )
    _add_where(judge)
    _add_tls(judge)
    judge.set_defaults(handler=_evaluate)

    summary = commands.add_parser(
        "summary", help="a model's coefficient table (standard errors, p-values and intervals with --inference)"
    )
    summary.add_argument("model", metavar="MODEL_DIR", help="directory holding model.json")
    summary.add_argument("--json", action="store_true", help="print the model's inference as JSON")
    summary.set_defaults(handler=_summary)

    report = commands.add_parser("report", help="write OUTPUT_DIR/report.html (self-contained)")
    report.add_argument("out", metavar="OUTPUT_DIR", help="a training output directory")
    report.set_defaults(handler=_report)

    demo = commands.add_parser("demo", help="generate data, train on a local cluster and in-process, compare")
    demo.add_argument("--rows", type=int, default=100_000)
    demo.add_argument("--features", type=int, default=8)
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument(
        "--out", metavar="DIR", default=None, help="keep data and models here (default: a temporary directory)"
    )
    demo.set_defaults(handler=_demo)
    return parser


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(","))


def _column_names(text: str) -> tuple[str, ...]:
    """``--columns``: names, each non-empty and given once."""
    names = _name_list(text)
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected column names separated by commas, each non-empty; got {text!r}")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"column {twice[0]!r} is given twice in {text!r}; expected each once")
    return names


def _class_weight(text: str):
    if text == "balanced":
        return text
    try:
        parts = text.strip("{} ").split(",")
        if ":" not in text:  # one weight per class, in the classes' sorted order
            weights = tuple(float(part) for part in parts)
            if len(weights) < 2:
                raise ValueError
            return weights
        named: dict[str, float] = {}
        for part in parts:  # a weight by class: 'spam:5,ham:1' (a 0/1 label's classes are 0 and 1)
            key, weight = part.rsplit(":", 1)
            key = key.strip().strip("'\"")
            if key in named:
                raise argparse.ArgumentTypeError(f"class {key!r} is given twice in {text!r}; expected each class once")
            if not key:
                raise ValueError
            named[key] = float(weight)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'balanced', 'CLASS:w,CLASS:w' (a weight by class: '0:1,1:5' for a 0/1 label, "
            f"'ham:1,spam:5') or 'a,b,c' (a weight per class, in sorted order), got {text!r}"
        ) from None
    return named


def _print_class_metrics(metrics: dict) -> None:
    for key in ("n_samples", "log_loss", "accuracy", "f1_macro", "f1_weighted", "roc_auc_ovr_macro"):
        print(f"{key:<17} {metrics[key]}")
    print("per class (class, rows, precision, recall, f1, roc auc one-vs-rest):")
    for row in metrics["per_class"]:
        auc = "-" if row["roc_auc"] is None else f"{row['roc_auc']:.4f}"
        print(
            f"  {str(row['class']):<16} {row['support']:>8}  {row['precision']:.4f}  "
            f"{row['recall']:.4f}  {row['f1']:.4f}  {auc}"
        )
    print("confusion matrix (rows: true class, columns: predicted):")
    for value, row in zip(metrics["classes"], metrics["confusion_matrix"]):
        print(f"  {str(value):<16} " + " ".join(f"{count:>7}" for count in row))


def _make_data(args) -> int:
    out = local_path(args.out, "dataset directory")
    paths = make_data(out, args.rows, args.features, args.files, args.row_group_size, args.seed)
    print(f"wrote {args.rows} rows x {args.features} features to {len(paths)} file(s) in {out}")
    return 0


def _add_where(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="run on a running Dask scheduler")
    where.add_argument(
        "--workers", type=int, default=None, help="run on an embedded local cluster of N worker processes"
    )
    where.add_argument("--in-process", action="store_true", help="no Dask (the default)")


def _cluster_spec(scheduler: str | None, workers: int | None) -> ClusterSpec:
    """The cluster of ``--scheduler``/``--workers``, its rules in the options' words."""
    try:
        return ClusterSpec(scheduler=scheduler, n_workers=workers)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("n_workers", "--workers", 1), column="workers") from None


@contextlib.contextmanager
def _client_for(args):
    # (--workers 0 ran in-process, silently, where train refuses it)
    if args.scheduler or args.workers is not None:
        with connect(_cluster_spec(args.scheduler, args.workers)) as client:
            yield client
    else:
        yield None


def _predict(args) -> int:
    with _client_for(args) as client:
        done = predict(
            args.model,
            args.data,
            args.out,
            columns=args.columns,
            threshold=args.threshold,
            client=client,
            overwrite=args.overwrite,
        )
    print(f"scored {done['rows']} rows into {done['files']} file(s) in {done['out']}")
    return 0


def _evaluate(args) -> int:
    # a missing or damaged model directory is named first (before its job.json
    # or where the metrics go)
    model = Model.load(args.model)
    split = None if args.split == "all" else split_of(args.model, args.split)
    if split is not None:
        check_split_key(args.model, args.data, split)
    out = Path(local_path(args.out, "metrics file")) if args.out else OutputDir(args.model).metrics
    check_output_root(str(out), output_roots(), "metrics file")
    if inside_data(out, args.data):
        raise OutputError(
            f"metrics file {out} lies inside the dataset {args.data}; expected a path outside the data (the next "
            "read of the dataset would take it for one of its files)",
            path=str(out),
        )
    # (before any pass: nothing is read for a path that cannot take it)
    evaluation = {
        "model_digest": model.digest,
        "data": args.data,
        "rows": rows_of(split),
        "label": args.label or model.label,
        "threshold": None if model.multinomial else binary_threshold(model, args.threshold),
    }
    check_metrics_target(out, evaluation, args.overwrite)
    with _client_for(args) as client:
        metrics = evaluate(
            args.model, args.data, label=args.label, threshold=args.threshold, client=client, split=split
        )
    with OutputDir(out.parent).writing():
        OutputDir(out.parent).write_json(out, metrics)
    if split is not None:
        print(
            f"rows       {split.part} part of the split (validation fraction {split.fraction:g}, "
            f"by {'key ' + repr(split.key) if split.key else 'row position'})"
        )
        if not metrics["n_samples"]:  # (its metrics are all undefined: said, not only shown as None)
            print(f"note       the {split.part} part of the split holds no row of these data")
    if "per_class" in metrics:  # a multinomial model's
        _print_class_metrics(metrics)
        print(f"metrics written to {out}")
        return 0
    classes = metrics.get("classes")
    if classes:  # (a binary model of named classes: which one precision, recall and the AUCs are of)
        print(f"positive   {classes[1]!r} (negative {classes[0]!r})")
    print(f"threshold  {metrics['threshold']} (a row is positive when its probability is above it)")
    for key in ("n_samples", "log_loss", "accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc"):
        print(f"{key:<10} {metrics[key]}")
    matrix = metrics["confusion_matrix"]
    print(f"confusion  tn={matrix['tn']} fp={matrix['fp']} fn={matrix['fn']} tp={matrix['tp']}")
    print("calibration (bin, rows, mean proba, observed rate):")
    for row in metrics["calibration"]:
        if row["count"]:
            print(
                f"  [{row['bin'][0]:.1f}, {row['bin'][1]:.1f})  {row['count']:>8}  "
                f"{row['mean_proba']:.4f}  {row['observed_rate']:.4f}"
            )
    print(f"metrics written to {out}")
    return 0


def _summary(args) -> int:
    model = Model.load(args.model)
    if args.json:
        if model.inference is None:
            raise ConfigError(
                f"{args.model} has no inference to print as JSON; train with --inference nonrobust (or hc0)"
            )
        print(json.dumps(model.inference, indent=2))
    else:
        print(summary_text(model) + path_text(args.model, model.digest), end="")
    return 0


def _report(args) -> int:
    print(f"report written to {write_report(args.out)}")
    return 0


def _add_config_options(parser: argparse.ArgumentParser, *, job_file: bool) -> None:
    """One option per job-file key (:data:`pipeline.jobfile.KEYS`), ``dest`` = the key.

    For ``train`` the label is required (and an output: ``--out``, or ``--name``
    under an output root, checked with the rest of the configuration); for ``submit`` every
    option is an override of the job file and defaults to "not given".
    """
    kinds = {"int": int, "float": float, "names": _name_list, "class_weight": _class_weight}
    where = parser.add_mutually_exclusive_group()
    for key, spec in KEYS.items():
        if spec.flag is None or not spec.flag.startswith("--"):
            continue
        target = where if key in ("cluster.scheduler", "cluster.workers", "cluster.in_process") else parser
        options: dict[str, Any] = dict(dest=key, default=None, help=spec.help)
        if spec.kind == "bool":
            options.update(action="store_const", const=not spec.flag.startswith("--no-"))
        else:
            options.update(type=kinds.get(spec.kind, str), metavar=key.split(".")[-1].upper())
            if spec.choices:
                options.update(choices=spec.choices, metavar=None)
        if not job_file and key == "data.label":
            options["required"] = True
        target.add_argument(spec.flag, **options)


def _given(args) -> dict:
    return {key: value for key, value in vars(args).items() if key in KEYS and value is not None}


def _local_cluster(n_workers: int) -> str:
    return f"local cluster, {n_workers} worker process{'' if n_workers == 1 else 'es'}"


def _model_dir(config: TrainConfig) -> str:
    """The output directory of a job that ran (a job refuses to run without one)."""
    assert config.out is not None
    return config.out


def _train(args) -> int:
    config = config_from_mapping({**_given(args), "data.url": args.data})
    try:
        model = _attached(config, quiet=args.quiet)
    except ConfigError as exc:  # (a setting only the data refuse: named as the option, like the others)
        raise in_flag_words(exc) from None
    if model is None:
        return EXIT_CANCELLED
    _say(f"model written to {OutputDir(_model_dir(config)).model}")
    return 0


def _submit(args) -> int:
    overrides = _given(args)
    mapping = read_job_file(args.job)  # (once: a job file may be a pipe)
    config = job_config(mapping, args.job, overrides)
    if config.name is None:  # (the file's name: under an output root, its directory)
        stem = Path(args.job).stem
        try:
            check_job_name(stem)
        except ConfigError as exc:
            raise JobFileError(
                f"{args.job}: the job has no 'name', and the file's name cannot be its default one: {exc}; "
                "set 'name' in the file (or --name)",
                path=str(args.job),
                column="name",
            ) from None
        if config.out is None:
            config = job_config(mapping, args.job, {**overrides, "name": stem})
        else:
            config = dataclasses.replace(config, name=stem)
    if config.out is None:
        raise JobFileError(
            f"{args.job}: a job needs an output directory: key 'output.dir' (--out), or 'name' (--name, by "
            "default the file's name) under an output root ('output.root', --output-root or $PIPELINE_OUTPUT_ROOT)",
            path=str(args.job),
        )
    source = job_source(args.job, mapping, overrides)
    try:
        if args.detach:
            job_id = submit_detached(config, source=source)
            scheduler = config.cluster and config.cluster.scheduler  # (submit_detached needs one)
            _say(f"job {job_id} submitted to {scheduler}; output {config.out}")
            _say(f"follow it with: pipeline logs {job_id} --follow --scheduler {scheduler}")
            return 0
        model = _attached(config, quiet=args.quiet, source=source)
    except (ClusterError, DatasetNotFoundError, ColumnNotFoundError, ModelFileError) as exc:
        # the job file named something that is not there: say which key (not for the command line's values)
        key = _named_by(exc, config)
        if key is None or key in overrides:
            raise
        raise type(exc)(f"{args.job}: {key}: {exc}", path=args.job, column=key) from None
    except ConfigError as exc:
        # a setting of the file that only the data can refuse (class_weight's count): say which key (the file's
        # setting, unless the command line gave the value: another option given there, --name or --max-iter,
        # does not make it the flag's)
        raise in_file_words(exc, source) from None
    return 0 if model is not None else EXIT_CANCELLED


def _named_by(error: PipelineError, config: TrainConfig) -> str | None:
    """The job-file key that named what ``error`` found missing: the
    scheduler, the dataset, or the label, weight or feature column."""
    if isinstance(error, ClusterError):
        return "cluster.scheduler" if config.cluster is not None and error.path == config.cluster.scheduler else None
    if isinstance(error, DatasetNotFoundError):
        return "data.url"
    if isinstance(error, ModelFileError) and config.init is not None and str(error.path or "").startswith(config.init):
        return "train.init"
    column = getattr(error, "column", None)
    if column == config.label:
        return "data.label"
    if column is not None and column == config.weight:
        return "data.weight"
    if config.features is not None and column in config.features:
        return "data.features"
    if column is not None and column == config.validation_key:
        return "data.validation_key"
    return None


def _resume(args) -> int:
    files = find_job(args.out, args.scheduler)
    overrides = {}
    if args.scheduler:
        overrides["cluster.scheduler"] = args.scheduler
    elif args.workers is not None:
        overrides["cluster.workers"] = args.workers
    elif args.in_process:
        overrides["cluster.in_process"] = True
    if args.cache is not None:
        overrides["cache.mode"] = args.cache
    config, job_id = config_of(files, overrides)
    document = files.read_job() or JobDocument()
    if document.status == "succeeded":
        _say(f"job {job_id} already succeeded (digest {document.digest}); nothing to do")
        return 0
    source = source_of(document.source)  # (its settings' errors in its job file's words, as before)
    if args.detach:
        submit_detached(config, job_id, source=source)
        _say(f"job {job_id} resumed on {config.cluster and config.cluster.scheduler}")
        return 0
    model = _attached(config, job_id=job_id, quiet=args.quiet, doing=f"resuming job {job_id}", source=source)
    return 0 if model is not None else EXIT_CANCELLED


def _attached(
    config: TrainConfig,
    job_id: str | None = None,
    quiet: bool = False,
    doing: str = "training",
    source: JobSource | None = None,
) -> Model | None:
    """Run the job here, print progress; None if it was cancelled.  ``doing``
    opens the first line (printed with ``quiet`` too); ``source``: the job
    file the configuration came from (job.json records its settings' errors
    in its words)."""
    where = (
        "in-process"
        if config.cluster is None
        else config.cluster.scheduler or _local_cluster(embedded_worker_count(config.cluster))
    )
    check_job_output(config, job_id)  # (an output that cannot take the job: refused before the first line)
    _say(f"{doing} on {config.data} ({where})")
    started = time.perf_counter()
    try:
        model = run_job(
            config,
            job_id,
            progress=None if quiet else _print_iteration,
            notify=None if quiet else _say,
            on_warning=lambda line: _say(line, sys.stderr),
            source=source,
        )
    except JobCancelled as exc:
        _say(f"cancelled: {exc}", sys.stderr)
        return None
    document = OutputDir(_model_dir(config)).read_job() or JobDocument()
    elapsed = time.perf_counter() - started
    status = "converged" if model.converged else "NOT converged"
    if config.path or config.cv:  # (the model is the chosen point's: say what the whole path did first)
        _say(_path_line(OutputDir(_model_dir(config)), elapsed))
        status, took = f"chosen model: {status}", ""
    else:
        took = f", {elapsed:.1f} s"
    _say(
        f"{status} after {model.n_iter} iteration{'s' if model.n_iter != 1 else ''}, {model.n_passes} passes{took} "
        f"({model.message}); n_samples={model.n_samples} loss={model.loss!r}"
    )
    _say(f"job {document.job_id} {document.status}; digest {model.digest}")
    return model


def _path_line(outputs: OutputDir, elapsed: float) -> str:
    """A path's (or cross-validation's) summary: its strengths, the time, the
    points that did not converge, and the chosen one by its folder."""
    path = json.loads(outputs.path_summary.read_text())
    points, index = path["points"], path["chosen"]
    chosen = points[index]
    unconverged = sum(not point["converged"] for point in points)
    scored = "" if chosen.get("cv_loss") is None else f", cross-validation loss {chosen['cv_loss']!r}"
    rule = "the last, smallest strength" if path["rule"] == "last" else path["rule"]
    what = "cross-validation" if len(points) == 1 else f"path of {len(points)} strengths"
    return (
        f"{what} in {elapsed:.1f} s"
        + (f" ({unconverged} of {len(points)} points NOT converged)" if unconverged else "")
        + f"; chosen: {PATH_DIR}/{index:03d} (l2={chosen['l2']!r}, l1={chosen['l1']!r}{scored}; {rule})"
    )


def _status(args) -> int:
    if args.job is None:
        return _list(args)
    files = find_job(args.job, args.scheduler)
    document = files.read_job() or JobDocument()
    if args.json:
        print(json.dumps(document.to_json(), indent=2))
        return 0
    gone = _still_gone(files, document)
    document = gone or files.read_job() or document  # (as it is now: it may have ended while the scheduler answered)
    print(_status_line(document))
    if document.error:  # (a cancelled job's is why it stopped, not a failure)
        print(f"{'reason' if document.status == 'cancelled' else 'error'}: {document.error}")
    if gone is not None:
        print(_gone_note(document))
    return 0


def _still_gone(files: OutputDir, document: JobDocument) -> JobDocument | None:
    """``document`` again if its coordinator is gone (:func:`coordinator_gone`)
    and job.json, read again once that was known, still says what it said: a
    detached job whose task the scheduler no longer has may have ended (and
    said so) while the scheduler answered; None otherwise."""
    if not coordinator_gone(document):
        return None
    again = files.read_job() or JobDocument()
    return again if (again.job_id, again.status) == (document.job_id, document.status) else None


def _gone_note(document: JobDocument) -> str:
    """What ``status`` (and ``logs --follow``) say of a running job whose coordinator is gone."""
    return (
        f"note: {gone_coordinator(document)}: the job was killed, not stopped; `pipeline resume "
        f"{document.out}` continues it from its last checkpoint"
    )


def _status_line(job: JobDocument) -> str:
    def number(value, fmt):
        return "-" if value is None else format(value, fmt)

    return (
        f"{job.job_id}  {job.name or '-'}  {job.status}  "
        f"iteration {number(job.iteration, 'd')}  loss {number(job.loss, '.12g')}  "
        f"passes {number(job.n_passes, 'd')}  elapsed {number(job.elapsed_s, '.1f')} s  "
        f"out {job.out}" + (f"  digest {job.digest}" if job.digest else "")
    )


def _list(args) -> int:
    jobs = list_jobs(args.scheduler)
    if not jobs:
        print("no jobs")
    for job in jobs:
        # (an attached job's coordinator by its pid; a detached one's scheduler is not asked, job by job)
        gone = coordinator_gone(job, task_state=lambda document: UNANSWERED)
        print(_status_line(job) + ("  (its coordinator is gone: killed)" if gone else ""))
    return 0


def _logs(args) -> int:
    files = find_job(args.job, args.scheduler)
    path = files.log_file
    position = 0
    next_check = 0.0
    while True:
        try:
            with open(path) as handle:
                handle.seek(position)
                chunk = handle.read()
                position = handle.tell()
        except FileNotFoundError:
            chunk = ""
        except (OSError, UnicodeDecodeError) as exc:  # (a directory in its place, no permission, not text)
            raise JobError(
                f"{path} cannot be read: {exc}; expected the job's log, a text file", path=str(path)
            ) from None
        if chunk:
            sys.stdout.write(chunk)
            sys.stdout.flush()
        if not args.follow:
            return 0
        document = files.read_job() or JobDocument()
        if document.ended and not chunk:
            return 0
        if not chunk and time.monotonic() >= next_check:  # (a detached job's check asks its scheduler)
            next_check = time.monotonic() + FOLLOW_GONE_CHECK_S
            if _still_gone(files, document) is not None:  # (nothing will write to it again)
                print(_gone_note(document), file=sys.stderr)
                return EXIT_ERROR
        time.sleep(FOLLOW_POLL_S)


def _cancel(args) -> int:
    files = find_job(args.job, args.scheduler)
    document = files.read_job() or JobDocument()
    # no one would read a request: the job is marked cancelled here (if it did not end meanwhile)
    if _still_gone(files, document) is not None and cancel_orphaned(files, document):
        print(f"job {document.job_id}: cancelled (its coordinator was no longer running)")
        return 0
    document = files.read_job() or document
    if document.ended:
        print(f"job {document.job_id} is not running: {document.status}")
        return 0
    request_cancel(files)
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        document = files.read_job() or JobDocument()
        if document.ended:
            break
        time.sleep(FOLLOW_POLL_S)
    print(
        f"job {document.job_id}: {document.status}"
        + ("" if document.ended else f" (cancel requested; not stopped within {args.wait:g} s)")
    )
    return 0 if document.ended else EXIT_ERROR


def _print_iteration(record: IterationRecord) -> None:
    _say(
        f"iter {record.iteration:4d}  loss {record.loss:.12f}  |grad|inf {record.grad_norm:.3e}"
        f"  step {record.step:.3e}  passes {record.n_passes}"
        f"  {record.rows_per_s / 1e6:.2f} M rows/s  {record.elapsed_s:.1f} s"
    )


def _demo(args) -> int:
    if args.rows < 1:
        raise ConfigError(f"--rows must be >= 1; found {args.rows}", column="rows")
    workers = _cluster_spec(None, args.workers)  # (its rules before any data is written)
    out = None if args.out is None else local_path(args.out, "demo output directory")
    if out is not None:  # (before any data is written there)
        check_output_root(out, output_roots(), "demo output directory")
    # without --out, a scratch directory under the output root where one is set (made, as train makes it)
    scratch_root = environment_root()
    if out is None and scratch_root is not None:
        try:
            os.makedirs(scratch_root, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"cannot create the output root {scratch_root} ($PIPELINE_OUTPUT_ROOT) for the demo: {exc}",
                path=scratch_root,
            ) from None
    with tempfile.TemporaryDirectory(prefix="pipeline-demo-", dir=scratch_root) as scratch:
        root = Path(out or scratch)
        one, many = root / "data-1-file", root / "data-7-files"
        make_data(str(one), args.rows, args.features, files=1, row_group_size=args.rows, seed=7)
        make_data(str(many), args.rows, args.features, files=7, row_group_size=4999, seed=7)
        print(
            f"generated {args.rows} rows x {args.features} features twice: "
            f"1 file / 1 row group, and 7 files / row groups of at most 4999 rows"
        )
        distributed = _attached(
            TrainConfig(
                data=str(many),
                label="y",
                out=str(root / "model-cluster"),
                overwrite=True,
                cluster=workers,
            ),
            quiet=True,
        )
        local = _attached(
            TrainConfig(
                data=str(one),
                label="y",
                out=str(root / "model-in-process"),
                overwrite=True,
                cluster=None,
            ),
            quiet=True,
        )
    if distributed is None or local is None:
        return EXIT_CANCELLED
    print(f"coef      {distributed.coef}")
    print(f"intercept {distributed.intercept!r}")
    same = (
        distributed.digest == local.digest
        and distributed.loss_history == local.loss_history
        and distributed.gradient == local.gradient
    )
    if same:
        print(
            f"IDENTICAL: {args.workers}-worker cluster on 7 files == in-process on 1 file "
            f"(digest, {len(local.loss_history)} losses, final gradient bit for bit)"
        )
        return 0
    print("MISMATCH: the cluster and in-process runs differ", file=sys.stderr)
    return EXIT_MISMATCH


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
