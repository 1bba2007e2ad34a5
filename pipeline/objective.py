"""The training objective as the solvers see it.

    J(w, b) = (1/S) sum_i s_i [log(1 + exp(z_i)) - y_i z_i]
              + l2/2 ||w||^2 + l1 ||w||_1,          z_i = x_i . w + b,

with sample weights ``s_i`` (weight column times class weight, default 1),
``S = sum_i s_i``, and the intercept ``b`` never penalized.  In the elastic
net form ``l2 = lambda (1 - alpha)`` and ``l1 = lambda alpha``; scikit-learn's
``C`` is ``1 / (l2 * S)`` for pure L2.

With standardization the solvers work on ``beta``, the coefficients of the
standardized features ``(x - center) / scale``; the penalty stays on the
original-unit coefficients ``w_j = beta_j / scale_j``, so the optimum is the
same and only the path changes.  :class:`Standardization` converts between
the two.

Partial sums come back from an evaluator (in-process or on a cluster, see
:mod:`pipeline.reduce`); here they are finalized and divided by ``S`` once,
on the coordinator, and the penalty is added once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import numpy as np

from .errors import EmptyDatasetError, WeightValueError, invalid, require_number
from .exact import BIN_WIDTH, GRID_E0, fsum
from .kernel import Categories, KernelSpec, Partials, Stats

__all__ = [
    "DataSummary",
    "Evaluator",
    "LogisticObjective",
    "Penalty",
    "Standardization",
    "balanced_class_weight",
    "summarize",
]

#: The infinity bits of ExactSums' flags (the other one, NaN, is a missing value).
_INF_FLAGS = 2 | 4
#: ``h (1 - h)`` at a zero margin: the logistic loss's largest curvature, and
#: its value at the usual starting point ``coef = 0``.
LOGISTIC_CURVATURE_AT_ZERO = 0.25


class Evaluator(Protocol):
    """Runs the kernels over every chunk of a dataset and merges the results."""

    n_features: int

    def partials(self, coef: np.ndarray, spec: KernelSpec) -> Partials: ...

    def stats(self, categories: Categories | None = None) -> Stats:
        """The statistics pass (with the rows of each level of ``categories``)."""
        ...


@dataclass(frozen=True)
class Penalty:
    """``l2/2 ||w||^2 + l1 ||w||_1`` on the original-unit coefficients."""

    l2: float = 0.0
    l1: float = 0.0

    def __post_init__(self) -> None:
        for name in ("l2", "l1"):  # a real number (not text, not a bool), kept as a float
            object.__setattr__(self, name, require_number(name, getattr(self, name)))

    @classmethod
    def elastic_net(cls, strength: float, alpha: float) -> Penalty:
        """``strength * [(1-alpha)/2 ||w||^2 + alpha ||w||_1]``."""
        if not 0.0 <= alpha <= 1.0:
            raise invalid("alpha", "in [0, 1]", alpha)
        if not (math.isfinite(strength) and strength >= 0):
            raise invalid("reg", "a finite number >= 0", strength)
        return cls(l2=strength * (1.0 - alpha), l1=strength * alpha)


@dataclass(frozen=True, eq=False)
class Standardization:
    """``x~ = (x - center) / scale``; constant columns get scale 1 (and x~ = 0)."""

    center: np.ndarray
    scale: np.ndarray

    def to_original(self, beta: np.ndarray) -> np.ndarray:
        """Standardized-space ``[beta, b~]`` to original-unit ``[w, b]``
        (of each class's block, for the multinomial model's)."""
        return self._per_class(beta, self._to_original)

    def gradient_to_original(self, grad: np.ndarray) -> np.ndarray:
        """Gradient in ``[beta, b~]`` to the gradient in ``[w, b]`` (chain rule)."""
        return self._per_class(grad, self._gradient_to_original)

    def to_standardized(self, coef: np.ndarray) -> np.ndarray:
        """Original-unit ``[w, b]`` to standardized-space ``[beta, b~]``."""
        return self._per_class(coef, self._to_standardized)

    def _per_class(self, values: np.ndarray, convert) -> np.ndarray:
        """``convert`` of ``values``, or of each block ``[w_k, b_k]`` of a
        multinomial model's ``K (d + 1)`` values."""
        width = self.scale.shape[0] + 1
        if values.shape[0] == width:
            return convert(values)
        return np.concatenate([convert(block) for block in values.reshape(-1, width)])

    def _to_original(self, beta: np.ndarray) -> np.ndarray:
        w = beta[:-1] / self.scale
        intercept = fsum(np.append(beta[-1], -(w * self.center)))
        return np.append(w, intercept)

    def _gradient_to_original(self, grad: np.ndarray) -> np.ndarray:
        return np.append(grad[:-1] * self.scale + grad[-1] * self.center, grad[-1])

    def _to_standardized(self, coef: np.ndarray) -> np.ndarray:
        beta = coef[:-1] * self.scale
        intercept = fsum(np.append(coef[-1], coef[:-1] * self.center))
        return np.append(beta, intercept)


@dataclass(frozen=True, eq=False)
class DataSummary:
    """What the statistics pass learns: exact counts, means and deviations."""

    n_samples: int
    weight_sum: float
    positive_weight: float
    #: of each column as the loss pass sees it (missing values filled)
    mean: np.ndarray
    std: np.ndarray
    #: missing values per column, and the value each column's take: the
    #: exact mean of the column's present values, correctly rounded (NaN
    #: where every value is missing)
    n_missing: np.ndarray | None = None
    fill: np.ndarray | None = None
    #: a power of two above every sample weight (the weight sums' top bin capacity)
    weight_bound: float = 1.0
    #: with row weights, each column's least and largest value over the rows
    #: of positive weight (:func:`pipeline.kernel.weighted_extremes`), or None
    extremes: np.ndarray | None = None

    @property
    def constant_columns(self) -> list[int]:
        """Columns constant on the rows that count: of deviation 0, or (with
        row weights) one value in every row of positive weight, whatever
        the rows of weight 0 (a validation split's, say) hold: the
        standardized column is then 0 on every row that counts, and its
        coefficient stays 0 (it has no gradient), as without standardization."""
        return [j for j in range(self.std.shape[0]) if self.std[j] == 0.0 or self.counted_value(j) is not None]

    def counted_value(self, j: int) -> float | None:
        """Column ``j``'s one value in the rows of positive weight, or None
        (it takes several, or there are no row weights)."""
        if self.extremes is None or not self.extremes[0, j] == self.extremes[1, j]:
            return None
        return float(self.extremes[0, j])

    @property
    def has_missing(self) -> bool:
        return self.n_missing is not None and bool(self.n_missing.any())

    def standardization(self) -> Standardization:
        scale = np.where(self.std > 0.0, self.std, 1.0)
        center = self.mean.copy()
        for j in self.constant_columns:  # (x~ = 0 on the rows that count)
            value = self.counted_value(j)
            center[j], scale[j] = (center[j] if value is None else value), 1.0
        return Standardization(center=center, scale=scale)


def summarize(stats: Stats) -> DataSummary:
    """Exact means and (population) standard deviations from the sums."""
    n = stats.n_samples
    if n == 0:
        raise EmptyDatasetError("the dataset has no rows to train on (found 0 rows)")
    exact = stats.sums.exact_values()
    finite = stats.sums.finite_values()
    missing = stats.n_missing
    d = (stats.sums.n_cols - 2) // 3
    mean = np.empty(d)
    std = np.empty(d)
    fill = np.empty(d)
    for j in range(d):
        total, high, low = exact[j], exact[d + j], exact[2 * d + j]
        m = int(missing[j])
        if m == n:  # nothing to take the mean of
            mean[j], std[j], fill[j] = np.nan, np.nan, np.nan
            continue
        if m:
            # the column as the loss pass sees it: its present values, and
            # the mean of them (rounded to float64) in place of each missing one
            fill[j] = float(finite[j] / (n - m))
            value = Fraction(fill[j])
            total = finite[j] + m * value
            infinite = (int(stats.sums.flags[d + j]) | int(stats.sums.flags[2 * d + j])) & _INF_FLAGS
            squares_finite = not infinite
            high, low = (finite[d + j] + finite[2 * d + j], m * value * value) if squares_finite else (None, None)
        elif total is not None:
            fill[j] = float(total / n)
        else:
            fill[j] = np.nan
        if total is None or high is None or low is None:
            mean[j], std[j] = (np.nan, np.nan) if total is None else (float(total / n), np.nan)
            continue
        mean[j] = float(total / n)
        variance = ((high + low) * n - total * total) / (Fraction(n) * n)
        std[j] = math.sqrt(max(float(variance), 0.0))
    weights = stats.sums.finalize()
    try:
        weight_sum = float(weights[-2])
    except OverflowError:
        weight_sum = math.inf
    if not math.isfinite(weight_sum):  # (every weight finite: their sum is not)
        raise WeightValueError(
            f"the sample weights of {n} row(s) sum to more than float64's largest value (about 1.8e308); "
            "expected a finite sum: scale the weights down"
        )
    try:  # (the weights' top bin's bound: above float64's range where a weight is near its largest)
        bound = math.ldexp(1.0, GRID_E0 + BIN_WIDTH * int(stats.sums.top[3 * d]) + BIN_WIDTH - 1)
    except OverflowError:
        bound = math.inf
    return DataSummary(n, weight_sum, float(weights[-1]), mean, std, missing.copy(), fill, bound, stats.extremes)


def balanced_class_weight(summary: DataSummary) -> tuple[float, float]:
    """scikit-learn's ``balanced``: ``S / (2 * S_c)`` with weighted class totals."""
    positive = summary.positive_weight
    negative = summary.weight_sum - positive
    if positive <= 0 or negative <= 0:
        raise WeightValueError(
            "class_weight='balanced' needs both classes with positive weight; found "
            f"weight {negative!r} for label 0 and {positive!r} for label 1"
        )
    return (summary.weight_sum / (2.0 * negative), summary.weight_sum / (2.0 * positive))


class LogisticObjective:
    """Mean weighted logistic loss plus penalty, in solver space; counts passes.

    ``__call__(coef) -> (loss, grad)`` is the smooth part (loss + L2) that
    every solver sees; ``with_hessian`` adds the Hessian; ``l1_weights`` are
    the per-coordinate L1 weights in solver space (0 for the intercept), for
    solvers that handle the non-smooth part themselves.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        penalty: Penalty = Penalty(),
        standardization: Standardization | None = None,
        class_weight: tuple[float, ...] | None = None,
        fill: np.ndarray | None = None,
        categories: Categories | None = None,
        level_share: np.ndarray | None = None,
        n_classes: int = 0,
    ) -> None:
        if n_classes and class_weight is not None and len(class_weight) != n_classes:
            raise ValueError(f"the multinomial objective takes one class weight per class ({n_classes})")
        self.evaluator = evaluator
        #: 0: the binary model; K: the multinomial one, whose coef is K blocks ``[w_k, b_k]``
        self.n_classes = n_classes
        self.penalty = penalty
        self.standardization = standardization
        n_dense = evaluator.n_features - (0 if categories is None else categories.n_columns)
        n_coef = n_dense + (0 if categories is None else categories.n_levels)
        self.scale = standardization.scale if standardization is not None else np.ones(n_coef)
        self.spec = KernelSpec(
            center=None if standardization is None else standardization.center[:n_dense],
            scale=None if standardization is None else standardization.scale[:n_dense],
            class_weight=class_weight,
            fill=fill,
            categories=categories,
            n_classes=n_classes,
        )
        #: per coefficient, the data's curvature estimate at coef = 0 relative to a
        #: standardized column's (a level: the share of rows it holds)
        self.curvature_share = np.ones(n_coef)
        if level_share is not None:
            self.curvature_share[n_dense:] = level_share
        self.l1_weights = np.tile(np.append(penalty.l1 / self.scale, 0.0), max(n_classes, 1))
        self.n_passes = 0
        self.n_samples: int | None = None
        #: called once with ``(weight sum, weight of the rows labelled 1,
        #: n_samples)`` by the first binary pass at ``coef = 0``, where the
        #: intercept's gradient sum is ``sum_i s_i (1/2 - y_i)``; None: not asked
        self.at_zero: Callable[[float, float, int], None] | None = None

    def __call__(self, coef: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad, _ = self._evaluate(coef, hessian=False)
        return loss, grad

    def with_hessian(self, coef: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        return self._evaluate(coef, hessian=True)

    def _evaluate(self, coef: np.ndarray, hessian: bool):
        coef = np.asarray(coef, dtype=np.float64)
        partials = self.evaluator.partials(coef, self.spec.with_hessian(hessian))
        self.n_passes += 1
        if partials.n_samples == 0:
            raise EmptyDatasetError("the dataset has no rows to train on (found 0 rows)")
        self.n_samples = partials.n_samples
        loss_sum, grad_sum, weight_sum = partials.finalize(self.n_classes)
        if not weight_sum > 0:
            raise WeightValueError(f"the sample weights add up to {weight_sum!r}; expected a positive total")
        if self.at_zero is not None and not self.n_classes and not coef.any():
            told, self.at_zero = self.at_zero, None
            # (S/2 - that sum is exact where a class has no weight: 0 or S)
            told(weight_sum, 0.5 * weight_sum - grad_sum[-1], partials.n_samples)
        loss = loss_sum / weight_sum
        grad = grad_sum / weight_sum
        hess = partials.hessian_sum() / weight_sum if hessian else None
        if self.penalty.l2:
            # original-unit coefficients, a row per class (one for the binary model)
            w = coef.reshape(max(self.n_classes, 1), -1)[:, :-1] / self.scale
            loss = loss + 0.5 * self.penalty.l2 * fsum((w * w).ravel())
            steps = np.zeros((w.shape[0], w.shape[1] + 1))
            steps[:, :-1] = self.penalty.l2 * w / self.scale
            grad = grad + steps.ravel()
            if hess is not None:
                diagonal = np.append(self.penalty.l2 / (self.scale * self.scale), 0.0)
                hess = hess + np.diag(diagonal)
        return loss, grad, hess

    def l1_term(self, coef: np.ndarray) -> float:
        return fsum(self.l1_weights * np.abs(coef))

    def preconditioner(self) -> np.ndarray | None:
        """Inverse of an estimate of the smooth objective's Hessian diagonal in
        solver space, for :func:`pipeline.solvers.lbfgs`; None without
        standardization.

        The L2 term's curvature on a standardized coefficient is
        ``l2 / scale_j**2`` (the penalty is on ``w_j = beta_j / scale_j``):
        for a feature of tiny spread it dwarfs the data's, and unevenly, so
        the standardization alone no longer equalizes the coordinates.  The
        data's part is ``(1/S) sum_i s_i h_i (1 - h_i) x~_ij**2``; at
        ``coef = 0`` (``h = 1/2``) with unit weights it is exactly ``1/4`` for
        every standardized column (mean 0, population variance 1) and for the
        intercept, and ``1/4`` remains the estimate with sample or class
        weights (the statistics are unweighted) and elsewhere: the solver
        rescales the whole diagonal from its latest (s, y) pair, so only the
        ratio between the data's and the penalty's parts matters.  (A
        constant column has no data curvature, x~ = 0, but 1/4 does no harm
        there: the data never moves its coefficient.)  The L1 term has no
        curvature and adds nothing.  Without standardization the
        data's curvature per column is unknown without another pass
        (it scales with the raw second moment), so there is no estimate.

        Everything here comes from the penalty and the standardization, which
        a checkpoint keeps: a resumed fit recomputes the same bits.
        """
        if self.standardization is None:
            return None
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            at_zero = self.curvature_at_zero
            data = at_zero * self.curvature_share
            curvature = data + self.penalty.l2 / (self.scale * self.scale)
            inverse = 1.0 / np.append(curvature, at_zero)
            inverse = np.tile(inverse, max(self.n_classes, 1))
        # a spread so tiny that its square underflows (or the penalty's curvature
        # overflows), or a level without rows and penalty, gives no usable
        # estimate: that coordinate is left unscaled
        return np.where(np.isfinite(inverse) & (inverse > 0.0), inverse, 1.0 / at_zero)

    @property
    def curvature_at_zero(self) -> float:
        """The loss's curvature in a standardized coefficient at ``coef = 0``:
        ``h (1 - h)`` at ``h = 1/2`` for the binary model, ``p (1 - p)`` at
        ``p = 1/K`` (the softmax Hessian's diagonal) for the multinomial one."""
        if not self.n_classes:
            return LOGISTIC_CURVATURE_AT_ZERO
        return (1.0 / self.n_classes) * (1.0 - 1.0 / self.n_classes)
