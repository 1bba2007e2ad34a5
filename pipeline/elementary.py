"""Elementary functions defined by this code, not by the platform.

numpy's ``exp``/``log1p`` and libm's ``exp``/``log1p`` differ from CPU to CPU
(numpy dispatches its own AVX-512 kernels, libm versions differ), so the bits
of the loss and the probabilities would depend on the machine.  The functions
here use only IEEE-754 basic operations -- ``+``, ``-``, ``*``, ``/`` (each
correctly rounded, the same on every conforming CPU, scalar or SIMD),
comparisons, exact int <-> float conversions of small integers and exact bit
manipulation -- written once, in a fixed order, with no fused multiply-add
and no library call.  The same inputs therefore give the same bits on every
CPU, whatever numpy's SIMD dispatch, and in the compiled kernels:
:mod:`pipeline.elementary_jit` has the same functions as numba scalars, with
the same operations in the same order (the vectorised code here computes
every branch's expression elementwise and selects with ``np.where``; the
selected value is the scalar path's value bit for bit).  Subnormals are
computed as IEEE says (no flush-to-zero: neither numpy nor numba sets it).

**exp_nonpositive(x)** -- fdlibm 5.3's ``e_exp.c`` (Sun, 1993), bit for bit:
reduce ``x = k ln2 + r`` with ``k = (int)(x * (1/ln2) +- 1/2)`` (truncated:
round to nearest) and ``r = (x - k*ln2_hi) - k*ln2_lo`` (Cody-Waite:
``ln2_hi`` has 32 significant bits, so ``k*ln2_hi`` and the first
subtraction are exact), approximate on ``|r| <= ln2/2`` with the degree-5
Remez polynomial ``c(r) = r - r^2 (P1 + r^2 (P2 + ... + r^2 P5))`` and
``exp(r) = 1 - ((lo - r c / (2 - c)) - hi)``, then scale by ``2**k`` by adding
``k`` to the exponent bits (``k < -1021``: ``k + 1000``, then one
multiplication by ``2**-1000``, the only rounding of a subnormal result).
Two of fdlibm's branches are folded into the general one because they give
the same bits: ``|x| <= ln2/2`` (``k = 0``: ``hi = x``, ``lo = 0``, and
``(r c)/(c - 2) = -((r c)/(2 - c))`` exactly) and ``ln2/2 < |x| < 1.5 ln2``
(fdlibm's shortcut ``k = +-1``, which the general reduction also finds, with
the same ``hi`` and ``lo``).  Defined on the whole line (the kernels use
``x <= 0``): ``x > 709.78...`` and ``+inf`` give ``+inf``, ``x < -745.13...``
and ``-inf`` give ``+0``, ``|x| < 2**-28`` gives ``1 + x``, NaN gives
:data:`NAN`.

**log1p_nonnegative(t)** -- fdlibm 5.3's ``s_log1p.c``, bit for bit:
``1 + t = 2**k (1 + f)`` with ``sqrt(2)/2 <= 1 + f < sqrt(2)`` (the exponent
and the mantissa's high bits read from the high word of ``u = fl(1 + t)``,
``u`` rebuilt by bits), a correction ``c`` for the rounding of ``u`` (``c = 0``
once ``t >= 2**53``, where ``u = t``), ``s = f / (2 + f)`` and the degree-7
Remez polynomial ``R(s^2)`` of ``log((1+s)/(1-s)) = 2s + s R``; then
``k*ln2_hi - ((f^2/2 - (s (f^2/2 + R) + (c + k*ln2_lo))) - f)``.  Branches:
``t < 0.41422`` (``~ sqrt(2) - 1``) keeps ``k = 0, f = t, c = 0``, which is
fdlibm's ``f - (f^2/2 - s (f^2/2 + R))`` bit for bit; ``|f| < 2**-20``
(``u`` just above a power of two) replaces the polynomial by the short series
``f^2/2 (1 - 2f/3)`` (fdlibm's ``f == 0`` case included: the same bits);
``t < 2**-29``: ``t - t*t/2`` (``= t`` below ``2**-54``, fdlibm's separate
case).  Domain ``t >= 0``: ``+-0`` gives ``+-0``, ``+inf`` gives ``+inf``;
``t < 0`` is refused -- it gives :data:`NAN`, as NaN does.

**sigmoid_softplus(z)**, any ``z``: ``e = exp(-|z|)`` (``-|z|`` by setting the
sign bit) as ``eh + el``: fdlibm's result and the exact rounding errors of
its last two additions (TwoSum, Fast2Sum).  ``1 + e = d + dl`` (Fast2Sum).
``proba = n / (1 + e)`` with ``n = e`` for ``z < 0``, else 1: the quotient
``p0 = n / d`` corrected once, ``p0 + ((n - p0 d) + nl - p0 dl) / d``, with
``n - p0 d`` exact (Dekker's product, Veltkamp's split).  ``softplus =
max(z, 0) + log1p(e)``: fdlibm's log1p of ``eh`` with the exact errors of its
last three additions, plus ``el / d``, added to ``max(z, 0)`` with a TwoSum
and one final rounding.  So both round about once, instead of three or four
times (up to 2.2 ulp for the plain ``e / (1 + e)``).  ``z = +inf``:
``(1, +inf)``; ``z = -inf``: ``(0, 0)``; ``z = +-0``: ``(0.5, log 2)``; NaN:
``(NAN, NAN)``.  Nothing overflows (``e <= 1``) and no floating-point
exception but underflow is raised.

Every NaN result is the quiet NaN :data:`NAN` (bits ``0x7FF8000000000000``),
whatever the input NaN's payload: the hardware's NaN propagation differs
between CPU families, a constant does not.

Accuracy against mpmath (``tests/test_elementary.py``; errors in ulps of the
exact value, the subnormal ulp ``2**-1074`` below ``2**-1022``), the largest
found on millions of random and adversarial inputs: ``exp_nonpositive``
0.91 ulp, ``log1p_nonnegative`` 0.85 ulp (fdlibm's bound: < 1),
``sigmoid_softplus`` 0.77 ulp (proba and softplus alike).
All four are always the correctly rounded value or one of its neighbours.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = [
    "NAN",
    "exp_nonpositive",
    "log1p_nonnegative",
    "log_positive",
    "sigmoid",
    "sigmoid_softplus",
]

#: The one NaN the functions return (positive, quiet, no payload).
NAN = float(np.array(0x7FF8000000000000, dtype=np.int64).view(np.float64))
INF = float("inf")
SIGN = np.int64(-(2**63))  # the sign bit, as int64
LOW_WORD = 0xFFFFFFFF
#: Elements per block: the temporaries of one block stay in the L2 cache.
_BLOCK = 16384

# e_exp.c (hex: the bits fdlibm lists; tests/test_elementary.py checks them)
O_THRESHOLD = 7.09782712893383973096e02  # 40862E42 FEFA39EF
U_THRESHOLD = -7.45133219101941108420e02  # C0874910 D52D3051
LN2_HI = 6.93147180369123816490e-01  # 3FE62E42 FEE00000
LN2_LO = 1.90821492927058770002e-10  # 3DEA39EF 35793C76
INVLN2 = 1.44269504088896338700e00  # 3FF71547 652B82FE
P1 = 1.66666666666666019037e-01  # 3FC55555 5555553E
P2 = -2.77777777770155933842e-03  # BF66C16C 16BEBD93
P3 = 6.61375632143793436117e-05  # 3F11566A AF25DE2C
P4 = -1.65339022054652515390e-06  # BEBBBD41 C5D26BF1
P5 = 4.13813679705723846039e-08  # 3E663769 72BEA4D0
TWOM1000 = 9.33263618503218878990e-302  # 01700000 00000000 = 2**-1000

# s_log1p.c
LP1 = 6.666666666666735130e-01  # 3FE55555 55555593
LP2 = 3.999999999940941908e-01  # 3FD99999 9997FA04
LP3 = 2.857142874366239149e-01  # 3FD24924 94229359
LP4 = 2.222219843214978396e-01  # 3FCC71C5 1D8E78AF
LP5 = 1.818357216161805012e-01  # 3FC74664 96CB03DE
LP6 = 1.531383769920937332e-01  # 3FC39A09 D078C69F
LP7 = 1.479819860511658591e-01  # 3FC2F112 DF3E5244
TWO_THIRDS = 0.66666666666666666  # fdlibm's literal: 3FE55555 55555555
DBL_MAX = 1.7976931348623157e308
SPLIT = 134217729.0  # 2**27 + 1: Veltkamp's split

# High words (the top 32 bits) of the branch points.
HX_HALF_LN2 = 0x3FD62E42  # exp: |x| > this ~ 0.5 ln2: reduce
HX_TINY_EXP = 0x3E300000  # exp: |x| < 2**-28: 1 + x
HX_SQRT2_M1 = 0x3FDA827A  # log1p: t < 0.41422 ~ sqrt(2) - 1: k = 0, f = t
HX_TINY_LOG = 0x3E200000  # log1p: t < 2**-29: t - t*t/2
HX_2P53 = 0x43400000  # log1p: t >= 2**53: u = t, c = 0
HX_INF = 0x7FF00000
HU_SQRT2 = 0x6A09E  # mantissa high bits of sqrt(2)


def _bits(x: np.ndarray) -> np.ndarray:
    return x.view(np.int64)


def _floats(b: np.ndarray) -> np.ndarray:
    return b.view(np.float64)


def _blocked(fn: Callable[[np.ndarray], tuple[np.ndarray, ...]], x: np.ndarray, n_out: int) -> tuple[np.ndarray, ...]:
    """``fn`` applied block by block to the flattened ``x`` (the same bits as
    one call: everything is elementwise), reshaped back."""
    flat = x.reshape(-1)
    outs = tuple(np.empty(flat.shape, dtype=np.float64) for _ in range(n_out))
    for start in range(0, flat.size, _BLOCK):
        stop = min(start + _BLOCK, flat.size)
        results = fn(flat[start:stop])
        for out, result in zip(outs, results):
            out[start:stop] = result
    return tuple(out.reshape(x.shape) for out in outs)


def _as_float64(x: npt.ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _two_product_err(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``a*b - p`` for ``p = fl(a*b)``, exactly (Dekker, with Veltkamp's split)."""
    ca = SPLIT * a
    ah = ca - (ca - a)
    al = a - ah
    cb = SPLIT * b
    bh = cb - (cb - b)
    bl = b - bh
    return (((ah * bh - p) + ah * bl) + al * bh) + al * bl


def _exp_parts(x: np.ndarray, tail: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """fdlibm's ``exp(x)`` and, with ``tail``, the rounding error of its last
    step, ``exp(x) ~ eh + el`` (``el = 0`` for results below ``2**-1021``,
    above ``2**1024`` and for the special values)."""
    hx = (_bits(x) >> 32) & 0x7FFFFFFF
    nan = x != x
    over = x > O_THRESHOLD  # +inf included
    under = x < U_THRESHOLD  # -inf included
    tiny = hx < HX_TINY_EXP
    # the reduction's argument: out-of-range lanes (replaced below) take 0
    xs = np.where((x <= O_THRESHOLD) & (x >= U_THRESHOLD), x, 0.0)
    half = np.where(xs < 0.0, -0.5, 0.5)
    k = np.where(hx > HX_HALF_LN2, (INVLN2 * xs + half).astype(np.int64), 0)
    t = k.astype(np.float64)
    hi = xs - t * LN2_HI
    lo = t * LN2_LO
    r = hi - lo
    rr = r * r
    c = r - rr * (P1 + rr * (P2 + rr * (P3 + rr * (P4 + rr * P5))))
    w1 = lo - (r * c) / (2.0 - c)
    w = w1 - hi
    y = 1.0 - w
    deep = k < -1021  # subnormal range: scale by 2**(k+1000), then by 2**-1000
    scaled = _floats(_bits(y) + (np.where(deep, k + 1000, k) << 52))
    eh = np.where(deep, scaled * TWOM1000, scaled)
    one_plus = 1.0 + xs
    eh = np.where(tiny, one_plus, eh)
    eh = np.where(under, 0.0, eh)
    eh = np.where(over, INF, eh)
    eh = np.where(nan, NAN, eh)
    if not tail:
        return eh, None
    bb = w - w1
    werr = (w1 - (w - bb)) - (hi + bb)  # w1 - hi = w + werr (TwoSum)
    ytail = ((1.0 - y) - w) - werr  # 1 - w = y + ((1 - y) - w) (Fast2Sum)
    scale = (k >= -1021) & (k <= 1023)
    el = np.where(scale, ytail * _floats((np.where(scale, k, 0) + 1023) << 52), 0.0)
    el = np.where(tiny, (1.0 - one_plus) + xs, el)
    el = np.where(nan | over | under, 0.0, el)
    return eh, el


def _log1p_parts(t: np.ndarray, tail: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """fdlibm's ``log1p(t)``, ``t >= 0``, and, with ``tail``, the rounding
    errors of its last three operations, ``log1p(t) ~ lh + ll``."""
    hx = _bits(t) >> 32  # signed: negative for t < 0 (and -0.0)
    ax = hx & 0x7FFFFFFF
    valid = t >= 0.0  # False for NaN and t < 0
    # every lane computes on a finite t >= 0 (inf and refused lanes: 1.0)
    ts = np.where(valid & (t <= DBL_MAX), t, 1.0)
    # t >= 0.41422: 1 + t = 2**k (1 + f), with the correction c for u = fl(1 + t)
    reduce = (hx >= HX_SQRT2_M1) & (hx < HX_INF)
    big = hx >= HX_2P53
    u1 = 1.0 + ts
    u = np.where(big, ts, u1)
    hu = _bits(u) >> 32
    k = (hu >> 20) - 1023
    c = np.where(k > 0, 1.0 - (u1 - ts), ts - (u1 - 1.0)) / u1
    c = np.where(reduce & ~big, c, 0.0)
    hu = hu & 0x000FFFFF
    upper = hu >= HU_SQRT2  # normalize u/2 instead of u
    k = np.where(upper, k + 1, k)
    high = hu | np.where(upper, 0x3FE00000, 0x3FF00000)
    un = _floats((high << 32) | (_bits(u) & LOW_WORD))
    hu = np.where(upper, (0x00100000 - hu) >> 2, hu)
    # t < 0.41422: k = 0, f = t, c = 0
    f = np.where(reduce, un - 1.0, ts)
    kf = np.where(reduce, k, 0).astype(np.float64)
    short = reduce & (hu == 0)  # |f| < 2**-20
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    big_r = z * (LP1 + z * (LP2 + z * (LP3 + z * (LP4 + z * (LP5 + z * (LP6 + z * LP7))))))
    sr = s * (hfsq + big_r)
    clo = c + kf * LN2_LO
    khi = kf * LN2_HI
    p1 = np.where(short, hfsq * (1.0 - TWO_THIRDS * f), hfsq)
    p2 = np.where(short, clo, sr + clo)
    a = p1 - p2
    g = a - f
    lh_main = khi - g
    small = ax < HX_TINY_LOG  # t < 2**-29
    h2 = f * f * 0.5
    lh_small = f - h2
    lh = np.where(small, lh_small, lh_main)
    lh = np.where(t == INF, INF, lh)
    lh = np.where(valid, lh, NAN)
    if not tail:
        return lh, None
    bb = a - p1
    ea = (p1 - (a - bb)) - (p2 + bb)  # p1 - p2 = a + ea (TwoSum)
    bb = g - a
    eg = (a - (g - bb)) - (f + bb)  # a - f = g + eg (TwoSum)
    el = (khi - lh_main) - g  # khi - g = lh + el (Fast2Sum: |khi| >= |g| or khi = 0)
    ll = np.where(small, (f - lh_small) - h2, el - (eg + ea))
    ll = np.where(valid & (t != INF), ll, 0.0)
    return lh, ll


def _exp_block(x: np.ndarray) -> tuple[np.ndarray]:
    return (_exp_parts(x, False)[0],)


def _log1p_block(t: np.ndarray) -> tuple[np.ndarray]:
    return (_log1p_parts(t, False)[0],)


def _proba_parts(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(proba, eh, el, d)``: the sigmoid (NaN lanes not yet replaced), and
    ``exp(-|z|) = eh + el`` and ``1 + eh = d`` for the softplus."""
    eh, el = _exp_parts(_floats(_bits(z) | SIGN), True)  # exp(-|z|) = eh + el
    assert el is not None
    # 1 + e = d + dl
    d = 1.0 + eh
    dl = ((1.0 - d) + eh) + el
    # proba = n / (1 + e), n = e (z < 0) or 1: the quotient p0 and its correction
    neg = z < 0.0
    n = np.where(neg, eh, 1.0)
    nl = np.where(neg, el, 0.0)
    p0 = n / d
    prod = p0 * d
    rem = (n - prod) - _two_product_err(p0, d, prod)  # n - p0 d, exactly
    proba = p0 + ((rem + nl) - p0 * dl) / d
    return proba, eh, el, d


def _sigmoid_block(z: np.ndarray) -> tuple[np.ndarray]:
    proba = _proba_parts(z)[0]
    return (np.where(z != z, NAN, proba),)


def _sigmoid_softplus_block(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    proba, eh, el, d = _proba_parts(z)
    # softplus = max(z, 0) + log1p(eh) + el / (1 + eh), added with one rounding
    lh, ll = _log1p_parts(eh, True)
    assert ll is not None
    ll = ll + el / d
    m = np.where((z > 0.0) & (z != INF), z, 0.0)
    total = m + lh
    bb = total - m
    err = (m - (total - bb)) + (lh - bb)  # m + lh = total + err (TwoSum)
    softplus = total + (err + ll)
    softplus = np.where(z == INF, INF, softplus)
    nan = z != z
    return np.where(nan, NAN, proba), np.where(nan, NAN, softplus)


def exp_nonpositive(x: npt.ArrayLike) -> np.ndarray:
    """``e**x``, elementwise, as float64: fdlibm's exp (module docstring).

    Meant for ``x <= 0`` (the kernels' ``exp(-|z|)``); accurate to < 1 ulp
    on the whole line.  ``-inf`` and ``x < -745.13...`` give 0, ``+-0``
    gives 1, ``x > 709.78...`` and ``+inf`` give ``+inf``, NaN gives :data:`NAN`.
    """
    (result,) = _blocked(_exp_block, _as_float64(x), 1)
    return result


def log1p_nonnegative(t: npt.ArrayLike) -> np.ndarray:
    """``log(1 + t)`` for ``t >= 0``, elementwise, as float64: fdlibm's log1p.

    ``+-0`` gives ``+-0``, ``+inf`` gives ``+inf``; NaN and ``t < 0`` give
    :data:`NAN`.
    """
    (result,) = _blocked(_log1p_block, _as_float64(t), 1)
    return result


#: log(2), rounded to float64
LN2 = 0.6931471805599453


def log_positive(x: float) -> float:
    """``log(x)`` of one finite ``x > 0``, from IEEE basic operations and
    :func:`log1p_nonnegative` only (``x = m * 2**e`` with ``m`` in [1, 2),
    exactly; ``log1p(m - 1) + e * log(2)``, and ``-log1p((1 - x) / x)`` for
    ``x`` in [0.5, 1), which keeps the digits near 1): the same bits on every CPU,
    where ``math.log`` is the platform's (glibc picks an FMA variant by CPU).
    ``ValueError`` otherwise (as ``math.log``: a domain error, not NaN)."""
    if not (x > 0.0 and math.isfinite(x)):
        raise ValueError(f"log_positive takes a finite number > 0; found {x!r}")
    mantissa, exponent = math.frexp(x)  # x = mantissa * 2**exponent, mantissa in [0.5, 1): exact
    if exponent == 0:  # x in [0.5, 1): -log1p((1 - x) / x), 1 - x exact; no cancellation near 1
        return -float(log1p_nonnegative(np.array([(1.0 - x) / x]))[0])
    mantissa, exponent = 2.0 * mantissa, exponent - 1  # [1, 2)
    return float(log1p_nonnegative(np.array([mantissa - 1.0]))[0]) + exponent * LN2


def sigmoid_softplus(z: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(1 / (1 + exp(-z)), log(1 + exp(z)))``, elementwise, for any float64 ``z``.

    ``e = exp(-|z|)``; ``proba = e / (1 + e)`` where ``z < 0``, else
    ``1 / (1 + e)``; ``softplus = max(z, 0) + log1p(e)`` -- each rounded about
    once, from fdlibm's exp and log1p and their rounding errors (module
    docstring): < 1 ulp.  ``+inf``: ``(1, +inf)``; ``-inf``: ``(0, 0)``; NaN:
    ``(NAN, NAN)``.
    """
    proba, softplus = _blocked(_sigmoid_softplus_block, _as_float64(z), 2)
    return proba, softplus


def sigmoid(z: npt.ArrayLike) -> np.ndarray:
    """The ``proba`` of :func:`sigmoid_softplus` (the same bits), without the softplus."""
    (proba,) = _blocked(_sigmoid_block, _as_float64(z), 1)
    return proba
