"""Optimizers.  Pure functions of the objective: no data, no Dask.

* :func:`lbfgs` — limited-memory BFGS with a strong-Wolfe line search; with
  L1 weights it becomes OWL-QN (orthant-wise, exact zeros).  An optional
  diagonal preconditioner (an estimate of the inverse Hessian's diagonal,
  which the objective knows and the solver does not) scales its first step
  and its initial inverse-Hessian approximation.
* :func:`newton` — Newton's method on ``(loss, grad, hess)`` with a
  backtracking line search and a gradient step where the Hessian is not
  safely positive definite; with L1 weights, orthant-wise Newton (exact
  zeros, Newton's convergence on the non-zeros).

:func:`lbfgs` and :func:`newton` stop, rather than repeat themselves until
``max_iter``, when no step can lower the loss at machine precision.
* :func:`gradient_descent` — steepest descent with a Barzilai–Borwein first
  trial and Armijo backtracking; with L1 weights, proximal gradient (ISTA).
  Its ftol rule looks at the loss change over :data:`GD_FTOL_WINDOW`
  iterations.

The smooth objective is ``fun(coef) -> (loss, grad)``; an optional
``l1_weights`` vector adds ``sum_j l1_weights[j] * |coef_j|``.  Every solver
returns a :class:`SolverResult` with convergence information and a history
of (loss, projected-gradient norm, step, passes) per iteration, the loss
including the L1 term.

Arithmetic on vectors uses only elementwise IEEE operations and
:func:`math.fsum` (linear solves too), so a result depends on nothing but the
bits the objective returns: BLAS/LAPACK may round differently with memory
alignment or thread count.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np

from .elementary import log_positive
from .errors import require_count, require_number
from .exact import fsum

__all__ = [
    "IterationRecord",
    "Solver",
    "SolverOptions",
    "SolverResult",
    "SolverState",
    "cholesky_combination",
    "cholesky_factor",
    "cholesky_inverse",
    "cholesky_solve",
    "gradient_descent",
    "hand_over_to_newton",
    "hessian_pass_cost",
    "lbfgs",
    "max_abs",
    "newton",
    "pseudo_gradient",
]

#: The solvers, as :class:`SolverState` names them (``"auto"``, which picks
#: one of them, is an option of the training configuration,
#: :data:`pipeline.config.SolverName`, not a solver).
Solver = Literal["lbfgs", "newton", "gd"]

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]
HessianObjective = Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]]
Callback = Callable[["IterationRecord"], None]
Checkpoint = Callable[["SolverState"], None]
#: Asked before every iteration: a message to stop now (converged), or None.
StopHook = Callable[[], "str | None"]
#: Asked by lbfgs before every iteration, with the history so far: hand over to Newton?
HandOver = Callable[[list["IterationRecord"]], bool]

#: L-BFGS keeps a (move, gradient change) pair only when its curvature
#: ``s'y`` exceeds this fraction of ``|s| |y|`` (else the update would not
#: stay positive definite in floating point).
MIN_CURVATURE_RATIO = 1e-10
#: The zoom phase of the Wolfe search gives up when its bracket is narrower
#: than this fraction of its end points (no representable step in between).
MIN_BRACKET_RATIO = 1e-14
#: The bracketing phase of the Wolfe search grows the trial step by this factor.
BRACKET_GROWTH = 4.0
#: A step that leaves the loss equal (at machine precision) counts as progress
#: only if it multiplies the projected gradient's largest entry by at most this.
NOISE_FLOOR_GRADIENT_CUT = 0.5
#: Gradient descent applies the ftol rule to the loss change over this many
#: iterations, not one: its Barzilai-Borwein steps alternate long and short
#: ones, and one short (or backtracked) step that barely lowers the loss says
#: nothing about how far the optimum is.
GD_FTOL_WINDOW = 20


@dataclass(frozen=True)
class SolverOptions:
    """Stopping rules and line-search constants shared by the solvers.

    Stop when the projected gradient's largest entry is ``<= tol``, or when
    an iteration changes the loss by at most ``ftol`` relative to it
    (:func:`gradient_descent`: its last :data:`GD_FTOL_WINDOW` iterations
    together; ``ftol=0`` disables that), or after ``max_iter`` iterations
    (then ``converged`` is false).
    """

    max_iter: int = 1000
    tol: float = 1e-7
    ftol: float = 1e-12
    history_size: int = 10
    armijo: float = 1e-4
    wolfe: float = 0.9
    max_line_search: int = 40
    initial_step: float = 1.0
    step_growth: float = 2.0
    step_shrink: float = 0.5
    barzilai_borwein: bool = True
    #: A Hessian with a pivot below this fraction of its diagonal entry
    #: (:func:`cholesky_solve`) is singular for Newton: its step is then solved with the diagonal
    #: raised (:data:`NEWTON_DAMPING`), and a gradient step is the last resort.
    min_pivot_ratio: float = 1e-12

    def __post_init__(self) -> None:
        """The stopping rules' values (each refused by name: :func:`pipeline.errors.invalid`)."""
        require_count("max_iter", self.max_iter, 0)
        for name in ("tol", "ftol"):
            require_number(name, getattr(self, name))
        require_count("history_size", self.history_size, 1)


@dataclass(frozen=True)
class IterationRecord:
    """State after an iteration (iteration 0 is the starting point)."""

    iteration: int
    loss: float
    grad_norm: float
    step: float
    n_passes: int
    #: Filled in by the orchestration (the solvers know no clock or data size).
    elapsed_s: float = 0.0
    rows_per_s: float = 0.0


@dataclass(frozen=True)
class SolverResult:
    coef: np.ndarray
    loss: float
    grad: np.ndarray
    n_iter: int
    n_passes: int
    converged: bool
    message: str
    history: list[IterationRecord] = field(default_factory=list)
    #: lbfgs stopped by its ``hand_over`` rule: Newton's state to go on from
    #: (the same point, no Hessian yet)
    handover: SolverState | None = None


@dataclass(frozen=True, eq=False)
class SolverState:
    """Everything a solver carries from one iteration to the next.

    Handed to ``checkpoint`` after every iteration (and after the starting
    point); a solver given it as ``resume`` continues exactly as the run it
    came from would have, bit for bit: the loop depends on nothing else.
    """

    solver: Solver
    coef: np.ndarray
    loss: float
    grad: np.ndarray
    previous_loss: float | None
    n_iter: int
    n_passes: int
    history: tuple[IterationRecord, ...]
    #: gd: the next first trial step
    step: float = 0.0
    #: lbfgs: the (move, gradient change, 1 / curvature) pairs, oldest first
    memory: tuple[tuple[np.ndarray, np.ndarray, float], ...] = ()
    #: newton: the Hessian at ``coef``
    hess: np.ndarray | None = None


def max_abs(vector: np.ndarray) -> float:
    return float(np.max(np.abs(vector))) if vector.size else 0.0


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return fsum(a * b)


def pseudo_gradient(coef: np.ndarray, grad: np.ndarray, l1: np.ndarray) -> np.ndarray:
    """Minimum-norm subgradient of ``f + sum l1_j |coef_j|`` (OWL-QN)."""
    right, left = grad + l1, grad - l1
    at_zero = np.where(right < 0, right, np.where(left > 0, left, 0.0))
    return np.where(coef > 0, right, np.where(coef < 0, left, at_zero))


class _Run:
    """Bookkeeping shared by the solvers: passes, history, stopping rules."""

    def __init__(
        self, fun, options: SolverOptions, callback: Callback | None, l1=None, should_stop: StopHook | None = None
    ) -> None:
        self.fun = fun
        self.should_stop = should_stop
        self.options = options
        self.callback = callback
        self.l1 = l1 if l1 is not None and np.any(l1) else None  # all zeros: smooth
        self.n_passes = 0
        self.n_iter = 0
        self.history: list[IterationRecord] = []

    def evaluate(self, coef: np.ndarray):
        """``fun(coef)`` plus the L1 term added to the loss."""
        self.n_passes += 1
        values = self.fun(coef)
        if self.l1 is None:
            return values
        return (values[0] + fsum(self.l1 * np.abs(coef)), *values[1:])

    def start(self, coef0: np.ndarray):
        """Evaluate and record the starting point: ``coef, (loss, grad, ...)``."""
        coef = np.array(coef0, dtype=np.float64)
        values = self.evaluate(coef)
        self.record(values[0], self.projected(coef, values[1]), 0.0)
        return coef, values

    def restore(self, state: SolverState, solver: Solver) -> None:
        """Continue from ``state`` (counters and history; the caller takes the rest)."""
        if state.solver != solver:
            raise ValueError(f"cannot resume {solver} from a {state.solver} state")
        self.n_iter, self.n_passes, self.history = state.n_iter, state.n_passes, list(state.history)

    def state(self, solver: Solver, coef, loss, grad, previous_loss, **extra) -> SolverState:
        return SolverState(
            solver,
            coef.copy(),
            loss,
            grad.copy(),
            previous_loss,
            self.n_iter,
            self.n_passes,
            tuple(self.history),
            **extra,
        )

    def projected(self, coef: np.ndarray, grad: np.ndarray) -> np.ndarray:
        return grad if self.l1 is None else pseudo_gradient(coef, grad, self.l1)

    def record(self, loss: float, projected: np.ndarray, step: float) -> None:
        self.history.append(IterationRecord(len(self.history), loss, max_abs(projected), step, self.n_passes))
        if self.callback:
            self.callback(self.history[-1])

    def loss_before(self, iterations: int) -> float | None:
        """The loss ``iterations`` iterations ago (None before there were as many)."""
        return self.history[-1 - iterations].loss if len(self.history) > iterations else None

    def stop_reason(self, previous_loss: float | None, loss: float, projected: np.ndarray, over: int = 1):
        """``(converged, message)`` if the run should stop now, else None;
        ``previous_loss`` is the loss ``over`` iterations ago."""
        if not math.isfinite(loss):
            return False, f"loss is not finite ({loss})"
        if max_abs(projected) <= self.options.tol:
            return True, f"projected gradient |g|_inf <= tol={self.options.tol}"
        if previous_loss is not None and self.options.ftol > 0:
            if abs(previous_loss - loss) <= self.options.ftol * max(abs(loss), abs(previous_loss)):
                within = "" if over == 1 else f" over the last {over} iterations"
                return True, f"relative loss change{within} <= ftol={self.options.ftol}"
        if self.should_stop is not None and (message := self.should_stop()):
            return True, message
        if self.n_iter >= self.options.max_iter:
            return False, f"reached max_iter={self.options.max_iter}"
        return None

    def no_progress(self, projected: np.ndarray) -> tuple[bool, str]:
        """``(converged, message)`` when the line search found no step that
        lowers the loss at machine precision (an accepted step that leaves it
        equal without cutting the gradient, see :func:`_progress`, or one that
        rounds back to the same coefficients).  The run stops at its best
        point, without taking that step: from the same state the next
        iteration would try the same thing again.  It happens at the noise
        floor, where a step's gain (about |g|^2 / curvature) is below the
        loss's rounding (about 1e-16 |loss|); far from the optimum only with
        an inconsistent gradient.

        Under ``ftol > 0`` that is the ftol rule's case (a relative change of
        0 <= ftol), so converged; with ``ftol=0`` only the gradient rule could
        declare convergence and it did not hold, so ``converged`` is false and
        the message gives the projected gradient reached.
        """
        norm, options = max_abs(projected), self.options
        if options.ftol > 0:
            return True, (f"relative loss change <= ftol={options.ftol} (no step lowers the loss at machine precision)")
        return False, (
            "line search could not decrease the loss (at machine precision): "
            f"projected gradient |g|_inf={norm:.3g} > tol={options.tol}"
        )

    def result(self, coef, loss, grad, converged: bool, message: str) -> SolverResult:
        return SolverResult(
            coef=coef,
            loss=loss,
            grad=grad,
            n_iter=self.n_iter,
            n_passes=self.n_passes,
            converged=converged,
            message=message,
            history=self.history,
        )


# --------------------------------------------------------------------------- gradient descent


def gradient_descent(
    fun: Objective,
    coef0: np.ndarray,
    options: SolverOptions = SolverOptions(),
    callback: Callback | None = None,
    l1_weights: np.ndarray | None = None,
    *,
    resume: SolverState | None = None,
    checkpoint: Checkpoint | None = None,
    should_stop: StopHook | None = None,
) -> SolverResult:
    """Steepest descent (or proximal gradient with ``l1_weights``).  The ftol
    rule compares the loss with the one :data:`GD_FTOL_WINDOW` iterations
    before (none sooner)."""
    run = _Run(fun, options, callback, l1_weights, should_stop)
    l1 = run.l1
    if resume is None:
        coef, (loss, grad) = run.start(coef0)
        step, previous = options.initial_step, None
    else:
        run.restore(resume, "gd")
        coef, loss, grad = resume.coef.copy(), resume.loss, resume.grad.copy()
        step, previous = resume.step, resume.previous_loss

    def save() -> None:
        if checkpoint:
            checkpoint(run.state("gd", coef, loss, grad, previous, step=step))

    if resume is None:
        save()
    while (
        stop := run.stop_reason(run.loss_before(GD_FTOL_WINDOW), loss, run.projected(coef, grad), GD_FTOL_WINDOW)
    ) is None:
        for _ in range(options.max_line_search + 1):
            if l1 is None:
                trial = coef - step * grad
            else:  # proximal step: soft-thresholding
                moved = coef - step * grad
                trial = np.sign(moved) * np.maximum(np.abs(moved) - step * l1, 0.0)
            trial_loss, trial_grad = run.evaluate(trial)
            if _sufficient_decrease(loss, trial_loss, grad, coef, trial, step, options, l1):
                break
            step *= options.step_shrink
        else:
            stop = (False, "line search failed: no step decreased the loss enough")
            break
        move, grad_change = trial - coef, trial_grad - grad
        previous, coef, loss, grad = loss, trial, trial_loss, trial_grad
        run.n_iter += 1
        run.record(loss, run.projected(coef, grad), step)
        step = _next_step(step, move, grad_change, options)
        save()
    return run.result(coef, loss, grad, *stop)


def _sufficient_decrease(loss, trial_loss, grad, coef, trial, step, options, l1) -> bool:
    if l1 is None:  # Armijo
        return trial_loss <= loss - options.armijo * step * _dot(grad, grad)
    # proximal gradient: F(x+) <= F(x) + g.(x+ - x) + |x+ - x|^2 / (2 step)  (L1 on both sides)
    move = trial - coef
    l1_change = fsum(l1 * (np.abs(trial) - np.abs(coef)))
    bound = loss + _dot(grad, move) + _dot(move, move) / (2.0 * step) + l1_change
    return trial_loss <= bound


def _next_step(step: float, move: np.ndarray, grad_change: np.ndarray, options: SolverOptions) -> float:
    if options.barzilai_borwein:
        curvature = _dot(move, grad_change)
        if curvature > 0:
            bb_step = _dot(move, move) / curvature
            if math.isfinite(bb_step) and bb_step > 0:
                return bb_step
    return step * options.step_growth


# --------------------------------------------------------------------------- L-BFGS / OWL-QN


def lbfgs(
    fun: Objective,
    coef0: np.ndarray,
    options: SolverOptions = SolverOptions(),
    callback: Callback | None = None,
    l1_weights: np.ndarray | None = None,
    *,
    resume: SolverState | None = None,
    checkpoint: Checkpoint | None = None,
    should_stop: StopHook | None = None,
    preconditioner: np.ndarray | None = None,
    hand_over: HandOver | None = None,
) -> SolverResult:
    """L-BFGS with a strong-Wolfe line search; OWL-QN when ``l1_weights`` are set.

    ``hand_over``: asked at the top of every iteration that would run (with
    the history so far); when it says so, the run stops there and its result
    carries ``handover``, a Newton state at the same point (the ``auto``
    solver, :func:`hand_over_to_newton`).  Asked at the same place on a
    resumed run, so a resumed run hands over where the uninterrupted one did.

    ``preconditioner``: a positive diagonal ``P``, an estimate of the inverse
    Hessian's diagonal (None: the identity).  The initial inverse-Hessian
    approximation of the two-loop recursion becomes ``gamma P`` with
    ``gamma = s'y / y'Py`` from the latest pair, and steps without memory
    (the first one, restarts) go along ``-P g``.  Only the path changes: a
    coordinate whose curvature is much larger than the others' (a penalty on
    a feature of tiny spread) no longer dictates the step for all of them.
    A positive diagonal keeps OWL-QN's orthant logic: ``-P g`` has the signs
    of ``-g``.  A resumed run must get the same ``P``.

    Stops early when the line search finds no step that lowers the loss at
    machine precision (see :meth:`_Run.no_progress`) instead of repeating
    iterations that cannot change anything until ``max_iter``.
    """
    run = _Run(fun, options, callback, l1_weights, should_stop)
    l1 = run.l1
    diagonal = _check_preconditioner(preconditioner, np.shape(coef0 if resume is None else resume.coef))
    memory: deque[tuple[np.ndarray, np.ndarray, float]] = deque(maxlen=options.history_size)
    if resume is None:
        coef, (loss, grad) = run.start(coef0)
        previous = None
    else:
        run.restore(resume, "lbfgs")
        coef, loss, grad = resume.coef.copy(), resume.loss, resume.grad.copy()
        previous = resume.previous_loss
        memory.extend((move.copy(), change.copy(), rho) for move, change, rho in resume.memory)
    projected = run.projected(coef, grad)

    def save() -> None:
        if checkpoint:
            checkpoint(
                run.state(
                    "lbfgs", coef, loss, grad, previous, memory=tuple((m.copy(), c.copy(), r) for m, c, r in memory)
                )
            )

    if resume is None:
        save()
    while (stop := run.stop_reason(previous, loss, projected)) is None:
        if hand_over is not None and hand_over(run.history):
            handover = run.state("newton", coef, loss, grad, previous)
            return dataclasses.replace(run.result(coef, loss, grad, False, "handed over to newton"), handover=handover)
        direction = -_two_loop(projected, memory, diagonal)
        if l1 is not None:  # keep to the orthant the pseudo-gradient points into
            direction = np.where(direction * projected < 0, direction, 0.0)
        if _dot(direction, projected) >= 0:  # not a descent direction: restart
            memory.clear()
            direction = -diagonal * projected
        first = 1.0 if memory else min(1.0, 1.0 / max_abs(direction))
        if l1 is None:
            found = _wolfe_search(run, coef, loss, grad, direction, first, options)
        else:
            found = _orthant_search(run, coef, (loss, grad), projected, direction, first, options)
        if found is None:
            stop = (False, "line search failed to find an acceptable step")
            break
        step, trial, trial_loss, trial_grad = found
        trial_projected = run.projected(trial, trial_grad)
        if not _progress(loss, projected, trial_loss, trial_projected):
            stop = run.no_progress(projected)
            break
        move, grad_change = trial - coef, trial_grad - grad
        curvature = _dot(move, grad_change)
        if curvature > MIN_CURVATURE_RATIO * math.sqrt(_dot(move, move) * _dot(grad_change, grad_change)):
            memory.append((move, grad_change, 1.0 / curvature))
        previous, coef, loss, grad, projected = loss, trial, trial_loss, trial_grad, trial_projected
        run.n_iter += 1
        run.record(loss, projected, step)
        save()
    return run.result(coef, loss, grad, *stop)


#: ``auto`` hands L-BFGS over to Newton after at least this many iterations ...
HAND_OVER_MIN_ITERATIONS = 3
#: ... measuring L-BFGS's rate over this many of the latest iterations ...
HAND_OVER_WINDOW = 3
#: ... against this many Newton iterations (it typically needs 4-7 from an
#: L-BFGS point; each costs :func:`hessian_pass_cost` gradient passes).
HAND_OVER_NEWTON_ITERATIONS = 6
#: A Hessian pass costs about ``1 + HESSIAN_TERM_COST * (d+1)(d+2) / (2(d+3))``
#: gradient passes: (d+1)(d+2)/2 Hessian sums against d+3 gradient sums per row,
#: each Hessian sum ~0.16 of a gradient sum (measured with the compiled passes,
#: 1M rows, standardized, one core: 1.6x at d=8, 3.6x at 32, 6.2x at 64).
HESSIAN_TERM_COST = 0.16


def hessian_pass_cost(n_coef: int) -> float:
    """Gradient passes a Hessian pass costs, for ``n_coef`` = d + 1 coefficients."""
    d = n_coef - 1
    return 1.0 + HESSIAN_TERM_COST * (d + 1) * (d + 2) / (2.0 * (d + 3))


def hand_over_to_newton(history, tol: float, n_coef: int) -> bool:
    """Policy only: should ``auto`` stop L-BFGS and go on with Newton?

    L-BFGS converges linearly; its rate ``r`` is measured on the smallest
    projected-gradient norm reached so far, over the last
    :data:`HAND_OVER_WINDOW` iterations.  The passes it still needs to reach
    ``tol`` at that rate (at the passes per iteration it has taken) are
    compared with what Newton would take: :data:`HAND_OVER_NEWTON_ITERATIONS`
    Hessian passes of :func:`hessian_pass_cost` each.  On well-conditioned
    data L-BFGS's rate is fast and it finishes on its own (no Hessian pass at
    all); on ill-conditioned data (scikit-learn's breast cancer or digits) it
    stalls and Newton takes over after a few iterations.
    """
    k = len(history) - 1  # iterations done (record 0 is the starting point)
    if k < max(HAND_OVER_MIN_ITERATIONS, HAND_OVER_WINDOW):
        return False
    best = np.minimum.accumulate([record.grad_norm for record in history])
    now, before = float(best[-1]), float(best[-1 - HAND_OVER_WINDOW])
    if not now > tol:
        return False  # the gradient rule holds: the run stops anyway
    if not 0.0 < now < before:
        return True  # no progress over the window
    if not tol > 0:
        return True  # the gradient rule can never end L-BFGS
    # at the rate (now/before)**(1/W) per iteration, reaching tol takes
    # W * log(now/tol) / log(before/now) iterations (logarithms of the
    # pipeline's own, so that every CPU decides alike)
    per_iteration = (history[-1].n_passes - history[0].n_passes) / k
    iterations = HAND_OVER_WINDOW * _log_above_one(now / tol) / _log_above_one(before / now)
    return iterations * per_iteration > HAND_OVER_NEWTON_ITERATIONS * hessian_pass_cost(n_coef)


def _log_above_one(x: float) -> float:
    """``log(x)`` for ``x > 1``: :func:`pipeline.elementary.log_positive`, the
    same bits on every CPU; a ratio beyond float64 (``inf``) is ``inf``, as
    before ``log_positive`` refused it (a tol of 1e-300 made ``now / tol``
    overflow: a ValueError traceback instead of a hand-over)."""
    return math.inf if x == math.inf else log_positive(x)


def _check_preconditioner(preconditioner: np.ndarray | None, shape: tuple) -> np.ndarray:
    """The diagonal as a float64 vector of ``shape`` (ones for None); refuses
    entries that are not finite and positive (the direction would not descend)."""
    if preconditioner is None:
        return np.ones(shape)
    diagonal = np.array(preconditioner, dtype=np.float64)
    if diagonal.shape != shape:
        raise ValueError(f"preconditioner has shape {diagonal.shape}; expected {shape}")
    if not np.all(np.isfinite(diagonal) & (diagonal > 0)):
        raise ValueError(f"preconditioner entries must be finite and > 0, got {diagonal}")
    return diagonal


def _two_loop(grad: np.ndarray, memory, diagonal: np.ndarray) -> np.ndarray:
    """``H grad`` for the L-BFGS inverse-Hessian approximation ``H``.

    ``H0 = gamma * diag(diagonal)`` with ``gamma = s'y / y'Dy`` for the latest
    pair: the diagonal fixes the coordinates' relative scales, the pair the
    overall one (with ``diagonal`` all ones this is the usual ``s'y / y'y``,
    bit for bit).
    """
    q = grad.copy()
    alphas = []
    for move, grad_change, rho in reversed(memory):
        alpha = rho * _dot(move, q)
        q = q - alpha * grad_change
        alphas.append(alpha)
    if memory:
        move, grad_change, _ = memory[-1]
        q = diagonal * q * (_dot(move, grad_change) / _dot(grad_change, diagonal * grad_change))
    else:
        q = diagonal * q
    for (move, grad_change, rho), alpha in zip(memory, reversed(alphas)):
        beta = rho * _dot(grad_change, q)
        q = q + (alpha - beta) * move
    return q


def _wolfe_search(run: _Run, coef, loss, grad, direction, step, options):
    """Strong-Wolfe line search (Nocedal & Wright, algorithms 3.5 and 3.6).

    Returns ``(step, coef, loss, grad)``, or None if no step with sufficient
    decrease was found within ``options.max_line_search`` evaluations.
    """
    slope0 = _dot(grad, direction)
    armijo, wolfe = options.armijo, options.wolfe

    def evaluate(t):
        trial = coef + t * direction
        trial_loss, trial_grad = run.evaluate(trial)
        return (t, trial_loss, _dot(trial_grad, direction), trial, trial_grad)

    def sufficient(point) -> bool:
        return math.isfinite(point[1]) and point[1] <= loss + armijo * point[0] * slope0

    def curvature_ok(point) -> bool:
        return abs(point[2]) <= -wolfe * slope0

    budget = options.max_line_search
    low = (0.0, loss, slope0, coef, grad)
    high = None
    while budget > 0 and high is None:  # bracketing phase
        point = evaluate(step)
        budget -= 1
        if not sufficient(point) or (low[0] > 0 and point[1] >= low[1]):
            high = point
        elif curvature_ok(point):
            return point[0], point[3], point[1], point[4]
        elif point[2] >= 0:
            high, low = low, point
        else:
            low, step = point, step * BRACKET_GROWTH
    while budget > 0 and high is not None:  # zoom phase
        if abs(high[0] - low[0]) <= MIN_BRACKET_RATIO * max(abs(low[0]), abs(high[0])):
            break
        point = evaluate(_interpolate(low, high))
        budget -= 1
        if not sufficient(point) or point[1] >= low[1]:
            high = point
        else:
            if curvature_ok(point):
                return point[0], point[3], point[1], point[4]
            if point[2] * (high[0] - low[0]) >= 0:
                high = low
            low = point
    if low[0] > 0:  # settle for the best point with sufficient decrease
        return low[0], low[3], low[1], low[4]
    return None


def _interpolate(low, high) -> float:
    """Minimizer of the cubic through two points with slopes, kept inside the bracket."""
    (a, fa, da), (b, fb, db) = low[:3], high[:3]
    lo, hi = min(a, b), max(a, b)
    t = None
    if math.isfinite(fb) and math.isfinite(db):
        d1 = da + db - 3.0 * (fa - fb) / (a - b)
        radicand = d1 * d1 - da * db
        if radicand >= 0:
            d2 = math.copysign(math.sqrt(radicand), b - a)
            denominator = db - da + 2.0 * d2
            if denominator != 0:
                t = b - (b - a) * (db + d2 - d1) / denominator
    margin = 0.1 * (hi - lo)
    if t is None or not math.isfinite(t) or not (lo + margin <= t <= hi - margin):
        t = 0.5 * (a + b)
    return t


def _progress(loss: float, projected: np.ndarray, trial_loss: float, trial_projected: np.ndarray) -> bool:
    """Whether a step the line search accepted moves the run on.

    A lower loss does.  At an equal loss (the noise floor: the step's gain
    is below the loss's rounding) the gradient still tells: a step that cuts
    the projected gradient by :data:`NOISE_FLOOR_GRADIENT_CUT` is real
    progress (Newton's last step from |g| = 1e-9 to 1e-17 gains nothing
    visible in the loss), while a backtracked step that moves it by a hair
    is noise, and iterating on it only spends passes.
    """
    if trial_loss < loss:
        return True
    return trial_loss == loss and max_abs(trial_projected) <= NOISE_FLOOR_GRADIENT_CUT * max_abs(projected)


def _orthant_search(run: _Run, coef, values, projected, direction, step, options):
    """Backtracking along the orthant-projected path (OWL-QN, orthant-wise Newton).

    ``values`` is what the objective gave at ``coef`` (``loss, grad[, hess]``);
    returns ``(step, trial, *values at trial)`` or None.  When a trial step no
    longer changes any coefficient (it rounds back to ``coef``), shorter ones
    cannot either: the search ends there, returning ``coef`` and ``values``
    without another pass, and the caller sees no progress.
    """
    loss = values[0]
    orthant = np.where(coef != 0, np.sign(coef), -np.sign(projected))
    for _ in range(options.max_line_search):
        trial = coef + step * direction
        trial = np.where(np.sign(trial) == orthant, trial, 0.0)
        if np.array_equal(trial, coef):
            return (step, coef, *values)
        trial_values = run.evaluate(trial)
        if trial_values[0] <= loss + options.armijo * _dot(projected, trial - coef):
            return (step, trial, *trial_values)
        step *= options.step_shrink
    return None


# --------------------------------------------------------------------------- Newton


#: Newton evaluates a unit step without the Hessian when the quadratic model
#: predicts that the point it reaches meets the gradient rule with this much
#: to spare (:func:`_last_step_predicted`).
FINAL_STEP_MARGIN = 0.1


def newton(
    fun: HessianObjective,
    coef0: np.ndarray,
    options: SolverOptions = SolverOptions(),
    callback: Callback | None = None,
    l1_weights: np.ndarray | None = None,
    *,
    resume: SolverState | None = None,
    checkpoint: Checkpoint | None = None,
    should_stop: StopHook | None = None,
    gradient_only: Objective | None = None,
) -> SolverResult:
    """Newton's method: each evaluation returns loss, gradient and Hessian.

    With ``l1_weights`` it is orthant-wise Newton (the second-order sibling of
    OWL-QN, like the orthant-based methods of Byrd, Chin, Nocedal and
    Oztoprak): on the orthant the pseudo-gradient picks, ``f + l1 |coef|`` is
    smooth with gradient = the pseudo-gradient and Hessian = ``f``'s, so the
    direction is the Newton step of the free coordinates (see
    :func:`_newton_direction`) and the line search backtracks along the
    orthant-projected path, which makes exact zeros.  Near the optimum the
    zeros settle and it converges like Newton's method on the non-zeros.

    Stops like :func:`lbfgs` when the line search can make no progress.

    ``gradient_only``: the same loss and gradient without the Hessian (the
    same bits, a cheaper pass).  Without an L1 term, a unit step that the
    quadratic model predicts to end the run (:func:`_last_step_predicted`,
    or the last iteration ``max_iter`` allows) is evaluated with it, and the
    Hessian is computed only if the run goes on after all (one pass more at
    that point, at the top of the next iteration).  A state saved in between
    has no Hessian; resuming from it computes the Hessian the same way.
    """
    run = _Run(fun, options, callback, l1_weights, should_stop=should_stop)
    l1 = run.l1
    if resume is None:
        coef, (loss, grad, hess) = run.start(coef0)
        previous = None
    else:
        run.restore(resume, "newton")
        coef, loss, grad = resume.coef.copy(), resume.loss, resume.grad.copy()
        hess, previous = (None if resume.hess is None else resume.hess.copy()), resume.previous_loss
    projected = run.projected(coef, grad)

    def save() -> None:
        if checkpoint:
            checkpoint(run.state("newton", coef, loss, grad, previous, hess=None if hess is None else hess.copy()))

    if resume is None:
        save()
    while (stop := run.stop_reason(previous, loss, projected)) is None:
        if hess is None:  # the last step was evaluated without it and the run goes on
            hess = _hessian_at(run, coef, loss, grad)
        direction = _newton_direction(hess, coef, projected, l1 is not None, options.min_pivot_ratio)
        if direction is None or _dot(direction, projected) >= 0:
            direction = -projected  # fallback: (pseudo-)gradient step
        final = (
            gradient_only is not None
            and l1 is None
            and (run.n_iter + 1 >= options.max_iter or _last_step_predicted(run.history, options.tol))
        )
        if final:
            assert gradient_only is not None  # (final needs it)
            found = _final_step(run, gradient_only, coef, loss, projected, direction, options)
        elif l1 is None:
            found = _armijo_search(run, coef, loss, projected, direction, options)
        else:
            found = _orthant_search(run, coef, (loss, grad, hess), projected, direction, 1.0, options)
        if found is None:
            stop = (False, "line search failed: no step decreased the loss enough")
            break
        step, trial, trial_loss, trial_grad, trial_hess = found
        trial_projected = run.projected(trial, trial_grad)
        if not _progress(loss, projected, trial_loss, trial_projected):
            stop = run.no_progress(projected)
            break
        previous, coef, loss, grad, hess = loss, trial, trial_loss, trial_grad, trial_hess
        projected = trial_projected
        run.n_iter += 1
        run.record(loss, projected, step)
        save()
    return run.result(coef, loss, grad, *stop)


def _last_step_predicted(history: list[IterationRecord], tol: float) -> bool:
    """Whether Newton's next unit step is predicted to meet the gradient rule.

    Near the optimum Newton's method converges quadratically, ``g' ~ C g^2``;
    ``C`` is estimated from the last unit step (``g = C g_earlier^2``), so the
    next gradient is about ``g^3 / g_earlier^2``.  Only after a unit step
    that shrank the gradient, and with :data:`FINAL_STEP_MARGIN` to spare.
    Read off the history alone (the last two records' norms and the last
    step), so a resumed run predicts what the uninterrupted one did; basic
    IEEE operations only, so every CPU decides alike.
    """
    if len(history) < 2 or history[-1].step != 1.0:
        return False
    norm, earlier = history[-1].grad_norm, history[-2].grad_norm
    if not 0.0 < norm < earlier:
        return False
    ratio = norm / earlier
    return norm * (ratio * ratio) <= FINAL_STEP_MARGIN * tol


def _final_step(run: _Run, gradient_only: Objective, coef, loss, grad, direction, options):
    """:func:`_armijo_search`'s unit step evaluated without the Hessian:
    ``(1.0, trial, loss, grad, None)`` when it is accepted; otherwise the
    search goes on with the Hessian, as it would have (within the same
    ``max_line_search`` trials)."""
    if options.max_line_search < 1:
        return None
    step = 1.0
    trial = coef + step * direction
    run.n_passes += 1
    trial_loss, trial_grad = gradient_only(trial)
    if trial_loss <= loss + options.armijo * step * _dot(grad, direction):
        return (step, trial, trial_loss, trial_grad, None)
    return _armijo_search(
        run, coef, loss, grad, direction, options, first_step=options.step_shrink, tries=options.max_line_search - 1
    )


def _hessian_at(run: _Run, coef, loss, grad) -> np.ndarray:
    """The Hessian at a point whose loss and gradient are known (one pass)."""
    again, again_grad, hess = run.evaluate(coef)
    if again != loss or not np.array_equal(again_grad, grad):
        raise RuntimeError("the loss and gradient changed between two passes at the same point")
    return hess


def _armijo_search(run: _Run, coef, loss, grad, direction, options, first_step: float = 1.0, tries: int | None = None):
    """Backtracking from the unit step (or ``first_step``) until the Armijo
    condition holds, at most ``tries`` (``max_line_search``) trials:
    ``(step, trial, *values at trial)``, or None."""
    step, slope = first_step, _dot(grad, direction)
    for _ in range(options.max_line_search if tries is None else tries):
        trial = coef + step * direction
        values = run.evaluate(trial)
        if values[0] <= loss + options.armijo * step * slope:
            return (step, trial, *values)
        step *= options.step_shrink
    return None


def _newton_direction(hess, coef, projected, orthant_wise: bool, min_pivot_ratio: float):
    """The Newton step of the coordinates that can move, 0 for the others; None
    when their Hessian is not safely positive definite.

    A coordinate with a zero Hessian diagonal (hence a zero row: a constant
    column without L2) and a zero gradient cannot move and decouples from the
    others: it is left out of the system rather than making it singular.
    Orthant-wise (``projected`` is then the pseudo-gradient): the free
    coordinates are the non-zero ones and the zeros with a non-zero
    pseudo-gradient, which leave zero against it; a zero whose Newton
    component points the other way would be clipped back at once, so it
    stays at zero and the system is solved again without it (each round
    fixes at least one coordinate).  What remains descends and keeps every
    leaving coordinate in its orthant for short steps.
    """
    if orthant_wise:
        free = (coef != 0) | (projected != 0)
    else:
        free = (np.diag(hess) != 0) | (projected != 0)
    while True:
        index = np.flatnonzero(free)
        if index.size == 0:
            return None
        solution = damped_solve(hess[np.ix_(index, index)], -projected[index], min_pivot_ratio)
        if solution is None or not orthant_wise:
            break
        wrong = (coef[index] == 0) & (solution * projected[index] >= 0)
        if not wrong.any():
            break
        free[index[wrong]] = False
    if solution is None:
        return None
    direction = np.zeros_like(projected)
    direction[index] = solution
    return direction


#: Levenberg-Marquardt damping of a singular Hessian (collinear features
#: without a penalty: the loss has a minimum, the coefficients a line of
#: them), tried in turn, relative to each diagonal entry (Marquardt's
#: ``H + mu * diag H``, so the damping does not depend on the features'
#: units; an entry below ``min_pivot_ratio**2`` of the largest, which
#: :func:`cholesky_solve` counts as no curvature, takes ``mu`` times the
#: largest, as every entry did before): the step is
#: Newton's in the directions the data determine and small in the others
#: (scikit-learn's newton-cholesky falls back to lbfgs there; a gradient
#: step every iteration crawled).
NEWTON_DAMPING = (1e-10, 1e-8, 1e-6, 1e-4)


def damped_solve(matrix: np.ndarray, rhs: np.ndarray, min_pivot_ratio: float):
    """:func:`cholesky_solve`, then with the diagonal raised by each of
    :data:`NEWTON_DAMPING` in turn; None if every one fails.  Deterministic:
    the same inputs give the same bits."""
    solution = cholesky_solve(matrix, rhs, min_pivot_ratio)
    diagonal = np.diag(matrix)
    largest = max_abs(diagonal) if matrix.shape[0] else 0.0
    # an entry with no curvature next to the largest (cholesky_solve's floor) takes the largest's
    reference = np.where(diagonal > min_pivot_ratio * min_pivot_ratio * largest, diagonal, largest)
    for damping in NEWTON_DAMPING:
        if solution is not None or not largest > 0:
            break
        raised = matrix + np.diag(damping * reference)
        solution = cholesky_solve(raised, rhs, min_pivot_ratio)
    return solution


def cholesky_solve(matrix: np.ndarray, rhs: np.ndarray, min_pivot_ratio: float = 1e-12):
    """Solve ``matrix @ x = rhs`` for symmetric positive definite ``matrix``.

    Every inner product is a :func:`math.fsum`, so the result depends only on
    the inputs' values.  Returns None when a pivot is not positive or is below
    ``min_pivot_ratio`` times its own diagonal entry: what is left of a column
    once the columns before it are taken out, relative to the column (a
    column that is a combination of the others), whatever the units of the
    features (relative to the largest entry, a penalty's curvature on one
    feature of tiny spread made a well-posed system "singular").  A pivot
    must also exceed ``min_pivot_ratio**2`` times the largest diagonal entry:
    a curvature that small next to the others (probabilities saturated by
    separated classes) is none, and its step would be beyond any line search.
    """
    diagonal = np.diag(matrix)
    largest = max_abs(diagonal) if diagonal.size else 0.0
    factor, failed = cholesky_factor(
        matrix, np.maximum(min_pivot_ratio * diagonal, min_pivot_ratio * min_pivot_ratio * largest)
    )
    if failed is not None:
        return None
    return _back_substitute(factor, _forward_substitute(factor, rhs))


def cholesky_factor(matrix: np.ndarray, min_pivot: np.ndarray) -> tuple[np.ndarray, int | None]:
    """The lower triangular ``L`` of ``matrix = L L^T`` (symmetric positive
    definite), every inner product a :func:`math.fsum`; with the first
    column ``j`` whose pivot is not above ``min_pivot[j]`` (``L`` then holds
    the first ``j`` columns only), else None."""
    n = matrix.shape[0]
    factor = np.zeros((n, n))
    for j in range(n):
        row = factor[j, :j]
        pivot = math.fsum([matrix[j, j], *(-(row * row)).tolist()])
        if not pivot > min_pivot[j]:
            return factor, j
        factor[j, j] = math.sqrt(pivot)
        for i in range(j + 1, n):
            products = -(factor[i, :j] * row)
            factor[i, j] = math.fsum([matrix[i, j], *products.tolist()]) / factor[j, j]
    return factor, None


def cholesky_inverse(factor: np.ndarray) -> np.ndarray:
    """``(L L^T)^-1 = L^-T L^-1`` from the factor ``L`` of
    :func:`cholesky_factor`, every inner product a :func:`math.fsum`."""
    n = factor.shape[0]
    inverse_factor = np.zeros((n, n))  # L^-1, lower triangular, column by column
    for k in range(n):
        inverse_factor[k, k] = 1.0 / factor[k, k]
        for i in range(k + 1, n):
            products = -(factor[i, k:i] * inverse_factor[k:i, k])
            inverse_factor[i, k] = math.fsum(products.tolist()) / factor[i, i]
    inverse = np.empty((n, n))
    for i in range(n):
        for j in range(i, n):
            inverse[i, j] = inverse[j, i] = math.fsum((inverse_factor[j:, i] * inverse_factor[j:, j]).tolist())
    return inverse


def _forward_substitute(factor: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``L^-1 rhs`` for lower triangular ``L``."""
    n = factor.shape[0]
    forward = np.zeros(n)
    for i in range(n):
        products = -(factor[i, :i] * forward[:i])
        forward[i] = math.fsum([rhs[i], *products.tolist()]) / factor[i, i]
    return forward


def _back_substitute(factor: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``L^-T rhs`` for lower triangular ``L``."""
    n = factor.shape[0]
    solution = np.zeros(n)
    for i in reversed(range(n)):
        products = -(factor[i + 1 :, i] * solution[i + 1 :])
        solution[i] = math.fsum([rhs[i], *products.tolist()]) / factor[i, i]
    return solution


def cholesky_combination(factor: np.ndarray, matrix: np.ndarray, j: int) -> np.ndarray:
    """The coefficients ``c`` of column ``j`` of ``matrix`` on the columns
    before it: the solution of ``matrix[:j, :j] c = matrix[:j, j]`` from the
    first ``j`` columns of its factor (:func:`cholesky_factor` stopped at ``j``)."""
    head = factor[:j, :j]
    return _back_substitute(head, _forward_substitute(head, matrix[:j, j]))
