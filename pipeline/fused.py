"""Fused compiled passes: :func:`pipeline.kernel.chunk_partials` and
:func:`pipeline.kernel.chunk_stats` in one sweep.

:func:`fused_partials` returns a :class:`~pipeline.kernel.Partials` **equal**
(``==``: same row count, top bins, flags and Python-int bins) to
``chunk_partials`` for the same arguments, for every input, Hessian sums
included; :func:`fused_stats` returns a :class:`~pipeline.kernel.Stats` equal
to ``chunk_stats``.  The numpy reference stays the oracle; this module is only
a faster way to compute the same integers.

The per-row exponential and logarithm are the pipeline's own
(:mod:`pipeline.elementary_jit`, the numba twins of :mod:`pipeline.elementary`:
IEEE basic operations only), so the one-sweep loss pass gives the reference's
bits on every CPU, whatever numpy's SIMD dispatch: it runs wherever numba
imports (:data:`AVAILABLE`); :func:`chunk_partials_fast` falls back to the
reference only without numba.

How it stays bitwise equal (see ``docs/exact-sums.md``):

* Every per-row quantity is computed with the same IEEE operations in the same
  order as the reference: standardization ``(x - c) / s``; products
  ``x~_j * w_j`` summed by the same pairwise tree as :func:`kernel.margins`
  (level-by-level adjacent pairs, odd last carried, evaluated here with a
  stack: complete power-of-two blocks from the left, the ragged tail joined
  right-to-left -- the same tree); ``proba`` and ``softplus`` from
  :func:`pipeline.elementary_jit.sigmoid_softplus`; the Hessian's
  ``(s * h(1-h) * a_j) * a_k``; the statistics' Dekker square of
  :func:`kernel.exact_square`.  Compiled with numba in nopython mode without
  fast-math: no reassociation, no FMA contraction.  Every pass uses only
  correctly rounded IEEE operations: :data:`AVAILABLE` and
  :data:`STATS_AVAILABLE` only need numba.
* Deposits follow :func:`exact._deposit_block` on small cache-resident blocks
  of rows (at most ``BLOCK_ROWS``): bound ``max |v|`` of the block's finite
  values, the same top bin ``T``, three levels of round-half-even -- without
  the reference's scalings: with the rounder ``M_k = 1.5*2**52*u_k`` of bin
  ``T-k`` (``u_k`` its unit), ``fl(r + M_k)`` is ``M_k + rint(r/u_k)*u_k``
  (round half even, ``|r| <= 2**51*u_k``), the digit is
  ``bits(fl(r + M_k)) - bits(M_k)`` and ``fl(r + M_k) - M_k`` is exact, so
  the remainder passed on is exact (:func:`_digits`: 11 operations per value
  for three digits, 14 with the scalings).  Values at the highest top bin,
  whose rounder would overflow, are scaled by the exact ``2**-BIN_WIDTH``
  first.  Block sums of the bits are integer (exact, vectorisable) adds,
  wrapping modulo 2**64 until the bias is taken off.  A column's products
  ``x~_ij * residual_i`` are formed in registers and deposited at the
  column's running top bin, two columns per sweep, in the sweep that finds
  their maximum, and kept when that maximum fits under the top
  (:func:`_deposit_column`, :func:`_deposit_pair`).  Block
  states are aligned and added as
  :meth:`ExactSums.merge` does.  The merged state is canonical -- a value's
  digits at a lower top bin, shifted, equal its digits at the higher top bin,
  and bins below ``T-2`` hold only zeros there -- so the block size does not
  change the result.
* Bins accumulate in int64 for at most ``_CALL_ROWS`` rows per compiled call
  (``|sum| <= 2**23 * 2**39 < 2**63``; the level bins also take the pairs'
  flushes, at most one per block of 64 or more rows, each below ``2**46``
  in the top bin and ``2**40`` in the others) and are then carried on in
  Python ints.
* Level sums (categorical columns) have one top bin for the whole fit
  (:func:`kernel.level_top`), so a term's three digits are one integer
  ``N = d0 * 2**80 + d1 * 2**40 + d2`` (the term rounded half even to the last
  bin's unit) and a level's sum is the sum of its rows' ``N``: a 128-bit pair
  of words per level, two scattered adds with a carry instead of three,
  moved to three int64 bins before it could reach ``2**127``
  (:func:`_deposit_levels`), and normalized as the reference's.

Layout: an F-ordered float64 X (what :mod:`pipeline.data` builds from
float64 columns) is read in place, block by block (margins, then terms,
while the block is in cache; software prefetching of the next block measured
slower at every width); any other layout, narrow features
(float32, small integers, booleans: widened exactly) and standardized input
are copied block by block into an F-ordered float64 scratch (widened and
standardized on the way).  From ``_STREAM_FEATURES`` features on (16), a
pass streams instead when X is F-ordered float64 without fill values (:attr:`_Job.stream`, the loss pass
only): blocks of ``_STREAM_ROWS`` rows read in place, their margins over the
whole block at once (long column runs), and each value standardized in
registers where the margins and the deposits read it (:func:`_x`: the copy's
operations, so the same bits).  The Hessian is a compile-time
branch of the same passes (numba prunes ``if hess is not None`` when ``hess``
is None), so the gradient pass pays nothing for it.  The statistics pass reads
each column of a block twice (Dekker's low parts and the maxima, then the
fused deposits of ``x``, ``x*x`` and the low parts).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .exact import BIN_WIDTH, BLOCK_ROWS, GRID_E0, N_BINS, ExactSums
from .kernel import (
    HESSIAN_BINS,
    VELTKAMP,
    Categories,
    KernelSpec,
    LevelSums,
    Partials,
    Stats,
    WarmUpPart,
    accumulate_levels,
    add_levels,
    chunk_partials,
    chunk_stats,
    count_missing,
    fold_partials,
    kernel_features,
    margins,
    normalize_levels,
    sample_weights,
    split_coef,
    triangle_size,
)
from .tiers import Family, Tiers, source_stamp

__all__ = [
    "AVAILABLE",
    "STATS_AVAILABLE",
    "chunk_partials_fast",
    "compile_eagerly",
    "chunk_stats_fast",
    "fused_partials",
    "fused_stats",
    "family_of",
    "variant_of",
    "margins_fast",
    "tiers",
    "warm_up",
]

#: Rows per compiled call: int64 bins cannot overflow (2**23 * 2**39 < 2**63).
_CALL_ROWS = 2**23
#: Target bytes of one block of X (kept in L2 between the margin and term sweeps).
_BLOCK_BYTES = 2**19
#: Wide data: blocks of up to 512 rows within this many bytes (L3), so that
#: each column's run stays long enough to stream well.
_WIDE_BLOCK_BYTES = 2**22
#: Target bytes of X per segment of :func:`margins_fast`.
_SEGMENT_BYTES = 2**21
#: Rows per margin sub-block (its pairwise stack stays in L1).
_MARGIN_ROWS = 512
#: From this many features on, a loss pass over F-ordered float64 X streams
#: (:attr:`_Job.stream`): no copy, long column runs.  (At 1,024 features
#: first, where a block of all the features outgrew L2; since the deposits
#: read two columns per sweep it measured 0.78-0.93x the time of the copy
#: when standardizing at 32 to 256 features, and 0.93-0.98x without; at 8
#: features 1.01-1.02x.)
_STREAM_FEATURES = 16
#: Rows per block of a streaming pass; its margins take the whole block at
#: once (a stack of ``log2(d) + 2`` rows of this many values, in L2).
_STREAM_ROWS = 4096
#: Rows per tile when transposing a row-major block (the body of
#: :func:`_copy_block` is unrolled for exactly this many).
_TILE = 4
assert _TILE == 4, "_copy_block's row-major transpose is unrolled for 4 rows"
#: Spare rows at the end of each column of an F-ordered scratch: columns a
#: power-of-two apart would all map to the same L1 sets (a row-major copy
#: writes to every column at once).
_PAD = 8
_MIN_TOP = N_BINS - 1
_NAN, _POS_INF, _NEG_INF = 1, 2, 4
_U0 = np.uint64(0)
#: A bin's digits (the low BIN_WIDTH bits of a level's 128-bit pair).
_BIN_MASK = np.uint64(2**BIN_WIDTH - 1)
#: A level pair's room, in units of 2**80 (2 * BIN_WIDTH): its magnitude
#: stays below 2**126, under the 2**127 of 128-bit two's complement.
_PAIR_ROOM = np.int64(2**46)
#: Rows of one block whose room is counted (more: the block goes to the bins);
#: a guard for ``rows * (max|d0| + 1)`` in int64 (blocks are at most BLOCK_ROWS).
_PAIR_ROWS = 2**16
_ABS_MASK = 0x7FFFFFFFFFFFFFFF
#: bits(+0.0), typed int64 (a literal 0 would make numba compile each deposit
#: twice: once for the constant, once for the variable)
_ZERO_BITS = np.int64(0)
#: a typed 0 for row offsets and counters passed to compiled functions (a
#: literal 0 would compile the callee once more, for the constant)
_ZERO = np.int64(0)
_EXP_MASK = 0x7FF0000000000000  # |bits| >= this: inf or NaN
#: The largest top bin T whose rounding constant ``1.5 * 2**52 * u_T``
#: (:func:`_rounder`) is a finite float64: 51.  Above it (T = 52: values of
#: 2**1005 and more) a deposit scales its values by the exact ``_DOWN`` first
#: and rounds at the bins one lower -- the same digits.
_ROUNDER_TOP = (1023 - 52 - GRID_E0) // BIN_WIDTH
_DOWN = 2.0**-BIN_WIDTH
#: Compiled code is cached next to this module (numba falls back to a user
#: cache directory where that is read-only).
_CACHE = True

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no compile lock
    _HAVE_FCNTL = False
else:
    _HAVE_FCNTL = True

try:
    from llvmlite import ir as _ir
    from numba import njit, types
    from numba.extending import intrinsic, overload

    from .elementary_jit import bits_of as _bits
    from .elementary_jit import exp_nonpositive as _exp_nonpositive
    from .elementary_jit import float_of as _from_bits
    from .elementary_jit import log1p_nonnegative as _log1p_nonnegative
    from .elementary_jit import sigmoid_softplus_block as _sigmoid_softplus_block
except ImportError:  # pragma: no cover - exercised only without numba
    _HAVE_NUMBA = False
else:
    _HAVE_NUMBA = N_BINS == 3

if _HAVE_NUMBA:

    @intrinsic
    def _ubits(typingctx, x):
        """The IEEE bits of a float64 as uint64 (unsigned: sums wrap, no UB)."""
        if x != types.float64:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], _ir.IntType(64))

        return types.uint64(types.float64), codegen

    @njit(cache=_CACHE, nogil=True)
    def _max_abs_bits(v, n):
        """Largest ``bits(|v_i|)``; >= _EXP_MASK when a NaN or inf is present."""
        mx = _ZERO_BITS
        for i in range(n):
            b = _bits(v[i]) & _ABS_MASK
            if b > mx:
                mx = b
        return mx

    @njit(cache=_CACHE, nogil=True)
    def _top_of(mx):
        """:func:`exact.top_bin` of the bound with bits ``mx`` (finite, >= 0)."""
        biased = mx >> 52
        if biased == 0:
            # zero or subnormal bound (< 2**-1022): the lowest top bin, whose
            # capacity is 2**(GRID_E0 + BIN_WIDTH*_MIN_TOP + BIN_WIDTH-1) = 2**-955
            return _MIN_TOP
        # frexp's exponent e (bound < 2**e) of a normal bound
        exponent = biased - 1022
        need = exponent - GRID_E0 - (BIN_WIDTH - 1)
        return max(-((-need) // BIN_WIDTH), _MIN_TOP)

    @njit(cache=_CACHE, nogil=True)
    def _fits(a_max, b_max, t_running):
        """Whether every product ``a_i * b_i`` of two columns whose largest
        ``bits(|v|)`` are ``a_max`` and ``b_max`` is finite and has its top
        bin at most ``t_running``: the rounded product of the maxima bounds
        them all (rounding is monotone)."""
        if a_max >= _EXP_MASK or b_max >= _EXP_MASK:
            return False
        bound = _bits(_from_bits(a_max) * _from_bits(b_max))
        return bound < _EXP_MASK and _top_of(bound) <= t_running

    @njit(cache=_CACHE, nogil=True)
    def _rounder(t):
        """``M = 1.5 * 2**52 * u_t`` (``u_t = 2**(E0 + W*t)``, ``0 <= t <=
        _ROUNDER_TOP``): for ``|r| <= 2**51 * u_t``, ``fl(r + M)`` lies in M's
        binade, whose spacing is ``u_t``, so it is ``M + rint(r / u_t) * u_t``
        (round half even: M's significand is even) and ``bits(fl(r + M)) -
        bits(M)`` is that integer; ``fl(r + M) - M`` is exact."""
        return _from_bits(((1023 + 52 + GRID_E0 + BIN_WIDTH * t) << 52) | (1 << 51))

    @njit(cache=_CACHE, nogil=True)
    def _rounders(t_block):
        """The rounders of bins ``T, T-1, T-2`` of top bin ``t_block`` and
        whether values are scaled by ``_DOWN`` first (``T = t_block - 1``
        then: ``t_block`` above :data:`_ROUNDER_TOP`)."""
        down = t_block > _ROUNDER_TOP
        t = t_block - 1 if down else t_block
        return _rounder(t), _rounder(t - 1), _rounder(t - 2), down

    @njit(cache=_CACHE, nogil=True)
    def _digits(v, m0, m1, m2):
        """The bits of ``fl(r_k + M_k)`` for the three round-half-even digits
        ``a_k`` of ``v`` (:func:`exact._deposit_block`'s: ``a_0 = rint(v /
        u_T)``, ``r_1 = v - a_0 u_T``, ...), the rounders ``M_k`` of
        :func:`_rounders`.  Every ``r_k`` is exact: ``fl(r + M) - M`` is
        ``a_k u_k`` exactly, and ``r_k - a_k u_k`` is a multiple of the
        smaller of ``ulp(r_k)`` and ``u_k`` no larger than ``|r_k|`` -- the
        scaled digits of the reference, without its scaling multiplications
        (a value whose scaling would underflow has only zero digits either
        way)."""
        q0 = v + m0
        r1 = v - (q0 - m0)
        q1 = r1 + m1
        return _ubits(q0), _ubits(q1), _ubits((r1 - (q1 - m1)) + m2)

    @njit(cache=_CACHE, nogil=True)
    def _digits_two(v, m0, m1):
        """:func:`_digits` of a two-bin state (the Hessian's)."""
        q0 = v + m0
        return _ubits(q0), _ubits((v - (q0 - m0)) + m1)

    @njit(cache=_CACHE, nogil=True)
    def _unbias(s0, s1, s2, count, m0, m1, m2):
        """The digit sums of ``count`` values from their sums of bits."""
        return (
            np.int64(s0 - count * _ubits(m0)),
            np.int64(s1 - count * _ubits(m1)),
            np.int64(s2 - count * _ubits(m2)),
        )

    @njit(cache=_CACHE, nogil=True)
    def _add_digits(c, t_block, d0, d1, d2, top, acc):
        """Add a block's bin sums (top bin ``t_block``) to column ``c``, aligned
        as ExactSums.merge does: the larger top wins, bins shifted below the
        last of ``acc``'s ``depth`` rows are dropped (``d2`` is not read at depth 2)."""
        depth = acc.shape[0]
        digits = (d0, d1, d2)
        t_acc = top[c]
        if t_block > t_acc:
            shift = min(t_block - t_acc, depth)
            for k in range(depth - 1, -1, -1):
                acc[k, c] = acc[k - shift, c] if k >= shift else 0
            top[c] = t_block
            for k in range(depth):
                acc[k, c] += digits[k]
        else:
            shift = t_acc - t_block
            for k in range(depth - shift):
                acc[k + shift, c] += digits[k]

    @njit(cache=_CACHE, nogil=True)
    def _deposit(v, n, mx, c, top, acc, flags):
        """Add the bins of ``v[:n]`` (``mx`` from :func:`_max_abs_bits`) to column
        ``c`` of a state of ``acc.shape[0]`` (3 or 2) bins."""
        finite = mx < _EXP_MASK
        if not finite:
            f = 0
            mx = _ZERO_BITS
            for i in range(n):
                t = v[i]
                if t != t:
                    f |= _NAN
                elif t == np.inf:
                    f |= _POS_INF
                elif t == -np.inf:
                    f |= _NEG_INF
                else:
                    b = _bits(t) & _ABS_MASK
                    if b > mx:
                        mx = b
            flags[c] |= f
        t_block = _top_of(mx)
        m0, m1, m2, down = _rounders(t_block)
        # Sum the bits of q = r + M: bits(q) - bits(M) is the digit.  The
        # bias is taken off once per block; unsigned sums wrap modulo 2**64,
        # so the result is exact (|sum| < 2**63).  A NaN or inf is deposited
        # as 0 (its digits are 0).
        s0 = _U0
        s1 = _U0
        s2 = _U0
        if acc.shape[0] == 3:
            if finite and not down:
                for i in range(n):
                    b0, b1, b2 = _digits(v[i], m0, m1, m2)
                    s0 += b0
                    s1 += b1
                    s2 += b2
            else:
                for i in range(n):
                    t = v[i]
                    b0, b1, b2 = _digits((t if t - t == 0.0 else 0.0) * (_DOWN if down else 1.0), m0, m1, m2)
                    s0 += b0
                    s1 += b1
                    s2 += b2
        else:
            if finite and not down:
                for i in range(n):
                    b0, b1 = _digits_two(v[i], m0, m1)
                    s0 += b0
                    s1 += b1
            else:
                for i in range(n):
                    t = v[i]
                    b0, b1 = _digits_two((t if t - t == 0.0 else 0.0) * (_DOWN if down else 1.0), m0, m1)
                    s0 += b0
                    s1 += b1
        d0, d1, d2 = _unbias(s0, s1, s2, np.uint64(n), m0, m1, m2)
        _add_digits(c, t_block, d0, d1, d2, top, acc)

    def _x(col, i, kq):
        """``col[i]`` widened to float64 (exact), or with ``kq`` a column's
        ``(center, scale)`` its standardized value ``(col[i] - center) /
        scale``: the reference's operations on the same float64 values, the
        one compiled definition of a feature value (the copy writes it, the
        streaming pass forms it in registers); which one is chosen at
        compile time."""

    @overload(_x, jit_options={"cache": _CACHE})
    def _x_typed(col, i, kq):
        if isinstance(kq, types.NoneType):
            return lambda col, i, kq: np.float64(col[i])
        return lambda col, i, kq: (np.float64(col[i]) - kq[0]) / kq[1]

    def _kq(std, j):
        """Column ``j``'s ``(center, scale)`` of ``std = (center, scale)``, or
        None where ``std`` is None (chosen at compile time)."""

    @overload(_kq, jit_options={"cache": _CACHE})
    def _kq_typed(std, j):
        if isinstance(std, types.NoneType):
            return lambda std, j: None
        return lambda std, j: (std[0][j], std[1][j])

    @njit(cache=_CACHE, nogil=True)
    def _margins(Xf, r0, n, coef, stack, marg, std):
        """``marg[:n]``: margins of rows ``r0:r0+n``, summed as kernel.margins does.

        The level-by-level pairwise tree equals this stack evaluation:
        products are paired (p0+p1, p2+p3, ...); after the k-th pair, as many
        merges as trailing zeros of k+1 join equal-size blocks (left + right);
        the leftover odd product and the ragged tail are joined right to left.
        Merges are fused into the pair's pass (same operations, same order).
        Whole groups of four pairs come first, each in one sweep over the
        rows: its subtree ``(P0 + P1) + (P2 + P3)`` in registers, merged with
        the stack as a pair is, at the level of groups (the group ends pair
        ``4g+3``, whose merges are ``2 + tz(g+1)``); eight columns per sweep
        read X in longer bursts and keep 3 of every 4 stack rows out of
        memory.  The last 0-3 pairs continue from the same stack.
        ``std``: None, or ``(center, scale)``: X standardized in registers.
        """
        d = Xf.shape[1]
        b = coef[d]
        if d == 0:
            for i in range(n):
                marg[i] = b
            return
        sp = 0
        n_pairs = d // 2
        n_groups = n_pairs // 4
        for g in range(n_groups):  # 8 columns (4 pairs) at a time: (P0 + P1) + (P2 + P3)
            j = 8 * g
            c0 = Xf[r0 : r0 + n, j]
            c1 = Xf[r0 : r0 + n, j + 1]
            c2 = Xf[r0 : r0 + n, j + 2]
            c3 = Xf[r0 : r0 + n, j + 3]
            c4 = Xf[r0 : r0 + n, j + 4]
            c5 = Xf[r0 : r0 + n, j + 5]
            c6 = Xf[r0 : r0 + n, j + 6]
            c7 = Xf[r0 : r0 + n, j + 7]
            w0 = coef[j]
            q0 = _kq(std, j)
            w1 = coef[j + 1]
            q1 = _kq(std, j + 1)
            w2 = coef[j + 2]
            q2 = _kq(std, j + 2)
            w3 = coef[j + 3]
            q3 = _kq(std, j + 3)
            w4 = coef[j + 4]
            q4 = _kq(std, j + 4)
            w5 = coef[j + 5]
            q5 = _kq(std, j + 5)
            w6 = coef[j + 6]
            q6 = _kq(std, j + 6)
            w7 = coef[j + 7]
            q7 = _kq(std, j + 7)
            merges = 0
            count = g + 1
            while count & 1 == 0:
                merges += 1
                count >>= 1
            if merges == 0:
                dst = stack[sp]
                for i in range(n):
                    dst[i] = ((_x(c0, i, q0) * w0 + _x(c1, i, q1) * w1) + (_x(c2, i, q2) * w2 + _x(c3, i, q3) * w3)) + (
                        (_x(c4, i, q4) * w4 + _x(c5, i, q5) * w5) + (_x(c6, i, q6) * w6 + _x(c7, i, q7) * w7)
                    )
                sp += 1
            elif merges == 1:
                dst = stack[sp - 1]
                for i in range(n):
                    dst[i] = dst[i] + (
                        ((_x(c0, i, q0) * w0 + _x(c1, i, q1) * w1) + (_x(c2, i, q2) * w2 + _x(c3, i, q3) * w3))
                        + ((_x(c4, i, q4) * w4 + _x(c5, i, q5) * w5) + (_x(c6, i, q6) * w6 + _x(c7, i, q7) * w7))
                    )
            else:
                dst = stack[sp - 2]
                s1 = stack[sp - 1]
                for i in range(n):
                    dst[i] = dst[i] + (
                        s1[i]
                        + (
                            ((_x(c0, i, q0) * w0 + _x(c1, i, q1) * w1) + (_x(c2, i, q2) * w2 + _x(c3, i, q3) * w3))
                            + ((_x(c4, i, q4) * w4 + _x(c5, i, q5) * w5) + (_x(c6, i, q6) * w6 + _x(c7, i, q7) * w7))
                        )
                    )
                sp -= 1
                for _ in range(merges - 2):
                    lo = stack[sp - 2]
                    hi = stack[sp - 1]
                    for i in range(n):
                        lo[i] = lo[i] + hi[i]
                    sp -= 1
        # The last 0-3 pairs: pair 4G pushed, 4G+1 merged with it, 4G+2 pushed
        # (after whole groups no pair merges more than once).
        for k in range(4 * n_groups, n_pairs):
            c0 = Xf[r0 : r0 + n, 2 * k]
            c1 = Xf[r0 : r0 + n, 2 * k + 1]
            w0 = coef[2 * k]
            w1 = coef[2 * k + 1]
            q0 = _kq(std, 2 * k)
            q1 = _kq(std, 2 * k + 1)
            if k & 1 == 0:
                dst = stack[sp]
                for i in range(n):
                    dst[i] = _x(c0, i, q0) * w0 + _x(c1, i, q1) * w1
                sp += 1
            else:
                dst = stack[sp - 1]
                for i in range(n):
                    dst[i] = dst[i] + (_x(c0, i, q0) * w0 + _x(c1, i, q1) * w1)
        if d & 1:  # the odd last product
            c0 = Xf[r0 : r0 + n, d - 1]
            w0 = coef[d - 1]
            q0 = _kq(std, d - 1)
            dst = stack[sp]
            for i in range(n):
                dst[i] = _x(c0, i, q0) * w0
            sp += 1
        while sp > 1:  # the ragged tail, joined right to left
            lo = stack[sp - 2]
            hi = stack[sp - 1]
            for i in range(n):
                lo[i] = lo[i] + hi[i]
            sp -= 1
        first = stack[0]
        for i in range(n):
            marg[i] = first[i] + b

    @njit(cache=_CACHE, nogil=True)
    def _block(
        Xf,
        r0,
        n,
        g0,
        y,
        coef,
        s,
        has_s,
        stack,
        marg,
        prob,
        res,
        los,
        tmp,
        sw,
        ones,
        top,
        acc,
        flags,
        lev,
        colmax,
        std,
    ):
        """One block: rows ``r0:r0+n`` of the F-ordered ``Xf`` (global rows from ``g0``).

        Leaves the margins in ``marg[:n]`` and the probabilities in ``prob[:n]``
        (for :func:`_hessian_block`).  ``lev``: None (pruned at compile time) or
        the categorical columns' ``lev`` of :meth:`_Levels.call`: each margin
        gets its level coefficients added,
        column by column (:func:`_add_levels`), and each weighted residual's
        digits are deposited at its levels (:func:`_deposit_levels`).
        ``colmax``: each column's largest ``bits(|x~_ij|)`` in the block, or
        empty (not known): see :func:`_terms`.  ``std``: None, or ``(center,
        scale)``: ``Xf`` is standardized in registers where it is read.
        """
        # Margins: the pairwise tree of kernel.margins, vectorised over rows,
        # in sub-blocks of the stack's width.
        step = stack.shape[1]
        for m0 in range(0, n, step):
            _margins(Xf, r0 + m0, min(step, n - m0), coef, stack, marg[m0:], std)
        if lev is not None:
            _add_levels(lev[0], g0, n, lev[1], lev[2], lev[7], marg)
        # Per row: probability and softplus (a vectorised, branch-free loop:
        # elementary_jit.sigmoid_softplus's bits), then loss and weighted
        # residual (one loop per case, so that each vectorises).
        _sigmoid_softplus_block(marg, n, prob, los)
        if has_s:
            for i in range(n):
                z = marg[i]
                yi = y[g0 + i]
                si = s[g0 + i]
                residual = prob[i] - yi
                loss = los[i] - yi * z
                res[i] = si * residual
                los[i] = si * loss
                sw[i] = si
        else:
            for i in range(n):
                z = marg[i]
                yi = y[g0 + i]
                res[i] = prob[i] - yi
                los[i] = los[i] - yi * z
        if lev is not None:
            _deposit_levels(n, res, lev[3], lev[4], lev[8], lev[5], lev[6], lev[7], lev[9], lev[10])
        if has_s:
            _terms(Xf, r0, n, res, los, sw, tmp, top, acc, flags, colmax, std)
        else:
            _terms(Xf, r0, n, res, los, ones, tmp, top, acc, flags, colmax, std)

    @njit(cache=_CACHE, nogil=True)
    def _add_levels(codes, g0, n, level_coef, offsets, index, marg):
        """``marg[:n]`` plus the level coefficients of rows ``g0:g0+n``, column
        after column (``((m + w[c0]) + w[c1]) + ...``, :func:`kernel.add_levels`),
        two columns per sweep over the rows; each row's level in every column
        is kept in ``index[c, i]`` for :func:`_deposit_levels`."""
        n_columns = codes.shape[1]
        for c in range(0, n_columns - 1, 2):
            a = codes[g0 : g0 + n, c]
            b = codes[g0 : g0 + n, c + 1]
            first_a = offsets[c]
            first_b = offsets[c + 1]
            index_a = index[c]
            index_b = index[c + 1]
            for i in range(n):
                ja = first_a + np.int64(a[i])
                jb = first_b + np.int64(b[i])
                index_a[i] = ja
                index_b[i] = jb
                marg[i] = (marg[i] + level_coef[ja]) + level_coef[jb]
        if n_columns & 1:
            c = n_columns - 1
            a = codes[g0 : g0 + n, c]
            first_a = offsets[c]
            index_a = index[c]
            for i in range(n):
                ja = first_a + np.int64(a[i])
                index_a[i] = ja
                marg[i] = marg[i] + level_coef[ja]

    @njit(cache=_CACHE, nogil=True)
    def _pair(d0, d1, d2):
        """``N = d0 * 2**80 + d1 * 2**40 + d2`` (three digits of one value:
        ``|d1|, |d2| <= 2**39``, ``|d0| < 2**46`` where pairs are used) as a
        128-bit two's complement ``(low, high)`` pair of uint64 words."""
        low1 = np.uint64(d1) << np.uint64(BIN_WIDTH)
        low = low1 + np.uint64(d2)
        carry = np.uint64(low < low1)
        high = (np.uint64(d0) << np.uint64(2 * BIN_WIDTH - 64)) + np.uint64(d1 >> np.int64(64 - BIN_WIDTH))
        return low, high + np.uint64(d2 >> np.int64(63)) + carry

    @njit(cache=_CACHE, nogil=True)
    def _unpair(low, high):
        """The normalized bins of a pair's value (:func:`kernel.normalize_levels`:
        the two lower ones in ``[0, 2**BIN_WIDTH)``, the top one signed)."""
        b2 = np.int64(low & _BIN_MASK)
        b1 = np.int64(((low >> np.uint64(BIN_WIDTH)) | (high << np.uint64(64 - BIN_WIDTH))) & _BIN_MASK)
        return np.int64(high) >> np.int64(2 * BIN_WIDTH - 64), b1, b2

    @njit(cache=_CACHE, nogil=True)
    def _flush_pairs(pairs, acc):
        """Add every level's pair to its three bins in ``acc`` and zero it."""
        for j in range(pairs.shape[0]):
            low = pairs[j, 0]
            high = pairs[j, 1]
            if low | high:
                b0, b1, b2 = _unpair(low, high)
                acc[j, 0] += b0
                acc[j, 1] += b1
                acc[j, 2] += b2
                pairs[j, 0] = _U0
                pairs[j, 1] = _U0

    @njit(cache=_CACHE, nogil=True)
    def _deposit_levels(n, res, top, pairs, acc, digits, bad, index, room, spill):
        """The three digits of each ``res[i]`` at top bin ``top`` (those of
        :func:`kernel.level_digits`, taken as :func:`_digits` takes them)
        added at row ``i``'s level ``index[c, i]`` of every categorical column
        (:func:`_add_levels`).  A NaN or infinite term sets ``bad[0]`` and
        deposits nothing: the call's tables are not read (:meth:`_Levels.sums`).

        A row's digits are one 128-bit integer ``N`` (:func:`_pair`), so a
        deposit is two scattered adds with a carry into ``pairs`` (``(n_levels,
        2)``, a level's words side by side) instead of three.  ``room[0]``
        (units of ``2**80``) keeps every level's pair below ``2**126`` in
        magnitude: ``|N| < (|d0| + 1) * 2**80`` and the largest ``|d0|`` is
        the largest term's (rounding is monotone), so a block takes at most
        ``n * (max|d0| + 1)`` of it.  A block that does not fit has the pairs
        moved to the three bins of ``acc`` first (:func:`_flush_pairs`) where
        the table is small next to the rows a full room takes; otherwise
        (terms near the top bin's capacity, or a large table) its rows' digits
        go to ``acc`` directly, three adds apiece, as before pairs.  Pairs and
        bins hold the same exact sums however the rows are split between them."""
        mx = _max_abs_bits(res, n)
        if mx >= _EXP_MASK:
            bad[0] = True
            return
        m0, m1, m2, down = _rounders(top)
        bias0 = _ubits(m0)
        bias1 = _ubits(m1)
        bias2 = _ubits(m2)
        scaling = _DOWN if down else 1.0
        largest = abs(np.int64(_digits(_from_bits(mx) * scaling, m0, m1, m2)[0] - bias0))
        per_row = largest + 1
        need = _PAIR_ROOM + 1  # (a room's worth or more: the bins; n <= _PAIR_ROWS keeps the product in int64)
        if 0 <= largest < _PAIR_ROOM and n <= _PAIR_ROWS:
            need = np.int64(n) * per_row
        if room[0] < need <= _PAIR_ROOM and pairs.shape[0] <= _PAIR_ROOM // per_row:
            _flush_pairs(pairs, acc)
            room[0] = _PAIR_ROOM
        if need <= room[0]:
            room[0] -= need
            for i in range(n):
                b0, b1, b2 = _digits(res[i] * scaling, m0, m1, m2)
                low, high = _pair(np.int64(b0 - bias0), np.int64(b1 - bias1), np.int64(b2 - bias2))
                digits[i, 0] = low
                digits[i, 1] = high
            for c in range(index.shape[0]):  # column by column: one stream of levels, one table
                column = index[c]
                for i in range(n):
                    j = column[i]
                    low = digits[i, 0]
                    total = pairs[j, 0] + low
                    pairs[j, 0] = total
                    pairs[j, 1] += digits[i, 1] + np.uint64(total < low)
        else:
            for i in range(n):
                b0, b1, b2 = _digits(res[i] * scaling, m0, m1, m2)
                spill[i, 0] = np.int64(b0 - bias0)
                spill[i, 1] = np.int64(b1 - bias1)
                spill[i, 2] = np.int64(b2 - bias2)
            for c in range(index.shape[0]):
                column = index[c]
                for i in range(n):
                    j = column[i]
                    acc[j, 0] += spill[i, 0]
                    acc[j, 1] += spill[i, 1]
                    acc[j, 2] += spill[i, 2]

    @njit(cache=_CACHE, nogil=True)
    def _terms(Xf, r0, n, res, los, sw, tmp, top, acc, flags, colmax, std):
        """Deposit one block's terms: ``x~_ij * residual_i`` per column, then the
        residuals, the losses and the sample weights ``sw`` (ones when
        unweighted) -- the columns of :func:`kernel.chunk_partials`.

        Where ``colmax`` holds the block's column maxima (the standardizing
        copy found them on the way), a column's terms are deposited at the
        column's running top bin in one sweep, the products formed in
        registers, when the bound ``max|x~_j| * max|residual|`` (rounding is
        monotone: no term exceeds it) fits under that top -- the argument of
        :func:`_hessian_block`: the running top never exceeds the call's
        final one, and digits at a higher top are the aligned ones.
        Otherwise (no maxima, a first block, a bound above the top or not
        finite) :func:`_deposit_column` deposits at the running top in the
        sweep that finds the block's exact ``max |term|`` (two such columns
        per sweep, :func:`_deposit_pair`), and only when that maximum does
        not fit is the block redone at its own top.
        """
        d = Xf.shape[1]
        known = colmax.shape[0] > 0
        res_max = _max_abs_bits(res, n)
        # Terms, column by column, each deposited at once; columns without a
        # bound that fits go two at a time.
        j = 0
        while j < d:
            col = Xf[r0 : r0 + n, j]
            kq = _kq(std, j)
            if known and _fits(colmax[j], res_max, top[j]):
                _deposit_products(col, res, n, top[j], j, top, acc, kq)
            elif j + 1 < d and not (known and _fits(colmax[j + 1], res_max, top[j + 1])):
                _deposit_pair(col, Xf[r0 : r0 + n, j + 1], res, n, j, top, acc, flags, tmp, kq, _kq(std, j + 1))
                j += 1
            else:
                _deposit_column(col, res, n, j, top, acc, flags, tmp, kq)
            j += 1
        _deposit(res, n, res_max, d, top, acc, flags)
        _deposit(los, n, _max_abs_bits(los, n), d + 1, top, acc, flags)
        _deposit(sw, n, _max_abs_bits(sw, n), d + 2, top, acc, flags)

    @njit(cache=_CACHE, nogil=True)
    def _scratch(block, d, margin_rows):
        depth = 1
        while (1 << depth) <= d:
            depth += 1
        stack = np.empty((depth + 1, min(block, margin_rows)))
        ones = np.ones(block)
        # the margin tree's stack; marg, prob, res, los, tmp, sw (a block's
        # sample weights, copied: one specialization of the deposits); ones
        e = np.empty
        return (stack, e(block), e(block), e(block), e(block), e(block), e(block), ones)

    @njit(cache=_CACHE, nogil=True)
    def _deposit_products(a, b, n, t_block, c, top, acc, kq):
        """:func:`_deposit` of the finite products ``a[:n] * b[:n]`` at top bin
        ``t_block`` (at least theirs), formed in registers (the same products:
        one IEEE multiply each), into a state of 3 or 2 bins (the Hessian's).
        ``kq``: None, or column ``a``'s ``(center, scale)`` (:func:`_x`)."""
        m0, m1, m2, down = _rounders(t_block)
        s0 = _U0
        s1 = _U0
        s2 = _U0
        if acc.shape[0] == 3:
            if not down:
                for i in range(n):
                    b0, b1, b2 = _digits(_x(a, i, kq) * b[i], m0, m1, m2)
                    s0 += b0
                    s1 += b1
                    s2 += b2
            else:
                for i in range(n):
                    b0, b1, b2 = _digits((_x(a, i, kq) * b[i]) * _DOWN, m0, m1, m2)
                    s0 += b0
                    s1 += b1
                    s2 += b2
        else:
            if not down:
                for i in range(n):
                    b0, b1 = _digits_two(_x(a, i, kq) * b[i], m0, m1)
                    s0 += b0
                    s1 += b1
            else:
                for i in range(n):
                    b0, b1 = _digits_two((_x(a, i, kq) * b[i]) * _DOWN, m0, m1)
                    s0 += b0
                    s1 += b1
        d0, d1, d2 = _unbias(s0, s1, s2, np.uint64(n), m0, m1, m2)
        _add_digits(c, t_block, d0, d1, d2, top, acc)

    @njit(cache=_CACHE, nogil=True)
    def _deposit_column(a, b, n, c, top, acc, flags, tmp, kq):
        """:func:`_deposit` of the products ``a[:n] * b[:n]`` (the same
        products: one IEEE multiply each) without a bound known beforehand.

        One sweep forms each product in registers, keeps the largest
        ``bits(|a_i b_i|)`` and sums the digits at the column's running top
        bin; they are kept when that maximum is finite and its top bin is at
        most the running one (the canonical state: digits at a higher top
        equal the aligned ones, as in :func:`_deposit_products`) -- after a
        column's first block, nearly always.  Otherwise the block's own top
        (a sweep more) or, with a NaN or inf, :func:`_deposit` of the stored
        products (flags) decides (:func:`_deposit_measured`)."""
        t_run = top[c]
        m0, m1, m2, down = _rounders(t_run)
        mx = _ZERO_BITS
        s0 = _U0
        s1 = _U0
        s2 = _U0
        if not down:
            if acc.shape[0] == 3:
                for i in range(n):
                    t = _x(a, i, kq) * b[i]
                    mx = max(mx, _bits(t) & _ABS_MASK)
                    b0, b1, b2 = _digits(t, m0, m1, m2)
                    s0 += b0
                    s1 += b1
                    s2 += b2
            else:
                for i in range(n):
                    t = _x(a, i, kq) * b[i]
                    mx = max(mx, _bits(t) & _ABS_MASK)
                    b0, b1 = _digits_two(t, m0, m1)
                    s0 += b0
                    s1 += b1
            _settle(a, b, n, mx, s0, s1, s2, m0, m1, m2, c, top, acc, flags, tmp, kq)
            return
        for i in range(n):
            mx = max(mx, _bits(_x(a, i, kq) * b[i]) & _ABS_MASK)
        _deposit_measured(a, b, n, mx, c, top, acc, flags, tmp, kq)

    @njit(cache=_CACHE, nogil=True)
    def _settle(a, b, n, mx, s0, s1, s2, m0, m1, m2, c, top, acc, flags, tmp, kq):
        """After a sweep of the products ``a[:n] * b[:n]`` at column ``c``'s
        running top bin (rounders ``m0, m1, m2``; sums of bits ``s0, s1,
        s2``; largest ``bits(|a_i b_i|)`` ``mx``): keep its digits where that
        maximum is finite and its top bin at most the running one, else
        redo the block at its own top (:func:`_deposit_measured`)."""
        t_run = top[c]
        if mx < _EXP_MASK and _top_of(mx) <= t_run:
            d0, d1, d2 = _unbias(s0, s1, s2, np.uint64(n), m0, m1, m2)
            _add_digits(c, t_run, d0, d1, d2, top, acc)
        else:
            _deposit_measured(a, b, n, mx, c, top, acc, flags, tmp, kq)

    @njit(cache=_CACHE, nogil=True)
    def _deposit_measured(a, b, n, mx, c, top, acc, flags, tmp, kq):
        """:func:`_deposit` of the products ``a[:n] * b[:n]`` whose largest
        ``bits(|a_i b_i|)`` is ``mx``, at the block's own top bin: where a
        sweep at the running top did not fit."""
        if mx < _EXP_MASK:
            _deposit_products(a, b, n, _top_of(mx), c, top, acc, kq)
            return
        for i in range(n):
            tmp[i] = _x(a, i, kq) * b[i]
        _deposit(tmp, n, mx, c, top, acc, flags)

    @njit(cache=_CACHE, nogil=True)
    def _deposit_pair(a, a2, b, n, c, top, acc, flags, tmp, kq, kq2):
        """:func:`_deposit_column` of two columns at once: ``a[:n] * b[:n]``
        into column ``c`` and ``a2[:n] * b[:n]`` into ``c + 1`` of a
        three-bin state, in one sweep -- two streams of X read side by side
        (one column at a time, a wide block's runs are read from memory at
        about half the rate), each column's digits at its own running top
        and kept by the same test; a column that does not fit is redone
        alone (:func:`_deposit_measured`)."""
        ta = top[c]
        tb = top[c + 1]
        ma0, ma1, ma2, down_a = _rounders(ta)
        mb0, mb1, mb2, down_b = _rounders(tb)
        if down_a or down_b:
            _deposit_column(a, b, n, c, top, acc, flags, tmp, kq)
            _deposit_column(a2, b, n, c + 1, top, acc, flags, tmp, kq2)
            return
        mx_a = _ZERO_BITS
        mx_b = _ZERO_BITS
        sa0 = _U0
        sa1 = _U0
        sa2 = _U0
        sb0 = _U0
        sb1 = _U0
        sb2 = _U0
        for i in range(n):
            r = b[i]
            t = _x(a, i, kq) * r
            mx_a = max(mx_a, _bits(t) & _ABS_MASK)
            a0, a1, a2_ = _digits(t, ma0, ma1, ma2)
            sa0 += a0
            sa1 += a1
            sa2 += a2_
            t = _x(a2, i, kq2) * r
            mx_b = max(mx_b, _bits(t) & _ABS_MASK)
            b0, b1, b2 = _digits(t, mb0, mb1, mb2)
            sb0 += b0
            sb1 += b1
            sb2 += b2
        _settle(a, b, n, mx_a, sa0, sa1, sa2, ma0, ma1, ma2, c, top, acc, flags, tmp, kq)
        _settle(a2, b, n, mx_b, sb0, sb1, sb2, mb0, mb1, mb2, c + 1, top, acc, flags, tmp, kq2)

    @njit(cache=_CACHE, nogil=True)
    def _hessian_block(Xf, r0, n, g0, prob, s, has_s, curv, cj, tmp, colmax, htop, hacc, hflags, res, scores, y):
        """The Hessian terms of one block (probabilities ``prob[:n]`` and
        weighted residuals ``res[:n]`` from :func:`_block`).

        ``curvature_i = proba_i * (1 - proba_i)`` (times ``s_i``), or with
        ``scores`` ``res_i * (proba_i - y_i)`` (:attr:`KernelSpec.scores`), then for
        each ``j <= k`` of ``a = [x~, 1]`` the term ``(curvature_i * a_ij) * a_ik``
        -- the operations and order of :func:`kernel._outer_triangle`.  A factor
        ``a = 1`` is left out: ``t * 1.0`` is ``t`` (NaN stays NaN).  Columns
        are deposited in the row-major order of the upper triangle.

        A column's block is deposited at the column's running top bin without
        a pass for its ``max |term|`` when the bound ``max|c a_j| * max|a_k|``
        (rounding is monotone: no term exceeds it) already fits under that top
        (the canonical state: digits at a higher top equal the aligned ones);
        the running top never exceeds the call's final one, which is the
        reference's.  Otherwise (the bound's top is higher, or not finite)
        :func:`_deposit_column` decides from the block's exact max.
        """
        if scores:
            for i in range(n):
                curv[i] = res[i] * (prob[i] - y[g0 + i])
        elif has_s:
            for i in range(n):
                proba = prob[i]
                curv[i] = s[g0 + i] * (proba * (1.0 - proba))
        else:
            for i in range(n):
                proba = prob[i]
                curv[i] = proba * (1.0 - proba)
        _hessian_terms(Xf, r0, n, curv, cj, tmp, colmax, htop, hacc, hflags)

    @njit(cache=_CACHE, nogil=True)
    def _hessian_terms(Xf, r0, n, curv, cj, tmp, colmax, htop, hacc, hflags):
        """The Hessian terms of one block from its curvatures ``curv[:n]`` (see
        :func:`_hessian_block`)."""
        d = Xf.shape[1]
        for k in range(d):
            colmax[k] = _max_abs_bits(Xf[r0 : r0 + n, k], n)
        col = _ZERO
        for j in range(d):
            xj = Xf[r0 : r0 + n, j]
            for i in range(n):
                cj[i] = curv[i] * xj[i]
            cmax = _max_abs_bits(cj, n)
            for k in range(j, d):
                xk = Xf[r0 : r0 + n, k]
                if _fits(cmax, colmax[k], htop[col]):
                    _deposit_products(cj, xk, n, htop[col], col, htop, hacc, None)
                else:
                    _deposit_column(cj, xk, n, col, htop, hacc, hflags, tmp, None)
                col += 1
            _deposit(cj, n, cmax, col, htop, hacc, hflags)
            col += 1
        _deposit(curv, n, _max_abs_bits(curv, n), col, htop, hacc, hflags)

    @njit(cache=_CACHE, nogil=True)
    def _pass_direct(X, row0, row1, y, coef, s, has_s, block, margin_rows, top, acc, flags, hess, lev, std):
        """Rows ``row0:row1`` of an F-ordered X, read in place (``std``: None,
        or ``(center, scale)``: standardized in registers where it is read),
        in blocks of ``block`` rows whose margins take ``margin_rows`` at a time.

        ``hess``: None (its branches are pruned at compile time: the gradient
        pass pays nothing for them) or the Hessian's ``(top, acc, flags, scores)``.
        """
        stack, marg, prob, res, los, tmp, sw, ones = _scratch(block, X.shape[1], margin_rows)
        unknown = np.empty(0, dtype=np.int64)  # X is read in place: no column maxima
        if hess is not None:
            curv = np.empty(block)
            cj = np.empty(block)
            colmax = np.empty(X.shape[1], dtype=np.int64)
        for start in range(row0, row1, block):
            n = min(block, row1 - start)
            _block(
                X,
                start,
                n,
                start,
                y,
                coef,
                s,
                has_s,
                stack,
                marg,
                prob,
                res,
                los,
                tmp,
                sw,
                ones,
                top,
                acc,
                flags,
                lev,
                unknown,
                std,
            )
            if hess is not None:
                _hessian_block(
                    X,
                    start,
                    n,
                    start,
                    prob,
                    s,
                    has_s,
                    curv,
                    cj,
                    tmp,
                    colmax,
                    hess[0],
                    hess[1],
                    hess[2],
                    res,
                    hess[3],
                    y,
                )

    @njit(cache=_CACHE, nogil=True)
    def _copy_block(X, start, n, Xs, center, scale, standardize, rows_inner, fill, colmax):
        """Rows ``start:start+n`` of X (any layout, any real dtype: widened
        exactly to float64) into the F-ordered ``Xs``, a NaN replaced by its
        column's ``fill`` value (when ``fill`` is not empty), standardized as
        ``(x - center) / scale`` when asked (the same IEEE operations on the
        same float64 values as the reference).

        Returns whether ``colmax`` (when not empty) now holds each copied
        column's largest ``bits(|value|)`` (for :func:`_terms`): found on the
        way where that costs no sweep of its own, in the standardizing copy
        of column-major input without fill values (the default pass).

        Column by column through 1-D slices, so every loop vectorises; a
        row-major source is first transposed ``_TILE`` rows at a time (a
        tile's rows stay in L1, each row read once, unrolled so the compiler
        keeps the tile in registers) and then standardized column by column
        in the scratch.
        """
        d = X.shape[1]
        filling = fill.shape[0] > 0
        tracking = standardize and not filling and colmax.shape[0] == d
        if rows_inner:
            for j in range(d):
                src = X[start : start + n, j]
                dst = Xs[0:n, j]
                if filling:
                    fj = fill[j]
                    for i in range(n):
                        v = np.float64(src[i])
                        dst[i] = fj if v != v else v
                    if standardize:
                        kq = (center[j], scale[j])
                        for i in range(n):
                            dst[i] = _x(dst, i, kq)
                elif standardize and tracking:
                    kq = (center[j], scale[j])
                    mx = _ZERO_BITS
                    for i in range(n):
                        v = _x(src, i, kq)
                        dst[i] = v
                        b = _bits(v) & _ABS_MASK
                        if b > mx:
                            mx = b
                    colmax[j] = mx
                elif standardize:
                    kq = (center[j], scale[j])
                    for i in range(n):
                        dst[i] = _x(src, i, kq)
                else:
                    for i in range(n):
                        dst[i] = _x(src, i, None)
            return tracking
        i = 0
        while i + _TILE <= n:
            r0 = X[start + i]
            r1 = X[start + i + 1]
            r2 = X[start + i + 2]
            r3 = X[start + i + 3]
            for j in range(d):
                dst = Xs[i : i + _TILE, j]
                dst[0] = np.float64(r0[j])
                dst[1] = np.float64(r1[j])
                dst[2] = np.float64(r2[j])
                dst[3] = np.float64(r3[j])
            i += _TILE
        while i < n:
            row = X[start + i]
            for j in range(d):
                Xs[i, j] = np.float64(row[j])
            i += 1
        if filling:
            for j in range(d):
                dst = Xs[0:n, j]
                fj = fill[j]
                for i in range(n):
                    v = dst[i]
                    dst[i] = fj if v != v else v
        if standardize:
            for j in range(d):
                dst = Xs[0:n, j]
                kq = (center[j], scale[j])
                for i in range(n):
                    dst[i] = _x(dst, i, kq)
        return False

    @njit(cache=_CACHE, nogil=True)
    def _pass_copy(
        X,
        row0,
        row1,
        y,
        coef,
        s,
        has_s,
        center,
        scale,
        standardize,
        rows_inner,
        fill,
        block,
        top,
        acc,
        flags,
        hess,
        lev,
    ):
        """Rows ``row0:row1`` of X in any layout, each block copied (standardized)
        into an F-ordered scratch.  ``hess`` as for :func:`_pass_direct`."""
        d = X.shape[1]
        stack, marg, prob, res, los, tmp, sw, ones = _scratch(block, d, _MARGIN_ROWS)
        Xs = np.empty((d, block + _PAD)).T
        copied_max = np.empty(d, dtype=np.int64)
        if hess is not None:
            curv = np.empty(block)
            cj = np.empty(block)
            colmax = np.empty(X.shape[1], dtype=np.int64)
        for start in range(row0, row1, block):
            n = min(block, row1 - start)
            known = _copy_block(X, start, n, Xs, center, scale, standardize, rows_inner, fill, copied_max)
            _block(
                Xs,
                _ZERO,
                n,
                start,
                y,
                coef,
                s,
                has_s,
                stack,
                marg,
                prob,
                res,
                los,
                tmp,
                sw,
                ones,
                top,
                acc,
                flags,
                lev,
                copied_max if known else copied_max[:0],
                None,
            )
            if hess is not None:
                _hessian_block(
                    Xs,
                    _ZERO,
                    n,
                    start,
                    prob,
                    s,
                    has_s,
                    curv,
                    cj,
                    tmp,
                    colmax,
                    hess[0],
                    hess[1],
                    hess[2],
                    res,
                    hess[3],
                    y,
                )

    @njit(cache=_CACHE, nogil=True)
    def _softmax_pass(
        X, row0, row1, y, coefs, s, has_s, center, scale, standardize, rows_inner, fill, block, top, acc, flags, lev
    ):
        """:func:`kernel.softmax_partials` of rows ``row0:row1`` of X (any
        layout; each block copied, standardized, into an F-ordered scratch):
        ``coefs`` ``(K, d + 1)``; per class the margins (:func:`_margins`),
        per row :func:`kernel.softmax`'s operations in its order, then per
        class its weighted residuals' terms, deposited column by column.
        ``lev``: None (pruned at compile time) or the categorical columns'
        ``lev`` of :meth:`_Levels.call` (``level_coef`` ``(K, L)``, the
        tables ``K L`` levels long, a room per class): each class's margins
        get its level coefficients (:func:`_add_levels`) and its residuals'
        digits go to its levels."""
        d = X.shape[1]
        n_classes = coefs.shape[0]
        width = d + 1
        stack, marg, prob, res, los, tmp, sw, ones = _scratch(block, d, _MARGIN_ROWS)
        Xs = np.empty((d, block + _PAD)).T
        Z = np.empty((n_classes, block))
        P = np.empty((n_classes, block))
        copied_max = np.empty(d, dtype=np.int64)
        for start in range(row0, row1, block):
            n = min(block, row1 - start)
            known = _copy_block(X, start, n, Xs, center, scale, standardize, rows_inner, fill, copied_max)
            for k in range(n_classes):
                zk = Z[k]
                for m0 in range(0, n, _MARGIN_ROWS):
                    _margins(Xs, m0, min(_MARGIN_ROWS, n - m0), coefs[k], stack, zk[m0:], None)
                if lev is not None:
                    _add_levels(lev[0], start, n, lev[1][k], lev[2], lev[7], zk)
            for i in range(n):
                first = 0
                peak = Z[0, i]
                for k in range(1, n_classes):
                    if Z[k, i] > peak:
                        peak = Z[k, i]
                        first = k
                tail = 0.0
                for k in range(n_classes):
                    e = 0.0 if k == first else _exp_nonpositive(Z[k, i] - peak)
                    P[k, i] = e
                    tail = e if k == 0 else tail + e
                denominator = 1.0 + tail
                for k in range(n_classes):
                    P[k, i] = 1.0 / denominator if k == first else P[k, i] / denominator
                label = np.int64(y[start + i])
                loss = (peak - Z[label, i]) + _log1p_nonnegative(tail)
                if has_s:
                    si = s[start + i]
                    los[i] = si * loss
                    sw[i] = si
                else:
                    los[i] = loss
            for k in range(n_classes):
                pk = P[k]
                for i in range(n):
                    residual = pk[i] - (1.0 if y[start + i] == k else 0.0)
                    res[i] = s[start + i] * residual if has_s else residual
                res_max = _max_abs_bits(res, n)
                for j in range(d):
                    col = Xs[0:n, j]
                    c = k * width + j
                    if known and _fits(copied_max[j], res_max, top[c]):  # as in _terms
                        _deposit_products(col, res, n, top[c], c, top, acc, None)
                    else:
                        _deposit_column(col, res, n, c, top, acc, flags, tmp, None)
                _deposit(res, n, res_max, k * width + d, top, acc, flags)
                if lev is not None:
                    a = k * lev[1].shape[1]  # class k's levels: a:b
                    b = a + lev[1].shape[1]
                    pairs, bins = lev[4][a:b], lev[8][a:b]
                    _deposit_levels(n, res, lev[3], pairs, bins, lev[5], lev[6], lev[7], lev[9][k:], lev[10])
            _deposit(los, n, _max_abs_bits(los, n), n_classes * width, top, acc, flags)
            weights = sw if has_s else ones
            _deposit(weights, n, _max_abs_bits(weights, n), n_classes * width + 1, top, acc, flags)

    @njit(cache=_CACHE, nogil=True)
    def _margins_direct(X, start, n, coef, stack, marg, block):
        """Margins of rows ``start:start+n`` of the F-ordered X into ``marg[:n]``."""
        for b0 in range(0, n, block):
            m = min(block, n - b0)
            for m0 in range(0, m, _MARGIN_ROWS):
                _margins(X, start + b0 + m0, min(_MARGIN_ROWS, m - m0), coef, stack, marg[b0 + m0 :], None)

    @njit(cache=_CACHE, nogil=True)
    def _margins_copy(X, start, n, coef, center, scale, standardize, rows_inner, fill, Xs, stack, marg, block):
        """:func:`_margins_direct` of X in any layout: each block is first copied
        (standardized) into the F-ordered scratch ``Xs`` at the same offset,
        for :func:`margins_fast`.  (A function of its own, so the common in-place
        case compiles without it.)"""
        unknown = np.empty(0, dtype=np.int64)  # (the margins need no column maxima)
        for b0 in range(0, n, block):
            m = min(block, n - b0)
            _copy_block(X, start + b0, m, Xs[b0 : b0 + m], center, scale, standardize, rows_inner, fill, unknown)
            for m0 in range(0, m, _MARGIN_ROWS):
                _margins(Xs, b0 + m0, min(_MARGIN_ROWS, m - m0), coef, stack, marg[b0 + m0 :], None)

    @njit(cache=_CACHE, nogil=True)
    def _deposit_square(col, lo, n, mx, mh, ml, c, d, top, acc):
        """Bins of ``x``, ``hi = x*x`` and ``lo`` (all finite) into columns
        ``c``, ``d + c`` and ``2*d + c``, in one sweep.

        ``mx``, ``mh``, ``ml``: the largest ``bits(|v|)`` of each, their top
        bins at most :data:`_ROUNDER_TOP`.  The digits of each value are those
        of :func:`_deposit`; only the three columns' sweeps are fused.
        """
        t_x = _top_of(mx)
        t_h = _top_of(mh)
        t_l = _top_of(ml)
        x0, x1, x2, _ = _rounders(t_x)
        h0, h1, h2, _ = _rounders(t_h)
        l0, l1, l2, _ = _rounders(t_l)
        count = np.uint64(n)
        sx0 = _U0
        sx1 = _U0
        sx2 = _U0
        sh0 = _U0
        sh1 = _U0
        sh2 = _U0
        sl0 = _U0
        sl1 = _U0
        sl2 = _U0
        for i in range(n):
            x = col[i]
            b0, b1, b2 = _digits(x, x0, x1, x2)
            sx0 += b0
            sx1 += b1
            sx2 += b2
            b0, b1, b2 = _digits(x * x, h0, h1, h2)
            sh0 += b0
            sh1 += b1
            sh2 += b2
            b0, b1, b2 = _digits(lo[i], l0, l1, l2)
            sl0 += b0
            sl1 += b1
            sl2 += b2
        d0, d1, d2 = _unbias(sx0, sx1, sx2, count, x0, x1, x2)
        _add_digits(c, t_x, d0, d1, d2, top, acc)
        d0, d1, d2 = _unbias(sh0, sh1, sh2, count, h0, h1, h2)
        _add_digits(d + c, t_h, d0, d1, d2, top, acc)
        d0, d1, d2 = _unbias(sl0, sl1, sl2, count, l0, l1, l2)
        _add_digits(2 * d + c, t_l, d0, d1, d2, top, acc)

    @njit(cache=_CACHE, nogil=True)
    def _stats_block(Xf, r0, n, g0, y, s, has_s, lo, tmp, ones, top, acc, flags):
        """Statistics of rows ``r0:r0+n`` of the F-ordered ``Xf`` (global rows from ``g0``).

        Per column: ``x``, ``hi = x*x`` and ``lo`` by Dekker's product exactly
        as :func:`kernel.exact_square` computes them (Veltkamp split, no FMA:
        numba without fast-math emits separate multiplies and adds).  ``lo`` is
        kept with the largest ``bits(|x|)`` and ``bits(|lo|)``; the largest
        ``hi`` is ``max|x| * max|x|`` (rounding is monotone), so ``hi`` is
        never stored.  A finite column whose ``x`` and ``x*x`` stay below the
        highest top bin is deposited by :func:`_deposit_square`; any other
        (NaN or inf, or squares of 2**1005 and more) by :func:`_deposit`,
        which sets the flags and scales the highest bin's values down.
        """
        d = Xf.shape[1]
        for j in range(d):
            col = Xf[r0 : r0 + n, j]
            mx = _ZERO_BITS
            ml = _ZERO_BITS
            for i in range(n):
                x = col[i]
                bx = _bits(x) & _ABS_MASK
                if bx > mx:
                    mx = bx
                split = VELTKAMP * x
                x_hi = split - (split - x)
                x_lo = x - x_hi
                hi = x * x
                low = ((x_hi * x_hi - hi) + 2.0 * x_hi * x_lo) + x_lo * x_lo
                lo[i] = low
                bl = _bits(low) & _ABS_MASK
                if bl > ml:
                    ml = bl
            if mx < _EXP_MASK and ml < _EXP_MASK:
                biggest = _from_bits(mx)
                mh = _bits(biggest * biggest)
            else:
                mh = _EXP_MASK
            if mh < _EXP_MASK and _top_of(max(mx, mh)) <= _ROUNDER_TOP:
                _deposit_square(col, lo, n, mx, mh, ml, j, d, top, acc)
            else:  # rare (NaN or inf, squares of 2**1005 and more): x copied, _deposit compiled for one array type
                for i in range(n):
                    tmp[i] = col[i]
                _deposit(tmp, n, mx, j, top, acc, flags)
                _deposit(lo, n, ml, 2 * d + j, top, acc, flags)
                for i in range(n):
                    lo[i] = col[i] * col[i]
                _deposit(lo, n, _max_abs_bits(lo, n), d + j, top, acc, flags)
        # s (ones without weights) and s * y; the weights are copied (into
        # lo, free now) so that every deposit here takes writable arrays
        if has_s:
            for i in range(n):
                lo[i] = s[g0 + i]
            sb = lo[:n]
        else:
            sb = ones[:n]
        for i in range(n):
            tmp[i] = sb[i] * y[g0 + i]
        _deposit(sb, n, _max_abs_bits(sb, n), 3 * d, top, acc, flags)
        _deposit(tmp, n, _max_abs_bits(tmp, n), 3 * d + 1, top, acc, flags)

    @njit(cache=_CACHE, nogil=True)
    def _stats_direct(X, row0, row1, y, s, has_s, block, top, acc, flags):
        """Statistics of rows ``row0:row1`` of an F-ordered X, read in place."""
        lo = np.empty(block)
        tmp = np.empty(block)
        ones = np.ones(block)
        for start in range(row0, row1, block):
            n = min(block, row1 - start)
            _stats_block(X, start, n, start, y, s, has_s, lo, tmp, ones, top, acc, flags)

    @njit(cache=_CACHE, nogil=True)
    def _stats_copy(X, row0, row1, y, s, has_s, rows_inner, block, top, acc, flags):
        """Statistics of rows ``row0:row1`` of X in any layout, each block
        copied into an F-ordered scratch."""
        lo = np.empty(block)
        tmp = np.empty(block)
        ones = np.ones(block)
        Xs = np.empty((X.shape[1], block + _PAD)).T
        nothing = np.empty(0)
        unknown = np.empty(0, dtype=np.int64)  # (the statistics find their own maxima)
        for start in range(row0, row1, block):
            n = min(block, row1 - start)
            _copy_block(X, start, n, Xs, nothing, nothing, False, rows_inner, nothing, unknown)
            _stats_block(Xs, _ZERO, n, start, y, s, has_s, lo, tmp, ones, top, acc, flags)


#: The compiled loss (and Hessian) pass: the same bits as the reference on
#: every CPU (its exp/log are :mod:`pipeline.elementary_jit`'s); needs numba only.
AVAILABLE: bool = _HAVE_NUMBA
#: The compiled statistics pass (and the deposits) need numba only.
STATS_AVAILABLE: bool = _HAVE_NUMBA


#: Seconds a process waits for another one's compilation before compiling on its own.
COMPILE_LOCK_WAIT_S = 300.0
_LOCK_POLL_S = 0.05
#: Kernel signatures this process has compiled (or loaded from the cache).
_COMPILED: set = set()


@contextlib.contextmanager
def _compiling(key: tuple):
    """Hold this machine's compile lock of ``key`` during its first call here.

    numba compiles a signature on its first call and caches it on disk
    (``cache=True``); without a lock every worker process of a fresh install
    compiles the same kernels at the same time, each slower for sharing the
    cores.  With it one process compiles while the others wait and then load
    the cached code.  Later calls of ``key`` take no lock.
    """
    if key in _COMPILED or not _HAVE_FCNTL:
        yield
        return
    # one lock per signature set: processes that need different kernels compile
    # them at the same time, those that need the same one wait for each other
    identity = f"{__file__}|{_numba_version()}|{key!r}".encode()
    path = Path(tempfile.gettempdir()) / f"pipeline-numba-{hashlib.sha256(identity).hexdigest()[:16]}.lock"
    try:
        handle = open(path, "a")  # noqa: SIM115 - held across the yield
    except OSError:  # no writable temp dir: compile without the lock
        handle = None
    try:
        if handle is not None and not _lock(handle):
            handle.close()  # no lock to be had: compile without it
            handle = None
        yield
        _COMPILED.add(key)
    finally:
        if handle is not None:
            handle.close()  # releases the lock


def _lock(handle) -> bool:
    """Take the exclusive lock on ``handle``, waiting at most
    ``COMPILE_LOCK_WAIT_S``; False where the file system has no locks or the
    holder takes too long (then the caller compiles on its own)."""
    deadline = time.monotonic() + COMPILE_LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_LOCK_POLL_S)
        except OSError:  # e.g. ENOLCK on a file system without flock
            return False


def _numba_version() -> str:
    import numba

    return numba.__version__


_TIERS: Tiers | None = None
_TIERS_LOCK = threading.Lock()


def tiers() -> Tiers:
    """This process's choice between compiled and reference passes
    (:mod:`pipeline.tiers`), made at its first use; its markers live in
    numba's cache directory of these kernels (else the temp directory)."""
    global _TIERS
    with _TIERS_LOCK:
        if _TIERS is None:
            here = Path(__file__)
            version = _numba_version() if _HAVE_NUMBA else "-"
            stamp = source_stamp(here, here.with_name("elementary_jit.py"))
            directory = None
            with contextlib.suppress(Exception):  # numba's internals: only where they are as expected
                directory = str(_pass_copy._cache._cache_path)
            _TIERS = Tiers(f"{here}|{version}|{sys.version}|{sys.prefix}|{stamp}", directory)
        return _TIERS


def family_of(spec: KernelSpec) -> Family:
    """The family of compiled kernels a loss pass of ``spec`` runs (:data:`pipeline.tiers.FAMILIES`)."""
    if spec.n_classes:
        return "softmax"
    if spec.hessian:
        return "hessian"
    return "loss" if spec.categories is None else "levels"


def variant_of(family: Family, X, weighted: bool = False, standardized: bool = False) -> str:
    """The variant of ``family`` a call on ``X`` compiles: the features'
    dtype and layout, weights, standardization (what picks its signatures)."""
    X = np.asarray(X)
    layout = "F" if X.flags.f_contiguous else "C" if X.flags.c_contiguous else "A"
    return f"{family}:{X.dtype.str}:{layout}:{'w' if weighted else '-'}:{'s' if standardized else '-'}"


def _spec_variant(X, weights, spec: KernelSpec) -> str:
    weighted = weights is not None or spec.class_weight is not None
    family = family_of(spec)
    variant = variant_of(family, X, weighted, spec.center is not None or spec.scale is not None)
    # wide dense input streams (other compiled code: _Job.stream) in the loss
    # pass, with or without levels, unless it is filled
    X = np.asarray(X)
    dense = X.shape[-1] - (0 if spec.categories is None else spec.categories.n_columns)
    streams = X.ndim == 2 and _streams(X, dense, spec.fill is not None)
    return f"{variant}:stream" if streams and family in ("loss", "levels") else variant


def _in_place(X: np.ndarray, filled: bool) -> bool:
    """Whether a pass can read X in place: F-ordered float64 without fill values."""
    return bool(X.flags.f_contiguous and X.dtype == np.float64 and not filled)


def _streams(X: np.ndarray, n_features: int, filled: bool) -> bool:
    """Whether a loss pass over X's (first) ``n_features`` columns streams
    (:attr:`_Job.stream`): read in place and at least ``_STREAM_FEATURES`` wide."""
    return _in_place(X, filled) and n_features >= _STREAM_FEATURES


def _readonly(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def _block_rows(n_features: int) -> int:
    """Rows per block: X's block in L2 (``_BLOCK_BYTES``) where the rows stay
    long enough; wide data gets up to 512 rows within ``_WIDE_BLOCK_BYTES`` (L3)."""
    width = 8 * max(n_features, 1)
    rows = max(_BLOCK_BYTES // width, min(512, _WIDE_BLOCK_BYTES // width), 64)
    return int(min(BLOCK_ROWS, rows))


def fused_partials(
    X: np.ndarray,
    y: np.ndarray,
    coef: np.ndarray,
    weights: np.ndarray | None = None,
    spec: KernelSpec = KernelSpec(),
    rows: tuple[int, int] | None = None,
) -> Partials:
    """Same as :func:`pipeline.kernel.chunk_partials` (Hessian and ``rows`` included), compiled."""
    if not AVAILABLE:
        raise RuntimeError("compiled loss pass unavailable (numba missing)")
    return _partials(X, y, coef, weights, spec, rows)


def _partials(X, y, coef, weights, spec, rows: tuple[int, int] | None = None) -> Partials:
    """:func:`fused_partials` without the check of :data:`AVAILABLE`."""
    if spec.n_classes:
        if rows is not None:  # (a cross-validation pass's fits are binary: not met)
            X, y, weights = (None if a is None else a[rows[0] : rows[1]] for a in (X, y, weights))
        return _softmax_partials(X, y, coef, weights, spec)
    if spec.categories is not None:
        return _categorical_partials(X, y, coef, weights, spec, spec.categories, rows)
    job = _Job.of(X, y, coef, weights, spec, rows)
    if job.n_rows == 0:
        return Partials.zeros(job.n_features + 1, spec.hessian)
    with _compiling(("one sweep", *job.key(spec))):
        return _one_sweep(job, spec)


def _softmax_partials(X, y, coef, weights, spec: KernelSpec) -> Partials:
    """:func:`kernel.softmax_partials`, compiled (:func:`_softmax_pass`)."""
    if spec.hessian:
        raise ValueError("the multinomial pass has no Hessian")
    n_classes, categories = spec.n_classes, spec.categories
    X = kernel_features(X)
    n_rows, n_columns = X.shape
    n_features = n_columns - (0 if categories is None else categories.n_columns)
    n_levels = 0 if categories is None else categories.n_levels
    coef = np.asarray(coef, dtype=np.float64)
    if coef.shape != (n_classes * (n_features + n_levels + 1),):
        raise ValueError(f"coef has shape {coef.shape}, expected ({n_classes * (n_features + n_levels + 1)},)")
    per_class = coef.reshape(n_classes, -1)
    dense = np.concatenate([per_class[:, :n_features], per_class[:, -1:]], axis=1)
    dense_spec = dataclasses.replace(spec, n_classes=0, categories=None)
    job = _Job.of(X[:, :n_features], y, dense[0], weights, dense_spec)
    total = Partials.empty(n_columns, spec)
    if n_rows == 0:
        return total
    coefs = _readonly(np.ascontiguousarray(dense))
    levels = None
    if categories is not None:
        level_coef = _readonly(np.ascontiguousarray(per_class[:, n_features:-1]))
        levels = _Levels(_readonly(X[:, n_features:]), level_coef, categories, n_classes=n_classes)
    with _compiling(("softmax", *job.key(spec), levels is not None, X.dtype.str)):
        for start in range(0, n_rows, _CALL_ROWS):
            stop = min(start + _CALL_ROWS, n_rows)
            top, acc, flags = _empty_state(n_classes * (n_features + 1) + 2)
            lev = None if levels is None else levels.call(job.block)
            _softmax_pass(
                job.X,
                start,
                stop,
                job.y,
                coefs,
                job.s,
                job.has_s,
                job.center,
                job.scale,
                job.standardize,
                job.rows_inner,
                job.fill,
                job.block,
                top,
                acc,
                flags,
                lev,
            )
            level_sums = None if levels is None or lev is None else levels.sums(lev)
            total = total.merge(Partials(_sums(top, acc, flags), stop - start, None, level_sums))
    return total


def _categorical_partials(
    X, y, coef, weights, spec: KernelSpec, categories: Categories, rows: tuple[int, int] | None = None
) -> Partials:
    """:func:`kernel.chunk_partials` with categorical columns: the dense
    columns' sweep, whose blocks also add each row's level coefficients to its
    margin and deposit its weighted residual at its levels (``lev`` of
    :func:`_block`), into one table of 128-bit pairs per compiled call (and
    three-bin sums where a pair's room runs out: :func:`_deposit_levels`)."""
    if spec.hessian:
        raise ValueError("the Hessian pass takes dense features only (no categorical columns)")
    X = kernel_features(X)
    n_dense = X.shape[1] - categories.n_columns
    dense_coef, level_coef = split_coef(np.asarray(coef, dtype=np.float64), n_dense, categories)
    dense_spec = KernelSpec(spec.center, spec.scale, spec.class_weight, False, spec.fill)
    job = _Job.of(X[:, :n_dense], y, dense_coef, weights, dense_spec, rows)
    if job.n_rows == 0:
        return Partials.empty(X.shape[1], spec)
    levels = _Levels(_readonly(X[:, n_dense:]), _readonly(np.ascontiguousarray(level_coef)), categories)
    with _compiling(("one sweep", *job.key(dense_spec), "levels", X.dtype.str)):
        dense = _one_sweep(job, dense_spec, levels)
    assert levels.total is not None  # (at least one row)
    return Partials(dense.sums, dense.n_samples, None, levels.total)


@dataclass
class _Levels:
    """The categorical part of a compiled loss pass: its arguments, and the
    level sums of the calls so far."""

    codes: np.ndarray
    level_coef: np.ndarray
    categories: Categories
    total: LevelSums | None = None
    #: the multinomial pass's classes, each with a table of the levels (1: binary)
    n_classes: int = 1

    def call(self, block: int) -> tuple:
        """``lev`` of one compiled call: ``(codes, level_coef, offsets, top,
        pairs, digits, bad, index, acc, room, spill)``: fresh tables (the
        pairs and their room, and the three bins they spill into:
        :func:`_deposit_levels`) and scratch."""
        n_tables = self.n_classes * self.categories.n_levels
        pairs = np.zeros((n_tables, 2), dtype=np.uint64)
        acc = np.zeros((n_tables, N_BINS), dtype=np.int64)  # calloc: untouched pages cost nothing
        room = np.full(self.n_classes, _PAIR_ROOM, dtype=np.int64)
        digits = np.empty((block, 2), dtype=np.uint64)
        bad = np.zeros(1, dtype=np.bool_)
        # each row's level per column (int32 where every level index fits: half the cache)
        index_dtype = np.int32 if self.categories.n_levels <= np.iinfo(np.int32).max else np.int64
        index = np.empty((self.categories.n_columns, block), dtype=index_dtype)
        top = np.int64(self.categories.top)
        spill = np.empty((block, N_BINS), dtype=np.int64)
        return (self.codes, self.level_coef, self.categories.offsets, top, pairs, digits, bad, index, acc, room, spill)

    def add(self, lev: tuple) -> None:
        """Add one call's table to the total."""
        self.total = accumulate_levels(self.total, self.sums(lev))

    def sums(self, lev: tuple) -> LevelSums:
        """One call's tables as level sums (the pairs added to the bins, the
        lower bins normalized)."""
        pairs, bad, acc = lev[4], lev[6], lev[8]
        top = self.categories.top
        if bad[0]:
            return LevelSums(top, np.zeros((N_BINS, acc.shape[0]), dtype=np.int64), True)
        _flush_pairs(pairs, acc)
        return LevelSums(top, normalize_levels(np.ascontiguousarray(acc.T)))


def _one_sweep(job: _Job, spec: KernelSpec, levels: _Levels | None = None) -> Partials:
    total = Partials.zeros(job.n_features + 1, spec.hessian)
    for start in range(job.first, job.first + job.n_rows, _CALL_ROWS):
        stop = min(start + _CALL_ROWS, job.first + job.n_rows)
        top, acc, flags = _empty_state(job.n_features + 3)
        hess = (*_empty_state(triangle_size(job.n_features + 1), HESSIAN_BINS), spec.scores) if spec.hessian else None
        stream = job.stream and hess is None
        block = _STREAM_ROWS if stream else job.block
        lev = None if levels is None else levels.call(block)
        if stream or job.direct:
            _pass_direct(
                job.X,
                start,
                stop,
                job.y,
                job.coef,
                job.s,
                job.has_s,
                block,
                _STREAM_ROWS if stream else _MARGIN_ROWS,
                top,
                acc,
                flags,
                hess,
                lev,
                (job.center, job.scale) if stream and job.standardize else None,
            )
        else:
            _pass_copy(
                job.X,
                start,
                stop,
                job.y,
                job.coef,
                job.s,
                job.has_s,
                job.center,
                job.scale,
                job.standardize,
                job.rows_inner,
                job.fill,
                job.block,
                top,
                acc,
                flags,
                hess,
                lev,
            )
        if levels is not None and lev is not None:
            levels.add(lev)
        hessian = None if hess is None else _sums(*hess[:3])
        total = total.merge(Partials(_sums(top, acc, flags), stop - start, hessian))
    return total


@dataclass(frozen=True, eq=False)
class _Job:
    """The arguments of one compiled loss pass, checked and laid out."""

    X: np.ndarray
    y: np.ndarray
    coef: np.ndarray
    s: np.ndarray  # sample weights, or empty when has_s is False
    has_s: bool
    center: np.ndarray
    scale: np.ndarray
    standardize: bool
    fill: np.ndarray  # a NaN's replacement per column, or empty (no NaN)
    direct: bool  # F-ordered float64 X without standardization or fill: read in place
    #: Wide F-ordered float64 X without fill: the loss pass (not the Hessian's)
    #: reads it in place, standardized in registers, in blocks of
    #: ``_STREAM_ROWS`` rows -- each column a long run, no copy written and read
    #: back (a block of all the features no longer fits in L2 at this width).
    stream: bool
    rows_inner: bool
    block: int
    #: the pass's rows: ``first:first + n_rows`` of X (y and s are X's rows)
    n_rows: int
    n_features: int
    first: int = 0

    def scratch(self) -> tuple[int, np.ndarray, np.ndarray]:
        """Rows per segment, the margin tree's stack, and the F-ordered copy of
        a segment (empty when X is read in place)."""
        segment = _segment_rows(self.n_features, self.block)
        stack = _scratch(self.block, self.n_features, _MARGIN_ROWS)[0]
        Xs = np.empty((0, 0)).T if self.direct else np.empty((self.n_features, segment + _PAD)).T
        return segment, stack, Xs

    def margins(self, start: int, n: int, Xs: np.ndarray, stack: np.ndarray, out: np.ndarray) -> None:
        """Margins of rows ``start:start+n`` (at most a segment) into ``out[:n]``;
        unless X is read in place they are first copied (standardized) into ``Xs``."""
        if self.direct:
            _margins_direct(self.X, start, n, self.coef, stack, out, self.block)
        else:
            _margins_copy(
                self.X,
                start,
                n,
                self.coef,
                self.center,
                self.scale,
                self.standardize,
                self.rows_inner,
                self.fill,
                Xs,
                stack,
                out,
                self.block,
            )

    def key(self, spec: KernelSpec) -> tuple:
        """What picks the compiled signatures a pass of this job uses."""
        return (
            self.direct,
            self.has_s,
            self.standardize,
            spec.hessian,
            spec.scores,
            self.X.dtype.str,
            self.X.flags.f_contiguous,
            self.X.flags.c_contiguous,
            self.stream,
        )

    @classmethod
    def of(cls, X, y, coef, weights, spec: KernelSpec, rows: tuple[int, int] | None = None) -> _Job:
        """``rows``: the pass's ``(start, stop)`` rows of X (None: all)."""
        X = kernel_features(X)
        y = np.asarray(y, dtype=np.float64)
        coef = np.asarray(coef, dtype=np.float64)
        n_rows, n_features = X.shape
        first, stop = (0, n_rows) if rows is None else rows
        if not 0 <= first <= stop <= n_rows:
            raise ValueError(f"rows {rows} are not rows of X's {n_rows}")
        if coef.shape != (n_features + 1,):
            raise ValueError(f"coef has shape {coef.shape}, expected ({n_features + 1},)")
        if y.shape != (n_rows,):
            raise ValueError(f"y has shape {y.shape}, expected ({n_rows},)")
        s = sample_weights(y, weights, spec.class_weight) if n_rows else None
        has_s = s is not None
        s = np.ascontiguousarray(s if has_s else np.empty(0), dtype=np.float64)
        if has_s and s.shape != (n_rows,):
            s = np.ascontiguousarray(np.broadcast_to(s, (n_rows,)))
        standardize = spec.center is not None
        if standardize and spec.scale is None:
            raise TypeError("spec.center is set but spec.scale is None")
        if standardize:
            center = np.ascontiguousarray(np.broadcast_to(np.asarray(spec.center, dtype=np.float64), (n_features,)))
            scale = np.ascontiguousarray(np.broadcast_to(np.asarray(spec.scale, dtype=np.float64), (n_features,)))
        else:
            center = scale = np.empty(0)
        fill = np.empty(0)
        if spec.fill is not None:
            fill = np.ascontiguousarray(np.broadcast_to(np.asarray(spec.fill, dtype=np.float64), (n_features,)))
        # Read-only views: one compiled signature per layout, whatever the caller's
        # arrays (Arrow-backed chunks are read-only).
        X, y, coef, s, center, scale, fill = map(
            _readonly, (X, np.ascontiguousarray(y), np.ascontiguousarray(coef), s, center, scale, fill)
        )
        filled = fill.shape[0] > 0
        return cls(
            X,
            y,
            coef,
            s,
            has_s,
            center,
            scale,
            standardize,
            fill,
            _in_place(X, filled) and not standardize,
            _streams(X, n_features, filled),
            _rows_inner(X),
            _block_rows(n_features),
            stop - first,
            n_features,
            first,
        )


def _segment_rows(n_features: int, block: int) -> int:
    """Rows per segment of :func:`margins_fast`: whole blocks, about
    ``_SEGMENT_BYTES`` of X, at most ``BLOCK_ROWS``."""
    rows = max(block, min(BLOCK_ROWS, _SEGMENT_BYTES // (8 * max(n_features, 1))))
    return rows // block * block


def _empty_state(n_cols: int, depth: int = N_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int64 ``(top, bins, flags)`` of the empty state (``depth`` bins), for a compiled call to fill."""
    return (
        np.full(n_cols, _MIN_TOP, dtype=np.int64),
        np.zeros((depth, n_cols), dtype=np.int64),
        np.zeros(n_cols, dtype=np.uint8),
    )


def _sums(top: np.ndarray, acc: np.ndarray, flags: np.ndarray) -> ExactSums:
    """The ExactSums of a compiled call's state (bins carried on in Python ints)."""
    return ExactSums(top=top, bins=acc.astype(object), flags=flags)


def _rows_inner(X: np.ndarray) -> bool:
    """Copy X column by column (else row-major: transposed in tiles)."""
    return X.flags.f_contiguous or (not X.flags.c_contiguous and abs(X.strides[0]) <= abs(X.strides[1]))


def margins_fast(
    X: np.ndarray, coef: np.ndarray, fill: np.ndarray | None = None, categories: Categories | None = None
) -> np.ndarray:
    """:func:`kernel.margins` (the same pairwise tree, the same bits), compiled
    where numba imports: what ``predict`` and ``evaluate`` score rows with.
    ``fill``: per dense column, the value of a missing one (NaN), as in the
    loss pass; ``categories``: X's last columns are level codes, whose
    coefficients follow the dense ones' (:func:`kernel.add_levels`)."""
    X = kernel_features(X)
    if categories is not None:
        n_dense = X.shape[1] - categories.n_columns
        dense_coef, level_coef = split_coef(np.asarray(coef, dtype=np.float64), n_dense, categories)
        return add_levels(margins_fast(X[:, :n_dense], dense_coef, fill), X[:, n_dense:], level_coef, categories)
    coef = np.asarray(coef, dtype=np.float64)

    def reference() -> np.ndarray:
        filled = X if fill is None else np.where(np.isnan(X), fill, X)
        return margins(filled, coef)

    def compiled() -> np.ndarray:
        job = _Job.of(X, np.zeros(X.shape[0]), coef, None, KernelSpec(fill=fill))
        out = np.empty(job.n_rows)
        if job.n_rows == 0:
            return out
        segment, stack, Xs = job.scratch()
        with _compiling(("margins", job.direct, job.X.dtype.str, job.X.flags.c_contiguous)):
            for start in range(0, job.n_rows, segment):
                job.margins(start, min(segment, job.n_rows - start), Xs, stack, out[start:])
        return out

    if not _HAVE_NUMBA or X.ndim != 2 or coef.shape != (X.shape[1] + 1,):
        return reference()
    return tiers().run(variant_of("margins", X), X.size, compiled, reference)


def chunk_partials_fast(
    X: np.ndarray,
    y: np.ndarray,
    coef: np.ndarray,
    weights: np.ndarray | None = None,
    spec: KernelSpec = KernelSpec(),
    rows: tuple[int, int] | None = None,
) -> Partials:
    """:func:`fused_partials` where numba imports and :func:`tiers` says so,
    else :func:`kernel.chunk_partials`.

    A drop-in replacement for ``chunk_partials``: the result is equal either
    way, so processes with and without the compiled kernel can be mixed.
    """
    if spec.folds is not None:
        return fold_partials(X, y, coef, weights, spec, chunk_partials_fast)  # type: ignore[return-value]
    if not AVAILABLE:
        return chunk_partials(X, y, coef, weights, spec, rows)
    return tiers().run(
        _spec_variant(X, weights, spec),
        np.size(X) if rows is None else (rows[1] - rows[0]) * np.shape(X)[1],
        lambda: fused_partials(X, y, coef, weights, spec, rows),
        lambda: chunk_partials(X, y, coef, weights, spec, rows),
    )


def fused_stats(X: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> Stats:
    """Same as :func:`pipeline.kernel.chunk_stats`, compiled.

    Needs numba only (:data:`STATS_AVAILABLE`): the statistics pass uses
    multiplies and adds, which are correctly rounded everywhere.
    """
    if not STATS_AVAILABLE:
        raise RuntimeError("compiled statistics pass unavailable (numba missing)")
    X = kernel_features(X)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X has shape {X.shape}, expected (n_rows, n_features)")
    n_rows, n_features = X.shape
    if y.shape != (n_rows,):
        raise ValueError(f"y has shape {y.shape}, expected ({n_rows},)")
    total = Stats.zeros(n_features)
    if n_rows == 0:
        return total
    has_s = weights is not None
    s = np.ascontiguousarray(weights if has_s else np.empty(0), dtype=np.float64)
    if has_s and s.shape != (n_rows,):
        raise ValueError(f"weights have shape {s.shape}, expected ({n_rows},)")
    X, y, s = map(_readonly, (X, np.ascontiguousarray(y), s))
    direct = X.flags.f_contiguous and X.dtype == np.float64
    rows_inner = _rows_inner(X)
    block = _block_rows(n_features)
    n_cols = 3 * n_features + 2
    with _compiling(("stats", direct, has_s, X.dtype.str, X.flags.c_contiguous)):
        for start in range(0, n_rows, _CALL_ROWS):
            stop = min(start + _CALL_ROWS, n_rows)
            top, acc, flags = _empty_state(n_cols)
            if direct:
                _stats_direct(X, start, stop, y, s, has_s, block, top, acc, flags)
            else:
                _stats_copy(X, start, stop, y, s, has_s, rows_inner, block, top, acc, flags)
            total = total.merge(Stats(_sums(top, acc, flags), stop - start))
    return Stats(total.sums, total.n_samples, count_missing(X, total.sums))


def compile_eagerly() -> None:
    """Large data: every pass of this process runs compiled from its first
    call (:attr:`pipeline.tiers.Tiers.eager`), unless numba is missing or
    ``PIPELINE_KERNELS=reference``."""
    if _HAVE_NUMBA and tiers().wants_compiled():
        tiers().eager = True


def warm_up(
    part: WarmUpPart | None,
    n_features: int,
    *,
    standardize: bool,
    weighted: bool,
    class_weighted: bool,
    hessian: bool,
    gradient: bool = True,
    dtype: str = "float64",
) -> None:
    """Compile (or load from the cache) the kernels a fit will call, on a
    few rows of the same types (features of ``dtype``, F-ordered, as the
    dataset's chunks): ``"statistics"`` the statistics pass, ``"passes"``
    the loss pass (with ``gradient``: a solver or a validation split that
    evaluates without the Hessian) and the Hessian pass (with ``hessian``).

    Run as a task on each worker before the data is read, with the parts
    spread over the workers, so that a fresh installation compiles the two
    halves at the same time instead of one after the other.  It makes this
    process run every pass compiled from now on (:attr:`pipeline.tiers.Tiers.eager`);
    ``part=None`` does only that.  Under ``PIPELINE_KERNELS=reference`` it
    compiles nothing.
    """
    compile_eagerly()
    if part is None or not tiers().eager:
        return
    rng = np.random.default_rng(0)
    rows = 4
    X = np.asfortranarray(rng.standard_normal((rows, n_features)), dtype=dtype)
    y = np.array([0.0, 1.0] * (rows // 2))
    weights = np.ones(rows) if weighted else None
    if part == "statistics":
        fused_stats(X, y, weights)
        tiers().ran_compiled(variant_of("stats", X, weighted))
        return
    spec = KernelSpec(
        center=np.zeros(n_features) if standardize else None,
        scale=np.ones(n_features) if standardize else None,
        class_weight=(1.0, 1.0) if class_weighted else None,
    )
    coef = np.zeros(n_features + 1)
    for pass_spec in ([spec] if gradient or not hessian else []) + ([spec.with_hessian(True)] if hessian else []):
        fused_partials(X, y, coef, weights, pass_spec)
        tiers().ran_compiled(_spec_variant(X, weights, pass_spec))


def chunk_stats_fast(X: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> Stats:
    """:func:`fused_stats` where numba imports and :func:`tiers` says so,
    else :func:`kernel.chunk_stats` (equal results either way)."""
    if not STATS_AVAILABLE:
        return chunk_stats(X, y, weights)
    return tiers().run(
        variant_of("stats", X, weights is not None),
        np.size(X),
        lambda: fused_stats(X, y, weights),
        lambda: chunk_stats(X, y, weights),
    )
