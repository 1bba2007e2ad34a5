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
``s_i y_i``, and the count of missing values (NaN) per column, which add
nothing to the sums.  A loss pass with :attr:`KernelSpec.fill` first puts
each column's fill value in place of its NaN.

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

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .data import FOLD_CODE, NARROW_FEATURE_DTYPES
from .elementary import exp_nonpositive, log1p_nonnegative, sigmoid_softplus
from .elementary import sigmoid as elementary_sigmoid
from .exact import BIN_WIDTH, BLOCK_ROWS, GRID_E0, N_BINS, ExactSums, top_bin

try:  # numpy >= 2
    import numpy._core._multiarray_umath as _numpy_umath
except ImportError:  # numpy 1.x
    import numpy.core._multiarray_umath as _numpy_umath

__all__ = [
    "HESSIAN_BINS",
    "LEVEL_MIN_TOP",
    "Categories",
    "FoldMember",
    "FoldPartials",
    "FoldSpec",
    "FoldStats",
    "LevelSums",
    "WARM_UP_PARTS",
    "KernelSpec",
    "Partials",
    "Stats",
    "WarmUpPart",
    "accumulate",
    "chunk_partials",
    "chunk_stats",
    "class_sums",
    "count_missing",
    "deposit_levels",
    "accumulate_levels",
    "add_levels",
    "level_top",
    "exact_square",
    "fold_partials",
    "fold_stats",
    "kernel_features",
    "margins",
    "merge_partials",
    "numpy_cpu_dispatch",
    "numpy_cpu_features",
    "sigmoid",
    "softmax",
    "softmax_partials",
    "triangle_size",
    "unpack_triangle",
]

VELTKAMP = 134217729.0  # 2**27 + 1
_SPLIT = float(2**BIN_WIDTH)
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


#: The lowest top bin of the level sums (:func:`level_top`).
LEVEL_MIN_TOP = N_BINS - 1
#: Rows whose level digits an int64 bin holds between two normalizations
#: (each digit is at most 2**39 in magnitude).
LEVEL_CALL_ROWS = 2**23
#: Rows the level sums' top bin leaves room for at full weight: the top
#: digit of a row is below ``2**52 / n`` (:func:`level_top`), so the top bin's
#: total stays an exact float64 integer.
_LEVEL_HEADROOM = 2.0**13
_FLOAT_MAX = float(np.finfo(np.float64).max)


@dataclass(frozen=True, eq=False)
class Categories:
    """Categorical columns: the last ``len(sizes)`` columns of ``X`` hold level
    codes (``0 .. sizes[c] - 1``, exact in ``X``'s dtype).

    Their coefficients follow the dense ones (``coef = [w_dense, w_levels,
    b]``, column ``c``'s levels from ``offsets[c]``); a row's margin is its
    dense margin (:func:`margins`, intercept included) with the coefficient
    of its level in each column added, in column order:
    ``((m + w[code_0]) + w[code_1]) + ...`` (:func:`add_levels`); the
    gradient of a level is the sum of ``s_i residual_i`` over its rows,
    deposited in :class:`LevelSums` with the fixed top bin ``top``
    (:func:`level_top`).
    """

    sizes: tuple[int, ...]
    top: int = LEVEL_MIN_TOP

    @property
    def n_columns(self) -> int:
        return len(self.sizes)

    @property
    def n_levels(self) -> int:
        return int(sum(self.sizes))

    @property
    def offsets(self) -> np.ndarray:
        """Index of each column's first level among the levels (int64)."""
        return np.concatenate([[0], np.cumsum(self.sizes[:-1], dtype=np.int64)]).astype(np.int64)


def level_top(n_samples: int, bound: float) -> int:
    """The top bin of the level sums of ``n_samples`` rows whose terms are at
    most ``bound`` in magnitude: every term's digit is below ``2**39`` units
    (the exact-sum grid's rule) and the top bin's sum of all of them below
    ``2**52`` units, so it stays an exact integer in float64 and int64.
    It depends on the row count and the bound only, never on the partitioning.
    A product past float64's range takes the highest top bin (that of the
    largest float64), not ``top_bin``'s bin of an infinity."""
    value = min(max(bound, bound * n_samples / _LEVEL_HEADROOM), _FLOAT_MAX)
    return int(top_bin(np.array([value]))[0])


@dataclass(frozen=True, eq=False)
class LevelSums:
    """Exact sums of one term per row at each row's levels (the categorical
    gradient): ``bins`` int64 ``(N_BINS, n_levels)`` in units of ``u_top``,
    ``u_{top-1}``, ``u_{top-2}`` of the exact-sum grid, normalized so that
    the two lower bins lie in ``[0, 2**BIN_WIDTH)``.  ``top`` is fixed for a
    fit (:func:`level_top`), so states add bin by bin: the merge is exact,
    associative and commutative.  ``bad``: a NaN or infinite term was seen.
    """

    top: int
    bins: np.ndarray
    bad: bool = False

    @classmethod
    def zeros(cls, n_levels: int, top: int) -> LevelSums:
        return cls(top, np.zeros((N_BINS, n_levels), dtype=np.int64))

    @property
    def n_levels(self) -> int:
        return self.bins.shape[1]

    def merge(self, other: LevelSums) -> LevelSums:
        if other.top != self.top or other.n_levels != self.n_levels:
            raise ValueError(
                f"cannot merge level sums of {self.n_levels} levels (top bin {self.top}) with "
                f"{other.n_levels} levels (top bin {other.top})"
            )
        if self.bad or other.bad:  # (one canonical bad state: zero bins)
            return LevelSums(self.top, np.zeros_like(self.bins), True)
        return LevelSums(self.top, normalize_levels(self.bins + other.bins))

    def finalize(self) -> np.ndarray:
        """The sums as float64: ``(b0 * 2**40 + b1) * 2**40 + b2`` in units of
        ``u_{top-2}``, in IEEE operations (the bins are unique for a given
        exact total, so the result is too; within an ulp of the exact sum)."""
        if self.bad:
            return np.full(self.n_levels, np.nan)
        b0, b1, b2 = (self.bins[k].astype(np.float64) for k in range(N_BINS))
        unit = np.ldexp(1.0, GRID_E0 + BIN_WIDTH * (self.top - (N_BINS - 1)))
        return ((b0 * _SPLIT + b1) * _SPLIT + b2) * unit

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LevelSums):
            return NotImplemented
        return self.top == other.top and self.bad == other.bad and np.array_equal(self.bins, other.bins)


def normalize_levels(bins: np.ndarray) -> np.ndarray:
    """``bins`` (int64, summed digits), changed in place and returned, with the
    carries of the lower bins moved up so that they lie in ``[0, 2**BIN_WIDTH)``:
    the same exact totals (one row of temporaries: a 2**20-level state is 24 MiB)."""
    carry = np.empty_like(bins[0])
    for k in range(N_BINS - 1, 0, -1):
        np.right_shift(bins[k], BIN_WIDTH, out=carry)
        bins[k - 1] += carry
        np.left_shift(carry, BIN_WIDTH, out=carry)
        bins[k] -= carry
    return bins


def add_levels(margin: np.ndarray, codes: np.ndarray, level_coef: np.ndarray, categories: Categories) -> np.ndarray:
    """``margin`` with each row's level coefficient of every categorical column
    added, column after column: ``((m + w[code_0]) + w[code_1]) + ...``
    (``codes``: their ``(n, n_columns)`` block of X)."""
    for c, first in enumerate(categories.offsets):
        margin = margin + level_coef[first + codes[:, c].astype(np.int64)]
    return margin


def accumulate_levels(total: LevelSums | None, part: LevelSums) -> LevelSums:
    """``total.merge(part)`` adding into ``total``'s bins in place (a running
    total the caller owns), or ``part`` when there is no total yet."""
    if total is None:
        return part
    if total.bad or part.bad or total.top != part.top:
        return total.merge(part)
    np.add(total.bins, part.bins, out=total.bins)
    normalize_levels(total.bins)
    return total


def level_digits(terms: np.ndarray, top: int) -> tuple[np.ndarray, ...]:
    """Each term's three round-half-even digits (int64) at top bin ``top``,
    as :func:`pipeline.exact._deposit_block` splits a value."""
    scaled = terms * np.ldexp(1.0, -(GRID_E0 + BIN_WIDTH * top))
    digits = []
    for k in range(N_BINS):
        digit = np.rint(scaled)
        digits.append(digit.astype(np.int64))
        if k + 1 < N_BINS:
            scaled = (scaled - digit) * _SPLIT
    return tuple(digits)


def deposit_levels(codes: np.ndarray, terms: np.ndarray, categories: Categories) -> LevelSums:
    """:class:`LevelSums` of ``terms`` (one per row) at each row's levels."""
    total = LevelSums.zeros(categories.n_levels, categories.top)
    if not np.isfinite(terms).all():
        return LevelSums(total.top, total.bins, True)
    offsets = categories.offsets
    for start in range(0, terms.shape[0], LEVEL_CALL_ROWS):
        stop = min(start + LEVEL_CALL_ROWS, terms.shape[0])
        digits = level_digits(terms[start:stop], categories.top)
        bins = np.zeros_like(total.bins)
        for c in range(categories.n_columns):
            index = offsets[c] + codes[start:stop, c].astype(np.int64)
            for k in range(N_BINS):
                np.add.at(bins[k], index, digits[k])
        total = total.merge(LevelSums(total.top, normalize_levels(bins)))
    return total


@dataclass(frozen=True, eq=False)
class KernelSpec:
    """How the loss pass treats a chunk (the same for every chunk of a fit).

    ``center``/``scale``: standardize features as ``(x - center) / scale``
    (both ``(d,)``; None: use raw features).  ``class_weight``: ``(c0, c1)``
    multiplies the sample weight of rows with label 0/1.  ``hessian``: also
    accumulate the Hessian sums.  ``fill``: ``(d,)`` values that take the
    place of a NaN feature (a missing value) before standardization, or None
    when the features hold no NaN.  ``n_classes``: 0 for the binary model
    (labels 0/1); K >= 2 for the multinomial one (:func:`softmax_partials`:
    labels are class codes 0..K-1, ``class_weight`` has one weight per class).
    ``scores`` (with ``hessian``): the second-order sums weigh each row by its
    weighted squared residual ``s_i r_i^2`` (as ``s_i`` copies of the row
    would) instead of its curvature ``s_i h_i (1 - h_i)``: the outer
    products of the per-row scores, the "meat" of the sandwich (HC0)
    covariance (:mod:`pipeline.inference`).
    """

    center: np.ndarray | None = None
    scale: np.ndarray | None = None
    class_weight: tuple[float, ...] | None = None
    hessian: bool = False
    fill: np.ndarray | None = None
    categories: Categories | None = None
    n_classes: int = 0
    scores: bool = False
    #: a cross-validation pass (:func:`fold_partials`): the fits it evaluates, each with its spec
    folds: FoldSpec | None = None

    def with_hessian(self, hessian: bool, scores: bool = False) -> KernelSpec:
        return dataclasses.replace(self, hessian=hessian, scores=hessian and scores)


@dataclass(frozen=True, eq=False)
class FoldMember:
    """One fit of a cross-validation pass: the rows it sees -- those of every
    fold but ``fold`` (its training rows), only those of ``fold``
    (``held_out``: its validation rows), or every row (``fold`` -1) -- and
    its loss pass's spec."""

    fold: int
    held_out: bool
    spec: KernelSpec


@dataclass(frozen=True, eq=False)
class FoldSpec:
    """The fits one cross-validation pass evaluates: ``coef`` is their
    coefficient vectors one after the other, the result a
    :class:`FoldPartials` of their partial sums in this order."""

    members: tuple[FoldMember, ...]


@dataclass(frozen=True, eq=False)
class FoldPartials:
    """The partial sums of each fit of a cross-validation pass (:class:`FoldSpec`)."""

    parts: tuple[Partials, ...]

    def merge(self, other: FoldPartials) -> FoldPartials:
        return FoldPartials(tuple(a.merge(b) for a, b in zip(self.parts, other.parts, strict=True)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FoldPartials) and self.parts == other.parts


def fold_partials(X, y, coef, weights, spec: KernelSpec, kernel) -> FoldPartials:
    """One chunk's partial sums for every fit of ``spec.folds``, by ``kernel``
    (:func:`chunk_partials` or its compiled twin) once per fit.  ``y`` holds
    each row's label coded with its fold (``y + FOLD_CODE * fold``,
    :class:`pipeline.data.Folds`).  A fit's sums are those of its rows alone:
    where the rows come grouped by fold (as the reader gives them), the
    kernel passes over their slices only; otherwise over every row, the
    others with weight 0, which the exact sums ignore: the same sums."""
    assert spec.folds is not None
    y = np.asarray(y, dtype=np.float64)
    fold = np.floor(y / FOLD_CODE)
    label = y - FOLD_CODE * fold
    coef = np.asarray(coef, dtype=np.float64)
    width = _fold_width(X, coef, spec)
    if not _grouped(fold):
        return _masked_fold_partials(X, fold, label, coef, weights, spec, kernel)
    parts = []
    for k, member in enumerate(spec.folds.members):
        member_coef = coef[k * width : (k + 1) * width]

        def over(start: int, stop: int, member=member, member_coef=member_coef) -> Partials:
            return kernel(X, label, member_coef, weights, member.spec, (int(start), int(stop)))

        start, stop = np.searchsorted(fold, [member.fold, member.fold + 1])
        if member.fold < 0:
            parts.append(over(0, len(fold)))
        elif member.held_out:
            parts.append(over(start, stop))
        else:
            parts.append(over(0, start).merge(over(stop, len(fold))))
    return FoldPartials(tuple(parts))


def _grouped(fold: np.ndarray) -> bool:
    """Whether a batch's rows come grouped by fold (as the reader gives them):
    each fold's rows one slice."""
    return not len(fold) or bool((fold[1:] >= fold[:-1]).all())


def _fold_width(X, coef: np.ndarray, spec: KernelSpec) -> int:
    """Coefficients per fit of the cross-validation pass ``spec``, whose fits
    are binary and share their levels, ``coef`` checked against it."""
    assert spec.folds is not None
    first = spec.folds.members[0].spec.categories
    for member in spec.folds.members:
        if member.spec.n_classes or member.spec.folds is not None:
            raise ValueError("a cross-validation pass takes binary fits")
        levels = member.spec.categories
        if (None if levels is None else levels.sizes) != (None if first is None else first.sizes):
            raise ValueError("the fits of a cross-validation pass have the same categorical columns and levels")
    width = X.shape[1] + 1 + (0 if first is None else first.n_levels - first.n_columns)
    if coef.shape != (width * len(spec.folds.members),):
        raise ValueError(f"coef has shape {coef.shape}, expected ({width} x {len(spec.folds.members)},)")
    return width


def _masked_fold_partials(X, fold, label, coef, weights, spec: KernelSpec, kernel) -> FoldPartials:
    """:func:`fold_partials` of rows in any order: each fit over every row,
    the others weighing 0 (its count of rows, its own)."""
    assert spec.folds is not None
    width = coef.shape[0] // len(spec.folds.members)
    parts = []
    for k, member in enumerate(spec.folds.members):
        member_weights = weights
        n_rows = len(fold)
        if member.fold >= 0:
            rows = (fold == member.fold) if member.held_out else (fold != member.fold)
            member_weights = rows.astype(np.float64) if weights is None else weights * rows
            n_rows = int(np.count_nonzero(rows))
        part = kernel(X, label, coef[k * width : (k + 1) * width], member_weights, member.spec)
        parts.append(dataclasses.replace(part, n_samples=n_rows))
    return FoldPartials(tuple(parts))


@dataclass(frozen=True, eq=False)
class FoldStats:
    """The statistics of each fold's rows (:func:`fold_stats`)."""

    parts: tuple[Stats, ...]

    @classmethod
    def zeros(cls, n_folds: int, n_features: int) -> FoldStats:
        return cls(tuple(Stats.zeros(n_features) for _ in range(n_folds)))

    def merge(self, other: FoldStats) -> FoldStats:
        return FoldStats(tuple(a.merge(b) for a, b in zip(self.parts, other.parts, strict=True)))

    def training(self, fold: int) -> Stats:
        """The statistics of every row but fold ``fold``'s (-1: of every row)."""
        kept = [part for k, part in enumerate(self.parts) if k != fold]
        total = kept[0]
        for part in kept[1:]:
            total = total.merge(part)
        return total

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FoldStats) and self.parts == other.parts


def fold_stats(X, y, weights, n_folds: int, kernel, categories: Categories | None = None) -> FoldStats:
    """One chunk's statistics of each fold's rows by ``kernel``
    (:func:`chunk_stats` or its compiled twin), ``y`` coded with the folds;
    with ``categories``, each fold's rows per level too (:func:`level_rows`)."""
    y = np.asarray(y, dtype=np.float64)
    fold = np.floor(y / FOLD_CODE)
    label = y - FOLD_CODE * fold
    grouped = _grouped(fold)  # (slices, not gathers)
    parts = []
    for k in range(n_folds):
        rows: slice | np.ndarray = slice(*np.searchsorted(fold, [k, k + 1])) if grouped else fold == k
        part_weights = None if weights is None else weights[rows]
        part = np.asfortranarray(X[rows])
        stats = kernel(part, label[rows], part_weights).with_extremes(part, part_weights)
        parts.append(stats if categories is None else stats.with_level_rows(level_rows(part, categories)))
    return FoldStats(tuple(parts))


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
    #: the levels' gradient sums (:class:`Categories`), or None without categorical columns
    levels: LevelSums | None = None

    @classmethod
    def zeros(cls, n_coef: int, hessian: bool = False) -> Partials:
        return cls(
            ExactSums.zeros(n_coef + 2),
            0,
            ExactSums.zeros(triangle_size(n_coef), HESSIAN_BINS) if hessian else None,
        )

    @classmethod
    def empty(cls, n_columns: int, spec: KernelSpec) -> Partials:
        """The identity of :meth:`merge` for a pass of ``spec`` over an ``X`` of
        ``n_columns`` columns (dense ones, then ``spec.categories``' codes);
        a cross-validation pass's: a :class:`FoldPartials` of them."""
        if spec.folds is not None:
            return FoldPartials(tuple(cls.empty(n_columns, m.spec) for m in spec.folds.members))  # type: ignore[return-value]
        categories = spec.categories
        blocks = max(spec.n_classes, 1)
        if categories is None:
            return cls.zeros(blocks * (n_columns + 1), spec.hessian)
        dense = n_columns - categories.n_columns
        return cls(
            ExactSums.zeros(blocks * (dense + 1) + 2),
            0,
            None,
            LevelSums.zeros(blocks * categories.n_levels, categories.top),
        )

    def merge(self, other: Partials) -> Partials:
        if (self.hessian is None) != (other.hessian is None):
            raise ValueError("cannot merge partials with and without Hessian sums")
        if (self.levels is None) != (other.levels is None):
            raise ValueError("cannot merge partials with and without level sums")
        hessian = None if self.hessian is None or other.hessian is None else self.hessian.merge(other.hessian)
        levels = None if self.levels is None or other.levels is None else self.levels.merge(other.levels)
        return Partials(self.sums.merge(other.sums), self.n_samples + other.n_samples, hessian, levels)

    def finalize(self, n_classes: int = 0) -> tuple[float, np.ndarray, float]:
        """``(loss_sum, grad_sum, weight_sum)`` as float64, not yet divided
        (``grad_sum``: dense features, levels, intercept; of each class in
        turn for a multinomial pass's, ``n_classes`` K)."""
        totals = self.sums.finalize()
        grad = totals[:-2]
        if self.levels is not None:
            blocks = max(n_classes, 1)
            dense = grad.reshape(blocks, -1)
            levels = self.levels.finalize().reshape(blocks, -1)
            grad = np.concatenate([dense[:, :-1], levels, dense[:, -1:]], axis=1).ravel()
        return float(totals[-2]), grad, float(totals[-1])

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
            and (self.levels is None) == (other.levels is None)
            and (self.levels is None or self.levels == other.levels)
        )


@dataclass(frozen=True, eq=False)
class Stats:
    """Sums of the statistics pass.

    ``sums`` columns: ``x_j`` (d), ``x_j^2`` high parts (d), low parts (d),
    ``s``, ``s*y``; a missing value (NaN) adds nothing to them and counts in
    ``missing`` (int64 ``(d,)``, None: no column had one).
    """

    sums: ExactSums
    n_samples: int
    missing: np.ndarray | None = None
    #: rows per categorical level (int64, :func:`level_rows`), or None without levels
    level_rows: np.ndarray | None = None
    #: with row weights: each column's least and largest value over the rows
    #: of positive weight (:func:`weighted_extremes`); None without weights
    extremes: np.ndarray | None = None

    @classmethod
    def zeros(cls, n_features: int) -> Stats:
        return cls(ExactSums.zeros(3 * n_features + 2), 0)

    def with_level_rows(self, rows: np.ndarray) -> Stats:
        return dataclasses.replace(self, level_rows=rows)

    def with_extremes(self, X: np.ndarray, weights: np.ndarray | None) -> Stats:
        """With the extremes of ``X``'s rows of positive ``weights`` (the
        statistics pass's, next to its sums: :func:`weighted_extremes`)."""
        return dataclasses.replace(self, extremes=weighted_extremes(X, weights))

    @property
    def n_missing(self) -> np.ndarray:
        """Missing values per feature column (int64)."""
        d = (self.sums.n_cols - 2) // 3
        return np.zeros(d, dtype=np.int64) if self.missing is None else self.missing

    def merge(self, other: Stats) -> Stats:
        missing = None if self.missing is None and other.missing is None else self.n_missing + other.n_missing
        rows = self.level_rows if other.level_rows is None else other.level_rows
        if self.level_rows is not None and other.level_rows is not None:
            rows = self.level_rows + other.level_rows
        extremes = self.extremes if other.extremes is None else other.extremes
        if self.extremes is not None and other.extremes is not None:
            extremes = np.stack(
                [np.minimum(self.extremes[0], other.extremes[0]), np.maximum(self.extremes[1], other.extremes[1])]
            )
        return Stats(self.sums.merge(other.sums), self.n_samples + other.n_samples, missing, rows, extremes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Stats):
            return NotImplemented
        return (
            self.n_samples == other.n_samples
            and self.sums == other.sums
            and np.array_equal(self.n_missing, other.n_missing)
            and _same_rows(self.level_rows, other.level_rows)
            and _same_rows(self.extremes, other.extremes)
        )


def _same_rows(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is None and b is None or (a is not None and b is not None and np.array_equal(a, b))


def weighted_extremes(X: np.ndarray, weights: np.ndarray | None) -> np.ndarray | None:
    """``(2, d)`` float64: each column's least and largest value over the rows
    of positive weight (``+inf, -inf`` where there is none; ``-inf, +inf``
    where a missing value is among them), or None without weights (every row
    counts: the deviation of the sums tells a constant column).  A column
    with both equal is constant on the rows that count, whatever the rows of
    weight 0 (a validation split's) hold: :attr:`pipeline.objective.DataSummary.constant_columns`."""
    if weights is None:
        return None
    X = np.asarray(X)
    counted = np.asarray(weights) > 0
    extremes = np.empty((2, X.shape[1]))
    extremes[0], extremes[1] = np.inf, -np.inf
    if counted.any():
        rows = None if counted.all() else np.flatnonzero(counted)
        least, largest = np.empty(X.shape[1]), np.empty(X.shape[1])
        for j in range(X.shape[1]):  # (a column at a time: a copy of one column at most)
            values = X[:, j] if rows is None else X[:, j].take(rows)
            least[j], largest[j] = values.min(), values.max()
        missing = np.isnan(least) | np.isnan(largest)
        # (+ 0.0: -0.0 is 0.0, so that merges in any order give the same bits)
        extremes[0] = np.where(missing, -np.inf, least + 0.0)
        extremes[1] = np.where(missing, np.inf, largest + 0.0)
    return extremes


def level_rows(X: np.ndarray, categories: Categories) -> np.ndarray:
    """Rows per level (int64, in coefficient order) of ``X``'s last columns, its level codes."""
    rows = np.zeros(categories.n_levels, dtype=np.int64)
    first = X.shape[1] - categories.n_columns
    for c, offset in enumerate(categories.offsets):
        codes = np.asarray(X[:, first + c]).astype(np.int64)
        rows[offset : offset + categories.sizes[c]] += np.bincount(codes, minlength=categories.sizes[c])
    return rows


def count_missing(X: np.ndarray, sums: ExactSums) -> np.ndarray | None:
    """The NaN (missing values) per feature column of ``X``, given the
    statistics' sums of it (their NaN flags say which columns to count):
    None when there are none."""
    columns = np.flatnonzero(sums.saw_nan[: X.shape[1]])
    if not len(columns):
        return None
    counts = np.zeros(X.shape[1], dtype=np.int64)
    for j in columns:
        counts[j] = np.count_nonzero(np.isnan(X[:, j]))
    return counts


def accumulate(total, part):
    """``total.merge(part)`` for a running total the caller owns (built from
    fresh states, not yet handed out): the levels' bins are added into
    ``total``'s in place, so a pass over many batches holds one state of a
    2**20-level model, not a new one per batch.  The same values as ``merge``."""
    if total is None:
        return part
    if isinstance(total, FoldPartials):  # (a cross-validation pass: each fit's sums alike)
        return FoldPartials(tuple(accumulate(a, b) for a, b in zip(total.parts, part.parts, strict=True)))
    levels, more = getattr(total, "levels", None), getattr(part, "levels", None)
    if levels is None or more is None:
        return total.merge(part)
    return Partials(
        total.sums.merge(part.sums), total.n_samples + part.n_samples, None, accumulate_levels(levels, more)
    )


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
    A margin that overflows is an infinity (NaN where infinities of both
    signs meet): the callers decide what it means, and numpy's warnings are
    not printed (the compiled twin prints none either).
    """
    with np.errstate(over="ignore", invalid="ignore"):
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
    y: np.ndarray, weights: np.ndarray | None, class_weight: tuple[float, ...] | None
) -> np.ndarray | None:
    """Per-row weight: weight column times class weight; None means all ones.
    ``class_weight``: one weight per label (binary: of 0 and 1; multinomial:
    of each class code)."""
    if class_weight is None:
        return weights
    if len(class_weight) == 2:
        per_class = np.where(y == 1.0, class_weight[1], class_weight[0])
    else:
        per_class = np.asarray(class_weight, dtype=np.float64)[y.astype(np.int64)]
    return per_class if weights is None else weights * per_class


def chunk_partials(
    X: np.ndarray,
    y: np.ndarray,
    coef: np.ndarray,
    weights: np.ndarray | None = None,
    spec: KernelSpec = KernelSpec(),
    rows: tuple[int, int] | None = None,
) -> Partials:
    """Exact partial sums of loss and gradient (and Hessian) over one chunk
    (of the multinomial model when ``spec.n_classes``: :func:`softmax_partials`),
    or over its rows ``start:stop`` given ``rows`` (the compiled kernel reads
    them in place)."""
    if rows is not None:
        X, y = X[rows[0] : rows[1]], y[rows[0] : rows[1]]
        weights = None if weights is None else weights[rows[0] : rows[1]]
    if spec.folds is not None:
        return fold_partials(X, y, coef, weights, spec, chunk_partials)  # type: ignore[return-value]
    if spec.n_classes:
        return softmax_partials(X, y, coef, weights, spec)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    coef = np.asarray(coef, dtype=np.float64)
    categories = spec.categories
    n_rows = X.shape[0]
    total = Partials.empty(X.shape[1], spec)
    if categories is None:
        n_features = X.shape[1]
        if coef.shape != (n_features + 1,):
            raise ValueError(f"coef has shape {coef.shape}, expected ({n_features + 1},)")
        dense_coef = coef
    else:  # the dense columns' sums as without levels; the levels' from the codes
        if spec.hessian:
            raise ValueError("the Hessian pass takes dense features only (no categorical columns)")
        n_features = X.shape[1] - categories.n_columns
        dense_coef, level_coef = split_coef(coef, n_features, categories)
        codes, X = X[:, n_features:], X[:, :n_features]
    s = sample_weights(y, weights, spec.class_weight)
    terms = np.empty((min(n_rows, BLOCK_ROWS), n_features + 3), dtype=np.float64, order="F")
    for start in range(0, n_rows, BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, n_rows)
        Xb, yb = prepared(X[start:stop], spec), y[start:stop]
        margin = margins(Xb, dense_coef)
        if categories is not None:
            margin = add_levels(margin, codes[start:stop], level_coef, categories)
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
            if spec.scores:  # (residual is weighted already: s r^2, as s copies of the row would give)
                curvature = residual * (proba - yb)
            else:
                curvature = proba * (1.0 - proba)
                if sb is not None:
                    curvature = sb * curvature
            hessian = ExactSums.of(_outer_triangle(Xb, curvature), HESSIAN_BINS)
        levels = None if categories is None else deposit_levels(codes[start:stop], residual, categories)
        total = total.merge(Partials(ExactSums.of(block), stop - start, hessian, levels))
    return total


def softmax(margin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(proba, top, log_tail)`` of each row of ``margin`` ``(n, K)``, in one
    fixed order per row: the largest margin ``top`` (its first class
    ``m``), ``e_k = exp(margin_k - top)`` for the other classes (each
    ``<= 1``, from :func:`pipeline.elementary.exp_nonpositive`), their sum
    ``tail`` left to right over ``k`` (``e_m`` taken as 0), then
    ``proba_k = e_k / (1 + tail)``, ``proba_m = 1 / (1 + tail)`` and
    ``log_tail = log1p(tail)``, so that ``logsumexp = top + log_tail``.
    The same IEEE operations as the compiled pass (:mod:`pipeline.fused`)."""
    n, n_classes = margin.shape
    rows = np.arange(n)
    first = np.argmax(margin, axis=1)
    top = margin[rows, first]
    shifted = exp_nonpositive((margin - top[:, None]).ravel()).reshape(n, n_classes)
    shifted[rows, first] = 0.0
    tail = shifted[:, 0].copy()
    for k in range(1, n_classes):
        tail = tail + shifted[:, k]
    denominator = 1.0 + tail
    proba = shifted / denominator[:, None]
    proba[rows, first] = 1.0 / denominator
    return proba, top, log1p_nonnegative(tail)


def softmax_partials(
    X: np.ndarray,
    y: np.ndarray,
    coef: np.ndarray,
    weights: np.ndarray | None = None,
    spec: KernelSpec = KernelSpec(),
) -> Partials:
    """The multinomial loss pass over one chunk: ``y`` holds class codes
    ``0..K-1`` (``K = spec.n_classes``), ``coef`` is ``K`` blocks
    ``[w_k, b_k]`` of ``d + 1`` (class-major; with ``spec.categories``
    ``[w_dense_k, w_levels_k, b_k]``, the level codes X's last columns, and
    the level sums of each class one after the other, as for the binary pass).  Each class's margin is
    :func:`margins`' (the same tree), the probabilities and the log-sum-exp
    :func:`softmax`'s; the sums have ``K (d + 1) + 2`` columns: per class
    ``s_i (proba_ik - [y_i = k]) x~_ij`` and its intercept term, then
    ``s_i (logsumexp_i - margin_{i,y_i})`` (computed as ``(top - margin_y) +
    log_tail``) and ``s_i``."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    coef = np.asarray(coef, dtype=np.float64)
    n_classes = spec.n_classes
    categories = spec.categories
    if spec.hessian:
        raise ValueError("the multinomial pass has no Hessian")
    n_rows, n_columns = X.shape
    n_levels = 0 if categories is None else categories.n_levels
    n_features = n_columns - (0 if categories is None else categories.n_columns)
    if coef.shape != (n_classes * (n_features + n_levels + 1),):
        raise ValueError(f"coef has shape {coef.shape}, expected ({n_classes * (n_features + n_levels + 1)},)")
    per_class = coef.reshape(n_classes, -1)
    if categories is not None:  # each class's [w_dense, b] and its level coefficients
        codes, X = X[:, n_features:], X[:, :n_features]
        level_coef = per_class[:, n_features:-1]
        per_class = np.concatenate([per_class[:, :n_features], per_class[:, -1:]], axis=1)
    s = sample_weights(y, weights, spec.class_weight)
    width = n_features + 1
    total = Partials.empty(n_columns, spec)
    terms = np.empty((min(n_rows, BLOCK_ROWS), n_classes * width + 2), dtype=np.float64, order="F")
    for start in range(0, n_rows, BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, n_rows)
        Xb, yb = prepared(X[start:stop], spec), y[start:stop]
        margin = np.column_stack([margins(Xb, per_class[k]) for k in range(n_classes)])
        if categories is not None:
            for k in range(n_classes):
                margin[:, k] = add_levels(margin[:, k], codes[start:stop], level_coef[k], categories)
        proba, top, log_tail = softmax(margin)
        labels = yb.astype(np.int64)
        loss = (top - margin[np.arange(stop - start), labels]) + log_tail
        sb = None if s is None else s[start:stop]
        block = terms[: stop - start]
        levels = []
        for k in range(n_classes):
            residual = proba[:, k] - (yb == k)
            if sb is not None:
                residual = sb * residual
            np.multiply(Xb, residual[:, None], out=block[:, k * width : k * width + n_features])
            block[:, k * width + n_features] = residual
            if categories is not None:
                levels.append(deposit_levels(codes[start:stop], residual, categories))
        block[:, -2] = loss if sb is None else sb * loss
        block[:, -1] = 1.0 if sb is None else sb
        total = total.merge(Partials(ExactSums.of(block), stop - start, None, _joined_levels(levels)))
    return total


def class_sums(codes: np.ndarray, weights: np.ndarray | None, n_classes: int) -> list[ExactSums]:
    """Each class's exact sum of the weights of its rows (ones without
    weights), for class codes ``0..n_classes-1``: the rows sorted by class,
    one slice each (exact sums: the order of the rows does not matter)."""
    codes = np.asarray(codes).astype(np.int64)
    values = np.ones(codes.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n_classes + 1))
    return [ExactSums.of(values[order[bounds[k] : bounds[k + 1]]][:, None]) for k in range(n_classes)]


def _joined_levels(parts: list[LevelSums]) -> LevelSums | None:
    """The level sums of each class, one after the other (None: no levels)."""
    if not parts:
        return None
    bins = np.concatenate([part.bins for part in parts], axis=1)
    if any(part.bad for part in parts):  # (one canonical bad state: zero bins)
        return LevelSums(parts[0].top, np.zeros_like(bins), True)
    return LevelSums(parts[0].top, bins)


def prepared(Xb: np.ndarray, spec: KernelSpec) -> np.ndarray:
    """A block of dense features as the loss passes see it: each NaN replaced by
    its column's fill value, then standardized (``spec``'s)."""
    if spec.fill is not None:
        Xb = np.where(np.isnan(Xb), spec.fill, Xb)
    if spec.center is not None:
        Xb = (Xb - spec.center) / spec.scale
    return Xb


def split_coef(coef: np.ndarray, n_dense: int, categories: Categories) -> tuple[np.ndarray, np.ndarray]:
    """``([w_dense, b], w_levels)`` of ``coef = [w_dense, w_levels, b]``."""
    expected = n_dense + categories.n_levels + 1
    if coef.shape != (expected,):
        raise ValueError(
            f"coef has shape {coef.shape}, expected ({expected},): {n_dense} dense features, "
            f"{categories.n_levels} levels and the intercept"
        )
    return np.append(coef[:n_dense], coef[-1]), coef[n_dense:-1]


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
    """``(hi, lo)`` with ``hi + lo == x*x`` exactly (Dekker's product, no FMA).
    A square beyond float64 is infinite, quietly: the statistics then say
    which feature cannot be standardized (``fitting.check_standardizable``)."""
    with np.errstate(over="ignore", invalid="ignore"):
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
    return Stats(total.sums, total.n_samples, count_missing(X, total.sums))
