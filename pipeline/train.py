"""Training orchestration: dataset → evaluator → statistics → objective → solver → model."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .data import Dataset, Split, open_dataset
from .errors import (
    ConfigError,
    ConvergenceWarning,
    LabelValueError,
    OutputError,
    WeightValueError,
)
from .model import MODEL_FILE, Model
from .objective import (
    DataSummary,
    Evaluator,
    LogisticObjective,
    Penalty,
    Standardization,
    balanced_class_weight,
    summarize,
)
from .reduce import (
    ClusterSpec,
    DaskEvaluator,
    InProcessEvaluator,
    StreamingEvaluator,
    cluster_memory,
    connect,
    warm_up,
)
from .solvers import (
    IterationRecord,
    SolverOptions,
    SolverResult,
    SolverState,
    gradient_descent,
    lbfgs,
    newton,
)
from .stream import DiskCache

__all__ = ["Fit", "FitState", "fit", "train", "train_arrays"]

Progress = Callable[[IterationRecord], None]
Notify = Callable[[str], None]


@dataclass(frozen=True, eq=False)
class Fit:
    """A solver's result mapped back to original feature units."""

    result: SolverResult
    coef: np.ndarray  # original units, intercept last
    gradient: np.ndarray  # of the smooth objective, original units
    n_passes: int  # statistics pass included
    standardization: Standardization | None
    class_weight: tuple[float, float] | None
    summary: DataSummary | None
    #: validation loss per history record (empty without a validation set)
    validation_loss: tuple[float, ...] = ()
    #: the solver that ran (``auto`` resolved)
    solver: str = ""


@dataclass(frozen=True, eq=False)
class FitState:
    """A fit in progress, as a checkpoint keeps it: the solver's state plus
    what the statistics pass gave, so a resumed fit needs no new pass."""

    solver_state: SolverState
    standardization: Standardization | None
    class_weight: tuple[float, float] | None
    stats_passes: int
    #: seconds since the fit began (across resumes), one per history record
    elapsed_s: tuple[float, ...]
    #: validation loss at each history record (empty without a validation set)
    validation_loss: tuple[float, ...] = ()

    @property
    def n_passes(self) -> int:
        return self.solver_state.n_passes + self.stats_passes


def train(config: TrainConfig, progress: Progress | None = None, notify: Notify | None = None) -> Model:
    """Train on the Parquet dataset of ``config``; save ``model.json`` if ``config.out``."""
    if config.out is not None:
        check_output(config.out, config.overwrite)
    dataset = open_dataset(config.data, config.label, config.features, config.weight)
    init = _initial_coef(config.init, dataset.features)
    notify = notify or (lambda message: None)
    check_label_classes(dataset)
    warn_if_underdetermined(dataset, config.penalty)
    with _evaluator(config, dataset, notify) as (evaluator, validation, cache):
        result = fit(
            evaluator,
            solver=config.solver,
            options=config.options,
            penalty=config.penalty,
            standardize=config.standardize,
            class_weight=config.class_weight,
            init=init,
            progress=progress,
            features=dataset.features,
            label=dataset.label,
            validation=validation,
            early_stopping=config.early_stopping,
        )
    model = build_model(
        result,
        dataset.features,
        dataset.n_samples,
        solver=config.solver,
        penalty=config.penalty,
        label=dataset.label,
        weight=dataset.weight,
        dataset=dataset.url,
        cache=cache,
    )
    if config.out is not None:
        model.save(config.out)
    return model


@contextlib.contextmanager
def _evaluator(
    config: TrainConfig, dataset: Dataset, notify: Notify, client=None
) -> Iterator[tuple[Evaluator, Evaluator | None, str]]:
    """The evaluators for ``config`` (training, validation or None) and the cache mode.

    ``client``: an already connected ``distributed.Client`` to use instead of
    connecting to ``config.cluster`` (a job's coordinator running on a worker).
    With a validation split, the training evaluator sees the training rows
    (the others weigh 0) and the validation one the held-out rows; in memory
    they share the decoded features and labels.
    """
    validation = None
    if config.validation_fraction:
        _check_split_key(dataset, config.validation_key)
        split = Split(config.validation_fraction, config.validation_key)
        validation = dataset.with_split(dataclasses.replace(split, part="validation"))
        dataset = dataset.with_split(split)
    if config.cluster is None and client is None:
        mode = "memory" if config.cache in ("auto", "memory") else config.cache
        notify(f"cache: {mode} (in-process)")
        if mode == "memory":
            started = time.perf_counter()
            chunks = dataset.read_chunks()
            notify(_loaded(dataset, "memory", started))
            held_out = None
            if validation is not None:
                reader = validation.reader
                held_out = InProcessEvaluator(
                    [(X, y, reader.weights_of(spec)) for (X, y, _), spec in zip(chunks, dataset.chunks)],
                    dataset.n_features,
                )
            yield InProcessEvaluator(chunks, dataset.n_features), held_out, mode
            return
        with tempfile.TemporaryDirectory(prefix="pipeline-cache-") as scratch:
            cache = DiskCache(dataset.fingerprint, scratch) if mode == "disk" else None
            held_out = (
                None
                if validation is None
                else StreamingEvaluator(
                    None, validation, None if cache is None else DiskCache(validation.fingerprint, scratch)
                )
            )
            yield StreamingEvaluator(None, dataset, cache), held_out, mode
        return
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(connect(config.cluster))
        workers, memory = cluster_memory(client)
        mode, reason = choose_cache(config.cache, dataset.decoded_bytes, memory, config.memory_fraction)
        notify(f"cache: {mode} ({reason})")
        stall = (config.cluster or ClusterSpec()).stall_timeout_s
        solver = auto_solver(dataset.n_features) if config.solver == "auto" else config.solver
        compiling = warm_up(  # noqa: F841 - held until the first pass has run
            client,
            workers,
            dataset.n_features,
            standardize=config.standardize,
            weighted=dataset.reader.has_weights,
            class_weighted=config.class_weight is not None,
            hessian=solver == "newton",
        )
        if mode == "memory":
            started = time.perf_counter()
            training = DaskEvaluator.from_dataset(client, dataset, workers, stall_timeout_s=stall)
            training.load()
            notify(_loaded(dataset, f"the memory of {len(workers)} worker(s)", started))
            held_out = None if validation is None else training.with_weights(validation)
            yield training, held_out, mode
            return
        caches = [] if mode == "none" else [DiskCache(dataset.fingerprint)]
        held_out = None
        if validation is not None:
            if mode == "disk":
                caches.append(DiskCache(validation.fingerprint))
            held_out = StreamingEvaluator(
                client, validation, caches[-1] if mode == "disk" else None, workers, stall_timeout_s=stall
            )
        try:
            yield (
                StreamingEvaluator(client, dataset, caches[0] if caches else None, workers, stall_timeout_s=stall),
                held_out,
                mode,
            )
        finally:
            for cache in caches:
                # best effort: a worker lost since cannot be cleared, and the
                # model may already be on disk (its job must not fail for that)
                with contextlib.suppress(Exception):
                    client.run(cache.clear)


def _loaded(dataset: Dataset, where: str, started: float) -> str:
    """The note once every chunk is decoded into ``where`` (timed from ``started``)."""
    return (
        f"loaded {dataset.n_samples} rows ({dataset.decoded_bytes / 2**30:.2f} GiB decoded) "
        f"into {where} in {time.perf_counter() - started:.1f} s"
    )


def _check_split_key(dataset: Dataset, key: str | None) -> None:
    if not key:
        return
    import pyarrow.parquet as pq

    from .errors import ColumnNotFoundError

    for path in dataset.files:
        names = pq.read_schema(path, filesystem=dataset.filesystem).names
        if key not in names:
            raise ColumnNotFoundError(
                f"validation key column {key!r} not found in {path}; found columns {names}", path=path, column=key
            )


def choose_cache(requested: str, needed: int, memory: int | None, fraction: float) -> tuple[str, str]:
    """``(mode, reason)``: ``auto`` takes ``memory`` when the decoded data fits."""
    size = f"{needed / 2**30:.2f} GiB decoded"
    if memory is None:
        budget_text = "cluster memory unknown (a worker has no memory limit)"
        fits = requested == "memory"
    else:
        budget = memory * fraction
        fits = needed <= budget
        budget_text = f"{fraction:.0%} of {memory / 2**30:.2f} GiB worker memory"
    if requested in ("disk", "none"):
        return requested, f"as asked; {size}"
    if requested == "memory":
        if not fits:
            raise ConfigError(
                f"--cache memory needs {size} but may use only {budget_text}; "
                "use --cache auto, disk or none for data larger than memory"
            )
        return "memory", f"as asked; {size} within {budget_text}"
    if fits:
        return "memory", f"auto: {size} fits in {budget_text}"
    return "disk", f"auto: {size} exceeds {budget_text}"


def fit(
    evaluator: Evaluator,
    *,
    solver: str = "auto",
    options: SolverOptions = SolverOptions(),
    penalty: Penalty = Penalty(),
    standardize: bool = True,
    class_weight: str | tuple[float, float] | None = None,
    init: np.ndarray | None = None,
    progress: Progress | None = None,
    features: Sequence[str] | None = None,
    resume: FitState | None = None,
    on_state: Callable[[FitState], None] | None = None,
    label: str | None = None,
    validation: Evaluator | None = None,
    early_stopping: int = 0,
) -> Fit:
    """Statistics pass (when needed), then the solver, on any evaluator.

    ``solver``: ``lbfgs`` (OWL-QN with L1; preconditioned by
    :meth:`LogisticObjective.preconditioner`), ``newton`` (orthant-wise with
    L1), ``gd``, or ``auto``: :func:`auto_solver` picks by the number of
    features (a resumed fit keeps the solver of its state); ``Fit.solver``
    says which ran.

    ``on_state`` receives a :class:`FitState` after the starting point and
    after every iteration; ``resume`` continues from one (its statistics,
    class weights and standardization are used, ``init`` is ignored) and ends
    exactly where the uninterrupted fit would have.

    ``validation``: an evaluator of held-out rows; after the starting point and
    every iteration its unpenalized mean loss is computed (one pass over it,
    not counted in ``n_passes``) and kept in the states; ``early_stopping=k``
    stops (converged) when it has not improved for ``k`` iterations.
    """
    started = time.perf_counter()
    summary = None
    if resume is not None:
        standardization, class_weight = resume.standardization, resume.class_weight
        stats_passes, elapsed = resume.stats_passes, list(resume.elapsed_s)
        validation_losses = list(resume.validation_loss)
    else:
        if standardize or class_weight == "balanced":
            summary = summarize(evaluator.stats())
            _check_two_classes(summary, label)
            for j in summary.constant_columns if standardize else []:
                name = repr(features[j]) if features is not None else f"number {j}"
                warnings.warn(
                    f"feature {name} is constant ({float(summary.mean[j])!r} in every row); "
                    "its coefficient is fixed at 0",
                    stacklevel=2,
                )
        stats_passes = 1 if summary is not None else 0
        if class_weight == "balanced":
            class_weight = balanced_class_weight(summary)
        standardization = summary.standardization() if standardize else None
        elapsed = []
        validation_losses = []
    clock_offset = elapsed[-1] if elapsed else 0.0
    objective = LogisticObjective(evaluator, penalty, standardization, class_weight)
    coef0 = np.zeros(evaluator.n_features + 1) if init is None else np.array(init, dtype=np.float64)
    if standardization is not None:
        coef0 = standardization.to_standardized(coef0)

    def report(record: IterationRecord) -> None:
        seconds = clock_offset + time.perf_counter() - started
        elapsed.append(seconds)
        if progress:
            passes = record.n_passes + stats_passes
            rows = passes * (objective.n_samples or 0)
            progress(
                dataclasses.replace(
                    record, n_passes=passes, elapsed_s=seconds, rows_per_s=rows / seconds if seconds > 0 else 0.0
                )
            )

    held_out = None if validation is None else LogisticObjective(validation, Penalty(), standardization, class_weight)

    def save(state: SolverState) -> None:
        if held_out is not None:
            validation_losses.append(held_out(state.coef)[0])
        if on_state:
            on_state(
                FitState(state, standardization, class_weight, stats_passes, tuple(elapsed), tuple(validation_losses))
            )

    def should_stop() -> str | None:
        if not early_stopping or not validation_losses:
            return None
        best = min(range(len(validation_losses)), key=validation_losses.__getitem__)
        if len(validation_losses) - 1 - best >= early_stopping:
            return (
                f"early stopping: validation loss not improved for {early_stopping} "
                f"iterations (best {validation_losses[best]!r} at iteration {best})"
            )
        return None

    hooks = dict(resume=None if resume is None else resume.solver_state, checkpoint=save, should_stop=should_stop)
    requested = solver
    if solver == "auto":  # a resumed fit keeps the solver it started with
        solver = resume.solver_state.solver if resume is not None else auto_solver(evaluator.n_features)
    if solver == "lbfgs":
        # from the standardization and the penalty alone: the same on resume
        result = lbfgs(
            objective, coef0, options, report, objective.l1_weights, preconditioner=objective.preconditioner(), **hooks
        )
    elif solver == "gd":
        result = gradient_descent(objective, coef0, options, report, objective.l1_weights, **hooks)
    elif solver == "newton":  # orthant-wise Newton with l1 > 0
        result = newton(objective.with_hessian, coef0, options, report, objective.l1_weights, **hooks)
    else:
        raise ConfigError(f"unknown solver {requested!r}")
    already = 0 if resume is None else resume.solver_state.n_passes
    assert result.n_passes == already + objective.n_passes
    if not result.converged:
        warnings.warn(f"{solver} did not converge: {result.message}", ConvergenceWarning, stacklevel=2)
    coef, gradient = result.coef, result.grad
    if standardization is not None:
        coef = standardization.to_original(result.coef)
        gradient = standardization.gradient_to_original(result.grad)
    return Fit(
        result,
        coef,
        gradient,
        result.n_passes + stats_passes,
        standardization,
        class_weight,
        summary,
        tuple(validation_losses),
        solver,
    )


#: ``auto`` takes Newton up to this many features.  Newton needs 10-16 passes
#: on ill-conditioned real data (scikit-learn's breast cancer, digits) where
#: L-BFGS, even preconditioned, needs 76-700 (and on digits at l2=1e-4 stops
#: 3e-8 above the optimum at the default tolerance).  A Newton pass costs
#: (d+1)(d+2)/2 exact Hessian sums per row: with the compiled Hessian pass
#: 1.5x a gradient pass at d=8, 2.6x at 32 and 5x at 64 (1M rows,
#: standardized, one core), and the solve is O(d^3) fsums (5 ms at 64, 58 ms
#: at 128).  Up to 64 features its total work is no more than L-BFGS's on
#: such data (breast cancer, d=30: ~30 gradient passes' worth against
#: 280-670; digits, d=64: 50-80 against 76-434), with a few percent of the
#: passes over the data (each a full scan and a round trip on a cluster) and
#: the optimum to ~1e-12.
AUTO_NEWTON_MAX_FEATURES = 64


def auto_solver(n_features: int) -> str:
    """The solver ``auto`` runs: ``newton`` (orthant-wise with L1) for at most
    :data:`AUTO_NEWTON_MAX_FEATURES` features, else ``lbfgs`` (OWL-QN)."""
    return "newton" if n_features <= AUTO_NEWTON_MAX_FEATURES else "lbfgs"


def _check_two_classes(summary: DataSummary, label: str | None) -> None:
    """Both labels must carry weight, else the optimum is at infinity."""
    if not summary.weight_sum > 0:
        raise WeightValueError(f"the sample weights add up to {summary.weight_sum!r}; expected a positive total")
    negative = summary.weight_sum - summary.positive_weight
    if summary.positive_weight > 0 and negative > 0:
        return
    only = 1 if summary.positive_weight > 0 else 0
    column = f"label column {label!r}" if label else "the label"
    raise LabelValueError(
        f"{column} has a single class: all the weight of the {summary.n_samples} rows is on "
        f"label {only}; expected both 0 and 1 (logistic regression has no finite optimum "
        "otherwise)",
        column=label,
    )


def check_label_classes(dataset: Dataset) -> None:
    """A label that the Parquet statistics show to be constant 0 or 1 is refused
    before any pass (the statistics pass checks weighted classes exactly)."""
    if dataset.label_range is None:
        return
    low, high = dataset.label_range
    if low == high and low in (0.0, 1.0):
        raise LabelValueError(
            f"label column {dataset.label!r} has a single class: it is {low:g} in all "
            f"{dataset.n_samples} rows (from the Parquet statistics of {len(dataset.files)} "
            "file(s)); expected both 0 and 1 (logistic regression has no finite optimum otherwise)",
            path=dataset.url,
            column=dataset.label,
        )


def warn_if_underdetermined(dataset: Dataset, penalty: Penalty) -> None:
    """More features than rows is allowed with a penalty, warned without."""
    if dataset.n_features > dataset.n_samples and not (penalty.l2 or penalty.l1):
        warnings.warn(
            f"more features ({dataset.n_features}) than rows ({dataset.n_samples}): without a "
            "penalty the optimum is not unique (add --l2 or --l1)",
            stacklevel=2,
        )


def train_arrays(
    chunks: Sequence,
    features: Sequence[str] | None = None,
    **fit_options,
) -> Model:
    """The in-process path on in-memory ``(X, y[, weights])`` chunks (any split of the rows)."""
    n_features = chunks[0][0].shape[1]
    features = list(features) if features is not None else [f"x{j}" for j in range(n_features)]
    result = fit(InProcessEvaluator(chunks, n_features), features=features, **fit_options)
    n_samples = sum(chunk[0].shape[0] for chunk in chunks)
    return build_model(
        result,
        features,
        n_samples,
        solver=fit_options.get("solver", "auto"),
        penalty=fit_options.get("penalty", Penalty()),
        label="y",
        weight=None,
        dataset="<arrays>",
    )


def build_model(
    result: Fit,
    features: Sequence[str],
    n_samples: int,
    *,
    solver: str,
    penalty: Penalty,
    label: str,
    weight: str | None,
    dataset: str,
    cache: str = "memory",
) -> Model:
    solver = result.solver or solver  # the one that ran (auto resolved)
    history = result.result.history
    offset = result.n_passes - result.result.n_passes
    standardization = result.standardization
    return Model(
        features=list(features),
        coef=result.coef[:-1].tolist(),
        intercept=float(result.coef[-1]),
        solver=solver,
        n_iter=result.result.n_iter,
        n_passes=result.n_passes,
        converged=result.result.converged,
        message=result.result.message,
        loss_history=[record.loss for record in history],
        grad_norm_history=[record.grad_norm for record in history],
        step_history=[record.step for record in history],
        passes_history=[record.n_passes + offset for record in history],
        gradient=result.gradient.tolist(),
        n_samples=n_samples,
        label=label,
        dataset=dataset,
        weight=weight,
        class_weight=None if result.class_weight is None else list(result.class_weight),
        l2=penalty.l2,
        l1=penalty.l1,
        standardize=standardization is not None,
        center=None if standardization is None else standardization.center.tolist(),
        scale=None if standardization is None else standardization.scale.tolist(),
        cache=cache,
        validation_loss_history=list(result.validation_loss) or None,
    )


def _initial_coef(init: str | None, features: Sequence[str]) -> np.ndarray | None:
    if init is None:
        return None
    model = Model.load(init)
    if list(model.features) != list(features):
        raise ConfigError(
            f"--init model in {init} has features {model.features}; "
            f"expected the training features {list(features)} (same names, same order)"
        )
    return np.append(model.coef_array, model.intercept)


def check_output(out: str, overwrite: bool) -> None:
    """Fail before training if the model could not be written to ``out``."""
    directory = Path(out)
    if (directory / MODEL_FILE).exists() and not overwrite:
        raise OutputError(
            f"{directory / MODEL_FILE} already exists; expected a new output directory "
            "(pass --overwrite to replace it)",
            path=str(directory),
        )
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"output {directory} exists and is not a directory", path=str(directory))
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {directory} is not writable", path=str(directory))
    if directory.exists():
        try:
            with tempfile.TemporaryFile(dir=directory):
                pass
        except OSError as exc:
            raise OutputError(f"output directory {directory} is not writable: {exc}", path=str(directory)) from None
