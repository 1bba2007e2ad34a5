"""The functions of :mod:`pipeline.elementary` as numba scalars, for the
compiled kernels: the same IEEE operations in the same order, so each returns
the same bits as its numpy twin, on every CPU.

Each scalar takes the branch the numpy code selects with ``np.where`` and
computes that branch's expression exactly as written there (same operands,
same parenthesization).  numba compiles without fast-math: LLVM may neither
reassociate nor contract ``a * b + c`` into a fused multiply-add (no
``contract``/``fast`` flags, no ``llvm.fma``/``llvm.fmuladd`` calls; checked
in ``tests/test_elementary.py`` on the LLVM IR and the machine code).  Bit
casts are ``@intrinsic`` LLVM bitcasts, as in :mod:`pipeline.fused`.

The scalars take float64 (the bit casts refuse other types).  The
``*_array`` functions apply one to each element of a 1-D float64 array
(tests, benchmarks).  ``_exp_parts`` and ``_log1p_parts`` also return the
tails (``exp(x) ~ eh + el``, ``log1p(t) ~ lh + ll``) that
:func:`sigmoid_softplus` uses to round about once; a compiled log-sum-exp can
use them the same way.

:func:`sigmoid_softplus_block` gives :func:`sigmoid_softplus`'s bits for a
whole block of margins from a branch-free loop (every branch computed, the
scalar path's value selected, as the numpy code does), which LLVM vectorizes:
what the compiled loss pass (:mod:`pipeline.fused`) calls.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir as _ir
from numba import njit, types
from numba.extending import intrinsic

from .elementary import (
    DBL_MAX,
    HU_SQRT2,
    HX_2P53,
    HX_HALF_LN2,
    HX_INF,
    HX_SQRT2_M1,
    HX_TINY_EXP,
    HX_TINY_LOG,
    INF,
    INVLN2,
    LN2_HI,
    LN2_LO,
    LOW_WORD,
    LP1,
    LP2,
    LP3,
    LP4,
    LP5,
    LP6,
    LP7,
    O_THRESHOLD,
    P1,
    P2,
    P3,
    P4,
    P5,
    SIGN,
    SPLIT,
    TWO_THIRDS,
    TWOM1000,
    U_THRESHOLD,
)

__all__ = [
    "bits_of",
    "exp_nonpositive",
    "exp_nonpositive_array",
    "log1p_nonnegative",
    "log1p_nonnegative_array",
    "sigmoid_softplus",
    "sigmoid_softplus_array",
    "sigmoid_softplus_block",
    "float_of",
]

_NAN_BITS = np.int64(0x7FF8000000000000)  # bits of elementary.NAN


@intrinsic
def bits_of(typingctx, x):
    """The IEEE bits of a float64 as int64 (a bitcast)."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def float_of(typingctx, x):
    """The float64 with the given int64 bits (a bitcast)."""
    if x != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _ir.DoubleType())

    return types.float64(types.int64), codegen


@njit(cache=True, nogil=True)
def _two_product_err(a, b, p):
    """``a*b - p`` for ``p = fl(a*b)``, exactly (Dekker, with Veltkamp's split)."""
    ca = SPLIT * a
    ah = ca - (ca - a)
    al = a - ah
    cb = SPLIT * b
    bh = cb - (cb - b)
    bl = b - bh
    return (((ah * bh - p) + ah * bl) + al * bh) + al * bl


@njit(cache=True, nogil=True)
def _exp_parts(x):
    """fdlibm's ``exp(x)`` and the rounding error of its last step (``elementary._exp_parts``)."""
    hx = (bits_of(x) >> 32) & 0x7FFFFFFF
    if x != x:
        return float_of(_NAN_BITS), 0.0
    if x > O_THRESHOLD:
        return INF, 0.0
    if x < U_THRESHOLD:
        return 0.0, 0.0
    if hx < HX_TINY_EXP:
        one_plus = 1.0 + x
        return one_plus, (1.0 - one_plus) + x
    if hx > HX_HALF_LN2:
        half = -0.5 if x < 0.0 else 0.5
        k = int(INVLN2 * x + half)
    else:
        k = 0
    t = float(k)
    hi = x - t * LN2_HI
    lo = t * LN2_LO
    r = hi - lo
    rr = r * r
    c = r - rr * (P1 + rr * (P2 + rr * (P3 + rr * (P4 + rr * P5))))
    w1 = lo - (r * c) / (2.0 - c)
    w = w1 - hi
    y = 1.0 - w
    bb = w - w1
    werr = (w1 - (w - bb)) - (hi + bb)
    ytail = ((1.0 - y) - w) - werr
    if k < -1021:
        return float_of(bits_of(y) + ((k + 1000) << 52)) * TWOM1000, 0.0
    eh = float_of(bits_of(y) + (k << 52))
    if k > 1023:
        return eh, 0.0
    return eh, ytail * float_of((k + 1023) << 52)


@njit(cache=True, nogil=True)
def exp_nonpositive(x):
    """``e**x`` (fdlibm's exp): :func:`pipeline.elementary.exp_nonpositive`."""
    return _exp_parts(x)[0]


@njit(cache=True, nogil=True)
def _log1p_parts(t):
    """fdlibm's ``log1p(t)``, ``t >= 0``, and the rounding errors of its last
    three operations (``elementary._log1p_parts``)."""
    if not t >= 0.0:  # NaN, t < 0
        return float_of(_NAN_BITS), 0.0
    if t == INF:
        return INF, 0.0
    hx = bits_of(t) >> 32
    ax = hx & 0x7FFFFFFF
    if ax < HX_TINY_LOG:
        h2 = t * t * 0.5
        lh_small = t - h2
        return lh_small, (t - lh_small) - h2
    if hx < HX_SQRT2_M1:
        # k = 0, f = t, c = 0
        f = t
        kf = 0.0
        c = 0.0
        short = False
    else:
        u1 = 1.0 + t
        if hx >= HX_2P53:
            u = t
            hu = bits_of(u) >> 32
            k = (hu >> 20) - 1023
            c = 0.0
        else:
            u = u1
            hu = bits_of(u) >> 32
            k = (hu >> 20) - 1023
            if k > 0:
                c = (1.0 - (u1 - t)) / u1
            else:
                c = (t - (u1 - 1.0)) / u1
        hu = hu & 0x000FFFFF
        if hu >= HU_SQRT2:  # normalize u/2
            k = k + 1
            high = hu | 0x3FE00000
            hu = (0x00100000 - hu) >> 2
        else:
            high = hu | 0x3FF00000
        un = float_of((high << 32) | (bits_of(u) & LOW_WORD))
        f = un - 1.0
        kf = float(k)
        short = hu == 0  # |f| < 2**-20
    hfsq = 0.5 * f * f
    clo = c + kf * LN2_LO
    khi = kf * LN2_HI
    if short:
        p1 = hfsq * (1.0 - TWO_THIRDS * f)
        p2 = clo
    else:
        s = f / (2.0 + f)
        z = s * s
        big_r = z * (LP1 + z * (LP2 + z * (LP3 + z * (LP4 + z * (LP5 + z * (LP6 + z * LP7))))))
        sr = s * (hfsq + big_r)
        p1 = hfsq
        p2 = sr + clo
    a = p1 - p2
    g = a - f
    lh = khi - g
    bb = a - p1
    ea = (p1 - (a - bb)) - (p2 + bb)
    bb = g - a
    eg = (a - (g - bb)) - (f + bb)
    el = (khi - lh) - g
    return lh, el - (eg + ea)


@njit(cache=True, nogil=True)
def log1p_nonnegative(t):
    """``log(1 + t)``, ``t >= 0`` (fdlibm's log1p): :func:`pipeline.elementary.log1p_nonnegative`."""
    return _log1p_parts(t)[0]


@njit(cache=True, nogil=True)
def sigmoid_softplus(z):
    """``(1 / (1 + exp(-z)), log(1 + exp(z)))``: :func:`pipeline.elementary.sigmoid_softplus`."""
    if z != z:
        return float_of(_NAN_BITS), float_of(_NAN_BITS)
    eh, el = _exp_parts(float_of(bits_of(z) | SIGN))
    d = 1.0 + eh
    dl = ((1.0 - d) + eh) + el
    if z < 0.0:
        n = eh
        nl = el
    else:
        n = 1.0
        nl = 0.0
    p0 = n / d
    prod = p0 * d
    rem = (n - prod) - _two_product_err(p0, d, prod)
    proba = p0 + ((rem + nl) - p0 * dl) / d
    if z == INF:
        return proba, INF
    lh, ll = _log1p_parts(eh)
    ll = ll + el / d
    m = z if z > 0.0 else 0.0
    total = m + lh
    bb = total - m
    err = (m - (total - bb)) + (lh - bb)
    return proba, total + (err + ll)


@njit(cache=True, nogil=True)
def exp_nonpositive_array(x):
    """:func:`exp_nonpositive` of each element of a 1-D float64 array."""
    out = np.empty(x.size, dtype=np.float64)
    for i in range(x.size):
        out[i] = exp_nonpositive(x[i])
    return out


@njit(cache=True, nogil=True)
def log1p_nonnegative_array(t):
    """:func:`log1p_nonnegative` of each element of a 1-D float64 array."""
    out = np.empty(t.size, dtype=np.float64)
    for i in range(t.size):
        out[i] = log1p_nonnegative(t[i])
    return out


@njit(cache=True, nogil=True)
def sigmoid_softplus_array(z):
    """:func:`sigmoid_softplus` of each element of a 1-D float64 array."""
    proba = np.empty(z.size, dtype=np.float64)
    softplus = np.empty(z.size, dtype=np.float64)
    for i in range(z.size):
        p, s = sigmoid_softplus(z[i])
        proba[i] = p
        softplus[i] = s
    return proba, softplus


# --------------------------------------------------------------------------- branch-free block
#
# The same values as the scalars above, for a loop LLVM vectorizes: every
# branch's expression is computed in every lane (on a harmless argument where
# it would not be defined) and the scalar path's value is selected, exactly as
# ``pipeline.elementary`` does with ``np.where``: the same operations, the same
# parenthesization, selects (``a if c else b`` on values already computed,
# which LLVM turns into ``select``) instead of returns.  ``error_model="numpy"``:
# no zero-divisor check (a branch) before each division -- no divisor here can
# be 0 (``2 - c``, ``u1 = 1 + t``, ``2 + f`` and ``d = 1 + e`` are all >= 1/2),
# so the quotients are the python model's.


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _exp_parts_select(x):
    """:func:`_exp_parts` without branches (``elementary._exp_parts`` with ``tail``)."""
    hx = (bits_of(x) >> 32) & 0x7FFFFFFF
    nan = x != x
    over = x > O_THRESHOLD
    under = x < U_THRESHOLD
    tiny = hx < HX_TINY_EXP
    # the reduction's argument: out-of-range lanes (replaced below) take 0
    xs = x if (x <= O_THRESHOLD) & (x >= U_THRESHOLD) else 0.0
    half = -0.5 if xs < 0.0 else 0.5
    kr = int(INVLN2 * xs + half)
    k = kr if hx > HX_HALF_LN2 else 0
    t = float(k)
    hi = xs - t * LN2_HI
    lo = t * LN2_LO
    r = hi - lo
    rr = r * r
    c = r - rr * (P1 + rr * (P2 + rr * (P3 + rr * (P4 + rr * P5))))
    w1 = lo - (r * c) / (2.0 - c)
    w = w1 - hi
    y = 1.0 - w
    deep = k < -1021  # subnormal range: scale by 2**(k+1000), then by 2**-1000
    kd = k + 1000
    scaled = float_of(bits_of(y) + ((kd if deep else k) << 52))
    scaled_deep = scaled * TWOM1000
    eh = scaled_deep if deep else scaled
    one_plus = 1.0 + xs
    eh = one_plus if tiny else eh
    eh = 0.0 if under else eh
    eh = INF if over else eh
    eh = float_of(_NAN_BITS) if nan else eh
    bb = w - w1
    werr = (w1 - (w - bb)) - (hi + bb)
    ytail = ((1.0 - y) - w) - werr
    scale = (k >= -1021) & (k <= 1023)
    ks = k if scale else 0
    el_scaled = ytail * float_of((ks + 1023) << 52)
    el = el_scaled if scale else 0.0
    el_tiny = (1.0 - one_plus) + xs
    el = el_tiny if tiny else el
    el = 0.0 if nan | over | under else el
    return eh, el


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _log1p_parts_select(t):
    """:func:`_log1p_parts` without branches (``elementary._log1p_parts`` with ``tail``)."""
    hx = bits_of(t) >> 32  # signed: negative for t < 0 (and -0.0)
    ax = hx & 0x7FFFFFFF
    valid = t >= 0.0  # False for NaN and t < 0
    # every lane computes on a finite t >= 0 (inf and refused lanes: 1.0)
    ts = t if valid & (t <= DBL_MAX) else 1.0
    # t >= 0.41422: 1 + t = 2**k (1 + f), with the correction c for u = fl(1 + t)
    reduce = (hx >= HX_SQRT2_M1) & (hx < HX_INF)
    big = hx >= HX_2P53
    u1 = 1.0 + ts
    u = ts if big else u1
    hu = bits_of(u) >> 32
    k = (hu >> 20) - 1023
    c_above = 1.0 - (u1 - ts)
    c_below = ts - (u1 - 1.0)
    c = (c_above if k > 0 else c_below) / u1
    c = c if reduce & (hx < HX_2P53) else 0.0
    hu = hu & 0x000FFFFF
    upper = hu >= HU_SQRT2  # normalize u/2 instead of u
    k1 = k + 1
    k = k1 if upper else k
    high = hu | (0x3FE00000 if upper else 0x3FF00000)
    un = float_of((high << 32) | (bits_of(u) & LOW_WORD))
    hu_upper = (0x00100000 - hu) >> 2
    hu = hu_upper if upper else hu
    # t < 0.41422: k = 0, f = t, c = 0
    fr = un - 1.0
    f = fr if reduce else ts
    kf = float(k if reduce else 0)
    short = reduce & (hu == 0)  # |f| < 2**-20
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    big_r = z * (LP1 + z * (LP2 + z * (LP3 + z * (LP4 + z * (LP5 + z * (LP6 + z * LP7))))))
    sr = s * (hfsq + big_r)
    clo = c + kf * LN2_LO
    khi = kf * LN2_HI
    p1_short = hfsq * (1.0 - TWO_THIRDS * f)
    p1 = p1_short if short else hfsq
    p2_long = sr + clo
    p2 = clo if short else p2_long
    a = p1 - p2
    g = a - f
    lh_main = khi - g
    small = ax < HX_TINY_LOG  # t < 2**-29
    h2 = f * f * 0.5
    lh_small = f - h2
    lh = lh_small if small else lh_main
    lh = INF if t == INF else lh
    lh = lh if valid else float_of(_NAN_BITS)
    bb = a - p1
    ea = (p1 - (a - bb)) - (p2 + bb)  # p1 - p2 = a + ea (TwoSum)
    bb = g - a
    eg = (a - (g - bb)) - (f + bb)  # a - f = g + eg (TwoSum)
    el = (khi - lh_main) - g  # khi - g = lh + el (Fast2Sum)
    ll_small = (f - lh_small) - h2
    ll_main = el - (eg + ea)
    ll = ll_small if small else ll_main
    ll = ll if valid & (t != INF) else 0.0
    return lh, ll


@njit(cache=True, nogil=True, error_model="numpy")
def sigmoid_softplus_block(z, n, proba_out, softplus_out):
    """:func:`sigmoid_softplus` of ``z[:n]`` into ``proba_out[:n]`` and
    ``softplus_out[:n]``: the same bits, from a branch-free loop body that
    LLVM vectorizes (``elementary._sigmoid_softplus_block``, lane by lane)."""
    for i in range(n):
        zi = z[i]
        eh, el = _exp_parts_select(float_of(bits_of(zi) | SIGN))  # exp(-|z|) = eh + el
        d = 1.0 + eh
        dl = ((1.0 - d) + eh) + el
        neg = zi < 0.0
        num = eh if neg else 1.0
        nl = el if neg else 0.0
        p0 = num / d
        prod = p0 * d
        rem = (num - prod) - _two_product_err(p0, d, prod)  # n - p0 d, exactly
        proba = p0 + ((rem + nl) - p0 * dl) / d
        lh, ll = _log1p_parts_select(eh)
        ll = ll + el / d
        m = zi if (zi > 0.0) & (zi != INF) else 0.0
        total = m + lh
        bb = total - m
        err = (m - (total - bb)) + (lh - bb)  # m + lh = total + err (TwoSum)
        softplus = total + (err + ll)
        softplus = INF if zi == INF else softplus
        nan = zi != zi
        proba_out[i] = float_of(_NAN_BITS) if nan else proba
        softplus_out[i] = float_of(_NAN_BITS) if nan else softplus
