"""Fused compiled loss pass: :func:`pipeline.kernel.chunk_partials` in one sweep.

:func:`fused_partials` returns a :class:`~pipeline.kernel.Partials` **equal**
(``==``: same row count, top bins, flags and Python-int bins) to
``chunk_partials`` for the same arguments, for every input (Hessian excepted:
``spec.hessian`` raises ValueError and the caller uses the reference).  The
numpy reference stays the oracle; this module is only a faster way to compute
the same integers.

How it stays bitwise equal (see ``shared/design/exact-sums.md``):

* Every per-row quantity is computed with the same IEEE operations in the same
  order as the reference: standardization ``(x - c) / s``; products
  ``x~_j * w_j`` summed by the same pairwise tree as :func:`kernel.margins`
  (level-by-level adjacent pairs, odd last carried, evaluated here with a
  stack: complete power-of-two blocks from the left, the ragged tail joined
  right-to-left -- the same tree); ``1 / (1 + exp(-z))``; numpy's
  ``npy_logaddexp(0, z)`` replicated branch by branch on libm ``exp``/``log1p``
  (the functions numpy calls on CPUs without AVX-512).  Compiled with numba in
  nopython mode without fast-math: no reassociation, no FMA contraction.
  :data:`AVAILABLE` is only True when numba imports, numpy does not dispatch
  its own AVX-512 exp/log kernels, and a probe of those functions agrees with
  numpy bit for bit in this process.
* Deposits follow :func:`exact._deposit_block` on small cache-resident blocks
  of rows (at most ``BLOCK_ROWS``): bound ``max |v|`` of the block's finite
  values, the same top bin, the same power-of-two scaling, three levels of
  round-half-even.  ``rint(y)`` is computed as ``(y + 1.5*2**52) - 1.5*2**52``,
  which is round-half-even for ``|y| <= 2**51`` (here ``|y| <= 2**39``), and its
  integer value is read off the bits of ``y + 1.5*2**52`` so block sums are
  integer (exact, vectorisable) adds, wrapping modulo 2**64 until the bias is
  taken off.  Block states are aligned and added as
  :meth:`ExactSums.merge` does.  The merged state is canonical -- a value's
  digits at a lower top bin, shifted, equal its digits at the higher top bin,
  and bins below ``T-2`` hold only zeros there -- so the block size does not
  change the result.
* Bins accumulate in int64 for at most ``_CALL_ROWS`` rows per compiled call
  (``|sum| <= 2**23 * 2**39 < 2**63``) and are then carried on in Python ints.

Layout: an F-ordered X (what :mod:`pipeline.data` builds) is read in place,
block by block (margins, then terms, while the next block is prefetched);
any other layout, and standardized input, is copied block by block into an
F-ordered scratch (standardized on the way).
"""

from __future__ import annotations

import math

import numpy as np

from .exact import BIN_WIDTH, BLOCK_ROWS, GRID_E0, N_BINS, ExactSums
from .kernel import KernelSpec, Partials, chunk_partials, sample_weights

__all__ = ["AVAILABLE", "chunk_partials_fast", "fused_partials"]

#: Rows per compiled call: int64 bins cannot overflow (2**23 * 2**39 < 2**63).
_CALL_ROWS = 2**23
#: Target bytes of one block of X (kept in L2 between the margin and term sweeps).
_BLOCK_BYTES = 2**19
#: Wide data: blocks of up to 512 rows within this many bytes (L3), so that
#: each column's run stays long enough to stream well.
_WIDE_BLOCK_BYTES = 2**22
#: Rows per margin sub-block (its pairwise stack stays in L1).
_MARGIN_ROWS = 512
#: Rows per tile when transposing a row-major block.
_TILE = 16
_MIN_TOP = N_BINS - 1
_NAN, _POS_INF, _NEG_INF = 1, 2, 4
_LOG2 = math.log(2.0)  # == NPY_LOGE2 as a double
_MAGIC = 6755399441055744.0  # 1.5 * 2**52: y + M - M == rint(y) for |y| <= 2**51
_UMAGIC_BITS = np.uint64(0x4338000000000000)  # bits of _MAGIC
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_ABS_MASK = 0x7FFFFFFFFFFFFFFF
_EXP_MASK = 0x7FF0000000000000  # |bits| >= this: inf or NaN
_SPLIT = float(2**BIN_WIDTH)
#: Compiled code is cached next to this module (numba falls back to a user
#: cache directory where that is read-only).
_CACHE = True

try:
    from llvmlite import ir as _ir
    from numba import njit, types
    from numba.core import cgutils as _cgutils
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - exercised only without numba
    _HAVE_NUMBA = False
else:
    _HAVE_NUMBA = N_BINS == 3

if _HAVE_NUMBA:

    @intrinsic
    def _bits(typingctx, x):
        """The IEEE bits of a float64 as int64 (a bitcast, vectorisable)."""
        if x != types.float64:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], _ir.IntType(64))

        return types.int64(types.float64), codegen

    @intrinsic
    def _ubits(typingctx, x):
        """The IEEE bits of a float64 as uint64 (unsigned: sums wrap, no UB)."""
        if x != types.float64:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], _ir.IntType(64))

        return types.uint64(types.float64), codegen

    @intrinsic
    def _prefetch(typingctx, address):
        """Hint the CPU to fetch the cache line at ``address`` into L2."""
        if address != types.int64:
            return None

        def codegen(context, builder, signature, args):
            byte_ptr = _ir.IntType(8).as_pointer()
            i32 = _ir.IntType(32)
            fnty = _ir.FunctionType(_ir.VoidType(), [byte_ptr, i32, i32, i32])
            fn = _cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            # read, locality 2 (prefetcht1), data cache
            builder.call(fn, [builder.inttoptr(args[0], byte_ptr), _ir.Constant(i32, 0),
                              _ir.Constant(i32, 2), _ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return types.none(types.int64), codegen

    @intrinsic
    def _from_bits(typingctx, x):
        """The float64 with the given int64 bits."""
        if x != types.int64:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], _ir.DoubleType())

        return types.float64(types.int64), codegen

    @njit(cache=_CACHE, nogil=True, inline="always")
    def _proba_softplus(z):
        """``1 / (1 + exp(-z))`` and numpy's ``npy_logaddexp(0.0, z)``.

        npy_logaddexp(x, y): ``x == y``: ``x + log(2)``; else ``tmp = x - y``;
        ``tmp > 0``: ``x + log1p(exp(-tmp))``; ``tmp <= 0``: ``y + log1p(exp(tmp))``;
        else (NaN) ``tmp``.  With x = 0 and z != 0, ``tmp`` is ``-z`` bit for
        bit, so for z > 0 its ``exp(tmp)`` is the sigmoid's ``exp(-z)``.
        """
        e = math.exp(-z)
        proba = 1.0 / (1.0 + e)
        if z == 0.0:
            softplus = 0.0 + _LOG2
        elif z > 0.0:
            softplus = z + math.log1p(e)
        elif z < 0.0:
            softplus = 0.0 + math.log1p(math.exp(z))
        else:
            softplus = 0.0 - z  # NaN
        return proba, softplus

    @njit(cache=_CACHE, nogil=True, inline="always")
    def _max_abs_bits(v, n):
        """Largest ``bits(|v_i|)``; >= _EXP_MASK when a NaN or inf is present."""
        mx = 0
        for i in range(n):
            b = _bits(v[i]) & _ABS_MASK
            if b > mx:
                mx = b
        return mx

    @njit(cache=_CACHE, nogil=True)
    def _deposit(v, n, mx, c, top, acc, flags):
        """Add the bins of ``v[:n]`` (``mx`` from :func:`_max_abs_bits`) to column ``c``."""
        finite = mx < _EXP_MASK
        if not finite:
            f = 0
            mx = 0
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
        biased = mx >> 52
        if biased == 0:
            # zero or subnormal bound (< 2**-1022): the lowest top bin, whose
            # capacity is 2**(GRID_E0 + BIN_WIDTH*_MIN_TOP + BIN_WIDTH-1) = 2**-955
            t_block = _MIN_TOP
        else:
            # frexp's exponent e (bound < 2**e) of a normal bound
            exponent = biased - 1022
            need = exponent - GRID_E0 - (BIN_WIDTH - 1)
            t_block = -((-need) // BIN_WIDTH)
            if t_block < _MIN_TOP:
                t_block = _MIN_TOP
        # 2**-(E0 + W*T): a normal number for every reachable T (2..52).
        scale = _from_bits((1023 - (GRID_E0 + BIN_WIDTH * t_block)) << 52)
        # Sum the bits of q = y + M (M = 1.5*2**52): bits(q) - bits(M) is the
        # integer rint(y).  The bias is taken off once per block; unsigned
        # sums wrap modulo 2**64, so the result is exact (|sum| < 2**63).
        s0 = _U0
        s1 = _U0
        s2 = _U0
        count = _U0
        if finite:
            for i in range(n):
                y0 = v[i] * scale
                q = y0 + _MAGIC
                s0 += _ubits(q)
                y1 = (y0 - (q - _MAGIC)) * _SPLIT
                q = y1 + _MAGIC
                s1 += _ubits(q)
                y2 = (y1 - (q - _MAGIC)) * _SPLIT
                s2 += _ubits(y2 + _MAGIC)
            count = np.uint64(n)
        else:
            for i in range(n):
                t = v[i]
                if t - t != 0.0:  # NaN or inf: deposited as 0
                    continue
                y0 = t * scale
                q = y0 + _MAGIC
                s0 += _ubits(q)
                y1 = (y0 - (q - _MAGIC)) * _SPLIT
                q = y1 + _MAGIC
                s1 += _ubits(q)
                y2 = (y1 - (q - _MAGIC)) * _SPLIT
                s2 += _ubits(y2 + _MAGIC)
                count += _U1
        bias = count * _UMAGIC_BITS
        d0 = np.int64(s0 - bias)
        d1 = np.int64(s1 - bias)
        d2 = np.int64(s2 - bias)
        # Align as ExactSums.merge does: the larger top wins, bins shifted
        # below T-2 are dropped.
        t_acc = top[c]
        if t_block > t_acc:
            shift = min(t_block - t_acc, N_BINS)
            for k in range(N_BINS - 1, -1, -1):
                acc[k, c] = acc[k - shift, c] if k >= shift else 0
            top[c] = t_block
            acc[0, c] += d0
            acc[1, c] += d1
            acc[2, c] += d2
        else:
            shift = t_acc - t_block
            if shift == 0:
                acc[0, c] += d0
                acc[1, c] += d1
                acc[2, c] += d2
            elif shift == 1:
                acc[1, c] += d0
                acc[2, c] += d1
            elif shift == 2:
                acc[2, c] += d0

    @njit(cache=_CACHE, nogil=True)
    def _margins(Xf, r0, n, coef, stack, marg):
        """``marg[:n]``: margins of rows ``r0:r0+n``, summed as kernel.margins does.

        The level-by-level pairwise tree equals this stack evaluation:
        products are paired (p0+p1, p2+p3, ...); after the k-th pair, as many
        merges as trailing zeros of k+1 join equal-size blocks (left + right);
        the leftover odd product and the ragged tail are joined right to left.
        Merges are fused into the pair's pass (same operations, same order).
        """
        d = Xf.shape[1]
        b = coef[d]
        if d == 0:
            for i in range(n):
                marg[i] = b
            return
        sp = 0
        for k in range(d // 2):
            c0 = Xf[r0 : r0 + n, 2 * k]
            c1 = Xf[r0 : r0 + n, 2 * k + 1]
            w0 = coef[2 * k]
            w1 = coef[2 * k + 1]
            merges = 0
            count = k + 1
            while count & 1 == 0:
                merges += 1
                count >>= 1
            if merges == 0:
                dst = stack[sp]
                for i in range(n):
                    dst[i] = c0[i] * w0 + c1[i] * w1
                sp += 1
            elif merges == 1:
                dst = stack[sp - 1]
                for i in range(n):
                    dst[i] = dst[i] + (c0[i] * w0 + c1[i] * w1)
            elif merges == 2:
                dst = stack[sp - 2]
                s1 = stack[sp - 1]
                for i in range(n):
                    dst[i] = dst[i] + (s1[i] + (c0[i] * w0 + c1[i] * w1))
                sp -= 1
            else:
                dst = stack[sp - 3]
                s1 = stack[sp - 2]
                s2 = stack[sp - 1]
                for i in range(n):
                    dst[i] = dst[i] + (s1[i] + (s2[i] + (c0[i] * w0 + c1[i] * w1)))
                sp -= 2
                for _ in range(merges - 3):
                    lo = stack[sp - 2]
                    hi = stack[sp - 1]
                    for i in range(n):
                        lo[i] = lo[i] + hi[i]
                    sp -= 1
        if d & 1:  # the odd last product
            c0 = Xf[r0 : r0 + n, d - 1]
            w0 = coef[d - 1]
            dst = stack[sp]
            for i in range(n):
                dst[i] = c0[i] * w0
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
    def _block(Xf, r0, n, g0, y, coef, s, has_s, stack, marg, res, los, tmp, ones,
               top, acc, flags, prefetch):
        """One block: rows ``r0:r0+n`` of the F-ordered ``Xf`` (global rows from ``g0``).

        ``prefetch``: rows of the next block (from ``r0 + n``) to request into
        L2, column by column, while this block's terms are computed.
        """
        d = Xf.shape[1]
        # Margins: the pairwise tree of kernel.margins, vectorised over rows,
        # in sub-blocks whose stack stays in L1.
        for m0 in range(0, n, _MARGIN_ROWS):
            _margins(Xf, r0 + m0, min(_MARGIN_ROWS, n - m0), coef, stack, marg[m0:])
        # Per row: probability, loss, weighted residual.
        for i in range(n):
            z = marg[i]
            yi = y[g0 + i]
            proba, softplus = _proba_softplus(z)
            residual = proba - yi
            loss = softplus - yi * z
            if has_s:
                si = s[g0 + i]
                residual = si * residual
                loss = si * loss
            res[i] = residual
            los[i] = loss
        # Terms, column by column, each deposited at once.
        if prefetch > 0:
            base = np.int64(Xf.ctypes.data) + 8 * (r0 + n)
            col_bytes = np.int64(Xf.strides[1])
        for j in range(d):
            if prefetch > 0:
                start = base + j * col_bytes
                for offset in range(0, 8 * prefetch, 64):
                    _prefetch(start + offset)
            col = Xf[r0 : r0 + n, j]
            mx = 0
            for i in range(n):
                t = col[i] * res[i]
                tmp[i] = t
                bt = _bits(t) & _ABS_MASK
                if bt > mx:
                    mx = bt
            _deposit(tmp, n, mx, j, top, acc, flags)
        _deposit(res, n, _max_abs_bits(res, n), d, top, acc, flags)
        _deposit(los, n, _max_abs_bits(los, n), d + 1, top, acc, flags)
        if has_s:
            sb = s[g0 : g0 + n]
            _deposit(sb, n, _max_abs_bits(sb, n), d + 2, top, acc, flags)
        else:
            _deposit(ones, n, _max_abs_bits(ones, n), d + 2, top, acc, flags)

    @njit(cache=_CACHE, nogil=True)
    def _scratch(block, d):
        depth = 1
        while (1 << depth) <= d:
            depth += 1
        stack = np.empty((depth + 1, min(block, _MARGIN_ROWS)))
        ones = np.ones(block)
        return (stack, np.empty(block), np.empty(block), np.empty(block),
                np.empty(block), ones)

    @njit(cache=_CACHE, nogil=True)
    def _pass_direct(X, row0, row1, y, coef, s, has_s, block, top, acc, flags):
        """Rows ``row0:row1`` of an F-ordered X, read in place."""
        stack, marg, res, los, tmp, ones = _scratch(block, X.shape[1])
        for start in range(row0, row1, block):
            n = min(block, row1 - start)
            ahead = min(block, X.shape[0] - (start + n))
            _block(X, start, n, start, y, coef, s, has_s, stack, marg, res, los, tmp,
                   ones, top, acc, flags, ahead)

    @njit(cache=_CACHE, nogil=True)
    def _pass_copy(X, row0, row1, y, coef, s, has_s, center, scale, standardize,
                   rows_inner, block, top, acc, flags):
        """Rows ``row0:row1`` of X in any layout, each block copied (standardized)
        into an F-ordered scratch."""
        d = X.shape[1]
        stack, marg, res, los, tmp, ones = _scratch(block, d)
        Xs = np.empty((d, block)).T
        for start in range(row0, row1, block):
            n = min(block, row1 - start)
            if rows_inner:
                for j in range(d):
                    if standardize:
                        cj = center[j]
                        sj = scale[j]
                        for i in range(n):
                            Xs[i, j] = (X[start + i, j] - cj) / sj
                    else:
                        for i in range(n):
                            Xs[i, j] = X[start + i, j]
            else:
                # Row-major source: transpose in tiles of _TILE rows, so each
                # tile's source rows stay in L1 while its columns are written.
                for i0 in range(0, n, _TILE):
                    m = min(_TILE, n - i0)
                    for j in range(d):
                        if standardize:
                            cj = center[j]
                            sj = scale[j]
                            for i in range(i0, i0 + m):
                                Xs[i, j] = (X[start + i, j] - cj) / sj
                        else:
                            for i in range(i0, i0 + m):
                                Xs[i, j] = X[start + i, j]
            _block(Xs, 0, n, start, y, coef, s, has_s, stack, marg, res, los, tmp,
                   ones, top, acc, flags, 0)

    @njit(cache=_CACHE, nogil=True)
    def _probe_kernel(z):
        out = np.empty((3, z.size))
        for i in range(z.size):
            out[0, i], out[1, i] = _proba_softplus(z[i])
            out[2, i] = math.log1p(z[i])
        return out


def _probe_values() -> np.ndarray:
    rng = np.random.default_rng(20240611)
    fixed = np.array([0.0, -0.0, 1e-300, -1e-300, 5e-324, 1e-17, -1e-17, 0.5, -0.5,
                      1.0, -1.0, 36.7, -36.7, 37.5, -37.5, 709.78, -709.78, 745.2, -745.2,
                      800.0, -800.0, 1e300, -1e300, np.inf, -np.inf, np.nan])
    scales = np.repeat([1e-8, 1e-3, 0.3, 3.0, 30.0, 300.0, 800.0], 3000)
    return np.concatenate([fixed, rng.standard_normal(scales.size) * scales])


def _numpy_has_own_exp_log() -> bool:
    """numpy dispatches its own float64 exp/log kernels on AVX-512 CPUs."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy 1.x
        try:
            from numpy.core._multiarray_umath import __cpu_features__
        except ImportError:
            return True
    return any(flag.startswith("AVX512") and on for flag, on in __cpu_features__.items())


def _probe() -> bool:
    """Do the compiled exp/log1p/logaddexp agree with numpy bit for bit here?"""
    if _numpy_has_own_exp_log():
        return False
    z = _probe_values()
    got = _probe_kernel(z)
    with np.errstate(all="ignore"):
        want = np.stack([1.0 / (1.0 + np.exp(-z)), np.logaddexp(0.0, z), np.log1p(z)])
    same = (got.view(np.int64) == want.view(np.int64)) | (np.isnan(got) & np.isnan(want))
    return bool(same.all())


if _HAVE_NUMBA:
    try:
        AVAILABLE: bool = _probe()
    except Exception:  # pragma: no cover - a broken numba/llvmlite install
        AVAILABLE = False
else:  # pragma: no cover
    AVAILABLE = False


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
) -> Partials:
    """Same as :func:`pipeline.kernel.chunk_partials` (without Hessian), compiled."""
    if spec.hessian:
        raise ValueError("fused_partials has no Hessian; use kernel.chunk_partials")
    if not AVAILABLE:
        raise RuntimeError(
            "fused kernel unavailable (numba missing, or exp/log1p differ from numpy's)")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    coef = np.asarray(coef, dtype=np.float64)
    n_rows, n_features = X.shape
    if coef.shape != (n_features + 1,):
        raise ValueError(f"coef has shape {coef.shape}, expected ({n_features + 1},)")
    if y.shape != (n_rows,):
        raise ValueError(f"y has shape {y.shape}, expected ({n_rows},)")
    total = Partials.zeros(n_features + 1)
    if n_rows == 0:
        return total
    s = sample_weights(y, weights, spec.class_weight)
    has_s = s is not None
    s = np.ascontiguousarray(s if has_s else np.empty(0), dtype=np.float64)
    if has_s and s.shape != (n_rows,):
        s = np.ascontiguousarray(np.broadcast_to(s, (n_rows,)))
    y = np.ascontiguousarray(y)
    coef = np.ascontiguousarray(coef)
    standardize = spec.center is not None
    if standardize and spec.scale is None:
        raise TypeError("spec.center is set but spec.scale is None")
    if standardize:
        center = np.ascontiguousarray(
            np.broadcast_to(np.asarray(spec.center, dtype=np.float64), (n_features,)))
        scale = np.ascontiguousarray(
            np.broadcast_to(np.asarray(spec.scale, dtype=np.float64), (n_features,)))
    else:
        center = scale = np.empty(0)
    # Read-only views: one compiled signature per layout, whatever the caller's
    # arrays (Arrow-backed chunks are read-only).
    X, y, coef, s, center, scale = map(_readonly, (X, y, coef, s, center, scale))
    direct = X.flags.f_contiguous and not standardize
    rows_inner = X.flags.f_contiguous or (
        not X.flags.c_contiguous and abs(X.strides[0]) <= abs(X.strides[1]))
    block = _block_rows(n_features)
    n_cols = n_features + 3
    for start in range(0, n_rows, _CALL_ROWS):
        stop = min(start + _CALL_ROWS, n_rows)
        top = np.full(n_cols, _MIN_TOP, dtype=np.int64)
        acc = np.zeros((N_BINS, n_cols), dtype=np.int64)
        flags = np.zeros(n_cols, dtype=np.uint8)
        if direct:
            _pass_direct(X, start, stop, y, coef, s, has_s, block, top, acc, flags)
        else:
            _pass_copy(X, start, stop, y, coef, s, has_s, center, scale, standardize,
                       rows_inner, block, top, acc, flags)
        sums = ExactSums(top=top, bins=acc.astype(object), flags=flags)
        total = total.merge(Partials(sums, stop - start))
    return total


def chunk_partials_fast(
    X: np.ndarray,
    y: np.ndarray,
    coef: np.ndarray,
    weights: np.ndarray | None = None,
    spec: KernelSpec = KernelSpec(),
) -> Partials:
    """:func:`fused_partials` where it applies, else :func:`kernel.chunk_partials`.

    A drop-in replacement for ``chunk_partials``: the result is equal either
    way, so processes with and without the compiled kernel can be mixed.
    """
    if AVAILABLE and not spec.hessian:
        return fused_partials(X, y, coef, weights, spec)
    return chunk_partials(X, y, coef, weights, spec)
