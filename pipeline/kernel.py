"""Per-chunk partial sums of the logistic loss and its gradient.  Pure numpy.

For one chunk ``(X, y)`` and ``coef = [w_0 .. w_{d-1}, b]`` (intercept last):

* ``margin_i = x_i . w + b`` evaluated in an order fixed by ``d`` alone
  (:func:`margins`), so a row's margin never depends on the chunk it sits in;
* ``proba_i = 1 / (1 + exp(-margin_i))``;
* ``loss_i = logaddexp(0, margin_i) - y_i * margin_i`` (the stable form of
  ``-[y log h + (1-y) log(1-h)]``);
* ``residual_i = proba_i - y_i``;

and returns :class:`Partials`: exact sums of ``residual_i * x_ij`` (one column
per feature), ``residual_i`` (the intercept) and ``loss_i``, plus the row
count.  Nothing is divided here: the coordinator divides once, after the
reduction (see :mod:`pipeline.objective`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .exact import BLOCK_ROWS, ExactSums

__all__ = ["Partials", "chunk_partials", "margins", "merge_partials"]


@dataclass(frozen=True, eq=False)
class Partials:
    """Sums over some rows: gradient columns, intercept, loss; and the count.

    ``sums`` has ``n_coef + 1`` columns: ``sum residual*x_j`` for each feature,
    ``sum residual`` (intercept) and ``sum loss`` last.
    """

    sums: ExactSums
    n_samples: int

    @classmethod
    def zeros(cls, n_coef: int) -> Partials:
        return cls(ExactSums.zeros(n_coef + 1), 0)

    def merge(self, other: Partials) -> Partials:
        return Partials(self.sums.merge(other.sums), self.n_samples + other.n_samples)

    def finalize(self) -> tuple[float, np.ndarray]:
        """``(loss_sum, grad_sum)`` as float64, not yet divided."""
        totals = self.sums.finalize()
        return float(totals[-1]), totals[:-1]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Partials):
            return NotImplemented
        return self.n_samples == other.n_samples and self.sums == other.sums


def merge_partials(*parts: Partials) -> Partials:
    """Merge any number of partial states (a node of the reduction tree)."""
    total = parts[0]
    for part in parts[1:]:
        total = total.merge(part)
    return total


def margins(X: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``X @ coef[:-1] + coef[-1]`` with a per-row summation order fixed by d.

    Products ``x_ij * w_j`` are summed by adding adjacent pairs
    (``p0+p1, p2+p3, ...``, an odd last one carried) until one is left; then
    the intercept is added.  Only elementwise IEEE operations are used, so the
    result for a row depends on nothing but the row and ``coef`` (unlike BLAS
    gemv, whose order varies with the row's position and the array layout).
    """
    terms = X * coef[:-1]
    while terms.shape[1] > 1:
        n_pairs = terms.shape[1] // 2
        paired = terms[:, 0 : 2 * n_pairs : 2] + terms[:, 1 : 2 * n_pairs : 2]
        if terms.shape[1] % 2:
            paired = np.concatenate([paired, terms[:, -1:]], axis=1)
        terms = paired
    if terms.shape[1] == 0:
        return np.full(X.shape[0], coef[-1], dtype=np.float64)
    return terms[:, 0] + coef[-1]


def chunk_partials(X: np.ndarray, y: np.ndarray, coef: np.ndarray) -> Partials:
    """Exact partial sums of loss and gradient over the rows of one chunk."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    coef = np.asarray(coef, dtype=np.float64)
    n_rows, n_features = X.shape
    if coef.shape != (n_features + 1,):
        raise ValueError(f"coef has shape {coef.shape}, expected ({n_features + 1},)")
    total = Partials.zeros(n_features + 1)
    terms = np.empty((min(n_rows, BLOCK_ROWS), n_features + 2), dtype=np.float64, order="F")
    for start in range(0, n_rows, BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, n_rows)
        Xb, yb = X[start:stop], y[start:stop]
        margin = margins(Xb, coef)
        with np.errstate(over="ignore"):  # exp(-z) -> inf gives proba 0, as it should
            proba = 1.0 / (1.0 + np.exp(-margin))
        residual = proba - yb
        block = terms[: stop - start]
        np.multiply(Xb, residual[:, None], out=block[:, :n_features])
        block[:, n_features] = residual
        block[:, n_features + 1] = np.logaddexp(0.0, margin) - yb * margin
        total = total.merge(Partials(ExactSums.of(block), stop - start))
    return total
