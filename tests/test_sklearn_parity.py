"""Parity with scikit-learn: every solver reaches scikit-learn's optimum of the same objective.

Our objective (see :mod:`pipeline.objective`) is

    J(w, b) = (1/S) sum_i s_i [log(1 + e^{z_i}) - y_i z_i] + l2/2 ||w||^2 + l1 ||w||_1

with ``s_i`` the sample weight times the class weight and ``S = sum_i s_i``.
scikit-learn minimizes ``C sum_i s_i loss_i + (1 - r)/2 ||w||^2 + r ||w||_1``
(``r = l1_ratio``), which is ``C S`` times ours with

    l2 = (1 - r) / (C S),    l1 = r / (C S),

where ``S`` includes the class weights (for ``"balanced"`` the class weights
keep the total, so ``S`` is the plain weight sum).  ``C = inf`` is the
unpenalized fit.

Every comparison evaluates scikit-learn's solution with *our* objective, so
both losses are the same function of the coefficients.  Coefficient
differences are relative L2 norms, reported both without and with the
intercept (both are asserted).  Run with ``-s`` to see the measurements.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.utils.class_weight import compute_class_weight

from pipeline.fitting import fit
from pipeline.objective import LogisticObjective, Penalty
from pipeline.reduce import InProcessEvaluator
from pipeline.solvers import SolverOptions

pytestmark = [
    # neither side may stop early without saying so
    pytest.mark.filterwarnings("error::pipeline.errors.ConvergenceWarning"),
    pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning"),
    # sklearn 1.9 deprecates ``penalty=``; we must not rely on deprecated spellings
    pytest.mark.filterwarnings("error::FutureWarning"),
]

LOSS_GAP = 1e-9  # relative, smooth problems
COEF_GAP = 1e-5  # relative L2 norm
L1_LOSS_GAP = 1e-7  # relative, L1 / elastic net against saga


# --------------------------------------------------------------------------- helpers


def chunked(X, y, weights=None, bounds=None):
    """Split the rows into a few uneven chunks ``(X, y[, weights])``."""
    n = X.shape[0]
    bounds = bounds or [0, n // 5, n // 2, (4 * n) // 5, n]
    return [(X[a:b], y[a:b]) if weights is None else (X[a:b], y[a:b], weights[a:b]) for a, b in zip(bounds, bounds[1:])]


def sk_coef(model: LogisticRegression) -> np.ndarray:
    """scikit-learn's solution as ``[w, b]`` (intercept last, like ours)."""
    return np.append(model.coef_.ravel(), model.intercept_)


def effective_weights(y, weights, class_weight):
    """``s_i`` as the kernel forms it: weight column times class weight."""
    s = np.ones(y.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if class_weight is None:
        return s
    return s * np.where(y == 1.0, class_weight[1], class_weight[0])


def total_loss(objective: LogisticObjective, coef: np.ndarray) -> float:
    """``J`` in raw space (objective built without standardization), L1 included."""
    loss, _ = objective(coef)
    return loss + objective.l1_term(coef)


def rel_norm(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def compare(label, ours, reference_coef, reference_loss, *, loss_gap, coef_gap=COEF_GAP):
    """Assert loss gap and coefficient distances; print the measurements."""
    gap = (ours.result.loss - reference_loss) / abs(reference_loss)
    coef_w = rel_norm(ours.coef[:-1], reference_coef[:-1])
    coef_all = rel_norm(ours.coef, reference_coef)
    print(
        f"\n{label}: passes={ours.n_passes} loss={ours.result.loss:.15g} "
        f"ref={reference_loss:.15g} gap={gap:+.2e} coef(w)={coef_w:.2e} coef(w,b)={coef_all:.2e}"
    )
    assert ours.result.converged, ours.result.message
    assert abs(gap) <= loss_gap, f"{label}: relative loss gap {gap:.3e}"
    assert coef_w <= coef_gap, f"{label}: coefficient gap (w) {coef_w:.3e}"
    assert coef_all <= coef_gap, f"{label}: coefficient gap (w, b) {coef_all:.3e}"
    return gap


# --------------------------------------------------------------------------- (1) 100k x 20, badly scaled


class ScaledProblem:
    """100k x 20: scales 0.1 ... 10, correlated columns, non-zero means; 4 chunks.

    scikit-learn references (``newton-cholesky``, ``tol=1e-12``) are computed
    once per ``C`` and shared by the tests.
    """

    N, D, SEED = 100_000, 20, 20240611

    def __init__(self) -> None:
        rng = np.random.default_rng(self.SEED)
        n, d = self.N, self.D
        scales = np.logspace(-1, 1, d)
        means = rng.normal(0.0, 3.0, d)
        mixing = rng.normal(size=(d, d)) / math.sqrt(d)
        covariance = 0.5 * np.eye(d) + 0.5 * mixing @ mixing.T  # correlated columns
        Z = rng.standard_normal((n, d)) @ np.linalg.cholesky(covariance).T
        Z /= Z.std(axis=0)
        self.X = means + Z * scales
        beta = rng.normal(0.0, 1.5 / math.sqrt(d), d)  # effect per standardized unit
        w = beta / scales
        margin = self.X @ w + (0.3 - w @ means)
        self.y = (rng.random(n) < 1.0 / (1.0 + np.exp(-margin))).astype(np.float64)
        self.evaluator = InProcessEvaluator(chunked(self.X, self.y), d)
        self._references: dict[float, tuple[np.ndarray, float]] = {}

    @staticmethod
    def penalty(C: float) -> Penalty:
        return Penalty() if math.isinf(C) else Penalty(l2=1.0 / (C * ScaledProblem.N))

    def reference(self, C: float) -> tuple[np.ndarray, float]:
        """scikit-learn's optimum for ``C`` and its ``J`` under our objective."""
        if C not in self._references:
            model = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1000)
            model.fit(self.X, self.y)
            coef = sk_coef(model)
            objective = LogisticObjective(self.evaluator, self.penalty(C))
            loss, grad = objective(coef)
            # the reference is a certified optimum of *our* function too
            assert np.max(np.abs(grad)) <= 1e-9, f"sklearn reference not optimal: {grad}"
            self._references[C] = (coef, loss)
        return self._references[C]


@pytest.fixture(scope="module")
def scaled():
    return ScaledProblem()


PASS_LIMITS = {"lbfgs": 30, "newton": 12}


@pytest.mark.parametrize("C", [np.inf, 0.01], ids=["unpenalized", "C=0.01"])
@pytest.mark.parametrize("solver", ["lbfgs", "newton"])
def test_badly_scaled_reaches_sklearn_optimum_with_default_options(scaled, solver, C):
    ref_coef, ref_loss = scaled.reference(C)
    ours = fit(scaled.evaluator, solver=solver, penalty=scaled.penalty(C))  # default SolverOptions
    compare(f"{solver} C={C}", ours, ref_coef, ref_loss, loss_gap=LOSS_GAP)
    assert ours.n_passes <= PASS_LIMITS[solver], f"{solver} took {ours.n_passes} passes"


# --------------------------------------------------------------------------- (2) weights


def weighted_problem():
    """20k x 6, scales 0.1 ... 10, non-zero means, 38% positives, weights 0.1 ... 3."""
    rng = np.random.default_rng(7)
    n, d = 20_000, 6
    scales = np.logspace(-1, 1, d)
    X = rng.normal(1.0, 1.0, (n, d)) * scales
    w = rng.normal(0.0, 1.0, d) / scales
    w[[2, 4]] = 0.0
    margin = (X - X.mean(axis=0)) @ w - 1.0
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-margin))).astype(np.float64)
    weights = rng.uniform(0.1, 3.0, n)
    return X, y, weights


WEIGHT_CASES = {
    "sample_weight": (True, None),
    "balanced": (False, "balanced"),
    "balanced+sample_weight": (True, "balanced"),
    "class_weight=(0.4,2.5)": (False, (0.4, 2.5)),
    "class_weight=(0.4,2.5)+sample_weight": (True, (0.4, 2.5)),
}


@pytest.mark.parametrize("C", [np.inf, 0.05], ids=["unpenalized", "C=0.05"])
@pytest.mark.parametrize("case", list(WEIGHT_CASES))
@pytest.mark.parametrize("solver", ["lbfgs", "newton"])
def test_sample_and_class_weights_match_sklearn(solver, case, C):
    X, y, all_weights = weighted_problem()
    use_weights, class_weight = WEIGHT_CASES[case]
    weights = all_weights if use_weights else None
    sk_class_weight = {0: class_weight[0], 1: class_weight[1]} if isinstance(class_weight, tuple) else class_weight
    model = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1000, class_weight=sk_class_weight)
    model.fit(X, y, sample_weight=weights)
    ref_coef = sk_coef(model)

    evaluator = InProcessEvaluator(chunked(X, y, weights), X.shape[1])
    # penalty from C with S = sum of the effective weights (class weights included)
    if class_weight == "balanced":
        resolved = tuple(compute_class_weight("balanced", classes=np.array([0.0, 1.0]), y=y, sample_weight=weights))
    else:
        resolved = class_weight
    S = math.fsum(effective_weights(y, weights, resolved).tolist())
    penalty = Penalty() if math.isinf(C) else Penalty(l2=1.0 / (C * S))

    ours = fit(evaluator, solver=solver, penalty=penalty, class_weight=class_weight, options=SolverOptions(tol=1e-9))
    if class_weight == "balanced":  # same class weights as scikit-learn's "balanced"
        np.testing.assert_allclose(ours.class_weight, resolved, rtol=1e-13)
    objective = LogisticObjective(evaluator, penalty, class_weight=resolved)
    ref_loss, ref_grad = objective(ref_coef)
    assert np.max(np.abs(ref_grad)) <= 1e-9
    compare(f"{solver} {case} C={C}", ours, ref_coef, ref_loss, loss_gap=LOSS_GAP)


# --------------------------------------------------------------------------- (3) L1 / elastic net


def sparse_problem():
    """5k x 10 standard normal features; 5 of the 10 true coefficients are 0."""
    rng = np.random.default_rng(11)
    n = 5000
    true_w = np.array([1.5, -1.0, 0.0, 0.0, 0.8, 0.0, -0.5, 0.0, 0.0, 0.3])
    X = rng.standard_normal((n, true_w.size))
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(X @ true_w + 0.4)))).astype(np.float64)
    return X, y, true_w


L1_CASES = {
    # name: (C, l1_ratio) — sklearn's saga; ours: Penalty.elastic_net(1/(C n), l1_ratio)
    "l1 C=0.01": (0.01, 1.0),
    "l1 C=0.003": (0.003, 1.0),
    "elastic-net C=0.01 alpha=0.5": (0.01, 0.5),
}


@pytest.mark.parametrize("standardize", [True, False], ids=["std", "raw"])
@pytest.mark.parametrize("case", list(L1_CASES))
@pytest.mark.parametrize("solver", ["lbfgs", "gd"], ids=["owlqn", "proximal-gd"])
def test_l1_zeros_and_objective_match_sklearn_saga(solver, case, standardize):
    X, y, true_w = sparse_problem()
    n = X.shape[0]
    C, l1_ratio = L1_CASES[case]
    model = LogisticRegression(C=C, l1_ratio=l1_ratio, solver="saga", tol=1e-12, max_iter=100_000).fit(X, y)
    ref_coef = sk_coef(model)
    penalty = Penalty.elastic_net(1.0 / (C * n), l1_ratio)
    if l1_ratio == 1.0:
        assert penalty.l2 == 0.0 and penalty.l1 == 1.0 / (C * n)

    evaluator = InProcessEvaluator(chunked(X, y), X.shape[1])
    objective = LogisticObjective(evaluator, penalty)
    ref_loss = total_loss(objective, ref_coef)

    # saga's zeros are real: strict KKT slack |grad_j| < l1 there; nonzeros satisfy the
    # stationarity condition grad_j + l1 sign(w_j) = 0
    _, ref_grad = objective(ref_coef)
    ref_w, ref_g = ref_coef[:-1], ref_grad[:-1]
    zeros = ref_w == 0.0
    assert np.all(np.abs(ref_g[zeros]) < 0.9 * penalty.l1)
    assert np.max(np.abs(ref_g[~zeros] + penalty.l1 * np.sign(ref_w[~zeros]))) <= 1e-8
    assert abs(ref_grad[-1]) <= 1e-8
    assert zeros.sum() >= 5 and np.all(zeros[true_w == 0.0])  # a sparse problem indeed

    ours = fit(evaluator, solver=solver, penalty=penalty, standardize=standardize, options=SolverOptions(tol=1e-10))
    gap = compare(f"{solver} {case} standardize={standardize}", ours, ref_coef, ref_loss, loss_gap=L1_LOSS_GAP)
    assert ours.result.loss == pytest.approx(total_loss(objective, ours.coef), rel=1e-12)
    ours_w = ours.coef[:-1]
    assert np.all(ours_w[zeros] == 0.0), f"not exactly 0 where saga is 0: {ours_w[zeros]}"
    clear = np.abs(ref_w) > 1e-3
    assert np.all(np.sign(ours_w[clear]) == np.sign(ref_w[clear]))
    print(
        f"  zeros: sklearn {np.flatnonzero(zeros).tolist()}, "
        f"ours {np.flatnonzero(ours_w == 0.0).tolist()}; gap {gap:+.2e}"
    )


# --------------------------------------------------------------------------- (4) standardization


def _compare_paths(label, evaluator, **fit_options):
    standardized = fit(evaluator, standardize=True, **fit_options)
    raw = fit(evaluator, standardize=False, **fit_options)
    gap = (raw.result.loss - standardized.result.loss) / abs(standardized.result.loss)
    coef = rel_norm(raw.coef, standardized.coef)
    print(f"\n{label}: passes std={standardized.n_passes} raw={raw.n_passes} gap={gap:+.2e} coef(w,b)={coef:.2e}")
    assert standardized.result.converged and raw.result.converged
    assert abs(gap) <= LOSS_GAP, f"{label}: standardize=False vs True gap {gap:.3e}"


@pytest.mark.parametrize("C", [np.inf, 0.01], ids=["unpenalized", "C=0.01"])
def test_standardization_changes_only_the_path_newton_badly_scaled(scaled, C):
    _compare_paths(f"newton 100k C={C}", scaled.evaluator, solver="newton", penalty=scaled.penalty(C))


@pytest.mark.parametrize(
    "penalty",
    [Penalty(), Penalty(l2=1e-3), Penalty(l1=2e-3, l2=1e-4)],
    ids=["none", "l2", "elastic-net"],
)
@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_standardization_changes_only_the_path_lbfgs_weighted(penalty, class_weight):
    # raw-space L-BFGS / OWL-QN on badly scaled columns is slow but must get there
    X, y, weights = weighted_problem()
    evaluator = InProcessEvaluator(chunked(X, y, weights), X.shape[1])
    _compare_paths(
        f"lbfgs 20k weighted {penalty} class_weight={class_weight}",
        evaluator,
        solver="lbfgs",
        penalty=penalty,
        class_weight=class_weight,
    )


@pytest.mark.parametrize("penalty", [Penalty(), Penalty(l1=2e-2)], ids=["none", "l1"])
def test_standardization_changes_only_the_path_gd(penalty):
    # gradient descent in raw space is only practical on well-scaled columns
    X, y, _ = sparse_problem()
    evaluator = InProcessEvaluator(chunked(X, y), X.shape[1])
    _compare_paths(f"gd 5k {penalty}", evaluator, solver="gd", penalty=penalty)


@pytest.mark.parametrize(
    ("spread", "l2", "standardize"),
    [(1e-6, 1.0, True), (1e-6, 0.1, True), (1e6, 0.0, False)],
    ids=["tiny-spread-l2=1", "tiny-spread-l2=0.1", "huge-spread-raw"],
)
def test_newton_is_not_slowed_by_the_units_of_one_feature(spread, l2, standardize):
    """The Hessian's diagonal spanning 1e13 (a penalty's curvature on a
    feature of tiny spread, or a raw feature of huge spread) is well posed:
    Newton reaches scikit-learn's optimum in a few iterations.  Its pivots
    were measured against the largest entry: "singular", damped steps 5000x
    too short, max_iter reached 0.1 away from the optimum."""
    rng = np.random.default_rng(3)
    n = 300
    X = np.column_stack([rng.normal(size=n), rng.normal(size=n) * spread])
    y = (X[:, 0] + 0.5 + rng.normal(size=n) > 0).astype(float)
    penalty = Penalty(l2=l2)
    ours = fit(
        InProcessEvaluator(chunked(X, y, None), 2),
        solver="newton",
        penalty=penalty,
        standardize=standardize,
        options=SolverOptions(tol=1e-10, ftol=0.0),
    )
    assert ours.result.converged and ours.result.n_iter <= 10
    C = np.inf if l2 == 0 else 1 / (l2 * n)
    with warnings.catch_warnings():  # (its line search gives up near the optimum on the raw data: no matter)
        warnings.simplefilter("ignore")
        sk = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(X, y)
    objective = LogisticObjective(InProcessEvaluator(chunked(X, y, None), 2), penalty)
    reference = total_loss(objective, sk_coef(sk))
    assert (total_loss(objective, ours.coef) - reference) / reference <= 1e-12
