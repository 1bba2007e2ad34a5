"""Order-independent (reproducible) column sums.

Binned pre-rounding on a fixed global grid, after Demmel & Nguyen (ReproBLAS);
the design is ``docs/exact-sums.md``.  In short:

* bin ``b`` has unit ``u_b = 2**(GRID_E0 + BIN_WIDTH*b)``; the grid never
  depends on the data;
* a column keeps ``N_BINS`` consecutive bins ``T, T-1, T-2`` of exact integers,
  where the top bin ``T`` is the smallest with ``max|v| < 2**(BIN_WIDTH-1) * u_T``;
* each value is split into integers, one per bin (round half even at the last);
  up to ``BLOCK_ROWS`` such integers add exactly in any order, so per-block
  float sums are exact and are carried on in Python integers;
* :meth:`ExactSums.merge` aligns two states to the larger ``T`` by dropping
  the low bins of the other (no re-rounding), then adds the integers.  Merge is
  exact, associative and commutative with :meth:`ExactSums.zeros` as identity;
* :meth:`ExactSums.finalize` rounds the exact integer total to float64 once.
* a state may keep fewer bins (``depth``; the Hessian's keep 2): the same
  grid and rules with ``T - (depth - 1)`` as the last bin.

The finalized value is ``round(sum_i RNE(v_i / u_L) * u_L)`` with
``L = T - (N_BINS - 1)`` and ``T`` fixed by the largest ``|v_i|`` of the
column over all chunks: it depends on the multiset of values only, never on
how they were split into chunks or in which order the chunks were merged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = [
    "BIN_WIDTH",
    "fsum",
    "BLOCK_ROWS",
    "GRID_E0",
    "N_BINS",
    "ExactSums",
    "top_bin",
]

#: Exponent of the unit of bin 0 (the smallest subnormal).
GRID_E0 = -1074
#: Bits per bin.
BIN_WIDTH = 40
#: Bins kept per column.
N_BINS = 3
#: Rows whose bin integers (each |a| <= 2**39) add exactly in float64.
BLOCK_ROWS = 2 ** (54 - BIN_WIDTH)

_MIN_TOP = N_BINS - 1
_NAN, _POS_INF, _NEG_INF = 1, 2, 4
_SPLIT = float(2**BIN_WIDTH)


def fsum(values: np.ndarray) -> float:
    """:func:`math.fsum` of an array's values (the correctly rounded sum,
    independent of their order), skipping its zeros, which change none of
    fsum's partials (a sum of zeros alone is +0.0 either way): a sparse
    vector of 2**20 coefficients costs its non-zeros only."""
    values = np.asarray(values, dtype=np.float64).ravel()
    return math.fsum(values[values != 0.0].tolist())


def top_bin(bound: np.ndarray) -> np.ndarray:
    """Smallest bin ``b >= N_BINS-1`` whose capacity exceeds each ``bound``.

    Capacity of bin ``b`` is ``2**(GRID_E0 + BIN_WIDTH*b + BIN_WIDTH - 1)``.
    Monotone in ``bound``; a bound of 0 gets the lowest top bin.
    """
    bound = np.asarray(bound, dtype=np.float64)
    _, exponent = np.frexp(bound)  # bound < 2**exponent
    need = exponent.astype(np.int64) - GRID_E0 - (BIN_WIDTH - 1)
    top = -((-need) // BIN_WIDTH)  # ceil division
    top = np.maximum(top, _MIN_TOP)
    return np.where(bound > 0, top, _MIN_TOP).astype(np.int64)


@dataclass(frozen=True, eq=False)
class ExactSums:
    """Exact partial sums of ``n_cols`` columns.

    ``top``: int64 ``(n_cols,)`` top bin per column.
    ``bins``: object ``(depth, n_cols)`` Python integers; row ``k`` is in
    units of ``u_{top-k}``.  The depth is ``N_BINS`` (3 bins: every value's
    digits down to ``u_{T-2}``) unless a state is made with fewer
    (:data:`pipeline.kernel.HESSIAN_BINS`: the last bin ``T - depth + 1``);
    only states of the same depth merge.
    ``flags``: uint8 ``(n_cols,)`` bit set of NaN, +inf, -inf seen.
    """

    top: np.ndarray
    bins: np.ndarray
    flags: np.ndarray

    @property
    def n_cols(self) -> int:
        return self.top.shape[0]

    @property
    def depth(self) -> int:
        """Bins kept per column (``N_BINS`` unless made with fewer)."""
        return self.bins.shape[0]

    @classmethod
    def zeros(cls, n_cols: int, depth: int = N_BINS) -> ExactSums:
        """The empty state: identity of :meth:`merge`."""
        _check_depth(depth)
        return cls(
            top=np.full(n_cols, _MIN_TOP, dtype=np.int64),
            bins=np.zeros((depth, n_cols), dtype=object),
            flags=np.zeros(n_cols, dtype=np.uint8),
        )

    @classmethod
    def of(cls, values: np.ndarray, depth: int = N_BINS) -> ExactSums:
        """Sums of the columns of a 2-D array (any length, any layout): exact
        down to the last of ``depth`` bins below each column's top."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError(f"expected a 2-D array, got shape {values.shape}")
        total = cls.zeros(values.shape[1], depth)
        for start in range(0, values.shape[0], BLOCK_ROWS):
            total = total.merge(_deposit_block(values[start : start + BLOCK_ROWS], depth))
        return total

    def merge(self, other: ExactSums) -> ExactSums:
        """Exact sum of two states (associative, commutative)."""
        if other.n_cols != self.n_cols:
            raise ValueError(f"cannot merge {self.n_cols} columns with {other.n_cols}")
        if other.depth != self.depth:
            raise ValueError(f"cannot merge sums of {self.depth} bins with sums of {other.depth} bins")
        top = np.maximum(self.top, other.top)
        bins = _align(self, top) + _align(other, top)
        return ExactSums(top=top, bins=bins, flags=self.flags | other.flags)

    def finalize(self) -> np.ndarray:
        """The sums as float64, each correctly rounded from the exact total."""
        out = np.empty(self.n_cols, dtype=np.float64)
        for j in range(self.n_cols):
            flags = int(self.flags[j])
            if flags & _NAN or (flags & _POS_INF and flags & _NEG_INF):
                out[j] = np.nan
            elif flags & _POS_INF:
                out[j] = np.inf
            elif flags & _NEG_INF:
                out[j] = -np.inf
            else:
                out[j] = _to_float(self.bins[:, j], int(self.top[j]))
        return out

    def exact_values(self) -> list[Fraction | None]:
        """The sums as exact rationals (None where NaN/inf were seen)."""
        return [None if self.flags[j] else _exact_total(self.bins[:, j], int(self.top[j])) for j in range(self.n_cols)]

    def finite_values(self) -> list[Fraction]:
        """The exact sums of each column's finite values (NaN and inf, which
        :meth:`finalize` reports, are left out: a missing value's NaN adds nothing)."""
        return [_exact_total(self.bins[:, j], int(self.top[j])) for j in range(self.n_cols)]

    @property
    def saw_nan(self) -> np.ndarray:
        """Per column: whether a NaN was among the values."""
        return (self.flags & _NAN) != 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExactSums):
            return NotImplemented
        return (
            self.depth == other.depth
            and np.array_equal(self.top, other.top)
            and np.array_equal(self.flags, other.flags)
            and all(a == b for a, b in zip(self.bins.ravel(), other.bins.ravel()))
        )


def _check_depth(depth: int) -> None:
    if not 1 <= depth <= N_BINS:
        raise ValueError(f"depth must be 1..{N_BINS}; got {depth}")


def _deposit_block(values: np.ndarray, depth: int = N_BINS) -> ExactSums:
    """Exact sums of at most ``BLOCK_ROWS`` rows (``depth`` bins)."""
    n_cols = values.shape[1]
    flags = np.zeros(n_cols, dtype=np.uint8)
    if values.shape[0] == 0:
        return ExactSums.zeros(n_cols, depth)
    # max(max, -min) needs no |values| temporary; NaN and inf show up in it.
    bound = np.maximum(values.max(axis=0), -values.min(axis=0))
    if not np.isfinite(bound).all():
        flags |= np.where(np.isnan(values).any(axis=0), _NAN, 0).astype(np.uint8)
        flags |= np.where((values == np.inf).any(axis=0), _POS_INF, 0).astype(np.uint8)
        flags |= np.where((values == -np.inf).any(axis=0), _NEG_INF, 0).astype(np.uint8)
        values = np.where(np.isfinite(values), values, 0.0)
        bound = np.abs(values).max(axis=0)
    top = top_bin(bound)
    # Multiplying by a power of two is exact (or deterministically rounded
    # far below the last bin), so ``scaled`` depends on the value and T only.
    scaled = values * np.ldexp(1.0, -(GRID_E0 + BIN_WIDTH * top))
    digits = np.empty_like(scaled)
    bins = np.empty((depth, n_cols), dtype=object)
    for k in range(depth):
        np.rint(scaled, out=digits)
        # Each |digit| <= 2**39 and at most 2**14 rows: every partial sum is an
        # integer below 2**53, so this float sum is exact in any order.
        bins[k] = digits.sum(axis=0).astype(np.int64).astype(object)
        if k + 1 < depth:
            np.subtract(scaled, digits, out=scaled)
            np.multiply(scaled, _SPLIT, out=scaled)
    return ExactSums(top=top, bins=bins, flags=flags)


def _align(state: ExactSums, top: np.ndarray) -> np.ndarray:
    """``state.bins`` re-expressed with top bins ``top >= state.top``.

    Bins that fall below ``top - (depth-1)`` are dropped: a value deposited
    at a lower top and shifted equals the same value deposited at ``top``.
    """
    depth = state.depth
    shift = np.minimum(top - state.top, depth)
    if not shift.any():
        return state.bins
    padded = np.concatenate([np.zeros_like(state.bins), state.bins], axis=0)
    index = depth + np.arange(depth)[:, None] - shift[None, :]
    return np.take_along_axis(padded, index, axis=0)


def _integer_total(bins: np.ndarray, top: int) -> tuple[int, int]:
    """``(N, e)`` with the column's exact sum equal to ``N * 2**e``."""
    depth = len(bins)
    total = 0
    for k in range(depth):
        total += int(bins[k]) << (BIN_WIDTH * (depth - 1 - k))
    return total, GRID_E0 + BIN_WIDTH * (top - (depth - 1))


def _exact_total(bins: np.ndarray, top: int) -> Fraction:
    total, exponent = _integer_total(bins, top)
    return Fraction(total) * Fraction(2) ** exponent


def _to_float(bins: np.ndarray, top: int) -> float:
    total, exponent = _integer_total(bins, top)
    try:
        if exponent >= 0:
            return float(total << exponent)
        # int / int true division is correctly rounded (subnormals included).
        return total / (1 << -exponent)
    except OverflowError:
        return np.inf if total > 0 else -np.inf
