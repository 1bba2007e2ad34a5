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
    evaluator = InProcessEvaluator(list(zip(np.array_split(X, chunks), np.array_split(y, chunks))), X.shape[1])
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
        terms = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)] + ([terms[-1]] if len(terms) % 2 else [])
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


# ------------------------------------------------------------- weights, standardization, Hessian, statistics

from fractions import Fraction  # noqa: E402

from pipeline.kernel import KernelSpec, chunk_stats, exact_square  # noqa: E402
from pipeline.objective import (  # noqa: E402
    Penalty,
    Standardization,
    balanced_class_weight,
    summarize,
)


def test_weighted_standardized_partials_equal_the_formulas():
    X, y, coef = make_problem(5, n=400, d=4, scale=3.0)
    X = X + np.array([10.0, -2.0, 0.0, 100.0])
    weights = np.random.default_rng(5).uniform(0.0, 2.0, 400)
    center, scale = X.mean(axis=0), X.std(axis=0)
    spec = KernelSpec(center=center, scale=scale, class_weight=(0.5, 2.0), hessian=True)
    partials = chunk_partials(X, y, coef, weights, spec)
    loss_sum, grad_sum, weight_sum = partials.finalize()

    Xs = np.column_stack([(X - center) / scale, np.ones(400)])
    s = weights * np.where(y == 1, 2.0, 0.5)
    z = Xs @ coef
    h = 1 / (1 + np.exp(-z))
    assert weight_sum == pytest.approx(s.sum(), rel=1e-14)
    assert loss_sum == pytest.approx(np.sum(s * (np.logaddexp(0, z) - y * z)), rel=1e-12)
    np.testing.assert_allclose(grad_sum, Xs.T @ (s * (h - y)), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(partials.hessian_sum(), (Xs * (s * h * (1 - h))[:, None]).T @ Xs, rtol=1e-11, atol=1e-12)
    # unit weights are the unweighted kernel, bit for bit
    plain = chunk_partials(X, y, coef)
    assert chunk_partials(X, y, coef, np.ones(400)) == plain


def test_hessian_sums_are_split_invariant():
    X, y, coef = make_problem(6, n=900, d=5)
    spec = KernelSpec(hessian=True)
    whole = chunk_partials(X, y, coef, None, spec)
    parts = [chunk_partials(X[a:b], y[a:b], coef, None, spec) for a, b in [(0, 1), (1, 450), (450, 900)]]
    merged = parts[2].merge(parts[0]).merge(parts[1])
    assert merged == whole
    assert merged.hessian_sum().tobytes() == whole.hessian_sum().tobytes()


def test_exact_square_splits_without_error():
    rng = np.random.default_rng(7)
    x = rng.standard_normal(1000) * 10.0 ** rng.uniform(-100, 100, 1000)  # no underflow of lo
    hi, lo = exact_square(x)
    for value, a, b in zip(x[:200], hi[:200], lo[:200]):
        assert Fraction(a) + Fraction(b) == Fraction(value) ** 2


def test_statistics_are_exact_and_stable_with_large_offsets():
    rng = np.random.default_rng(8)
    X = np.column_stack([rng.standard_normal(5000) * 1e-3 + 1e6, rng.standard_normal(5000), np.full(5000, 4.0)])
    y = (rng.random(5000) < 0.3).astype(float)
    weights = rng.uniform(0.5, 1.5, 5000)
    stats = chunk_stats(X[:1234], y[:1234], weights[:1234]).merge(chunk_stats(X[1234:], y[1234:], weights[1234:]))
    assert stats == chunk_stats(X, y, weights)
    summary = summarize(stats)
    exact_mean = [sum(map(Fraction, X[:, j])) / 5000 for j in range(3)]
    assert summary.mean.tolist() == [float(m) for m in exact_mean]
    exact_var = sum((Fraction(v) - exact_mean[0]) ** 2 for v in X[:, 0]) / 5000
    assert summary.std[0] == pytest.approx(float(exact_var) ** 0.5, rel=1e-12)
    assert summary.std[2] == 0.0 and summary.constant_columns == [2]
    assert summary.standardization().scale[2] == 1.0
    assert summary.weight_sum == pytest.approx(weights.sum(), rel=1e-15)
    assert summary.positive_weight == pytest.approx((weights * y).sum(), rel=1e-15)
    c0, c1 = balanced_class_weight(summary)
    assert c1 == pytest.approx(weights.sum() / (2 * (weights * y).sum()), rel=1e-15)
    assert c0 == pytest.approx(weights.sum() / (2 * (weights * (1 - y)).sum()), rel=1e-15)


def test_standardization_round_trips_and_maps_the_gradient():
    standardization = Standardization(center=np.array([2.0, -1.0]), scale=np.array([0.5, 4.0]))
    coef = np.array([1.5, -0.25, 0.75])
    beta = standardization.to_standardized(coef)
    np.testing.assert_allclose(standardization.to_original(beta), coef, rtol=1e-15)
    # chain rule against finite differences of a function of w
    f = lambda c: float(np.sin(c[0]) + c[1] ** 2 * c[2] + 3 * c[2])  # noqa: E731
    g = lambda c: np.array([np.cos(c[0]), 2 * c[1] * c[2], c[1] ** 2 + 3])  # noqa: E731
    f_beta = lambda b: f(standardization.to_original(b))  # noqa: E731
    numeric = np.array([(f_beta(beta + e) - f_beta(beta - e)) / 2e-6 for e in np.eye(3) * 1e-6])
    np.testing.assert_allclose(standardization.gradient_to_original(numeric), g(coef), rtol=1e-6)


def test_penalty_applies_to_original_units():
    X, y, coef = make_problem(9, n=300, d=3)
    standardization = Standardization(center=np.zeros(3), scale=np.array([2.0, 1.0, 0.5]))
    penalty = Penalty(l2=0.3)
    evaluator = InProcessEvaluator([(X, y)], 3)
    beta = standardization.to_standardized(coef)
    loss_std, _ = LogisticObjective(evaluator, penalty, standardization)(beta)
    loss_raw, _ = LogisticObjective(evaluator, penalty)(coef)
    assert loss_std == pytest.approx(loss_raw, rel=1e-13)
    bare, _ = LogisticObjective(evaluator)(coef)
    assert loss_raw - bare == pytest.approx(0.15 * np.sum(coef[:-1] ** 2), rel=1e-12)


def test_the_extremes_of_the_rows_that_count_merge_in_any_order_to_the_same_bits():
    """A column's least and largest value over the rows of positive weight:
    -0.0 is 0.0 (np.minimum keeps whichever comes second), a missing value
    among them makes the column vary, rows of weight 0 do not count."""
    from pipeline.kernel import Stats, weighted_extremes

    a = Stats.zeros(2).with_extremes(np.array([[-0.0, 1.0]]), np.ones(1))
    b = Stats.zeros(2).with_extremes(np.array([[0.0, 5.0], [7.0, np.nan]]), np.array([1.0, 0.0]))
    assert a.merge(b).extremes.tobytes() == b.merge(a).extremes.tobytes()
    assert a.merge(b).extremes.tolist() == [[0.0, 1.0], [0.0, 5.0]]
    assert weighted_extremes(np.array([[1.0], [np.nan]]), np.ones(2)).tolist() == [[-np.inf], [np.inf]]
    assert weighted_extremes(np.array([[1.0]]), None) is None
    assert weighted_extremes(np.array([[1.0]]), np.zeros(1)).tolist() == [[np.inf], [-np.inf]]
