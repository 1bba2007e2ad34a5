"""Optimizers.  Pure functions of ``fun(coef) -> (loss, grad)``: no data, no Dask.

Every solver returns a :class:`SolverResult` with its convergence information
and per-iteration history.  Arithmetic on vectors here uses only elementwise
IEEE operations and :func:`math.fsum`, so the result depends on nothing but
the bits ``fun`` returns (BLAS dot products may vary with memory alignment).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = [
    "GDOptions",
    "IterationRecord",
    "SolverResult",
    "gradient_descent",
    "max_abs",
]

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]
Callback = Callable[["IterationRecord"], None]


@dataclass(frozen=True)
class IterationRecord:
    """State after an iteration (iteration 0 is the starting point)."""

    iteration: int
    loss: float
    grad_norm: float
    step: float
    n_passes: int


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


@dataclass(frozen=True)
class GDOptions:
    """Gradient descent with a backtracking (Armijo) line search.

    ``initial_step``: the first trial step.  Later iterations first try the
    Barzilai-Borwein step ``s.s / s.r`` (``s`` the last move, ``r`` the change
    of gradient), which adapts to the local curvature and saves most
    backtracking passes; where it is not positive and finite (or with
    ``barzilai_borwein=False``) they try the last accepted step times
    ``step_growth``.  A trial ``t`` is accepted when
    ``f(w - t g) <= f(w) - armijo * t * |g|^2``; otherwise ``t *= step_shrink``,
    at most ``max_backtracks`` times.
    """

    max_iter: int = 1000
    tol: float = 1e-6
    initial_step: float = 1.0
    step_growth: float = 2.0
    step_shrink: float = 0.5
    armijo: float = 1e-4
    max_backtracks: int = 60
    barzilai_borwein: bool = True


def max_abs(vector: np.ndarray) -> float:
    return float(np.max(np.abs(vector))) if vector.size else 0.0


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return math.fsum((a * b).tolist())


def _next_step(step: float, move: np.ndarray, grad_change: np.ndarray, options: GDOptions) -> float:
    if options.barzilai_borwein:
        curvature = _dot(move, grad_change)
        if curvature > 0:
            bb_step = _dot(move, move) / curvature
            if math.isfinite(bb_step) and bb_step > 0:
                return bb_step
    return step * options.step_growth


def gradient_descent(
    fun: Objective,
    coef0: np.ndarray,
    options: GDOptions = GDOptions(),
    callback: Callback | None = None,
) -> SolverResult:
    """Minimize ``fun`` by steepest descent; stop when ``|grad|_inf <= tol``."""
    coef = np.array(coef0, dtype=np.float64)
    loss, grad = fun(coef)
    n_passes = 1
    history = [IterationRecord(0, loss, max_abs(grad), 0.0, n_passes)]
    if callback:
        callback(history[-1])
    step = options.initial_step
    message = f"reached max_iter={options.max_iter}"
    converged = False
    n_iter = 0
    while True:
        if not math.isfinite(loss):
            message = f"loss is not finite ({loss}) at the starting point"
            break
        if max_abs(grad) <= options.tol:
            converged = True
            message = f"|grad|_inf <= tol={options.tol}"
            break
        if n_iter >= options.max_iter:
            break
        slope = _dot(grad, grad)
        for _ in range(options.max_backtracks + 1):
            trial = coef - step * grad
            trial_loss, trial_grad = fun(trial)
            n_passes += 1
            if trial_loss <= loss - options.armijo * step * slope:
                break
            step *= options.step_shrink
        else:
            message = "line search failed: no step decreased the loss enough"
            break
        move, grad_change = trial - coef, trial_grad - grad
        coef, loss, grad = trial, trial_loss, trial_grad
        n_iter += 1
        history.append(IterationRecord(n_iter, loss, max_abs(grad), step, n_passes))
        if callback:
            callback(history[-1])
        step = _next_step(step, move, grad_change, options)
    return SolverResult(
        coef=coef,
        loss=loss,
        grad=grad,
        n_iter=n_iter,
        n_passes=n_passes,
        converged=converged,
        message=message,
        history=history,
    )
