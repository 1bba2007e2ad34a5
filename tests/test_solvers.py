"""Solver logic alone, on fake objectives: no data, no cluster."""

import math

import numpy as np
import pytest

from pipeline.solvers import SolverOptions, gradient_descent


class Quadratic:
    """f(w) = 1/2 (w-c)^T A (w-c); counts evaluations."""

    def __init__(self, diag, center):
        self.diag = np.asarray(diag, dtype=float)
        self.center = np.asarray(center, dtype=float)
        self.calls = 0

    def __call__(self, coef):
        self.calls += 1
        delta = coef - self.center
        return 0.5 * float(np.sum(self.diag * delta * delta)), self.diag * delta


def test_converges_on_a_quadratic_and_reports_it():
    fun = Quadratic([1.0, 4.0, 0.5], [1.0, -2.0, 3.0])
    result = gradient_descent(fun, np.zeros(3), SolverOptions(tol=1e-10, ftol=0.0, max_iter=10_000))
    assert result.converged
    np.testing.assert_allclose(result.coef, fun.center, atol=1e-9)
    assert np.max(np.abs(result.grad)) <= 1e-10
    assert result.n_passes == fun.calls
    assert result.n_iter == len(result.history) - 1
    assert result.history[-1].n_passes == result.n_passes
    losses = [record.loss for record in result.history]
    assert all(b < a for a, b in zip(losses, losses[1:]))  # Armijo: strict decrease


def test_stops_at_max_iter_without_claiming_convergence():
    fun = Quadratic([1.0, 100.0], [5.0, 5.0])
    result = gradient_descent(fun, np.zeros(2), SolverOptions(max_iter=3, tol=1e-12, ftol=0.0))
    assert not result.converged
    assert result.n_iter == 3
    assert "max_iter" in result.message


def test_zero_iterations_when_already_optimal():
    fun = Quadratic([2.0], [0.0])
    result = gradient_descent(fun, np.zeros(1))
    assert result.converged and result.n_iter == 0 and result.n_passes == 1


def test_armijo_backtracking_shrinks_a_too_long_step():
    fun = Quadratic([1000.0], [1.0])  # a unit step overshoots by far
    result = gradient_descent(fun, np.zeros(1), SolverOptions(max_iter=1, tol=0.0, ftol=0.0))
    step = result.history[1].step
    assert step < 2.0 / 1000.0  # only steps below 2/L decrease a quadratic
    assert result.history[1].loss <= result.history[0].loss - 1e-4 * step * 1000.0**2
    assert result.n_passes > 2  # backtracked at least once


def test_line_search_failure_is_reported():
    def cliff(coef):  # the gradient points downhill but every trial step is worse
        return (0.0 if coef[0] == 0.0 else 1.0), np.array([1.0])

    result = gradient_descent(cliff, np.zeros(1), SolverOptions(max_line_search=5))
    assert not result.converged
    assert "line search" in result.message
    assert result.n_passes == 1 + 6


def test_nan_trial_losses_are_rejected():
    def guarded(coef):
        if abs(coef[0]) > 1.0:
            return math.nan, np.array([math.nan])
        return 0.5 * (coef[0] - 0.9) ** 2, np.array([coef[0] - 0.9])

    result = gradient_descent(guarded, np.zeros(1), SolverOptions(initial_step=64.0, tol=1e-9))
    assert result.converged
    assert result.coef[0] == pytest.approx(0.9, abs=1e-8)


def test_barzilai_borwein_saves_passes_and_plain_growth_still_converges():
    fun_bb = Quadratic([1.0, 10.0, 0.1], [1.0, 2.0, 3.0])
    fun_grow = Quadratic([1.0, 10.0, 0.1], [1.0, 2.0, 3.0])
    bb = gradient_descent(fun_bb, np.zeros(3), SolverOptions(tol=1e-8, ftol=0.0, max_iter=10_000))
    grow = gradient_descent(
        fun_grow, np.zeros(3), SolverOptions(tol=1e-8, ftol=0.0, max_iter=10_000, barzilai_borwein=False)
    )
    assert bb.converged and grow.converged
    np.testing.assert_allclose(grow.coef, fun_grow.center, atol=1e-7)
    assert bb.n_passes < grow.n_passes
