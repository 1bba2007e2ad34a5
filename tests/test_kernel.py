"""The chunk kernel against the seed formulas (pipeline.kernel, pipeline.objective)."""

import math

import numpy as np
import pytest

from pipeline.kernel import Partials, chunk_partials, margins
from pipeline.objective import LogisticObjective
from pipeline.reduce import InProcessEvaluator


def make_problem(seed=0, n=500, d=6, scale=1.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * scale
    y = (rng.random(n) < 0.4).astype(np.float64)
    coef = rng.normal(0, 0.5, size=d + 1)
    return X, y, coef


def mean_loss_grad(X, y, coef, chunks=1):
    evaluator = InProcessEvaluator(
        list(zip(np.array_split(X, chunks), np.array_split(y, chunks))), X.shape[1]
    )
    return LogisticObjective(evaluator)(coef)


def test_gradient_equals_naive_per_row_loop():
    X, y, coef = make_problem()
    _, grad = mean_loss_grad(X, y, coef)
    m, d = X.shape
    naive = [0.0] * (d + 1)
    for i in range(m):
        z = sum(X[i, j] * coef[j] for j in range(d)) + coef[d]
        h = 1.0 / (1.0 + math.exp(-z))
        for j in range(d):
            naive[j] += (h - y[i]) * X[i, j]
        naive[d] += h - y[i]
    np.testing.assert_allclose(grad, np.array(naive) / m, rtol=1e-12, atol=1e-15)


def test_loss_equals_cross_entropy_on_moderate_margins():
    X, y, coef = make_problem(1)
    loss, _ = mean_loss_grad(X, y, coef)
    z = X @ coef[:-1] + coef[-1]
    assert np.abs(z).max() < 10
    h = 1.0 / (1.0 + np.exp(-z))
    cross_entropy = -np.mean(y * np.log(h) + (1 - y) * np.log(1 - h))
    assert loss == pytest.approx(cross_entropy, rel=1e-13)


def test_gradient_matches_central_finite_differences():
    X, y, coef = make_problem(2, n=300, d=4)
    _, grad = mean_loss_grad(X, y, coef)
    eps = 1e-6
    for j in range(coef.size):
        step = np.zeros_like(coef)
        step[j] = eps
        plus, _ = mean_loss_grad(X, y, coef + step)
        minus, _ = mean_loss_grad(X, y, coef - step)
        assert grad[j] == pytest.approx((plus - minus) / (2 * eps), rel=1e-6, abs=1e-9)


def test_loss_stays_finite_for_huge_margins():
    X = np.array([[1.0], [1.0], [-1.0], [-1.0]])
    y = np.array([1.0, 0.0, 1.0, 0.0])
    loss, grad = mean_loss_grad(X, y, np.array([800.0, 0.0]))
    # rows: z=800,y=1 -> 0; z=800,y=0 -> 800; z=-800,y=1 -> 800; z=-800,y=0 -> 0
    assert loss == 400.0
    assert np.isfinite(grad).all()
    np.testing.assert_array_equal(grad, [(1 + 1) / 4 * 1.0 - 0.0, 0.0])


def test_partials_count_rows_and_are_plain_sums():
    X, y, coef = make_problem(3, n=257)
    whole = chunk_partials(X, y, coef)
    assert whole.n_samples == 257
    halves = chunk_partials(X[:100], y[:100], coef).merge(chunk_partials(X[100:], y[100:], coef))
    assert halves == whole
    assert Partials.zeros(X.shape[1] + 1).merge(whole) == whole
    empty = chunk_partials(X[:0], y[:0], coef)
    assert empty.n_samples == 0 and empty.finalize()[0] == 0.0


@pytest.mark.parametrize("d", [1, 2, 3, 7, 32, 33])
def test_margins_depend_only_on_the_row(d):
    rng = np.random.default_rng(d)
    X = rng.standard_normal((1000, d)) * 10.0 ** rng.uniform(-3, 3, size=d)
    coef = rng.standard_normal(d + 1)
    reference = margins(X, coef)
    for layout in (np.ascontiguousarray(X), np.asfortranarray(X)):
        for start, stop in [(0, 1), (1, 4), (3, 999), (517, 1000)]:
            part = margins(layout[start:stop], coef)
            assert part.tobytes() == reference[start:stop].tobytes()
    # the fixed pairwise order, written out for one row
    row = X[5]
    terms = list(row * coef[:-1])
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)] + (
            [terms[-1]] if len(terms) % 2 else []
        )
    assert reference[5] == terms[0] + coef[-1]


def test_kernel_result_does_not_depend_on_chunking_or_layout():
    X, y, coef = make_problem(4, n=2000, d=9, scale=100.0)
    reference = chunk_partials(X, y, coef)
    rng = np.random.default_rng(0)
    for _ in range(5):
        cuts = np.sort(rng.choice(2000, size=7, replace=False))
        total = Partials.zeros(10)
        for Xp, yp in zip(np.split(np.asfortranarray(X), cuts), np.split(y, cuts)):
            total = chunk_partials(Xp, yp, coef).merge(total)
        assert total == reference
