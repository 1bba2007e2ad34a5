"""The one fit: statistics pass, objective and solver on any evaluator, and
the model it gives.

:func:`fit` runs on an :class:`~pipeline.objective.Evaluator` (in-process
chunks, a Dask cluster, a stream of row groups) and returns a :class:`Fit`
in original feature units; :class:`FitState` is what a checkpoint keeps of
a fit in progress; :func:`build_model` turns a :class:`Fit` into a
:class:`~pipeline.model.Model`.  Orchestration (datasets, clusters, output
files, jobs) lives above, in :mod:`pipeline.train` and :mod:`pipeline.jobs`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

import numpy as np

from .errors import (
    ConfigError,
    ConvergenceWarning,
    DataWarning,
    EmptyDatasetError,
    LabelValueError,
    MissingValueError,
    NonFiniteValueError,
    PipelineError,
    SeparationWarning,
    WeightValueError,
    require_flag,
)
from .exact import fsum
from .inference import DEFAULT_CONFIDENCE, MAX_NEWTON_STEPS, Inference, infer, refusal
from .kernel import Categories, level_top
from .levels import Vocabulary
from .model import CLASSES_FORMAT, INFERENCE_FORMAT, PLAIN_BINARY_FORMAT, RESTORED_FORMAT, SEPARATED_FORMAT, Model
from .objective import (
    DataSummary,
    Evaluator,
    LogisticObjective,
    Penalty,
    Standardization,
    balanced_class_weight,
    summarize,
)
from .reduce import InProcessEvaluator
from .solvers import (
    HAND_OVER_NEWTON_ITERATIONS,
    IterationRecord,
    SolverOptions,
    SolverResult,
    SolverState,
    gradient_descent,
    hand_over_to_newton,
    hessian_pass_cost,
    lbfgs,
    newton,
)

__all__ = [
    "AUTO_NEWTON_MAX_FEATURES",
    "HANDED_OVER",
    "BestIterate",
    "Fit",
    "FitState",
    "Prepared",
    "Progress",
    "auto_solver",
    "auto_start",
    "build_model",
    "check_two_classes",
    "fit",
    "kernel_fill",
    "prepare",
    "train_arrays",
    "with_inference",
]

#: receives each iteration's record (passes and seconds of the whole fit)
Progress = Callable[[IterationRecord], None]


@dataclass(frozen=True, eq=False)
class Fit:
    """A solver's result mapped back to original feature units."""

    result: SolverResult
    coef: np.ndarray  # original units, intercept last
    gradient: np.ndarray  # of the smooth objective, original units
    n_passes: int  # statistics pass included
    standardization: Standardization | None
    class_weight: tuple[float, ...] | None
    summary: DataSummary | None
    #: validation loss per history record (empty without a validation set)
    validation_loss: tuple[float, ...] = ()
    #: the solver that ran (``auto`` resolved)
    solver: str = ""
    #: per column, the value of a missing one (None: no imputation)
    fill: np.ndarray | None = None
    #: per column, its missing values (int64; None: not counted)
    n_missing: np.ndarray | None = None
    #: the categorical columns' levels (None: none)
    categories: Categories | None = None
    #: 0: the binary model; K: the multinomial one (``coef``: K blocks ``[w_k, b_k]``)
    n_classes: int = 0
    #: coefficient inference at the optimum (:func:`with_inference`; None: not asked for)
    inference: Inference | None = None
    #: the penalty it was fitted with
    penalty: Penalty = Penalty()
    #: passes of the inference (its Newton steps included), counted in ``n_passes``
    inference_passes: int = 0
    #: the classes ended (nearly) separated (:func:`separated`; warned about)
    separated: bool = False
    #: ``coef`` is this iteration's, the least validation loss (``restore_best``); None: the last one's
    restored_iteration: int | None = None

    def objective(self, evaluator: Evaluator) -> LogisticObjective:
        """The objective of this fit on ``evaluator`` (its loss pass's :class:`KernelSpec`)."""
        level_share = None  # (the preconditioner's only)
        return LogisticObjective(
            evaluator,
            self.penalty,
            self.standardization,
            self.class_weight,
            kernel_fill(self.fill, self.n_missing),
            self.categories,
            level_share,
            self.n_classes,
        )


#: this package's directory: the frames :func:`outside_level` passes over
_PACKAGE = os.path.dirname(__file__) + os.sep  # (as the package's frames name their files)


def outside_level() -> int:
    """The ``stacklevel`` of a warning made by this function's caller that
    names the first frame outside this package: the user's own call (an
    estimator's ``fit``, however deep in the package the fit was reached
    from), so that filters by module and Python's once-per-location rule apply
    to the caller's code, not to a line of ``pipeline``."""
    frame: FrameType | None
    level, frame = 2, sys._getframe(2)  # (0: this function, 1: the one that warns)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back
    return level


def kernel_fill(fill: np.ndarray | None, n_missing: np.ndarray | None) -> np.ndarray | None:
    """The loss passes' fill values: only where some value is missing (else
    they read the data in place)."""
    return fill if n_missing is not None and n_missing.any() else None


def with_inference(
    evaluator: Evaluator,
    result: Fit,
    features: Sequence[str],
    cov_type: str = "nonrobust",
    confidence: float = DEFAULT_CONFIDENCE,
) -> Fit:
    """``result`` with coefficient inference at its optimum
    (:func:`pipeline.inference.infer`: a few more passes over ``evaluator``,
    the fit's training rows), its coefficients and gradient those of the
    Newton steps that polish the solver's solution to the optimum."""
    if result.restored_iteration is not None:
        raise ConfigError(
            "inference is at the optimum; this fit's model is a restored earlier iterate (restore_best)",
            column="inference",
        )
    if not result.result.converged:
        warnings.warn(
            f"coefficient inference after a fit that did not converge ({result.result.message}): up to "
            f"{MAX_NEWTON_STEPS} Newton steps take it on; if they do not reach the optimum the standard errors "
            "are not the optimum's (raise --max-iter)",
            ConvergenceWarning,
            stacklevel=outside_level(),
        )
    reason = refusal(
        l1=result.penalty.l1,
        n_classes=result.n_classes,
        categorical=result.categories is not None,
        class_weight=result.class_weight is not None,
    )
    if reason is not None:
        raise ConfigError(reason, column="inference")
    objective = result.objective(evaluator)
    inferred = infer(
        evaluator,
        objective.spec,
        result.result.coef,
        result.standardization,
        result.penalty,
        features,
        cov_type,
        confidence,
        separated=result.separated,  # (the fit warned already)
    )
    coef, gradient = inferred.solver_coef, inferred.solver_grad
    if result.standardization is not None:
        coef = result.standardization.to_original(coef)
        gradient = result.standardization.gradient_to_original(gradient)
    return dataclasses.replace(
        result,
        coef=coef,
        gradient=gradient,
        inference=inferred.inference,
        n_passes=result.n_passes + inferred.n_passes,
        inference_passes=inferred.n_passes,
    )


@dataclass(frozen=True, eq=False)
class BestIterate:
    """The iterate of the least validation loss so far (``fit``'s
    ``restore_best``), as the solver's state held it (standardized units)."""

    #: the solver's iteration count at it (0: the starting point)
    iteration: int
    #: its validation loss
    validation_loss: float
    coef: np.ndarray
    loss: float
    grad: np.ndarray

    def improved_by(self, validation_loss: float) -> bool:
        """A later iterate of this validation loss replaces this one (the first wins a tie)."""
        return validation_loss < self.validation_loss


@dataclass(frozen=True, eq=False)
class FitState:
    """A fit in progress, as a checkpoint keeps it: the solver's state plus
    what the statistics pass gave, so a resumed fit needs no new pass."""

    solver_state: SolverState
    standardization: Standardization | None
    class_weight: tuple[float, ...] | None
    stats_passes: int
    #: seconds since the fit began (across resumes), one per history record
    elapsed_s: tuple[float, ...]
    #: validation loss at each history record (empty without a validation set)
    validation_loss: tuple[float, ...] = ()
    #: per column, the value of a missing one (None: no imputation)
    fill: np.ndarray | None = None
    #: per column, its missing values (int64; None: not counted)
    n_missing: np.ndarray | None = None
    #: the categorical columns' levels and their sums' top bin (None: none)
    categories: Categories | None = None
    #: each level's share of the rows (the preconditioner's; None: no levels)
    level_share: np.ndarray | None = None
    #: each class's total sample weight (:func:`fit_class_totals`; None: not
    #: known): a resumed fit reaches the separation verdict of the uninterrupted one
    class_totals: tuple[float, ...] | None = None
    #: with ``restore_best``: the iterate of the least validation loss so far
    best: BestIterate | None = None

    @property
    def n_passes(self) -> int:
        return self.solver_state.n_passes + self.stats_passes


def fit(
    evaluator: Evaluator,
    *,
    solver: str = "auto",
    options: SolverOptions = SolverOptions(),
    penalty: Penalty = Penalty(),
    standardize: bool = True,
    class_weight: str | tuple[float, ...] | None = None,
    init: np.ndarray | None = None,
    progress: Progress | None = None,
    features: Sequence[str] | None = None,
    resume: FitState | None = None,
    on_state: Callable[[FitState], None] | None = None,
    label: str | None = None,
    validation: Evaluator | None = None,
    early_stopping: int = 0,
    restore_best: bool = False,
    impute: bool = False,
    levels: Sequence[int] = (),
    n_classes: int = 0,
    class_totals: Sequence[float] | None = None,
    prepared: Prepared | None = None,
) -> Fit:
    """Statistics pass (when needed: :func:`prepare`), then the solver, on any evaluator.

    ``prepared``: what :func:`prepare` gave on this evaluator for the same
    options (a regularization path's fits share it): no statistics pass.

    ``solver``: ``lbfgs`` (OWL-QN with L1; preconditioned by
    :meth:`LogisticObjective.preconditioner`), ``newton`` (orthant-wise with
    L1), ``gd``, or ``auto``: up to :data:`AUTO_NEWTON_MAX_FEATURES`
    features L-BFGS handed over to Newton when its measured rate says Newton
    is cheaper (:func:`pipeline.solvers.hand_over_to_newton`; with L1, Newton
    from the start), else L-BFGS (a resumed fit goes on with the solver of its
    state); ``Fit.solver`` says which ran (last).

    ``on_state`` receives a :class:`FitState` after the starting point and
    after every iteration; ``resume`` continues from one (its statistics,
    class weights and standardization are used, ``init`` is ignored) and ends
    exactly where the uninterrupted fit would have.

    ``validation``: an evaluator of held-out rows; after the starting point and
    every iteration its unpenalized mean loss is computed (one pass over it,
    not counted in ``n_passes``) and kept in the states; ``early_stopping=k``
    stops (converged) when it has not improved for ``k`` iterations.
    ``restore_best``: the result is the iterate of the least validation loss
    (the first, on a tie; kept in the states, so a resumed fit restores the
    same one) rather than the last; the histories still cover every iteration.

    ``impute``: the features may hold missing values (NaN); the statistics
    pass counts them and each takes its column's exact mean
    (:attr:`DataSummary.fill`, kept in the states and in ``Fit.fill``).

    ``levels``: the number of levels of each categorical column, whose codes
    are the evaluator's last columns (:class:`pipeline.kernel.Categories`);
    the coefficients are then the dense columns', the levels', the
    intercept.  Levels are not standardized (a level is a 0/1 feature in
    original units) and the penalty is on their coefficients as they are;
    the statistics pass counts each level's rows, whose share shapes the
    L-BFGS preconditioner (kept in the states).  Their exact sums need a top
    bin fixed from the rows and the largest weight, so the statistics pass
    always runs; the Hessian pass
    takes dense features only, so ``auto`` is L-BFGS and ``newton`` is refused.

    ``n_classes``: 0 for the binary model; K >= 2 for the multinomial one
    (the evaluator's labels are class codes 0..K-1; the coefficients are K
    blocks ``[w_k, b_k]``, class-major).  Its K (d+1)-square Hessian is not
    computed: ``auto`` is L-BFGS (OWL-QN with L1) and ``newton`` is refused.
    The softmax is unchanged by adding one vector to every class's block, so
    the intercepts are reported centered across classes (their mean
    subtracted), and without a penalty the weights too (as Spark does); an
    L2 optimum's weights are centered already and an L1 optimum's are
    unique.  ``class_weight="balanced"`` needs ``class_totals``, the weighted
    total of each class (scikit-learn's ``S / (K S_k)``).
    """
    standardize = require_flag("standardize", standardize)
    n_columns = evaluator.n_features
    n_dense = n_columns - len(levels)
    n_coef = n_dense + int(sum(levels))
    if levels and solver in ("newton", HANDED_OVER):
        raise ConfigError(
            "the newton solver needs dense features only; with categorical columns use lbfgs (or auto)",
            column="solver",
        )
    if n_classes and solver in ("newton", HANDED_OVER):
        raise ConfigError(
            f"the newton solver is not available for the multinomial model ({n_classes} classes: its "
            f"Hessian has {n_classes * (n_coef + 1)}^2 entries); use lbfgs (or auto)",
            column="solver",
        )
    if n_classes and class_totals is not None:
        check_every_class(class_totals, label)
    if restore_best and validation is None:
        raise ConfigError("restore_best needs a validation set (its losses choose the iterate)", column="restore_best")
    started = time.perf_counter()
    elapsed: list[float]
    validation_losses: list[float]
    if resume is not None:
        prepared = Prepared(
            resume.standardization,
            resume.class_weight,
            resume.stats_passes,
            resume.fill,
            resume.n_missing,
            resume.categories,
            resume.level_share,
        )
        elapsed, validation_losses = list(resume.elapsed_s), list(resume.validation_loss)
    else:
        if prepared is None:
            try:
                prepared = prepare(
                    evaluator,
                    standardize=standardize,
                    class_weight=class_weight,
                    features=features,
                    label=label,
                    impute=impute,
                    levels=levels,
                    n_classes=n_classes,
                    class_totals=class_totals,
                )
            except (WeightValueError, EmptyDatasetError) as exc:
                if validation is None:
                    raise
                raise _empty_part("training", exc) from None
        else:
            prepared = dataclasses.replace(prepared, stats_passes=0)  # (counted where it ran)
        elapsed, validation_losses = [], []
    summary = prepared.summary
    totals = fit_class_totals(summary, class_totals, n_classes)
    if totals is None and resume is not None:  # (a resumed binary fit: the statistics pass's, kept)
        totals = resume.class_totals
    standardization, weights, stats_passes = prepared.standardization, prepared.class_weight, prepared.stats_passes
    fill, n_missing = prepared.fill, prepared.n_missing
    categories, level_share = prepared.categories, prepared.level_share
    clock_offset = elapsed[-1] if elapsed else 0.0
    objective = prepared.objective(evaluator, penalty, n_classes)
    n_blocks = max(n_classes, 1)
    coef0 = np.zeros(n_blocks * (n_coef + 1)) if init is None else np.array(init, dtype=np.float64)
    if coef0.shape != (n_blocks * (n_coef + 1),):
        raise ConfigError(
            f"the initial coefficients have {coef0.size} values; expected {n_blocks * (n_coef + 1)} "
            f"({n_blocks} x ({n_coef} features + intercept))",
            column="init",
        )
    if init is not None and standardization is not None and summary is not None:
        # a constant column's coefficient is 0 (x~ = 0 never moves it): an
        # initial value would stay, and score new rows where the column varies
        constant = [j for j in summary.constant_columns if j < n_dense]
        coef0 = coef0.reshape(n_blocks, -1).copy()
        coef0[:, constant] = 0.0
        coef0 = coef0.ravel()
    if standardization is not None:
        coef0 = standardization.to_standardized(coef0)
    if summary is None and not n_classes and resume is None and not coef0.any():
        # no statistics pass said both labels carry weight: the first pass, at
        # coef = 0, does (a class whose rows all weigh 0 was fitted to an
        # intercept of -16 and "converged")
        def count_pass() -> None:
            nonlocal stats_passes
            stats_passes += 1

        objective.at_zero = both_labels_at_zero(evaluator, label, count_pass)

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

    held_out = None if validation is None else prepared.objective(validation, Penalty(), n_classes)
    best = None if resume is None else resume.best

    def save(state: SolverState) -> None:
        nonlocal best
        if held_out is not None:
            try:
                validation_losses.append(held_out(state.coef)[0])
            except (WeightValueError, EmptyDatasetError) as exc:
                raise _empty_part("validation", exc) from None
            latest = validation_losses[-1]
            if restore_best and (best.improved_by(latest) if best is not None else not math.isnan(latest)):
                best = BestIterate(state.n_iter, latest, state.coef.copy(), state.loss, state.grad.copy())
        if on_state:
            on_state(
                FitState(
                    state,
                    standardization,
                    weights,
                    stats_passes,
                    tuple(elapsed),
                    tuple(validation_losses),
                    fill,
                    n_missing,
                    categories,
                    level_share,
                    totals,
                    best,
                )
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

    state = None if resume is None else resume.solver_state
    requested = solver
    hand_over = None
    if solver == "auto":
        # Smooth objectives: L-BFGS first; up to AUTO_NEWTON_MAX_FEATURES it
        # hands over to Newton when its rate says Newton is cheaper.  A resumed
        # fit goes on with the solver of its state (either phase).
        smooth = not np.any(objective.l1_weights)
        solver = "lbfgs" if levels or n_classes else auto_start(n_coef, not smooth)
        if (
            smooth and not levels and not n_classes and auto_solver(n_coef) == "newton"
        ):  # (whatever phase a resume is in)
            tol = options.tol

            def hand_over(history) -> bool:
                return hand_over_to_newton(history, tol, n_coef + 1)

        if resume is not None:
            # in its Newton phase, an auto fit that started with L-BFGS was handed over
            handed_over = solver == "lbfgs" and resume.solver_state.solver == "newton"
            solver = HANDED_OVER if handed_over else resume.solver_state.solver
    l1 = objective.l1_weights

    def run_newton(start: np.ndarray, state: SolverState | None) -> SolverResult:
        return newton(
            objective.with_hessian,
            start,
            options,
            report,
            l1,
            resume=state,
            checkpoint=save,
            should_stop=should_stop,
            gradient_only=objective,
        )

    if solver == "lbfgs":
        # from the standardization and the penalty alone: the same on resume
        preconditioner = objective.preconditioner()
        result = lbfgs(
            objective,
            coef0,
            options,
            report,
            l1,
            resume=state,
            checkpoint=save,
            should_stop=should_stop,
            preconditioner=preconditioner,
            hand_over=hand_over,
        )
        if result.handover is not None:
            solver = HANDED_OVER
            result = run_newton(result.coef, result.handover)
    elif solver == "gd":
        result = gradient_descent(
            objective, coef0, options, report, l1, resume=state, checkpoint=save, should_stop=should_stop
        )
    elif solver in ("newton", HANDED_OVER):  # orthant-wise Newton with l1 > 0
        result = run_newton(coef0, state)
    else:
        raise ConfigError(f"unknown solver {requested!r}")
    already = 0 if resume is None else resume.solver_state.n_passes
    assert result.n_passes == already + objective.n_passes
    if not result.converged:
        warnings.warn(f"{solver} did not converge: {result.message}", ConvergenceWarning, stacklevel=outside_level())
    restored_iteration = None
    if best is not None and best.iteration < result.n_iter:
        restored_iteration = best.iteration
        result = dataclasses.replace(
            result,
            coef=best.coef,
            loss=best.loss,
            grad=best.grad,
            message=f"{result.message}; restored iteration {best.iteration}, the least validation loss "
            f"({best.validation_loss!r})",
        )
    null = null_loss(totals, weights)
    is_separated = separated(result.loss, penalty, null)
    if is_separated:
        warnings.warn(
            f"the classes are (nearly) separated: the mean log-loss is {result.loss:.3g}, against {null:.3g} "
            "for the intercept alone; without a penalty it goes to 0 only as coefficients grow without "
            "bound, so these are where the solver stopped, not an optimum (add a penalty, l2, or remove "
            "the features that separate the classes)",
            SeparationWarning,
            stacklevel=outside_level(),
        )
    coef, gradient = result.coef, result.grad
    if standardization is not None:
        coef = standardization.to_original(result.coef)
        gradient = standardization.gradient_to_original(result.grad)
    if n_classes:
        coef = center_classes(coef, n_classes, weights_too=not (penalty.l1 or penalty.l2))
    return Fit(
        result,
        coef,
        gradient,
        result.n_passes + stats_passes,
        standardization,
        weights,
        summary,
        tuple(validation_losses),
        solver,
        fill,
        n_missing,
        categories,
        n_classes,
        penalty=penalty,
        separated=is_separated,
        restored_iteration=restored_iteration,
    )


@dataclass(frozen=True, eq=False)
class Prepared:
    """What a fit needs from the statistics pass (:func:`prepare`)."""

    standardization: Standardization | None
    class_weight: tuple[float, ...] | None
    #: 1 when the statistics pass ran for it, else 0
    stats_passes: int
    #: per column, the value of a missing one (None: no imputation)
    fill: np.ndarray | None = None
    #: per column, its missing values (int64; None: not counted)
    n_missing: np.ndarray | None = None
    #: the categorical columns' levels and their sums' top bin (None: none)
    categories: Categories | None = None
    #: each level's share of the rows (the preconditioner's; None: no levels)
    level_share: np.ndarray | None = None
    summary: DataSummary | None = None

    def objective(self, evaluator: Evaluator, penalty: Penalty, n_classes: int) -> LogisticObjective:
        """The objective on ``evaluator`` with these statistics and ``penalty``."""
        return LogisticObjective(
            evaluator,
            penalty,
            self.standardization,
            self.class_weight,
            kernel_fill(self.fill, self.n_missing),
            self.categories,
            self.level_share,
            n_classes,
        )


#: the largest magnitude whose square float64 holds (the statistics pass sums squares)
SQUARE_LIMIT = math.sqrt(sys.float_info.max)


def check_standardizable(summary: DataSummary, features: Sequence[str] | None, n_dense: int) -> None:
    """A column of finite values whose sum or sum of squares overflows float64
    has no mean or deviation to standardize with; it would be used raw, its
    margins overflowing, and the fit would end at zero after a failed line
    search: a :class:`NonFiniteValueError` naming it instead.  (An all-missing
    column is :func:`check_some_present`'s.)"""
    all_missing = summary.n_missing == summary.n_samples if summary.n_missing is not None else np.zeros(n_dense, bool)
    for j in range(n_dense):
        if math.isnan(summary.std[j]) and not all_missing[j]:
            name = repr(features[j]) if features is not None else f"number {j}"
            raise NonFiniteValueError(
                f"feature {name} holds values too large to standardize: the sum of "
                + ("its values" if math.isnan(summary.mean[j]) else "their squares")
                + f" overflows float64 (expected magnitudes below {SQUARE_LIMIT:.3g}); rescale the column "
                "(divide it by a power of ten) and train again",
                column=features[j] if features is not None else None,
            )


def prepare(
    evaluator: Evaluator,
    *,
    standardize: bool = True,
    class_weight: str | tuple[float, ...] | None = None,
    features: Sequence[str] | None = None,
    label: str | None = None,
    impute: bool = False,
    levels: Sequence[int] = (),
    n_classes: int = 0,
    class_totals: Sequence[float] | None = None,
) -> Prepared:
    """The statistics pass, when the options need it (standardization,
    balanced class weights, imputation, levels: see :func:`fit`), and what
    follows from it."""
    n_dense = evaluator.n_features - len(levels)
    n_coef = n_dense + int(sum(levels))
    summary: DataSummary | None = None
    fill: np.ndarray | None = None
    n_missing: np.ndarray | None = None
    level_share: np.ndarray | None = None
    categories: Categories | None = None
    if standardize or class_weight == "balanced" or impute or levels:
        stats = evaluator.stats(Categories(tuple(levels)) if levels else None)
        summary = summarize(stats)
        if stats.level_rows is not None:
            level_share = stats.level_rows / summary.n_samples
        if not n_classes:
            check_two_classes(summary, label)
        if summary.has_missing:
            check_some_present(summary, features)
        if impute:
            fill, n_missing = summary.fill, summary.n_missing
        if standardize:
            check_standardizable(summary, features, n_dense)
        for j in summary.constant_columns if standardize else []:
            if j >= n_dense:
                break  # (level codes)
            name = repr(features[j]) if features is not None else f"number {j}"
            counted = summary.counted_value(j) if summary.std[j] != 0.0 else None
            value = float(summary.mean[j]) if counted is None else counted
            rounded = (
                " as float64 (integers beyond 2**53 round to every other one or coarser)" if abs(value) >= 2**53 else ""
            )
            rows = "every row" if counted is None else "every row of positive weight (the training rows)"
            warnings.warn(
                f"feature {name} is constant{rounded} ({value!r} in {rows}); its coefficient is fixed at 0",
                DataWarning,
                stacklevel=outside_level(),
            )
    weights: tuple[float, ...] | None
    if isinstance(class_weight, str) and n_classes:  # "balanced"
        weights = balanced_class_weights(class_totals)
    elif isinstance(class_weight, str):  # "balanced" (TrainConfig allows nothing else)
        assert summary is not None  # the statistics pass ran for it
        weights = balanced_class_weight(summary)
    else:
        weights = class_weight
    standardization = summary.standardization() if standardize and summary is not None else None
    if levels:
        assert summary is not None  # the statistics pass ran for them
        largest = max(weights) if weights is not None else 1.0
        categories = Categories(tuple(levels), level_top(summary.n_samples, summary.weight_bound * largest))
        if standardization is not None:  # levels: center 0, scale 1 (original units)
            standardization = Standardization(
                np.concatenate([standardization.center[:n_dense], np.zeros(n_coef - n_dense)]),
                np.concatenate([standardization.scale[:n_dense], np.ones(n_coef - n_dense)]),
            )
        if fill is not None:
            fill = fill[:n_dense]
            n_missing = None if n_missing is None else n_missing[:n_dense]
    stats_passes = 1 if summary is not None else 0
    return Prepared(standardization, weights, stats_passes, fill, n_missing, categories, level_share, summary)


#: ``auto`` takes Newton up to this many features.  Newton needs 10-16 passes
#: on ill-conditioned real data (scikit-learn's breast cancer, digits) where
#: L-BFGS, even preconditioned, needs 76-700 (and on digits at l2=1e-4 stops
#: 3e-8 above the optimum at the default tolerance).  A Newton pass costs
#: (d+1)(d+2)/2 Hessian sums per row: with the compiled Hessian pass
#: 1.6x a gradient pass at d=8, 3.6x at 32 and 6.2x at 64 (1M rows,
#: standardized, one core), and the solve is O(d^3) fsums (5 ms at 64, 58 ms
#: at 128).  Up to 64 features its total work is no more than L-BFGS's on
#: such data (breast cancer, d=30: ~30 gradient passes' worth against
#: 280-670; digits, d=64: 50-80 against 76-434), with a few percent of the
#: passes over the data (each a full scan and a round trip on a cluster) and
#: the optimum to ~1e-12.
AUTO_NEWTON_MAX_FEATURES = 64


#: ``Fit.solver`` (and ``model.json``'s) of an ``auto`` fit whose L-BFGS handed over to Newton.
HANDED_OVER = "lbfgs+newton"
#: Passes L-BFGS takes on well-conditioned data (the benchmark's: 10).
AUTO_LBFGS_PASSES = 10


def auto_start(n_features: int, l1: bool) -> str:
    """The solver ``auto`` starts with: ``newton`` up to
    :data:`AUTO_NEWTON_MAX_FEATURES` features when there is an L1 term
    (orthant-wise Newton from 0 measured far better than from OWL-QN's
    points) or when a Hessian pass is so cheap that Newton's iterations cost
    no more than L-BFGS's :data:`AUTO_LBFGS_PASSES` gradient passes on easy
    data (up to 8 features); else ``lbfgs``, which hands over to Newton when
    it is slow (up to :data:`AUTO_NEWTON_MAX_FEATURES` features)."""
    if auto_solver(n_features) != "newton":
        return "lbfgs"
    cheap = HAND_OVER_NEWTON_ITERATIONS * hessian_pass_cost(n_features + 1) <= AUTO_LBFGS_PASSES
    return "newton" if l1 or cheap else "lbfgs"


def auto_solver(n_features: int) -> str:
    """The solver ``auto`` can end with: ``newton`` (orthant-wise with L1) for
    at most :data:`AUTO_NEWTON_MAX_FEATURES` features, else ``lbfgs``
    (OWL-QN).  ``auto`` always starts with L-BFGS; with ``newton`` here it
    hands over to Newton when L-BFGS's measured rate says Newton is cheaper
    (:func:`pipeline.solvers.hand_over_to_newton`)."""
    return "newton" if n_features <= AUTO_NEWTON_MAX_FEATURES else "lbfgs"


def _empty_part(part: str, exc: PipelineError) -> EmptyDatasetError:
    """A part of a validation split without rows (or without weight), said so."""
    return EmptyDatasetError(
        f"the {part} part of the validation split has no rows with weight ({exc}); expected rows on both "
        "sides: change the validation fraction (--validation-fraction, data.validation_fraction in a job file), or "
        "check the validation key (--validation-key, data.validation_key; rows with equal keys share a part)"
    )


#: An unpenalized fit whose mean log-loss ends below this fraction of the
#: intercept-only (null) loss is warned about: the classes are (nearly)
#: separated (McFadden's pseudo-R2 above 0.999).  Separated, the solver stops
#: there on its gradient tolerance, which shrinks with the loss.
SEPARATED_LOSS = 1e-3


def fit_class_totals(
    summary: DataSummary | None, class_totals: Sequence[float] | None, n_classes: int
) -> tuple[float, ...] | None:
    """Each class's total sample weight, where the statistics pass (binary) or
    the caller (multinomial) gave them; None otherwise."""
    if n_classes:
        return None if class_totals is None else tuple(float(total) for total in class_totals)
    if summary is None:
        return None
    return (summary.weight_sum - summary.positive_weight, summary.positive_weight)


def warn_if_underdetermined(
    n_coef: int, n_samples: int, categorical: Sequence[str], penalty: Penalty, stacklevel: int = 2
) -> None:
    """More coefficients than rows, or categorical levels (a column's levels
    add up to the intercept's column), are allowed with a penalty, warned
    without (:class:`DataWarning`)."""
    if penalty.l2 or penalty.l1:
        return
    if n_coef > n_samples:
        warnings.warn(
            f"more features ({n_coef}) than rows ({n_samples}): without a penalty the optimum is not unique "
            "(add an l2 or l1 penalty)",
            DataWarning,
            stacklevel=stacklevel + 1,
        )
    elif categorical:
        warnings.warn(
            f"the levels of each categorical column ({', '.join(categorical)}) add up to the intercept's "
            "column: without a penalty the loss has one optimum but the coefficients many (add an l2 or l1 "
            "penalty for unique ones)",
            DataWarning,
            stacklevel=stacklevel + 1,
        )


def warn_single_row_classes(label: str, classes: Sequence, counts: Sequence[int], stacklevel: int = 2) -> None:
    """A label of more than two classes some of which hold a single row: a
    stray value in a 0/1 label? (:class:`DataWarning`)."""
    single = [value for value, count in zip(classes, counts) if count == 1]
    if len(classes) > 2 and single:
        listed = ", ".join(repr(value) for value in single[:5]) + (", ..." if len(single) > 5 else "")
        warnings.warn(
            f"label column {label!r}: {len(single)} of its {len(classes)} classes have a single row ({listed}); "
            "a stray value in a 0/1 label, or a label that is not a class? (the binomial family refuses labels "
            "outside 0/1)",
            DataWarning,
            stacklevel=stacklevel + 1,
        )


def null_loss(totals: Sequence[float] | None, class_weight: Sequence[float] | None) -> float | None:
    """Policy only: the mean log-loss of the intercept-only optimum (the
    classes' weighted shares as probabilities) for class ``totals`` of sample
    weight and ``class_weight`` (None: all ones); None if the totals are unknown."""
    if totals is None:
        return None
    weighted = [total * (1.0 if class_weight is None else class_weight[k]) for k, total in enumerate(totals)]
    whole = sum(weighted)
    if not whole > 0:
        return None
    return -sum(part / whole * math.log(part / whole) for part in weighted if part > 0)


def separated(loss: float, penalty: Penalty, null: float | None) -> bool:
    """Policy only: is a fit's final (mean) ``loss`` that of classes the
    features separate, next to the ``null`` (intercept-only) loss?  Only
    without a penalty (with one the optimum is finite), and only where the
    null loss is known."""
    if penalty.l1 or penalty.l2 or null is None:
        return False
    return bool(loss < SEPARATED_LOSS * null)


def both_labels_at_zero(
    evaluator: Evaluator, label: str | None, counted: Callable[[], None] = lambda: None
) -> Callable[[float, float, int], None]:
    """A :attr:`LogisticObjective.at_zero`: :func:`check_both_labels` from a
    binary pass at coef = 0, where no statistics pass said both labels carry
    weight.  Its totals are rounded (a class of weight below an ulp of the
    total reads as none), so a refusal is decided by the statistics pass's
    exact totals (one more pass, only then; ``counted`` is told)."""

    def at_zero(weight_sum: float, positive: float, n_samples: int) -> None:
        try:
            check_both_labels(weight_sum, positive, n_samples, label)
        except LabelValueError:
            stats = evaluator.stats()
            counted()
            check_two_classes(summarize(stats), label)

    return at_zero


def check_two_classes(summary: DataSummary, label: str | None) -> None:
    """Both labels must carry weight, else the optimum is at infinity."""
    check_both_labels(summary.weight_sum, summary.positive_weight, summary.n_samples, label)


def check_both_labels(weight_sum: float, positive_weight: float, n_samples: int, label: str | None) -> None:
    """:func:`check_two_classes` from the totals: the sample weight of all
    rows and of the rows labelled 1."""
    if not weight_sum > 0:
        raise WeightValueError(f"the sample weights add up to {weight_sum!r}; expected a positive total")
    negative = weight_sum - positive_weight
    if positive_weight > 0 and negative > 0:
        return
    only = 1 if positive_weight > 0 else 0
    column = f"label column {label!r}" if label else "the label"
    raise LabelValueError(
        f"{column} has a single class: all the weight of the {n_samples} rows is on "
        f"label {only}; expected both 0 and 1 (logistic regression has no finite optimum "
        "otherwise)",
        weightless=(1 - only,),
        n_classes=2,
        n_samples=n_samples,
        column=label,
    )


def check_every_class(class_totals: Sequence[float], label: str | None, n_samples: int = 0) -> None:
    """Every class must carry weight, else its optimum is at infinity (its
    intercept goes to minus infinity, penalty or not)."""
    empty = [k for k, total in enumerate(class_totals) if not total > 0]
    if empty:
        column = f"label column {label!r}" if label else "the label"
        raise LabelValueError(
            f"{column} has class(es) number {empty} (in sorted order) with no weight in the training rows "
            f"(weights {[class_totals[k] for k in empty]}); expected every class with positive weight "
            "(the multinomial model has no finite optimum otherwise)",
            weightless=tuple(empty),
            n_classes=len(class_totals),
            n_samples=n_samples,
            column=label,
        )


def center_classes(coef: np.ndarray, n_classes: int, weights_too: bool) -> np.ndarray:
    """A multinomial model's ``K`` blocks ``[w_k, b_k]`` with the mean over
    the classes (an exact sum, divided once) subtracted from the intercepts,
    and from every weight too when ``weights_too``: the same probabilities."""
    blocks = coef.reshape(n_classes, -1).copy()
    columns = range(blocks.shape[1]) if weights_too else [blocks.shape[1] - 1]
    for j in columns:
        blocks[:, j] = blocks[:, j] - fsum(blocks[:, j]) / n_classes
    return blocks.ravel()


def balanced_class_weights(class_totals: Sequence[float] | None) -> tuple[float, ...]:
    """scikit-learn's ``balanced`` for K classes: ``S / (K S_k)`` with the
    weighted class totals ``S_k`` (each positive: :func:`check_every_class`)
    and ``S = sum_k S_k``."""
    if class_totals is None:
        raise ConfigError("class_weight='balanced' for the multinomial model needs the class totals")
    totals = [float(total) for total in class_totals]
    weight_sum = fsum(np.array(totals))
    return tuple(weight_sum / (len(totals) * total) for total in totals)


def check_some_present(summary: DataSummary, features: Sequence[str] | None) -> None:
    """A column whose every value is missing has no mean to take their place."""
    assert summary.n_missing is not None
    for j in np.flatnonzero(summary.n_missing == summary.n_samples).tolist():
        name = repr(features[j]) if features is not None else f"number {j}"
        raise MissingValueError(
            f"feature {name} is missing in all {summary.n_samples} rows; expected at least one value "
            "to impute the others with (leave the column out of the features)",
            column=features[j] if features is not None else None,
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
    missing: str = "error",
    nan_as_missing: bool = False,
    indicators: Sequence[str] = (),
    vocabularies: Sequence[Vocabulary] = (),
    classes: Sequence | None = None,
) -> Model:
    """The model of ``result`` (with its inference, when it has one);
    ``missing``, ``nan_as_missing`` and ``indicators``: how its features'
    missing values were read; ``vocabularies``: the levels of
    its categorical columns, whose features end ``features`` (see :class:`Model`);
    ``classes``: the label's (None: a 0/1 label).  A multinomial fit
    (``result.n_classes``) gives a model of K rows of coefficients."""
    solver = result.solver or solver  # the one that ran (auto resolved)
    n_levels = sum(vocabulary.size for vocabulary in vocabularies)
    n_columns = len(features) - len(indicators) - n_levels
    impute = None if missing == "error" or result.fill is None else result.fill[:n_columns].tolist()
    history = result.result.history
    offset = result.n_passes - result.inference_passes - result.result.n_passes  # (the statistics pass)
    standardization = result.standardization
    coef: list = result.coef[:-1].tolist()
    intercept: float | list[float] = float(result.coef[-1])
    if result.n_classes:
        blocks = result.coef.reshape(result.n_classes, -1)
        coef, intercept = blocks[:, :-1].tolist(), blocks[:, -1].tolist()
    return Model(
        features=list(features),
        coef=coef,
        intercept=intercept,
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
        missing=missing,
        nan_as_missing=nan_as_missing,
        impute=impute,
        indicators=list(indicators) or None,
        categorical=[vocabulary.to_json() for vocabulary in vocabularies] or None,
        family="multinomial" if result.n_classes else "binomial",
        classes=None if classes is None else [_json_value(value) for value in classes],
        inference=None if result.inference is None else result.inference.to_json(),
        separated=result.separated,
        restored_iteration=result.restored_iteration,
        format_version=model_format(result, classes),
    )


def model_format(result: Fit, classes: Sequence | None) -> int:
    """The oldest format that holds the model of ``result``: a binary model of
    a 0/1 label keeps format 3 (older versions read it), one with classes
    needs 4, one with inference 5, one whose classes ended separated 6, one
    that holds an earlier iterate than the last 7."""
    if result.restored_iteration is not None:
        return RESTORED_FORMAT
    if result.separated:
        return SEPARATED_FORMAT
    if result.inference is not None:
        return INFERENCE_FORMAT
    return CLASSES_FORMAT if result.n_classes or classes is not None else PLAIN_BINARY_FORMAT


def _json_value(value):
    """A class label as JSON holds it (numpy scalars as Python numbers)."""
    return value.item() if isinstance(value, np.generic) else value
