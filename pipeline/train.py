"""Training orchestration, the one path from a configuration to a model:
dataset → evaluators (in-process, cluster memory, streamed) → :func:`pipeline.fitting.fit`
→ model on disk, reporting to a :class:`Recorder` on the way.

:func:`run` is that path; :func:`train` (the library call) runs it with a
plain recorder, :func:`pipeline.jobs.run_job` with one that keeps the job's
files (job.json, log, history, checkpoints, cancel requests).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow.compute as pc

from .atomic import write_atomic
from .checkpoint import load_checkpoint, save_checkpoint
from .cluster import ClusterSpec, cluster_memory, connect, process_memory
from .config import CacheMode, TrainConfig
from .crossval import ALL_ROWS, Lockstep, MemberEvaluator, fold_summary
from .data import (
    ChunkSpec,
    ClassCounter,
    Dataset,
    Folds,
    Split,
    check_workers_can_read,
    open_dataset,
    split_key_kinds,
)
from .errors import (
    CheckpointError,
    ColumnNotFoundError,
    ColumnTypeError,
    ConfigError,
    DataWarning,
    EmptyDatasetError,
    LabelValueError,
    MissingValueError,
    PipelineError,
)
from .exact import ExactSums
from .fitting import (
    Fit,
    FitState,
    Prepared,
    Progress,
    auto_start,
    both_labels_at_zero,
    build_model,
    fit,
    prepare,
    warn_if_underdetermined,
    warn_single_row_classes,
    with_inference,
)
from .inference import refusal
from .kernel import KernelSpec, class_sums
from .levels import LevelCounts, Vocabulary, merge_counts, value_counts, vocabulary
from .model import Model
from .objective import Evaluator, Penalty
from .outputs import PATH_DIR, OutputDir
from .paths import PathPoint, choose, lambda_max, mixing, null_intercepts, path_document, penalties, strengths
from .reduce import DaskEvaluator, InProcessEvaluator, StreamingEvaluator, compile_ahead, gather, warm_up
from .solvers import IterationRecord
from .stream import DiskCache
from .tiers import kernels_mode, worth_compiling

T = TypeVar("T")

__all__ = ["Recorder", "fit_options", "fit_path", "run", "train"]

Notify = Callable[[str], None]
#: a dataset's training part and its validation part (None without a split)
Parts = tuple[Dataset, Dataset | None]


class Recorder:
    """What a run reports, and to whom.  :func:`run` calls, in order:

    * :meth:`begin` once the dataset is open and the cluster connected; it
      may return a :class:`~pipeline.fitting.FitState` to resume from;
    * :meth:`note` with each note (cache choice, data loaded, ...);
    * :meth:`watching` is entered around the evaluators and the fit;
    * :meth:`check_cancel` before every pass (raise to stop);
    * :meth:`on_iteration` with each iteration's record (progress);
    * :meth:`on_state` with the fit's state after the start and every iteration;
    * :meth:`on_model` with the model, just after it is saved (before the
      evaluators' clean-up);
    * :meth:`finish` after the clean-up, or :meth:`fail` with the error.

    This base records nothing but passes notes and progress to the optional
    callables; :class:`pipeline.jobs.JobRecorder` keeps a job's files.
    """

    #: whether the run may continue from a checkpoint (:meth:`begin` reads it)
    may_resume = False

    def __init__(self, progress: Progress | None = None, notify: Notify | None = None) -> None:
        self.progress = progress
        self.notify = notify

    def begin(self, dataset: Dataset, client: Any) -> FitState | None:
        return None

    def note(self, message: str) -> None:
        if self.notify is not None:
            self.notify(message)

    def check_cancel(self) -> None:
        """Raise (:class:`~pipeline.errors.JobCancelled`) to stop before the next pass."""

    def on_iteration(self, record: IterationRecord) -> None:
        if self.progress is not None:
            self.progress(record)

    def watching(self) -> contextlib.AbstractContextManager:
        """Entered around the evaluators and the fit (a job records the warnings)."""
        return contextlib.nullcontext()

    def on_state(self, state: FitState) -> None:
        pass

    def claim(self) -> None:
        """Before the run's first file in its output directory that is not
        written through :meth:`on_state` (a regularization path's states and
        point models): a job writes its directory (and takes it) here."""

    def on_model(self, model: Model) -> None:
        pass

    def on_point(self, point: Path) -> None:
        """A regularization path saved a point's model in directory ``point``."""

    def on_chosen(self, model: Model, point: Path | None) -> None:
        """A regularization path chose ``model`` (saved in ``point``; the
        progress recorded so far was the last point's)."""

    def finish(self, model: Model, kernel: dict | None) -> None:
        """``kernel``: the kernel fingerprint the workers shared (None in-process)."""

    def fail(self, error: BaseException) -> None:
        pass


def train(config: TrainConfig, progress: Progress | None = None, notify: Notify | None = None) -> Model:
    """Train on the Parquet dataset of ``config``; save ``model.json`` if ``config.out``."""
    if config.out is not None:
        outputs = OutputDir(config.out)
        outputs.check_apart_from(config.data)
        outputs.check_writable(config.overwrite)
    return run(config, Recorder(progress, notify))


def run(config: TrainConfig, recorder: Recorder, *, client: Any = None) -> Model:
    """The one path: open and check the dataset, connect (to ``client``, else
    ``config.cluster``; in-process when that is None), fit on the evaluators,
    save the model to ``config.out`` (when given), telling ``recorder``."""
    kernels_mode()  # a bad PIPELINE_KERNELS is refused before anything runs
    # a bad init model is refused before any pass; not read at all where a
    # checkpoint takes its place (known once the recorder has looked)
    init_later = config.init if recorder.may_resume else None
    with _telling(recorder):  # (a job's own directory says it failed, a new job's stays unwritten)
        dataset = open_configured(config)
        check_label_classes(dataset)
        hashed_columns(config, dataset)  # a hashed column that is not a categorical feature: before any pass
        if config.init is not None and init_later is None:
            Model.load(config.init)  # (before a cluster starts)
    with contextlib.ExitStack() as stack:
        with _telling(recorder):
            if client is None and config.cluster is not None:
                client = stack.enter_context(connect(config.cluster))
            resume = recorder.begin(dataset, client)
            if init_later is not None and resume is None:  # (a checkpoint of another job, or none after all)
                Model.load(init_later)
        with _telling(recorder):
            with recorder.watching():  # (the classes' and levels' passes warn too)
                split = validation_split(config, dataset)
                dataset, n_classes, class_totals = learn_classes(config, dataset, split, client, recorder.note)
                weights = resolve_class_weight(config.class_weight, n_classes or 2, dataset)
                check_resumed_class_weight(resume, weights)
                if weights is not config.class_weight:  # (by class: the weights in the classes' order)
                    config = dataclasses.replace(config, class_weight=weights)
                dataset = learn_missing(config, dataset, client, recorder.note)
                if dataset.categorical:
                    dataset = learn_levels(config, dataset, client, recorder.note)
                else:
                    warn_unused_level_settings(config.hash_buckets, config.min_category_count, config.max_categories)
                check_inference_possible(config, n_classes, dataset)
                if config.cv:
                    if config.cv > dataset.n_samples:
                        raise ConfigError(
                            f"cv: {config.cv} folds for {dataset.n_samples} rows; expected at most one fold per row "
                            "(and, for a useful estimate, far fewer)",
                            column="cv",
                        )
                    if n_classes:
                        raise ConfigError(
                            f"cv: cross-validation takes a binary label; found {n_classes} classes", column="cv"
                        )
                    dataset = dataset.with_folds(Folds(config.cv, config.validation_key))
                # (the features are known once the categorical columns' levels are)
                init = None
                if resume is None:
                    init = initial_coef(config.init, dataset.feature_names, dataset.classes, multinomial=n_classes > 0)
                check_feature_names(dataset)
                parts = split_parts(dataset, split)
                with (
                    _class_words(dataset),
                    evaluators(config, parts, recorder.note, client) as (
                        training,
                        validation,
                        cache,
                    ),
                ):
                    warn_if_underdetermined(
                        len(dataset.feature_names), dataset.n_samples, dataset.categorical, config.penalty, stacklevel=3
                    )
                    checked = _Checked(training, recorder.check_cancel)
                    common = fit_options(
                        config,
                        dataset.feature_names,
                        dataset.label,
                        progress=recorder.on_iteration,
                        on_state=recorder.on_state,
                        validation=None if validation is None else _Checked(validation, recorder.check_cancel),
                        levels=[vocabulary.size for vocabulary in dataset.vocabularies or ()],
                        n_classes=n_classes,
                        class_totals=class_totals,
                    )

                    def describe(result: Fit, penalty: Penalty, n_samples: int = dataset.n_samples) -> Model:
                        return build_model(
                            result,
                            dataset.feature_names,
                            n_samples,
                            solver=config.solver,
                            penalty=penalty,
                            label=config.label,
                            weight=dataset.weight,
                            dataset=dataset.url,
                            cache=cache,
                            missing=config.missing,
                            nan_as_missing=config.nan_as_missing,
                            indicators=dataset.indicators,
                            vocabularies=dataset.vocabularies or (),
                            classes=dataset.classes or None,
                        )

                    if config.path or config.cv:
                        model, _ = fit_path(config, checked, common, describe, recorder, resumed=resume is not None)
                    else:
                        result = fit(checked, penalty=config.penalty, init=init, resume=resume, **common)
                        if config.inference != "none":
                            started = time.perf_counter()
                            result = with_inference(
                                checked, result, dataset.feature_names, config.inference, config.confidence
                            )
                            recorder.note(f"inference ({config.inference}): {time.perf_counter() - started:.2f} s")
                        # the model first, before the evaluators' clean-up (disk caches)
                        model = describe(result, config.penalty)
                    if config.out is not None:
                        if not (config.path or config.cv):  # (another run's path is not this model's)
                            OutputDir(config.out).clear_path()
                        model.save(config.out)
                        with OutputDir(config.out).writing():
                            OutputDir(config.out).clear_model_files()  # (what described the model it replaced)
                    recorder.on_model(model)
            recorder.finish(model, _kernel_facts(training))
    return model


@contextlib.contextmanager
def _class_words(dataset: Dataset) -> Iterator[None]:
    """A class without weight named by its value (the fit counts in class
    codes: it said "label 0" of a label whose classes are text)."""
    try:
        yield
    except LabelValueError as exc:
        if not exc.weightless or not dataset.classes:
            raise
        words = exc.of_classes(list(dataset.classes), label=f"label column {dataset.label!r}", hashed_folds=True)
        raise exc.reworded(words) from None


@contextlib.contextmanager
def _telling(recorder: Recorder) -> Iterator[None]:
    """``recorder.fail`` hears of whatever stops the run, then it goes on up."""
    try:
        yield
    except BaseException as exc:
        recorder.fail(exc)
        raise


def fit_options(
    config: TrainConfig,
    features: Sequence[str],
    label: str | None,
    *,
    progress: Progress | None = None,
    on_state: Callable[[FitState], None] | None = None,
    validation: Evaluator | None = None,
    levels: Sequence[int] = (),
    n_classes: int = 0,
    class_totals: Sequence[float] | None = None,
) -> dict[str, Any]:
    """The keyword arguments of :func:`pipeline.fitting.fit` (but the evaluator,
    penalty, start and resume) for ``config``'s fits."""
    return dict(
        solver=config.solver,
        options=config.options,
        standardize=config.standardize,
        class_weight=config.class_weight,
        progress=progress,
        features=features,
        on_state=on_state,
        label=label,
        validation=validation,
        early_stopping=config.early_stopping,
        restore_best=config.restore_best,
        impute=config.missing != "error",
        levels=list(levels),
        n_classes=n_classes,
        class_totals=class_totals,
    )


def fit_path(
    config: TrainConfig,
    evaluator: Evaluator,
    common: dict[str, Any],
    describe: Callable[..., Model],
    recorder: Recorder,
    resumed: bool,
) -> tuple[Model, list[PathPoint]]:
    """A regularization path (:mod:`pipeline.paths`), cross-validated with
    ``config.cv`` folds (:mod:`pipeline.crossval`; without ``config.path``
    the one configured strength): the statistics pass once, the largest
    strength (two loss passes with an L1 part), then for each strength the
    fit on every row -- and with folds each fold's fit, in lockstep with it,
    then one pass for their held-out losses -- each warm-started from its
    fit of the strength before.  Each point's models are saved in
    ``path/NNN`` (the folds' in ``path/NNN/fold-K``) with ``path/path.json``
    updated after it; the chosen model (:func:`pipeline.paths.choose`) is
    returned, with the points.  ``resumed``: the job is resumed, and the points already in
    ``path/`` (same strengths, intact models) are kept; the next one's fits
    go on from the states they saved (``path/NNN/state-M.npz``, every
    ``checkpoint_every`` iterations), else from the kept models."""
    n_classes, n_folds = common["n_classes"], config.cv
    lockstep = Lockstep(evaluator, n_folds) if n_folds else None
    # the fits of a point: each fold's (trained without its rows), then the one on every row
    members: list[Evaluator] = [evaluator]
    if lockstep is not None:
        members = []
        members += [lockstep.member(k, k) for k in range(n_folds)]
        members.append(lockstep.member(n_folds, ALL_ROWS))
    settings = {key: common[key] for key in ("standardize", "class_weight", "features", "label", "impute", "levels")}
    # every row's first: what is wrong with all the rows (a single class) is the data's, not a fold's
    prepared_by = {
        m: in_fold(
            functools.partial(
                prepare, members[m], **settings, n_classes=n_classes, class_totals=common["class_totals"]
            ),
            m,
            n_folds,
        )
        for m in [len(members) - 1, *range(len(members) - 1)]
    }
    prepared = [prepared_by[m] for m in range(len(members))]
    every_row = members[-1]
    alpha = mixing(config.penalty)
    if config.path:
        null = None if alpha == 0.0 else null_gradient(every_row, prepared[-1], n_classes, common["label"])
        grid = strengths(lambda_max(config.penalty, null, max(n_classes, 1)), config.path, config.path_ratio)
        recorder.note(
            f"regularization path: {len(grid)} strengths from {grid[0]!r} to {grid[-1]!r} (alpha {alpha!r}: "
            f"l1 = strength * alpha, l2 = strength * (1 - alpha))"
        )
    else:
        grid = [config.penalty.l1 + config.penalty.l2]
    if n_folds:
        recorder.note(f"cross-validation: {n_folds} folds in lockstep with the fit on every row")
    outputs = None if config.out is None else OutputDir(config.out)
    points = completed_points(outputs, grid, n_folds) if resumed and outputs is not None else []
    fresh = outputs is not None and not points and not resumed
    written: list[bool] = []
    first = threading.Lock()  # (the fits of a cross-validation run in threads of their own)

    def first_write() -> None:
        """Before the path's first file: the job takes its directory, then
        another run's path goes (a job that finds the directory taken by
        another since it was checked stops here, having changed nothing).
        Every fit waits until that is done."""
        if written:
            return
        with first:
            if not written:
                recorder.claim()
                if fresh and outputs is not None:
                    outputs.clear_path()
                written.append(True)

    models = [Model.load(outputs.path_point(k)) for k in range(len(points))] if outputs is not None else []
    starts: list[np.ndarray | None] = [None] * len(members)
    if points and outputs is not None:
        last = len(points) - 1
        starts = [model_coef(Model.load(outputs.path_point(last) / f"fold-{k}")) for k in range(n_folds)]
        starts.append(model_coef(models[-1]))
    unfinished = len(points)
    fold_rows: list[int] = []

    def named(k: int) -> str:
        """Point ``k`` as the user finds it: its folder (numbered from 0), or without one its rank."""
        return f"{PATH_DIR}/{k:03d}" if outputs is not None else f"strength {k + 1}"

    for k, penalty in list(enumerate(penalties(config.penalty, grid)))[len(points) :]:
        recorder.note(f"path point {named(k)} of {len(grid)}: l2={penalty.l2!r} l1={penalty.l1!r}")
        # a resumed job's unfinished point: each fit from its own last state (any
        # state of a fit ends where the fit would have: the same bytes)
        states = [
            point_state(outputs, k, m) if resumed and outputs is not None and k == unfinished else None
            for m in range(len(members))
        ]
        if any(state is not None for state in states):
            resumed_fits = sum(state is not None for state in states)
            recorder.note(f"path point {named(k)}: {resumed_fits} fit(s) resumed from their states")
        jobs = []
        for m, (member, start, ready, state) in enumerate(zip(members, starts, prepared, states)):
            shown = member is every_row  # (progress, the job's checkpoint and history: the fit on every row's)
            keep = point_saver(
                outputs, k, m, config.checkpoint_every, recorder.on_state if shown else None, first_write
            )
            options = {**common, "on_state": keep, **({} if shown else {"progress": None})}
            call = functools.partial(fit, member, penalty=penalty, init=start, prepared=ready, resume=state, **options)
            jobs.append(functools.partial(in_fold, call, m, n_folds))
        fits = lockstep.run(jobs) if lockstep is not None else [jobs[0]()]
        cv_losses = held_out_losses(lockstep, members, fits) if lockstep is not None else None
        cv_loss, cv_std = fold_summary(cv_losses) if cv_losses is not None else (None, None)
        result = fits[-1]
        model = describe(result, penalty)
        weights = np.asarray(model.coef, dtype=np.float64)
        points.append(
            PathPoint(
                k,
                grid[k],
                penalty.l2,
                penalty.l1,
                model.loss,
                model.validation_loss,
                int(np.count_nonzero(weights)),
                model.n_iter,
                model.n_passes,
                model.converged,
                model.digest,
                cv_losses,
                cv_loss,
                cv_std,
            )
        )
        models.append(model)
        if outputs is not None:
            first_write()
            model.save(outputs.path_point(k))
            recorder.on_point(outputs.path_point(k))
            for state_file in outputs.path_point(k).glob("state-*.npz"):
                state_file.unlink()
            if lockstep is not None and not fold_rows:  # (each fold's training rows, counted once)
                fold_rows = [lockstep.fold_stats().training(fold).n_samples for fold in range(n_folds)]
            for fold, fold_fit in enumerate(fits[:-1]):
                describe(fold_fit, penalty, n_samples=fold_rows[fold]).save(outputs.path_point(k) / f"fold-{fold}")
            chosen = choose(points, config.cv_rule)
            document = path_document(points, chosen, alpha, config.path_ratio, config.cv_rule)
            write_atomic(outputs.path_summary, document.encode())
        if cv_loss is not None:
            recorder.note(f"cross-validation loss {cv_loss!r} (std {cv_std!r} over {n_folds} folds)")
        starts = [fit_result.coef for fit_result in fits]
    chosen = choose(points, config.cv_rule)
    recorder.on_chosen(models[chosen], outputs.path_point(chosen) if outputs is not None else None)
    if lockstep is not None:
        recorder.note(f"cross-validation: {lockstep.n_passes} cross-validation passes over the data")
    recorder.note(
        f"chosen: {named(chosen)} of {len(points)} strengths (l2={points[chosen].l2!r} "
        f"l1={points[chosen].l1!r}, {points[chosen].n_nonzero} non-zero weights)"
    )
    return models[chosen], points


def point_state(outputs: OutputDir, point: int, member: int) -> FitState | None:
    """The last state a path point's fit number ``member`` saved (None: none,
    or one that cannot be read: that fit starts over, to the same bytes)."""
    path = outputs.path_point(point) / f"state-{member}.npz"
    if not path.exists():
        return None
    try:
        return load_checkpoint(path)[0]
    except PipelineError:
        return None


def in_fold(call: Callable[[], T], member: int, n_folds: int) -> T:
    """``call()``, whose refusal of what a fold's training rows hold (a single
    class, a column missing in every one of them, ...) names its fold when
    ``member`` is one (members ``0 .. n_folds-1``; ``n_folds`` is every row's fit)."""
    try:
        return call()
    except PipelineError as exc:
        if member >= n_folds or getattr(exc, "fold", None) is not None:
            raise
        if isinstance(exc, LabelValueError) and exc.weightless:
            raise exc.in_fold(member, n_folds) from None
        raise exc.in_fold_rows(member, n_folds) from None


def point_saver(
    outputs: OutputDir | None,
    point: int,
    member: int,
    every: int,
    then: Callable[[FitState], None] | None,
    first_write: Callable[[], None] = lambda: None,
) -> Callable[[FitState], None] | None:
    """The ``on_state`` of a path point's fit: its state saved every ``every``
    iterations in ``path/NNN/state-M.npz`` (for a resume), then ``then``;
    ``first_write`` before anything is written."""
    if outputs is None:
        return then

    def keep(state: FitState) -> None:
        first_write()
        if state.solver_state.n_iter % every == 0:
            path = outputs.path_point(point) / f"state-{member}.npz"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(path, state, {"point": point, "member": member})
        if then is not None:
            then(state)

    return keep


def held_out_losses(lockstep: Lockstep, members: Sequence[Evaluator], fits: Sequence[Fit]) -> list[float]:
    """Each fold's fit's unpenalized mean loss on its fold's rows: one pass."""
    batch = []
    for member, fold_fit in zip(members[:-1], fits[:-1]):
        assert isinstance(member, MemberEvaluator)
        spec = fold_fit.objective(member).spec  # (the penalty is not in the pass)
        batch.append((member.held_out(spec), fold_fit.result.coef))
    losses = []
    for fold, partials in enumerate(lockstep.evaluate_many(batch)):
        loss_sum, _, weight_sum = partials.finalize()
        if not weight_sum > 0:
            raise EmptyDatasetError(
                f"fold {fold} of {len(batch)} has no rows (or no weight) to validate on (found weight "
                f"{weight_sum!r}); expected every fold to hold rows: use fewer folds (--cv)"
            )
        losses.append(loss_sum / weight_sum)
    return losses


def null_gradient(evaluator: Evaluator, prepared: Prepared, n_classes: int, label: str | None = None) -> np.ndarray:
    """The mean loss's gradient at the intercept-only optimum, in original
    units (:func:`pipeline.paths.null_intercepts`; two loss passes)."""
    objective = prepared.objective(evaluator, Penalty(), n_classes)
    if prepared.summary is None and not n_classes:  # (else the statistics pass checked the labels)
        objective.at_zero = both_labels_at_zero(evaluator, label)
    n_blocks = max(n_classes, 1)
    coef = np.zeros_like(objective.l1_weights)  # (a coefficient per feature or level, and an intercept, per class)
    _, at_zero = objective(coef)
    blocks = coef.reshape(n_blocks, -1)
    blocks[:, -1] = null_intercepts(at_zero, n_classes)
    _, grad = objective(blocks.ravel())
    return grad if prepared.standardization is None else prepared.standardization.gradient_to_original(grad)


def model_coef(model: Model) -> np.ndarray:
    """A model's coefficients in :class:`~pipeline.fitting.Fit`'s layout: ``[w, b]``, a block per class."""
    return np.column_stack([model.coef_array.reshape(-1, len(model.features)), np.reshape(model.intercept, -1)]).ravel()


def completed_points(outputs: OutputDir, grid: Sequence[float], n_folds: int = 0) -> list[PathPoint]:
    """The points of ``path/path.json`` that a resumed path keeps: those of
    the same strengths, in order, whose models (and ``n_folds`` folds'
    models) are intact."""
    try:
        document = json.loads(outputs.path_summary.read_text())
        listed = [PathPoint.from_json(point) for point in document["points"]]
    except (OSError, ValueError, TypeError, KeyError):
        return []
    kept: list[PathPoint] = []
    for k, point in enumerate(listed):
        if k >= len(grid) or point.index != k or point.strength != grid[k]:
            break
        try:
            if Model.load(outputs.path_point(k)).digest != point.digest:
                break
            for fold in range(n_folds):
                Model.load(outputs.path_point(k) / f"fold-{fold}")
        except PipelineError:
            break
        if n_folds and (point.cv_losses is None or len(point.cv_losses) != n_folds):
            break
        kept.append(point)
    return kept


def check_inference_possible(config: TrainConfig, n_classes: int, dataset: Dataset) -> None:
    """Inference asked for a fit that has none is refused before any loss pass."""
    if config.inference == "none":
        return
    reason = refusal(
        l1=config.penalty.l1,
        n_classes=n_classes,
        categorical=[vocabulary.column for vocabulary in dataset.vocabularies or ()],
        class_weight=config.class_weight is not None,
    )
    if reason is not None:
        raise ConfigError(f"inference: {reason}", column="inference")


def learn_classes(
    config: TrainConfig, dataset: Dataset, split: Split | None, client: Any, notify: Notify
) -> tuple[Dataset, int, list[float] | None]:
    """``(dataset, n_classes, class_totals)``: the label's classes, from one
    pass over the training part of ``split`` that reads only the label (and the
    split's key), the counts merged here (any order gives the same sorted classes).

    A numeric label is read as 0/1 (a value outside {0, 1} is an error
    naming its row), without the pass, with the ``binomial`` family, or with
    ``auto`` when the Parquet statistics show it within [0, 1].
    Two classes make the binomial model (``y`` = 1 for the second class;
    ``n_classes`` 0), more the multinomial one (``n_classes`` K, refused
    for ``binomial``); one class, more than ``max_classes`` or a null label
    is an error.  ``class_totals``: each class's rows, or with a weight
    column its weights' exact sum (for ``class_weight="balanced"``)."""
    label = dataset.label
    assert label is not None
    zero_one = dataset.label_range is not None and 0.0 <= dataset.label_range[0] <= dataset.label_range[1] <= 1.0
    if dataset.class_kind != "str" and (config.family == "binomial" or (config.family == "auto" and zero_one)):
        return dataset, 0, None  # a numeric label's 0/1 contract: each value checked where it is read
    started = time.perf_counter()
    counter = dataset.with_split(split).class_counter
    totals = LevelCounts()
    weighted: dict[Any, ExactSums] = {}
    for part, sums in _per_chunk(config, dataset, client, functools.partial(class_counts, counter)):
        totals = totals.merge(part)
        for value, more in sums.items():
            weighted[value] = weighted[value].merge(more) if value in weighted else more
    if totals.nulls:
        raise MissingValueError(
            f"label column {label!r} has {totals.nulls} null value(s) in the training rows; "
            "expected a class in every row",
            path=dataset.url,
            column=label,
        )
    classes = sorted(totals.counts)
    shown = ", ".join(repr(value) for value in classes[:10]) + (", ..." if len(classes) > 10 else "")
    if len(classes) < 2:
        raise LabelValueError(
            f"label column {label!r} has a single class ({shown}) in its {sum(totals.counts.values())} "
            "training rows; expected at least 2 classes (logistic regression has no finite optimum otherwise)",
            path=dataset.url,
            column=label,
        )
    if len(classes) > config.max_classes:
        raise LabelValueError(
            f"label column {label!r} has {len(classes)} classes ({shown}); expected at most "
            f"max_classes = {config.max_classes} (raise it, --max-classes or data.max_classes in a job file, "
            "if they are classes; or check the label)",
            path=dataset.url,
            column=label,
        )
    if config.family == "binomial" and len(classes) != 2:
        raise LabelValueError(
            f"label column {label!r} has {len(classes)} classes ({shown}); the binomial family needs "
            "exactly 2 (family multinomial or auto: --family, or data.family in a job file)",
            path=dataset.url,
            column=label,
        )
    n_classes = 0 if len(classes) == 2 and config.family != "multinomial" else len(classes)
    notify(f"classes of {label!r}: {len(classes)} ({shown}) ({time.perf_counter() - started:.1f} s)")
    warn_single_row_classes(label, classes, [totals.counts[value] for value in classes], stacklevel=3)
    if n_classes == 0 and classes == [0, 1] and dataset.class_kind != "str":
        return dataset, 0, None  # a 0/1 label: read as it is (the same codes)
    if dataset.weight:
        class_totals = [float(weighted[value].finalize()[0]) for value in classes]
    else:
        class_totals = [float(totals.counts[value]) for value in classes]
    return dataset.with_classes(classes), n_classes, class_totals


def class_counts(counter: ClassCounter, chunk: ChunkSpec) -> tuple[LevelCounts, dict[Any, ExactSums]]:
    """One chunk's part of the classes pass: the rows of each label value and,
    with a weight column, their weights' exact sum (merged in any order)."""
    values, weights = counter.read(chunk)
    rows = value_counts(values)
    if weights is None:
        return rows, {}
    present = pc.is_valid(values).to_numpy(zero_copy_only=False)
    distinct, codes = np.unique(values.to_numpy(zero_copy_only=False)[present], return_inverse=True)
    return rows, dict(zip(distinct.tolist(), class_sums(codes, weights[present], len(distinct))))


def learn_missing(config: TrainConfig, dataset: Dataset, client: Any, notify: Notify) -> Dataset:
    """``dataset`` with its missing-value indicators settled: the columns whose
    missing values the Parquet footers do not count (NaN with
    ``nan_as_missing``, or no statistics) are counted in one pass that reads
    only them, and those without any get no indicator -- so the features
    depend on the values only (the same as the estimator's on the same table)."""
    if not dataset.uncertain_missing or not dataset.indicators:
        return dataset
    started = time.perf_counter()
    counter = dataset.missing_counter
    parts = _per_chunk(config, dataset, client, counter)
    counts = {name: sum(part[name] for part in parts) for name in counter.columns}
    settled = dataset.with_missing(counts)
    notify(
        f"missing values counted in {len(counts)} column(s): {len(settled.indicators)} indicator(s) "
        f"({time.perf_counter() - started:.1f} s)"
    )
    return settled


def _per_chunk(config: TrainConfig, dataset: Dataset, client: Any, task) -> list:
    """``task(chunk)`` for every chunk, in canonical order: tasks on the
    cluster (stall-watched), or here without a client."""
    if client is None:
        return [task(chunk) for chunk in dataset.chunks]
    stall = (config.cluster or ClusterSpec()).stall_timeout_s
    return gather(client, [client.submit(task, chunk, pure=False) for chunk in dataset.chunks], stall)


def check_feature_names(dataset: Dataset) -> None:
    """The model's feature names must be distinct (a column named ``c=a`` and
    column ``c``'s level ``a``, or ``x=<missing>`` and ``x``'s indicator, are not)."""
    names = dataset.feature_names
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise ConfigError(
            f"feature names {repeated[:10]} occur more than once (a column's name equals a level's "
            "'column=value' or an indicator's 'column=<missing>'); rename the column or leave it out"
        )


def hashed_columns(config: TrainConfig, dataset: Dataset) -> set[str]:
    """The categorical columns ``config`` hashes (:func:`hashed_of`)."""
    return hashed_of(
        dataset.categorical,
        config.hash_buckets,
        config.hashed,
        config.min_category_count,
        config.max_categories,
        "--hashed; hashed in a job file",
    )


def hashed_of(
    categorical: Sequence[str],
    hash_buckets: int | None,
    hashed: Sequence[str] | None,
    min_category_count: int,
    max_categories: int | None,
    naming: str,
) -> set[str]:
    """The ``categorical`` columns that ``hash_buckets`` hashes: ``hashed``, or
    every one (None).  A ConfigError names any ``hashed`` column that is not
    one of them (a numeric one, one left out of the features, or none at
    all), and a level policy that would choose no column's levels (every one
    hashed); ``naming``: how the caller names the columns to hash."""
    if not hash_buckets:
        return set()
    chosen = set(hashed if hashed is not None else categorical)
    unknown = sorted(chosen - set(categorical))
    if unknown:
        raise ConfigError(
            f"hashed columns {unknown} are not categorical features of the fit; expected some of {list(categorical)}",
            column="hashed",
        )
    policy = [name for name, _ in level_settings_given(None, min_category_count, max_categories)]
    if policy and categorical and chosen == set(categorical):  # (it would do nothing)
        raise ConfigError(
            f"{policy[0]} chooses the levels of a column that is not hashed; found every categorical column "
            f"hashed ({sorted(chosen)}): name the columns to hash ({naming}), or leave this policy out",
            column=policy[0],
        )
    return chosen


def level_settings_given(
    hash_buckets: int | None, min_category_count: int, max_categories: int | None
) -> list[tuple[str, object]]:
    """``(name, value)`` of each level setting given, that is, not at its
    default (no hashing, every level counted once or more, no level cap)."""
    return [
        (name, value)
        for name, value, default in (
            ("hash_buckets", hash_buckets, None),
            ("min_category_count", min_category_count, 1),
            ("max_categories", max_categories, None),
        )
        if value != default
    ]


def warn_unused_level_settings(
    hash_buckets: int | None, min_category_count: int, max_categories: int | None, stacklevel: int = 2
) -> None:
    """A :class:`DataWarning` naming the level settings a fit without
    categorical features was given: they do nothing (hashing, and the level
    policy, act on categorical columns only)."""
    settings = level_settings_given(hash_buckets, min_category_count, max_categories)
    given = [f"{name}={value}" for name, value in settings]
    if given:
        warnings.warn(
            f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} nothing: the fit has no categorical "
            "features (text, dictionary or named categorical columns); leave the setting out, or name the "
            "categorical columns",
            DataWarning,
            stacklevel=stacklevel + 1,
        )


def learn_levels(config: TrainConfig, dataset: Dataset, client: Any, notify: Notify) -> Dataset:
    """``dataset`` with its categorical columns' levels (:mod:`pipeline.levels`):
    one pass that reads only those columns, a task per chunk (in this process
    without a client), the counts merged here in canonical order (any order
    gives the same levels)."""
    if not dataset.categorical:
        return dataset
    started = time.perf_counter()
    hashed = hashed_columns(config, dataset)
    counter = dataset.level_counter
    counter = dataclasses.replace(counter, columns=tuple(c for c in counter.columns if c[0] not in hashed))
    parts = _per_chunk(config, dataset, client, counter) if counter.columns else []  # (all hashed: no pass)
    totals = merge_counts(parts)
    vocabularies = [
        Vocabulary.hashed(name, kind, config.hash_buckets)
        if name in hashed and config.hash_buckets
        else vocabulary(name, kind, totals.get(name, LevelCounts()), config.min_category_count, config.max_categories)
        for name, kind in zip(dataset.categorical, dataset.level_kinds)
    ]
    sizes = ", ".join(f"{v.column} {v.size}" for v in vocabularies)
    notify(f"levels of {len(vocabularies)} categorical column(s): {sizes} ({time.perf_counter() - started:.1f} s)")
    return dataset.with_vocabularies(vocabularies)


def open_configured(config: TrainConfig) -> Dataset:
    """The training data of ``config``, opened and checked from metadata."""
    if config.cluster is not None:
        check_workers_can_read(config.data)
    return open_dataset(
        config.data,
        config.label,
        config.features,
        config.weight,
        missing=config.missing,
        nan_as_missing=config.nan_as_missing,
        categorical=config.categorical or (),
        exclude=(config.validation_key,) if config.validation_key else (),
    )


class _Checked:
    """An evaluator that calls ``check`` before every pass (a job's cancel request)."""

    def __init__(self, evaluator: Evaluator, check: Callable[[], None]) -> None:
        self.evaluator = evaluator
        self.check = check
        self.n_features = evaluator.n_features

    def partials(self, coef, spec=KernelSpec()):
        self.check()
        return self.evaluator.partials(coef, spec)

    def stats(self, categories=None):
        self.check()
        return self.evaluator.stats(categories)

    def fold_stats(self, n_folds: int, categories=None):
        self.check()
        return self.evaluator.fold_stats(n_folds, categories)  # type: ignore[attr-defined]


def _kernel_facts(evaluator: Evaluator) -> dict | None:
    """The kernel fingerprint the cluster's workers shared (None in-process)."""
    check = getattr(evaluator, "workers_check", None)
    if check is None or check.reference is None:
        return None
    return {"fingerprint": check.reference, "workers": sorted(check.fingerprints)}


@contextlib.contextmanager
def evaluators(
    config: TrainConfig, parts: Parts, notify: Notify, client=None
) -> Iterator[tuple[Evaluator, Evaluator | None, CacheMode]]:
    """The evaluators of ``parts`` (training, and validation or None) and the
    cache mode that holds their chunks between passes.

    ``client``: a connected ``distributed.Client``, or None for the in-process
    path.  With a validation split, the training evaluator sees the training
    rows (the others weigh 0) and the validation one the held-out rows; in
    memory they share the decoded features and labels.
    """
    dataset, validation = parts
    held_out: Evaluator | None = None
    # small data start on the reference passes (the same bits), large data
    # compile (or load) the kernels first (pipeline.tiers)
    ahead = worth_compiling(dataset.n_samples * dataset.n_features)
    if client is None:
        # the memory and disk caches as on a cluster, in this process's memory (the data may be larger)
        mode, reason = choose_cache(
            config.cache, dataset.decoded_bytes, process_memory(), config.memory_fraction, here=True
        )
        notify(f"cache: {mode} (in-process; {reason})")
        if ahead:  # one process: the kernels compile at their first call
            compile_ahead()
        if mode == "memory":
            started = time.perf_counter()
            chunks = dataset.read_chunks()
            notify(loaded_note(dataset, "memory", started))
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
            cache = DiskCache.for_data(dataset, scratch) if mode == "disk" else None
            held_out = (
                None
                if validation is None
                else StreamingEvaluator(
                    None, validation, None if cache is None else DiskCache.for_data(validation, scratch)
                )
            )
            yield StreamingEvaluator(None, dataset, cache), held_out, mode
        return
    workers, memory = cluster_memory(client)
    mode, reason = choose_cache(config.cache, dataset.decoded_bytes, memory, config.memory_fraction, len(workers))
    notify(f"cache: {mode} ({reason})")
    stall = (config.cluster or ClusterSpec()).stall_timeout_s
    compiling = warm_up_kernels(config, dataset, client, workers) if ahead else []  # noqa: F841 - held until the first pass
    if mode == "memory":
        started = time.perf_counter()
        training = DaskEvaluator.from_dataset(client, dataset, workers, stall_timeout_s=stall)
        training.load()
        notify(loaded_note(dataset, f"the memory of {len(workers)} worker(s)", started))
        held_out = None if validation is None else training.with_weights(validation)
        yield training, held_out, mode
        return
    caches = [] if mode == "none" else [DiskCache.for_data(dataset)]
    held_out = None
    if validation is not None:
        if mode == "disk":
            caches.append(DiskCache.for_data(validation))
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


def warm_up_kernels(config: TrainConfig, dataset: Dataset, client, workers: Sequence[str]) -> list:
    """:func:`pipeline.reduce.warm_up` for ``config``'s fit on ``dataset``:
    the passes of the solver it starts with, for dense binary fits only
    (categorical and multinomial fits compile theirs at their first call)."""
    # auto starts with L-BFGS unless an L1 term makes it Newton (a hand-over
    # to Newton loads or compiles the Hessian pass then)
    solver: str = config.solver
    if solver == "auto":
        solver = "lbfgs" if dataset.categorical else auto_start(dataset.n_features, config.penalty.l1 > 0)
    dense_binary = not dataset.categorical and len(dataset.classes) <= 2 and config.family != "multinomial"
    return warm_up(
        client,
        workers,
        dataset.n_features,
        standardize=config.standardize,
        weighted=dataset.reader.has_weights,
        class_weighted=config.class_weight is not None,
        hessian=solver == "newton" or config.inference != "none",
        # every fit runs loss passes (Newton's predicted last step too)
        gradient=True,
        dtype=dataset.feature_dtype,
        passes=dense_binary,
    )


def loaded_note(dataset: Dataset, where: str, started: float) -> str:
    """The note once every chunk is decoded into ``where`` (timed from ``started``)."""
    return (
        f"loaded {dataset.n_samples} rows ({dataset.decoded_bytes / 2**30:.2f} GiB decoded, "
        f"{dataset.feature_dtype} features) "
        f"into {where} in {time.perf_counter() - started:.1f} s"
    )


def validation_split(config: TrainConfig, dataset: Dataset) -> Split | None:
    """The training part of ``config``'s validation split (None: no split),
    its key column checked in every file first."""
    key = config.validation_key
    if key and (config.validation_fraction or config.cv):  # (the key cuts the folds too)
        kinds, lacking = split_key_kinds(dataset.filesystem, dataset.files, key)
        if lacking:  # (the first file without it, in the dataset's order)
            path, names = next(iter(lacking.items()))
            raise ColumnNotFoundError(
                f"validation key column {key!r} not found in {path}; found columns {names}", path=path, column=key
            )
        first = dataset.files[0]
        other = next((path for path in dataset.files if kinds[path] != kinds[first]), None)
        if other is not None:  # (1 and 1.0 hash apart: one id would land in both parts)
            raise ColumnTypeError(
                f"validation key column {key!r} holds {kinds[first]} values in {first} and {kinds[other]} values "
                f"in {other}; expected one type in every file (a split by value hashes each type apart)",
                path=other,
                column=key,
            )
    if not config.validation_fraction:
        return None
    return Split(config.validation_fraction, key)


def split_parts(dataset: Dataset, split: Split | None) -> Parts:
    """``(training, validation or None)``: the dataset seen through ``split``."""
    if split is None:
        return dataset, None
    return dataset.with_split(split), dataset.with_split(dataclasses.replace(split, part="validation"))


def resolve_class_weight(
    weights: str | tuple[float, ...] | Mapping[Any, float] | None, n_classes: int, dataset: Dataset
) -> str | tuple[float, ...] | None:
    """Explicit class weights as one per class (``n_classes``; label 0 and
    label 1 for a 0/1 label) in the classes' sorted order.  A mapping is keyed
    by the classes: their values, or their text (``"spam"``, ``"3"``, ``"0.5"``:
    the command line's and a job file's keys); every class needs a weight and
    every key must name a class."""
    classes = list(dataset.classes) or [0, 1]  # (a 0/1 label is read as it is)
    if isinstance(weights, Mapping):
        by_class: dict[Any, float] = {}
        unknown = []
        for key, value in weights.items():
            named = [c for c in classes if _names_class(key, c)] or [
                c for c in classes if _names_class(key, c, float32=True)
            ]
            if not named or named[0] in by_class:
                unknown.append(key)
            else:
                by_class[named[0]] = value
        if unknown or len(by_class) != len(classes):
            shown = repr(classes) if len(classes) <= 10 else repr(classes[:10])[:-1] + ", ...]"
            raise ConfigError(
                f"class_weight keys must be the classes of label {dataset.label!r}, {shown}, each once; "
                f"found {list(weights)!r}",
                column="class_weight",
            )
        return tuple(float(by_class[c]) for c in classes)
    if not isinstance(weights, tuple) or len(weights) == n_classes:
        return weights
    shown = ", ".join(repr(value) for value in dataset.classes[:10]) or "label 0, label 1"
    raise ConfigError(
        f"class_weight has {len(weights)} weights; expected {n_classes}, one per class of "
        f"{dataset.label!r} in sorted order ({shown})",
        column="class_weight",
    )


def check_resumed_class_weight(resume: FitState | None, weights: Any) -> None:
    """A resumed fit keeps its checkpoint's class weights: explicit ones,
    resolved now (``0:1,1:5`` and ``1,5`` alike), must be the same numbers."""
    if resume is None or not isinstance(weights, tuple) or resume.class_weight is None:
        return
    if tuple(resume.class_weight) != weights:
        raise CheckpointError(
            f"the checkpoint was written with other class weights ({list(resume.class_weight)!r} -> "
            f"{list(weights)!r}); resume with the original options, or start a new job (--overwrite, or "
            "another output directory)"
        )


def _names_class(key: Any, value: Any, float32: bool = False) -> bool:
    """Whether a class-weight key names the class ``value``: the value itself,
    or its text (a number's as the number it reads as: an integer exactly;
    ``false``/``true`` for 0 and 1); with ``float32``, a number's text also
    at float32's precision, where a float32 label's classes are (a fallback:
    an exact match comes first)."""
    if not isinstance(key, str):
        return not isinstance(value, str) and bool(key == value)
    if isinstance(value, str):
        return key == value
    text = key.strip().lower()
    if text in ("false", "true"):
        return value == (text == "true")
    try:
        return int(text) == value
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return False
    if not float32:
        return number == value
    with np.errstate(over="ignore"):  # (a number beyond float32's range is no float32 class)
        return isinstance(value, float) and float(np.float32(number)) == value


#: What a worker holds besides the data (Python, numpy, pyarrow, distributed,
#: numba and the compiled kernels: ~230 MiB measured, docs/cluster.md; and
#: the Parquet reader's buffers and a pass's temporaries)
WORKER_OWN_BYTES = 300 * 2**20


def choose_cache(
    requested: CacheMode, needed: int, memory: int | None, fraction: float, n_workers: int = 0, *, here: bool = False
) -> tuple[CacheMode, str]:
    """``(mode, reason)``: ``auto`` takes ``memory`` when the decoded data fits
    in ``fraction`` of the workers' total ``memory`` less what each of the
    ``n_workers`` holds of its own (:data:`WORKER_OWN_BYTES`: at the smallest
    limits, half of the whole limit was more than a worker had for data, and
    the workers died in the first pass).  ``here``: the memory is this
    process's (in-process: :func:`pipeline.cluster.process_memory`), which
    holds as much of its own as a worker."""
    size = f"{needed / 2**30:.2f} GiB decoded"
    if memory is None:
        budget_text = "cluster memory unknown (a worker has no memory limit)"
        fits = requested == "memory"
    else:
        owners = 1 if here else n_workers  # (what holds memory of its own: this process, or each worker)
        usable = max(memory - owners * WORKER_OWN_BYTES, 0)
        budget = usable * fraction
        fits = needed <= budget
        own = f"{WORKER_OWN_BYTES // 2**20} MiB"
        budget_text = (
            f"{fraction:.0%} of {usable / 2**30:.2f} GiB of this process's memory "
            f"({memory / 2**30:.2f} GiB less {own} of its own)"
            if here
            else f"{fraction:.0%} of {usable / 2**30:.2f} GiB worker memory"
            + (f" ({memory / 2**30:.2f} GiB less {own} per worker of its own)" if n_workers else "")
        )
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


#: feature names a message quotes from a list (hashed columns have up to 2**24 levels)
SHOWN_FEATURES = 8


def feature_difference(found: list[str], expected: list[str]) -> str:
    """How feature list ``found`` differs from ``expected``, in a line: both
    lists where they are short, else their lengths, the first position where
    they differ and a few names only one of them has."""
    if len(found) + len(expected) <= 2 * SHOWN_FEATURES:
        return f"features {found}; expected the training features {expected}"
    at = next((k for k, (a, b) in enumerate(zip(found, expected)) if a != b), min(len(found), len(expected)))

    def only(names: list[str], other: set[str]) -> str:
        first = list(itertools.islice((name for name in names if name not in other), SHOWN_FEATURES + 1))
        return f"{first[:SHOWN_FEATURES]}{' ...' if len(first) > SHOWN_FEATURES else ''}" if first else "none"

    def name(names: list[str]) -> str:
        return repr(names[at]) if at < len(names) else "its end"

    return (
        f"{len(found)} features; expected the training's {len(expected)}, which differ from position {at} "
        f"({name(found)} where the training has {name(expected)}); only in the model: "
        f"{only(found, set(expected))}, only in the training: {only(expected, set(found))}"
    )


def initial_coef(
    init: str | None, features: Sequence[str], classes: Sequence = (), multinomial: bool = False
) -> np.ndarray | None:
    """The coefficients of the model in ``init`` as the fit's starting point:
    a model of the same family, features and classes (``classes``: the
    training label's, empty for a 0/1 label read as it is; a binary model's
    coefficients are the log-odds of its second class, so that class must
    be the training's too)."""
    if init is None:
        return None
    model = Model.load(init)
    if list(model.features) != list(features):
        raise ConfigError(
            f"init model in {init} has {feature_difference(list(model.features), list(features))} "
            "(same names, same order)",
            column="init",
        )
    expected = list(classes) or [0, 1]
    if model.multinomial != multinomial or model.class_labels != expected:
        kind = f"of classes {model.classes}" if model.classes else "of a 0/1 label"
        wanted = f"of the training classes {expected}" if classes else "of the training's 0/1 label"
        raise ConfigError(
            f"init model in {init} is a {model.family} model {kind}; expected a "
            f"{'multinomial' if multinomial else 'binomial'} model {wanted}",
            column="init",
        )
    if multinomial:
        return np.column_stack([model.coef_array, model.intercept]).ravel()
    return np.append(model.coef_array, model.intercept)
