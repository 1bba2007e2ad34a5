"""Solver logic alone, on fake objectives: no data, no cluster."""

import math

import numpy as np
import pytest

from pipeline import solvers as solvers_module
from pipeline.solvers import GD_FTOL_WINDOW, IterationRecord, SolverOptions, gradient_descent


class Quadratic:
    """f(w) = 1/2 (w-c)^T A (w-c); counts evaluations."""

    def __init__(self, diag, center):
        self.diag = np.asarray(diag, dtype=float)
        self.center = np.asarray(center, dtype=float)
        self.calls = 0

    def __call__(self, coef):
        self.calls += 1
        delta = coef - self.center
        return 0.5 * math.fsum(self.diag * delta * delta), self.diag * delta


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


# --------------------------------------------------------------------------- L-BFGS, OWL-QN, Newton

from pipeline.solvers import cholesky_solve, damped_solve, lbfgs, newton, pseudo_gradient  # noqa: E402


class Rosenbrock:
    """A classic non-quadratic test; minimum 0 at (1, 1)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, coef):
        self.calls += 1
        a, b = coef
        loss = (1 - a) ** 2 + 100 * (b - a * a) ** 2
        grad = np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])
        return loss, grad


class TinyLogistic:
    """Mean logistic loss of a small fixed dataset, with gradient and Hessian."""

    def __init__(self, seed=0, n=200, d=3):
        rng = np.random.default_rng(seed)
        self.X = np.column_stack([rng.standard_normal((n, d)) * [1.0, 3.0, 0.2][:d], np.ones(n)])
        self.y = (rng.random(n) < 1 / (1 + np.exp(-self.X @ np.append(rng.normal(size=d), 0.3)))).astype(float)
        self.calls = 0

    def __call__(self, coef):
        loss, grad, _ = self.with_hessian(coef)
        return loss, grad

    def with_hessian(self, coef):
        self.calls += 1
        z = self.X @ coef
        h = 1 / (1 + np.exp(-z))
        loss = float(np.mean(np.logaddexp(0, z) - self.y * z))
        grad = self.X.T @ (h - self.y) / len(z)
        hess = (self.X * (h * (1 - h))[:, None]).T @ self.X / len(z)
        return loss, grad, hess


def test_lbfgs_converges_on_rosenbrock_with_wolfe_steps():
    fun = Rosenbrock()
    result = lbfgs(fun, np.array([-1.2, 1.0]), SolverOptions(tol=1e-8, ftol=0.0, max_iter=500))
    assert result.converged, result.message
    np.testing.assert_allclose(result.coef, [1.0, 1.0], atol=1e-6)
    assert result.n_passes == fun.calls
    losses = [record.loss for record in result.history]
    assert all(b <= a for a, b in zip(losses, losses[1:]))


def test_lbfgs_takes_unit_steps_on_a_quadratic_and_few_passes():
    fun = Quadratic(np.linspace(1.0, 50.0, 8), np.arange(8.0))
    result = lbfgs(fun, np.zeros(8), SolverOptions(tol=1e-10, ftol=0.0))
    assert result.converged
    np.testing.assert_allclose(result.coef, fun.center, atol=1e-9)
    assert result.n_passes < 40  # gradient descent needs hundreds here


def test_lbfgs_history_size_is_used():
    short = lbfgs(Rosenbrock(), np.array([-1.2, 1.0]), SolverOptions(tol=1e-8, ftol=0.0, history_size=1))
    long = lbfgs(Rosenbrock(), np.array([-1.2, 1.0]), SolverOptions(tol=1e-8, ftol=0.0, history_size=10))
    assert short.converged and long.converged
    assert short.n_iter != long.n_iter


def test_newton_converges_quadratically_on_a_logistic_fake():
    fun = TinyLogistic()
    result = newton(fun.with_hessian, np.zeros(4), SolverOptions(tol=1e-12, ftol=0.0))
    assert result.converged and result.n_iter <= 8
    reference = lbfgs(TinyLogistic(), np.zeros(4), SolverOptions(tol=1e-10, ftol=0.0))
    np.testing.assert_allclose(result.coef, reference.coef, atol=1e-8)
    norms = [record.grad_norm for record in result.history]
    assert norms[-1] < 1e-12 and norms[-2] < 1e-4  # the last step squares a small error


def test_newton_falls_back_to_a_gradient_step_on_a_singular_hessian():
    def flat(coef):  # Hessian is singular in the second coordinate
        loss = 0.5 * coef[0] ** 2 + 0.25 * coef[1] ** 4
        return loss, np.array([coef[0], coef[1] ** 3]), np.diag([1.0, 0.0])

    result = newton(flat, np.array([1.0, 1.0]), SolverOptions(tol=1e-3, ftol=0.0, max_iter=5000))
    assert result.converged
    assert abs(result.coef[1]) < 0.2


def test_cholesky_solve_matches_numpy_and_rejects_indefinite():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 6))
    matrix = A @ A.T + 6 * np.eye(6)
    rhs = rng.standard_normal(6)
    np.testing.assert_allclose(cholesky_solve(matrix, rhs), np.linalg.solve(matrix, rhs), rtol=1e-12)
    assert cholesky_solve(np.array([[1.0, 2.0], [2.0, 1.0]]), np.ones(2)) is None
    assert cholesky_solve(np.diag([1.0, 1e-30]), np.ones(2)) is None  # no curvature next to the other
    # ... which the damping gives the largest entry's (as before units mattered), so Newton still steps
    assert damped_solve(np.diag([1.0, 1e-30]), np.ones(2), 1e-12) is not None
    # collinear columns next to a column 1e14 larger: damped by their own entries, a full step
    # (damped by the largest entry, the step was 5000x too short: Newton crawled to max_iter)
    matrix = np.zeros((3, 3))
    matrix[0, 0] = 1e14
    matrix[1:, 1:] = [[1.0, 1.0], [1.0, 1.0 + 1e-15]]
    np.testing.assert_allclose(damped_solve(matrix, np.array([0.0, 1.0, 1.0]), 1e-12), [0.0, 0.5, 0.5], atol=1e-4)
    collinear = np.array([[1.0, 1e-6], [1e-6, 1e-12 * (1 + 1e-14)]])  # the second column is the first's 1e-6
    assert cholesky_solve(collinear, np.ones(2)) is None


def test_cholesky_solve_does_not_depend_on_the_units_of_the_columns():
    """A pivot is measured against its own column: a well-posed system whose
    diagonal spans 1e13 (a penalty's curvature on a feature of tiny spread)
    was "singular" against the largest entry, and Newton crawled to max_iter
    with damped steps 5000x too short."""
    matrix = np.array([[0.2, 0.0, 0.01], [0.0, 1e13, 0.0], [0.01, 0.0, 0.25]])
    rhs = np.array([0.1, 1.0, 0.1])
    np.testing.assert_allclose(cholesky_solve(matrix, rhs), np.linalg.solve(matrix, rhs), rtol=1e-14)
    units = np.array([1e-3, 1.0, 1e3])  # the same system in other units: the same solution, rescaled
    rescaled = cholesky_solve(matrix * np.outer(units, units), rhs * units)
    np.testing.assert_allclose(rescaled * units, np.linalg.solve(matrix, rhs), rtol=1e-14)


def test_pseudo_gradient_is_the_minimum_norm_subgradient():
    coef = np.array([1.0, -1.0, 0.0, 0.0, 0.0])
    grad = np.array([0.5, 0.5, 0.5, -2.0, 3.0])
    l1 = np.ones(5)
    np.testing.assert_array_equal(pseudo_gradient(coef, grad, l1), [1.5, -0.5, 0.0, -1.0, 2.0])


@pytest.mark.parametrize("solve", [lbfgs, gradient_descent])
def test_l1_gives_the_soft_thresholded_optimum_with_exact_zeros(solve):
    # min 1/2 |w - c|^2 + l1 |w|  has the closed form  sign(c) max(|c| - l1, 0)
    fun = Quadratic(np.ones(5), [3.0, -0.5, 0.2, -2.0, 0.0])
    l1 = np.full(5, 1.0)
    result = solve(fun, np.zeros(5), SolverOptions(tol=1e-10, ftol=0.0), None, l1)
    assert result.converged, result.message
    np.testing.assert_allclose(result.coef, [2.0, 0.0, 0.0, -1.0, 0.0], atol=1e-9)
    assert (result.coef[[1, 2, 4]] == 0.0).all()  # exact zeros, not tiny numbers
    expected = 0.5 * (1 + 0.25 + 0.04 + 1 + 0) + 3.0
    assert result.loss == pytest.approx(expected, rel=1e-12)  # history includes the L1 term


class OffsetQuadratic(Quadratic):
    """1 + the diagonal quadratic: the optimum's loss is 1, so a relative
    change is measured against a loss that does not go to 0."""

    def __call__(self, coef):
        loss, grad = super().__call__(coef)
        return 1.0 + loss, grad


def test_ftol_stops_on_a_tiny_relative_change():
    fun = OffsetQuadratic([1.0, 1e-6], [1.0, 1.0])
    result = gradient_descent(fun, np.zeros(2), SolverOptions(tol=0.0, ftol=1e-3, barzilai_borwein=False))
    assert result.converged and "ftol" in result.message


@pytest.mark.parametrize("spread, d", [(4, 10), (4, 20), (5, 20)])
def test_gradient_descent_ftol_is_not_fooled_by_one_short_step(monkeypatch, spread, d):
    """Barzilai-Borwein steps alternate long and short ones: one iteration that
    barely lowers the loss stopped gd 'converged' with the loss still 5e-9 to
    5e-7 (relative) above the optimum here.  The rule looks at the change
    over GD_FTOL_WINDOW iterations: it stops within 1e-9 of the optimum, a
    hundred times closer or more than the one-iteration rule (run too).

    The curvatures are Python's ``10.0 ** e`` (the C library's pow, correctly
    rounded), not ``np.logspace``: numpy's SIMD power rounds differently on
    AVX-512 CPUs, and on such a problem the loss where the rule stops moves
    by orders of magnitude (1e-12 to 2e-10 here)."""
    diag = np.array([10.0 ** float(e) for e in np.linspace(0, -spread, d)])
    options = SolverOptions(tol=1e-9, ftol=1e-12, max_iter=100_000)
    result = gradient_descent(OffsetQuadratic(diag, np.ones(d)), np.zeros(d), options)
    assert result.converged
    assert result.loss - 1.0 <= 1e-9
    if "ftol" in result.message:
        assert f"over the last {GD_FTOL_WINDOW} iterations" in result.message
        losses = [record.loss for record in result.history]
        assert losses[-1 - GD_FTOL_WINDOW] - losses[-1] <= 1e-12 * losses[-1 - GD_FTOL_WINDOW]
    monkeypatch.setattr(solvers_module, "GD_FTOL_WINDOW", 1)
    one_step = gradient_descent(OffsetQuadratic(diag, np.ones(d)), np.zeros(d), options)
    assert one_step.loss - 1.0 >= 100 * (result.loss - 1.0)


# --------------------------------------------------------------------------- preconditioning, no-progress stop,
# orthant-wise Newton

from pipeline.solvers import SolverState  # noqa: E402


class QuadraticWithHessian(Quadratic):
    """The diagonal quadratic, with its Hessian for :func:`newton`."""

    def with_hessian(self, coef):
        loss, grad = self(coef)
        return loss, grad, np.diag(self.diag)


class Logistic16(TinyLogistic):
    """16 rows: small enough that the loss reaches its rounding floor quickly."""

    def __init__(self, seed=4):
        super().__init__(seed=seed, n=16, d=3)


def test_preconditioner_makes_uneven_curvature_cheap():
    # what a penalty does to a feature of tiny spread: one curvature 1e4 times the others
    diag = np.array([1.0, 2.0, 1e4, 0.5])
    plain = lbfgs(Quadratic(diag, [1.0, -1.0, 0.01, 2.0]), np.zeros(4), SolverOptions(tol=1e-10, ftol=0.0))
    fun = Quadratic(diag, [1.0, -1.0, 0.01, 2.0])
    result = lbfgs(fun, np.zeros(4), SolverOptions(tol=1e-10, ftol=0.0), preconditioner=1.0 / diag)
    assert plain.converged and result.converged
    np.testing.assert_allclose(result.coef, fun.center, atol=1e-12)
    assert result.n_passes <= 3 < plain.n_passes  # the exact inverse diagonal: one Newton step
    assert result.n_passes == fun.calls


def test_a_unit_preconditioner_is_no_preconditioner_bit_for_bit():
    runs = [
        lbfgs(Rosenbrock(), np.array([-1.2, 1.0]), SolverOptions(tol=1e-8, ftol=0.0), preconditioner=p)
        for p in (None, np.ones(2))
    ]
    assert runs[0].coef.tobytes() == runs[1].coef.tobytes()
    assert runs[0].history == runs[1].history


@pytest.mark.parametrize("bad", [np.array([1.0, 0.0]), np.array([1.0, -1.0]), np.array([1.0, np.inf]), np.ones(3)])
def test_a_preconditioner_that_is_not_positive_and_finite_is_refused(bad):
    with pytest.raises(ValueError, match="preconditioner"):
        lbfgs(Rosenbrock(), np.array([-1.2, 1.0]), preconditioner=bad)


def test_preconditioned_owlqn_keeps_exact_zeros():
    fun = Quadratic([1.0, 4.0, 100.0, 1.0, 9.0], [3.0, -0.5, 0.2, -2.0, 0.0])
    l1 = np.ones(5)
    result = lbfgs(fun, np.zeros(5), SolverOptions(tol=1e-10, ftol=0.0), None, l1, preconditioner=1.0 / fun.diag)
    assert result.converged, result.message
    # min a/2 (w - c)^2 + |w|: sign(c) max(|c| - 1/a, 0)
    expected = np.sign(fun.center) * np.maximum(np.abs(fun.center) - 1.0 / fun.diag, 0.0)
    np.testing.assert_allclose(result.coef, expected, atol=1e-10)
    assert (result.coef[expected == 0.0] == 0.0).all()


def test_owlqn_stops_when_no_step_can_lower_the_loss():
    """tol=0 and ftol=0 cannot be met: once the loss sits at its rounding floor,
    OWL-QN used to repeat the same iteration (and its ~20 backtracking passes)
    until max_iter.  Now it stops there and says why, without claiming convergence."""
    fun = Logistic16()
    l1 = np.array([0.01, 0.01, 0.01, 0.0])
    result = lbfgs(fun, np.zeros(4), SolverOptions(tol=0.0, ftol=0.0, max_iter=100), None, l1)
    assert not result.converged
    assert "could not decrease the loss" in result.message and "machine precision" in result.message
    assert result.n_iter < 40 and result.n_passes < 80, (result.n_iter, result.n_passes)
    reference = lbfgs(Logistic16(), np.zeros(4), SolverOptions(tol=1e-9, ftol=0.0), None, l1)
    assert reference.converged
    assert result.loss <= reference.loss  # it stopped at the bottom, not on the way


@pytest.mark.parametrize("ftol, converged", [(0.0, False), (1e-12, True)])
def test_no_progress_is_converged_only_under_ftol(ftol, converged):
    def flat(coef):  # the loss cannot move at all; a (bogus) gradient says it could
        return 1.0, np.array([1e-20])

    result = lbfgs(flat, np.zeros(1), SolverOptions(tol=0.0, ftol=ftol, max_iter=50))
    assert result.converged is converged
    assert result.n_iter == 0 and result.n_passes < 50
    assert ("ftol" if converged else "machine precision") in result.message


def test_newton_at_the_noise_floor_still_takes_a_step_that_cuts_the_gradient():
    # the last Newton step gains nothing visible in the loss but squares the gradient
    result = newton(TinyLogistic().with_hessian, np.zeros(4), SolverOptions(tol=1e-12, ftol=0.0))
    assert result.converged, result.message
    last, before = result.history[-1], result.history[-2]
    assert last.loss == before.loss  # no decrease at machine precision...
    assert last.grad_norm < 1e-12 < 1e-9 < before.grad_norm  # ...and yet real progress


def test_orthant_wise_newton_gives_the_soft_thresholded_optimum_in_few_passes():
    fun = QuadraticWithHessian([1.0, 4.0, 100.0, 1.0, 9.0], [3.0, -0.5, 0.2, -2.0, 0.0])
    l1 = np.ones(5)
    result = newton(fun.with_hessian, np.zeros(5), SolverOptions(tol=1e-12, ftol=0.0), None, l1)
    assert result.converged, result.message
    expected = np.sign(fun.center) * np.maximum(np.abs(fun.center) - 1.0 / fun.diag, 0.0)
    np.testing.assert_allclose(result.coef, expected, atol=1e-12)
    assert (result.coef[expected == 0.0] == 0.0).all()  # exact zeros
    assert result.n_passes <= 3  # a diagonal quadratic: one Newton step on the free coordinates
    assert result.loss == pytest.approx(fun(result.coef)[0] + np.sum(np.abs(result.coef)), rel=1e-15)


def test_orthant_wise_newton_and_owlqn_agree_on_a_logistic_fake():
    l1 = np.array([0.02, 0.02, 0.02, 0.0])  # intercept unpenalized
    fun = TinyLogistic()
    options = SolverOptions(tol=1e-9)  # this fake's loss (np.mean) is at its rounding floor by 1e-10
    second = newton(fun.with_hessian, np.zeros(4), options, None, l1)
    first = lbfgs(TinyLogistic(), np.zeros(4), options, None, l1)
    assert second.converged and first.converged
    np.testing.assert_allclose(second.coef, first.coef, atol=1e-7)
    assert ((second.coef == 0.0) == (first.coef == 0.0)).all()
    assert second.n_passes < first.n_passes


def test_newton_leaves_out_a_coordinate_that_cannot_move():
    # a constant column without L2: zero Hessian row, zero gradient; the others get a Newton step
    fun = TinyLogistic()

    def padded(coef):
        loss, grad, hess = fun.with_hessian(np.delete(coef, 1))
        return loss, np.insert(grad, 1, 0.0), np.insert(np.insert(hess, 1, 0.0, axis=0), 1, 0.0, axis=1)

    result = newton(padded, np.zeros(5), SolverOptions(tol=1e-12, ftol=0.0))
    assert result.converged and result.n_iter <= 8  # not gradient steps
    assert result.coef[1] == 0.0


class CountingLogistic(TinyLogistic):
    """TinyLogistic counting Hessian and gradient-only evaluations apart."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hessians = 0
        self.gradients = 0

    def __call__(self, coef):
        self.gradients += 1
        loss, grad, _ = TinyLogistic.with_hessian(self, coef)
        return loss, grad

    def with_hessian(self, coef):
        self.hessians += 1
        return TinyLogistic.with_hessian(self, coef)


def test_newton_evaluates_the_predicted_last_step_without_the_hessian():
    options = SolverOptions(tol=1e-10, ftol=0.0)
    plain = CountingLogistic()
    full = newton(plain.with_hessian, np.zeros(4), options)
    lazy = CountingLogistic()
    result = newton(lazy.with_hessian, np.zeros(4), options, gradient_only=lazy)
    # the same iterates, bit for bit, and the same number of passes ...
    assert result.coef.tobytes() == full.coef.tobytes() and result.converged
    assert (result.history, result.n_passes) == (full.history, full.n_passes)
    # ... of which the last one carried no Hessian
    assert (lazy.hessians, lazy.gradients) == (full.n_passes - 1, 1)
    assert plain.gradients == 0


def test_newton_last_step_without_hessian_at_max_iter():
    options = SolverOptions(tol=1e-14, ftol=0.0, max_iter=2)
    fun = CountingLogistic()
    result = newton(fun.with_hessian, np.zeros(4), options, gradient_only=fun)
    assert not result.converged and result.n_iter == 2
    assert fun.gradients == 1 and fun.hessians == result.n_passes - 1


def test_a_mispredicted_last_step_computes_the_hessian_and_goes_on(monkeypatch):
    """A step predicted to end the run that does not costs one pass more; the
    iterates are those of the run without the prediction."""
    from pipeline import solvers

    options = SolverOptions(tol=1e-10, ftol=0.0)
    full = newton(CountingLogistic().with_hessian, np.zeros(4), options)
    monkeypatch.setattr(solvers, "_last_step_predicted", lambda *args: True)  # always wrong but at the end
    fun = CountingLogistic()
    states: list[SolverState] = []
    result = newton(fun.with_hessian, np.zeros(4), options, gradient_only=fun, checkpoint=states.append)
    assert result.coef.tobytes() == full.coef.tobytes()
    assert [r.loss for r in result.history] == [r.loss for r in full.history]
    assert result.n_iter == full.n_iter and fun.gradients == full.n_iter
    assert result.n_passes == full.n_passes + full.n_iter - 1  # a Hessian pass after each step but the last
    assert all(state.hess is None for state in states[1:])
    for state in states:  # a state without its Hessian resumes bit for bit
        again = CountingLogistic()
        resumed = newton(again.with_hessian, np.zeros(4), options, gradient_only=again, resume=state)
        assert resumed.coef.tobytes() == result.coef.tobytes()
        assert (resumed.history, resumed.n_passes) == (result.history, result.n_passes)


@pytest.mark.parametrize("solve", ["lbfgs-preconditioned", "newton-l1"])
def test_every_state_resumes_bit_for_bit(solve):
    l1 = np.array([0.01, 0.0, 0.01, 0.0])

    def run(fun, **kwargs):
        options = SolverOptions(tol=1e-12, ftol=0.0, max_iter=40)
        if solve == "newton-l1":
            return newton(fun.with_hessian, np.zeros(4), options, None, l1, **kwargs)
        return lbfgs(fun, np.zeros(4), options, None, l1, preconditioner=np.array([4.0, 0.5, 2.0, 4.0]), **kwargs)

    states: list[SolverState] = []
    full = run(TinyLogistic(), checkpoint=states.append)
    assert len(states) == full.n_iter + 1 >= 4
    for state in states:
        fun = TinyLogistic()
        resumed = run(fun, resume=state)
        assert resumed.coef.tobytes() == full.coef.tobytes()
        assert (resumed.history, resumed.message, resumed.n_passes) == (full.history, full.message, full.n_passes)
        assert fun.calls == full.n_passes - state.n_passes


def test_the_preconditioner_of_a_feature_of_vanishing_spread_stays_usable():
    """std**2 underflowing (or l2/std**2 overflowing) leaves that coordinate
    unscaled instead of a zero or NaN entry the solver would refuse."""
    from pipeline.objective import LogisticObjective, Penalty, Standardization

    class NoData:
        n_features = 3

    scale = np.array([1.0, 1e-157, 1e-170])
    for l2 in (0.0, 1e-4):
        objective = LogisticObjective(NoData(), Penalty(l2=l2), Standardization(np.zeros(3), scale))
        p = objective.preconditioner()
        assert np.all(np.isfinite(p)) and np.all(p > 0)
        assert p[2] == 4.0 and p[-1] == 4.0
        assert p[0] == 1.0 / (0.25 + l2)


def _records(norms, passes=None):
    passes = passes or list(range(1, len(norms) + 1))
    return [IterationRecord(k, 1.0, g, 1.0, p) for k, (g, p) in enumerate(zip(norms, passes))]


def test_hand_over_policy():
    from pipeline.solvers import HAND_OVER_NEWTON_ITERATIONS, hand_over_to_newton, hessian_pass_cost

    assert hessian_pass_cost(9) == pytest.approx(1.65, abs=0.05)  # d = 8
    assert hessian_pass_cost(33) == pytest.approx(3.55, abs=0.1)  # d = 32
    fast = [1.0, 0.1, 0.01, 1e-3, 1e-4]  # L-BFGS at 10x per iteration: 3 more to 1e-7
    slow = [1.0, 0.9, 0.85, 0.8, 0.76]  # a stall: hundreds more
    assert not hand_over_to_newton(_records(fast), 1e-7, 33)
    assert hand_over_to_newton(_records(slow), 1e-7, 33)
    assert not hand_over_to_newton(_records(slow[:3]), 1e-7, 33)  # too few iterations to tell
    assert hand_over_to_newton(_records([1.0, 0.5, 0.5, 0.5, 0.5]), 1e-7, 33)  # no progress
    assert not hand_over_to_newton(_records([1.0, 0.5, 0.2, 0.1, 1e-8]), 1e-7, 33)  # converged
    # the threshold: the passes L-BFGS still needs against Newton's iterations x Hessian cost
    rate = 0.5
    norms = [rate**k for k in range(5)]
    needed = math.log(1e-7 / norms[-1]) / math.log(rate)  # passes at one per iteration
    cheap, dear = needed / HAND_OVER_NEWTON_ITERATIONS - 0.5, needed / HAND_OVER_NEWTON_ITERATIONS + 0.5
    d_cheap = next(d for d in range(1, 200) if hessian_pass_cost(d + 1) > cheap) - 1
    d_dear = next(d for d in range(1, 200) if hessian_pass_cost(d + 1) > dear)
    assert hand_over_to_newton(_records(norms), 1e-7, d_cheap + 1)
    assert not hand_over_to_newton(_records(norms), 1e-7, d_dear + 1)


def test_lbfgs_hands_over_with_a_newton_state_at_its_point():
    fun = TinyLogistic()
    seen = []

    def hand_over(history):
        seen.append(len(history))
        return len(history) == 4

    result = lbfgs(fun, np.zeros(4), SolverOptions(tol=1e-12, ftol=0.0), hand_over=hand_over)
    assert not result.converged and result.message == "handed over to newton"
    state = result.handover
    assert state.solver == "newton" and state.hess is None and state.n_iter == 3 == result.n_iter
    assert state.coef.tobytes() == result.coef.tobytes() and state.n_passes == result.n_passes
    assert seen == [1, 2, 3, 4]
    finished = newton(fun.with_hessian, state.coef, SolverOptions(tol=1e-12, ftol=0.0), resume=state, gradient_only=fun)
    assert finished.converged and finished.n_iter > state.n_iter
    assert finished.history[: len(state.history)] == list(state.history)


def test_the_last_step_without_hessian_keeps_the_line_search_budget():
    """A predicted last step whose unit step fails backtracks with the Hessian
    within the same max_line_search trials: the same result either way."""
    # here the unit step fails and 0.25 is the first accepted one (the third trial)
    start = np.array([-1.607008119483333, 1.084785164728454, 3.9120001353904117, 2.8412428893877264])
    steps = []
    for tries in (1, 2, 3, 40):
        options = SolverOptions(max_iter=1, max_line_search=tries, tol=1e-12, ftol=0.0)
        plain = newton(TinyLogistic(seed=3).with_hessian, start, options)
        fun = TinyLogistic(seed=3)
        lazy = newton(fun.with_hessian, start, options, gradient_only=fun)
        assert lazy.coef.tobytes() == plain.coef.tobytes()
        assert (lazy.n_iter, lazy.message, lazy.n_passes, lazy.history) == (
            plain.n_iter,
            plain.message,
            plain.n_passes,
            plain.history,
        )
        steps.append(lazy.history[-1].step)
    assert steps == [0.0, 0.0, 0.25, 0.25]  # 1 and 2 trials fail, 3 find the step


def test_the_hand_over_rule_takes_a_tolerance_float64_cannot_reach_in_one_ratio():
    """``now / tol`` beyond float64 (tol 1e-300): the pipeline's own logarithm
    refuses infinity, so the rule read it as infinitely far (hand over), not
    a ValueError from inside L-BFGS."""
    from pipeline.solvers import hand_over_to_newton

    history = [IterationRecord(i, 1.0, 1e10 * 0.99**i, 1.0, i + 1) for i in range(20)]
    assert hand_over_to_newton(history, 1e-300, 5)
