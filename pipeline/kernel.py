"""Per-chunk partial sums.  Pure numpy, no Dask.

**Loss pass** (:func:`chunk_partials`).  For one chunk ``(X, y, weights)``
and ``coef = [w_0 .. w_{d-1}, b]`` (intercept last):

* features are optionally standardized, ``x~ = (x - center) / scale``
  (:class:`KernelSpec`), elementwise, so the solver can work in standardized
  space without the data ever being rewritten;
* ``margin_i = x~_i . w + b`` evaluated in an order fixed by ``d`` alone
  (:func:`margins`), so a row's margin never depends on the chunk it sits in;
* ``proba_i = 1 / (1 + exp(-margin_i))`` and ``softplus_i = log(1 +
  exp(margin_i))``, both from :func:`pipeline.elementary.sigmoid_softplus`
  (:func:`sigmoid`: the one place the pipeline computes the probability);
* ``loss_i = softplus_i - y_i * margin_i`` (the stable form of
  ``-[y log h + (1-y) log(1-h)]``);
* ``residual_i = proba_i - y_i``; the sample weight ``s_i`` is the weight
  column times the class weight of ``y_i`` (1 when neither is given);

and returns :class:`Partials`: exact sums of ``s_i residual_i x~_ij`` (one
column per feature), ``s_i residual_i`` (intercept), ``s_i loss_i`` and
``s_i``, the row count, and optionally the Hessian sums
``s_i h_i (1 - h_i) [x~_i, 1][x~_i, 1]^T`` (upper triangle).

**Statistics pass** (:func:`chunk_stats`): exact sums of ``x_j``, ``x_j^2``
(split into two floats that add up to the exact square), ``s_i`` and
``s_i y_i``.

Nothing is divided here: the coordinator divides once, after the reduction
(see :mod:`pipeline.objective`).

The exponential and logarithm are the pipeline's own
(:mod:`pipeline.elementary`: fdlibm's algorithms in IEEE basic operations
only), not numpy's, whose exp/log kernels differ by CPU: every result here
has the same bits on every CPU, whatever numpy's SIMD dispatch, and the
compiled kernels (:mod:`pipeline.fused`) compute the same operations.
:func:`numpy_cpu_features` and :func:`numpy_cpu_dispatch` say what numpy
found here (reported by the workers' fingerprint, :mod:`pipeline.probe`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .data import NARROW_FEATURE_DTYPES
from .elementary import sigmoid as elementary_sigmoid
from .elementary import sigmoid_softplus
from .exact import BLOCK_ROWS, ExactSums

try:  # numpy >= 2
    import numpy._core._multiarray_umath as _numpy_umath
except ImportError:  # numpy 1.x
    import numpy.core._multiarray_umath as _numpy_umath

__all__ = [
    "HESSIAN_BINS",
    "WARM_UP_PARTS",
    "KernelSpec",
    "Partials",
    "Stats",
    "WarmUpPart",
    "chunk_partials",
    "chunk_stats",
    "exact_square",
    "kernel_features",
    "margins",
    "merge_partials",
    "numpy_cpu_dispatch",
    "numpy_cpu_features",
    "sigmoid",
    "triangle_size",
    "unpack_triangle",
]

VELTKAMP = 134217729.0  # 2**27 + 1
#: Bins of the Hessian's binned sums (the loss pass's and the statistics'
#: keep ``exact.N_BINS`` = 3).  Two bins hold each term's digits down to
#: ``2**-40`` of the top bin's unit, i.e. 40 to 79 bits below the column's
#: largest term (rounded there, half to even), which is far more than a
#: Newton step needs, and they are still independent of the partitioning
#: (``docs/exact-sums.md``); the compiled Hessian pass deposits each of its
#: (d+1)(d+2)/2 terms per row with one level fewer (about a third less work).
HESSIAN_BINS = 2
#: A part of :func:`pipeline.fused.warm_up`: the kernels of the statistics
#: pass, or those of the loss and Hessian passes.
WarmUpPart = Literal["statistics", "passes"]
#: The parts of :func:`pipeline.fused.warm_up`, which workers can compile at once.
WARM_UP_PARTS: tuple[WarmUpPart, ...] = ("statistics", "passes")


def numpy_cpu_features() -> dict[str, bool] | None:
    """The CPU features numpy detected here (``{"AVX512F": True, ...}``), or
    None where this numpy does not say."""
    features = getattr(_numpy_umath, "__cpu_features__", None)
    return None if features is None else dict(features)


def numpy_cpu_dispatch() -> list[str]:
    """numpy's SIMD dispatch targets that are enabled here (they pick code
    paths, among them the exp/log kernels), sorted."""
    features = _numpy_umath.__cpu_features__
    return sorted(name for name in _numpy_umath.__cpu_dispatch__ if features.get(name))


def kernel_features(X) -> np.ndarray:
    """``X`` as the compiled kernels take it: as it is when its dtype is float64
    or one of :data:`pipeline.data.NARROW_FEATURE_DTYPES` (the kernels widen
    those exactly, inside the pass), else converted to float64."""
    X = np.asarray(X)
    if X.dtype == np.float64 or X.dtype in NARROW_FEATURE_DTYPES:
        return X
    return X.astype(np.float64)


def sigmoid(margin: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-margin))``, elementwise: the probability of label 1,
    within one ulp, the same bits on every CPU (:func:`pipeline.elementary.sigmoid_softplus`)."""
    return elementary_sigmoid(margin)


@dataclass(frozen=True, eq=False)
class KernelSpec:
    """How the loss pass treats a chunk (the same for every chunk of a fit).

    ``center``/``scale``: standardize features as ``(x - center) / scale``
    (both ``(d,)``; None: use raw features).  ``class_weight``: ``(c0, c1)``
    multiplies the sample weight of rows with label 0/1.  ``hessian``: also
    accumulate the Hessian sums.
    """

    center: np.ndarray | None = None
    scale: np.ndarray | None = None
    class_weight: tuple[float, float] | None = None
    hessian: bool = False

    def with_hessian(self, hessian: bool) -> KernelSpec:
        return KernelSpec(self.center, self.scale, self.class_weight, hessian)


@dataclass(frozen=True, eq=False)
class Partials:
    """Sums over some rows of the loss pass, plus the row count.

    ``sums`` has ``n_coef + 2`` columns: ``sum s*residual*x_j`` per feature,
    ``sum s*residual`` (intercept), ``sum s*loss`` and ``sum s`` last.
    ``hessian``: upper triangle (row-major) of ``sum s*h(1-h) x x^T`` over the
    augmented ``x = [x~, 1]`` (sums of :data:`HESSIAN_BINS` bins), or None
    when not asked for.
    """

    sums: ExactSums
    n_samples: int
    hessian: ExactSums | None = None

    @classmethod
    def zeros(cls, n_coef: int, hessian: bool = False) -> Partials:
        return cls(
            ExactSums.zeros(n_coef + 2),
            0,
            ExactSums.zeros(triangle_size(n_coef), HESSIAN_BINS) if hessian else None,
        )

    def merge(self, other: Partials) -> Partials:
        if (self.hessian is None) != (other.hessian is None):
            raise ValueError("cannot merge partials with and without Hessian sums")
        hessian = None if self.hessian is None or other.hessian is None else self.hessian.merge(other.hessian)
        return Partials(self.sums.merge(other.sums), self.n_samples + other.n_samples, hessian)

    def finalize(self) -> tuple[float, np.ndarray, float]:
        """``(loss_sum, grad_sum, weight_sum)`` as float64, not yet divided."""
        totals = self.sums.finalize()
        return float(totals[-2]), totals[:-2], float(totals[-1])

    def hessian_sum(self) -> np.ndarray:
        """The full symmetric Hessian sum, not yet divided."""
        if self.hessian is None:
            raise ValueError("these partials have no Hessian sums (KernelSpec.hessian was False)")
        n_coef = self.sums.n_cols - 2
        return unpack_triangle(self.hessian.finalize(), n_coef)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Partials):
            return NotImplemented
        return (
            self.n_samples == other.n_samples
            and self.sums == other.sums
            and (self.hessian is None) == (other.hessian is None)
            and (self.hessian is None or self.hessian == other.hessian)
        )


@dataclass(frozen=True, eq=False)
class Stats:
    """Sums of the statistics pass.

    ``sums`` columns: ``x_j`` (d), ``x_j^2`` high parts (d), low parts (d),
    ``s``, ``s*y``.
    """

    sums: ExactSums
    n_samples: int

    @classmethod
    def zeros(cls, n_features: int) -> Stats:
        return cls(ExactSums.zeros(3 * n_features + 2), 0)

    def merge(self, other: Stats) -> Stats:
        return Stats(self.sums.merge(other.sums), self.n_samples + other.n_samples)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Stats):
            return NotImplemented
        return self.n_samples == other.n_samples and self.sums == other.sums


def merge_partials(*parts):
    """Merge any number of :class:`Partials` or :class:`Stats` (a node of the reduction tree)."""
    total = parts[0]
    for part in parts[1:]:
        total = total.merge(part)
    return total


def triangle_size(n: int) -> int:
    return n * (n + 1) // 2


def unpack_triangle(values: np.ndarray, n: int) -> np.ndarray:
    """Symmetric ``(n, n)`` matrix from its row-major upper triangle."""
    matrix = np.empty((n, n), dtype=np.float64)
    rows, cols = np.triu_indices(n)
    matrix[rows, cols] = values
    matrix[cols, rows] = values
    return matrix


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


def sample_weights(
    y: np.ndarray, weights: np.ndarray | None, class_weight: tuple[float, float] | None
) -> np.ndarray | None:
    """Per-row weight: weight column times class weight; None means all ones."""
    if class_weight is None:
        return weights
    per_class = np.where(y == 1.0, class_weight[1], class_weight[0])
    return per_class if weights is None else weights * per_class


def chunk_partials(
    X: np.ndarray,
    y: np.ndarray,
    coef: np.ndarray,
    weights: np.ndarray | None = None,
    spec: KernelSpec = KernelSpec(),
) -> Partials:
    """Exact partial sums of loss and gradient (and Hessian) over one chunk."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    coef = np.asarray(coef, dtype=np.float64)
    n_rows, n_features = X.shape
    if coef.shape != (n_features + 1,):
        raise ValueError(f"coef has shape {coef.shape}, expected ({n_features + 1},)")
    s = sample_weights(y, weights, spec.class_weight)
    total = Partials.zeros(n_features + 1, spec.hessian)
    terms = np.empty((min(n_rows, BLOCK_ROWS), n_features + 3), dtype=np.float64, order="F")
    for start in range(0, n_rows, BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, n_rows)
        Xb, yb = X[start:stop], y[start:stop]
        if spec.center is not None:
            Xb = (Xb - spec.center) / spec.scale
        margin = margins(Xb, coef)
        proba, softplus = sigmoid_softplus(margin)
        residual = proba - yb
        loss = softplus - yb * margin
        sb = None if s is None else s[start:stop]
        if sb is not None:
            residual = sb * residual
            loss = sb * loss
        block = terms[: stop - start]
        np.multiply(Xb, residual[:, None], out=block[:, :n_features])
        block[:, n_features] = residual
        block[:, n_features + 1] = loss
        block[:, n_features + 2] = 1.0 if sb is None else sb
        hessian = None
        if spec.hessian:
            curvature = proba * (1.0 - proba)
            if sb is not None:
                curvature = sb * curvature
            hessian = ExactSums.of(_outer_triangle(Xb, curvature), HESSIAN_BINS)
        total = total.merge(Partials(ExactSums.of(block), stop - start, hessian))
    return total


def _outer_triangle(Xb: np.ndarray, curvature: np.ndarray) -> np.ndarray:
    """Rows of ``curvature_i * a_ij * a_ik`` for ``j <= k``, ``a = [Xb, 1]``."""
    n_rows, n_features = Xb.shape
    augmented = np.empty((n_rows, n_features + 1), order="F")
    augmented[:, :n_features] = Xb
    augmented[:, n_features] = 1.0
    out = np.empty((n_rows, triangle_size(n_features + 1)), order="F")
    offset = 0
    for j in range(n_features + 1):
        width = n_features + 1 - j
        np.multiply(augmented[:, j:], (curvature * augmented[:, j])[:, None], out=out[:, offset : offset + width])
        offset += width
    return out


def exact_square(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(hi, lo)`` with ``hi + lo == x*x`` exactly (Dekker's product, no FMA)."""
    split = VELTKAMP * x
    x_hi = split - (split - x)
    x_lo = x - x_hi
    hi = x * x
    lo = ((x_hi * x_hi - hi) + 2.0 * x_hi * x_lo) + x_lo * x_lo
    return hi, lo


def chunk_stats(X: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> Stats:
    """Exact sums for feature means/variances and (weighted) label counts."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n_rows, d = X.shape
    total = Stats.zeros(d)
    for start in range(0, n_rows, BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, n_rows)
        Xb = X[start:stop]
        block = np.empty((stop - start, 3 * d + 2), order="F")
        block[:, :d] = Xb
        block[:, d : 2 * d], block[:, 2 * d : 3 * d] = exact_square(Xb)
        sb = np.ones(stop - start) if weights is None else weights[start:stop]
        block[:, 3 * d] = sb
        block[:, 3 * d + 1] = sb * y[start:stop]
        total = total.merge(Stats(ExactSums.of(block), stop - start))
    return total
