"""The platform-independent elementary functions (:mod:`pipeline.elementary`,
:mod:`pipeline.elementary_jit`): accuracy against mpmath, special values, and
the same bits from numpy and numba, with numpy's SIMD dispatch turned off and
with numba compiling for a generic x86-64.

Errors are in ulps of the exact value ``v`` (``ulp(v) = 2**(e-52)`` for
``2**e <= v < 2**(e+1)``, ``2**-1074`` below ``2**-1022``): ``exact`` is
``|ours - v| / ulp(v)``, ``rounded`` is ``|ours - round(v)| / ulp(v)`` (0:
correctly rounded).  Run with ``-s`` to see the maxima.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import mpmath
import numpy as np
import pytest
from job_support import numpy_dispatch_off
from mpmath.libmp import fone, from_float, mpf_add, mpf_div, mpf_exp, round_nearest

from pipeline import elementary as E
from pipeline import elementary_jit as J

ROOT = Path(__file__).resolve().parent.parent
_PREC = 128  # bits of the mpmath reference values
LN2 = math.log(2.0)
TINY = 5e-324
DBL_MIN = 2.2250738585072014e-308
DBL_MAX = 1.7976931348623157e308
NAN_BITS = 0x7FF8000000000000
#: About how many inputs per function the tests draw (a one-off survey ran millions).
N_EXP, N_LOG1P, N_Z = 300_000, 200_000, 120_000


# --------------------------------------------------------------------------- inputs


def _bits(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).view(np.int64)


def _floats(b: np.ndarray) -> np.ndarray:
    return np.asarray(b, dtype=np.int64).view(np.float64)


def _high_word(word: int) -> float:
    """The float64 whose top 32 bits are ``word`` (low word 0)."""
    return float(_floats(np.array([word << 32]))[0])


def _near(centers, rng: np.random.Generator, n: int, ulps: int) -> np.ndarray:
    """``n`` floats within ``ulps`` units of the last place of the ``centers``."""
    centers = np.asarray(centers, dtype=np.float64)
    picked = centers[rng.integers(0, centers.size, n)]
    return _floats(_bits(picked) + rng.integers(-ulps, ulps + 1, n))


def _log_uniform(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """``2**U(lo, hi)``; exponents below -1022 give subnormals (exactly, by bits)."""
    e = rng.uniform(lo, hi, n)
    out = np.exp2(np.maximum(e, -1022.0))
    sub = e < -1022.0
    # a subnormal: a random number of units 2**-1074
    out[sub] = _floats(np.floor(np.exp2(e[sub] + 1074.0)).astype(np.int64).clip(1))
    return out


def exp_inputs(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mostly ``x <= 0`` (the kernels' domain), some ``x > 0``."""
    m = max(n // 16, 1)
    half_odd = -(np.arange(0, 1076) + 0.5) * LN2  # the reduction's boundaries (k changes)
    branch = [
        -(2.0**-28),
        -_high_word(0x3FD62E42),
        -_high_word(0x3FD62E43),  # ~ ln2/2
        -_high_word(0x3FF0A2B2),  # ~ 1.5 ln2
        -1021.5 * LN2,  # k = -1021 / -1022: subnormal scaling starts
        -708.3964185322641,  # log(DBL_MIN)
        -744.4400719213812,  # log(2**-1074)
        -745.1332191019411,  # log(2**-1075): the underflow threshold
        -709.782712893384,
    ]
    parts = [
        rng.uniform(-LN2 / 2, 0.0, m),
        rng.uniform(-1.5 * LN2, 0.0, m),
        rng.uniform(-10.0, 0.0, m),
        rng.uniform(-100.0, 0.0, m),
        rng.uniform(-745.2, 0.0, 2 * m),
        -_log_uniform(rng, 2 * m, -1074.0, 9.55),
        rng.uniform(-745.2, -708.0, 2 * m),
        _near(half_odd, rng, 2 * m, 1 << 20),
        _near(half_odd, rng, m, 4),
        _near(branch, rng, m, 1 << 12),
        -np.arange(0.0, 746.0),
        # the positive side (accurate too, not used by the kernels)
        rng.uniform(0.0, 709.78, m),
        _log_uniform(rng, m, -1074.0, 9.47),
        _near([7.09782712893383973096e02, 2.0**-28, LN2 / 2, 1023.5 * LN2], rng, m // 4, 1 << 10),
    ]
    return np.minimum(np.concatenate(parts), E.O_THRESHOLD)  # finite results only


def log1p_inputs(rng: np.random.Generator, n: int) -> np.ndarray:
    """``t >= 0``: ``[0, 1]`` (``log1p(exp(-|z|))``) and up to ``2**20`` (log-sum-exp), and beyond."""
    m = max(n // 16, 1)
    j = np.arange(0, 64.0)
    branch = [2.0**-54, 2.0**-29, _high_word(0x3FDA827A), math.sqrt(2.0) - 1.0, 2.0**52, 2.0**53, 1.0]
    parts = [
        rng.uniform(0.0, 0.41422, m),
        rng.uniform(0.41422, 1.0, m),
        rng.uniform(0.0, 1.0, m),
        rng.uniform(1.0, 10.0, m),
        rng.uniform(0.0, 2.0**20, m),
        _log_uniform(rng, 2 * m, -1074.0, 21.0),
        _log_uniform(rng, m, -60.0, 1.0),
        _log_uniform(rng, m // 2, 21.0, 1023.99),
        E.exp_nonpositive(-rng.exponential(5.0, m)),  # e = exp(-|z|), as the kernels feed it
        _near(branch, rng, m, 1 << 12),
        # 1 + t just above sqrt(2) 2**j (u's normalisation switches to u/2)
        _near(math.sqrt(2.0) * 2.0**j - 1.0, rng, m, 1 << 16),
        # 1 + t near 2**j: fdlibm's short series (|f| < 2**-20)
        (2.0 ** j[rng.integers(1, 64, 2 * m)] - 1.0) * (1.0 + rng.uniform(-(2.0**-19), 2.0**-19, 2 * m)),
        _near(2.0 ** j[1:] - 1.0, rng, m, 64),
        rng.integers(0, 2**20, m).astype(np.float64),
    ]
    return np.concatenate(parts)


def z_inputs(rng: np.random.Generator, n: int) -> np.ndarray:
    """Margins, any sign."""
    m = max(n // 12, 1)
    sign = rng.choice([-1.0, 1.0], 2 * m)
    parts = [
        rng.uniform(-1.0, 1.0, m),
        rng.uniform(-5.0, 5.0, m),
        rng.uniform(-40.0, 40.0, m),
        rng.uniform(-750.0, 750.0, m),
        rng.normal(0.0, 3.0, m),
        sign * _log_uniform(rng, 2 * m, -1074.0, 10.0),
        rng.choice([-1.0, 1.0], m) * _log_uniform(rng, m, 10.0, 1023.99),
        rng.choice([-1.0, 1.0], m) * _near((np.arange(0, 1076) + 0.5) * LN2, rng, m, 1 << 16),
        np.arange(-750.0, 751.0),
        _near([LN2, 1.0, 36.0, 37.0, 709.782712893384, 745.1332191019411], rng, m, 1 << 12)
        * rng.choice([-1.0, 1.0], m),
    ]
    return np.concatenate(parts)


# --------------------------------------------------------------------------- mpmath references


def true_exp(x: float):
    return mpf_exp(from_float(x), _PREC, round_nearest)


def true_log1p(t: float):
    with mpmath.workprec(_PREC):
        return mpmath.log1p(mpmath.mpf(t))._mpf_


def true_sigmoid(z: float):
    e = mpf_exp(from_float(-z), _PREC + 20, round_nearest)
    return mpf_div(fone, mpf_add(fone, e, _PREC + 20, round_nearest), _PREC, round_nearest)


def true_softplus(z: float):
    with mpmath.workprec(_PREC + 20):
        v = mpmath.log1p(mpmath.exp(-abs(mpmath.mpf(z)))) + max(z, 0.0)
    return v._mpf_


def ulp_errors(ours: np.ndarray, inputs: np.ndarray, true: Callable) -> tuple[np.ndarray, np.ndarray]:
    """``(exact, rounded)`` errors in ulps of the exact values (module docstring)."""
    exact = np.empty(inputs.size)
    rounded = np.empty(inputs.size)
    for i, (o, x) in enumerate(zip(ours.tolist(), inputs.tolist())):
        sign, man, exp, bc = true(x)
        assert not sign
        if not man:  # an exact zero
            exact[i] = rounded[i] = 0.0 if o == 0.0 else math.inf
            continue
        if not math.isfinite(o):
            exact[i] = rounded[i] = math.inf
            continue
        ue = max(exp + bc - 1 - 52, -1074)  # ulp(v) = 2**ue
        shift = ue - exp
        if shift <= 0:
            floor, frac = man << -shift, 0.0
        elif exp + bc < -1100:  # v < 2**-1100: rounds to 0, and is 0 within 2**-26 ulp
            floor, frac = 0, 0.0
        else:
            floor = man >> shift
            frac = (man - (floor << shift)) / (1 << shift)
        scaled = math.ldexp(o, -ue)  # exact
        exact[i] = abs((scaled - floor) - frac)
        nearest = floor + (frac > 0.5 or (frac == 0.5 and floor & 1))
        rounded[i] = abs(scaled - nearest)
    return exact, rounded


def _report(name: str, inputs: np.ndarray, exact: np.ndarray, rounded: np.ndarray) -> None:
    worst = int(np.argmax(exact))
    print(
        f"\n{name}: {inputs.size} inputs, max error {exact.max():.4f} ulp at {inputs[worst]!r}; "
        f"max distance from the correctly rounded value {rounded.max():.0f} ulp "
        f"({np.mean(rounded > 0):.3%} not correctly rounded)"
    )


# --------------------------------------------------------------------------- accuracy


def test_fdlibm_constants() -> None:
    """The decimal constants are fdlibm's bits (its hex comments)."""
    expected = {
        E.O_THRESHOLD: 0x40862E42FEFA39EF,
        E.U_THRESHOLD: 0xC0874910D52D3051,
        E.LN2_HI: 0x3FE62E42FEE00000,
        E.LN2_LO: 0x3DEA39EF35793C76,
        E.INVLN2: 0x3FF71547652B82FE,
        E.P1: 0x3FC555555555553E,
        E.P2: 0xBF66C16C16BEBD93,
        E.P3: 0x3F11566AAF25DE2C,
        E.P4: 0xBEBBBD41C5D26BF1,
        E.P5: 0x3E66376972BEA4D0,
        E.TWOM1000: 0x0170000000000000,
        E.LP1: 0x3FE5555555555593,
        E.LP2: 0x3FD999999997FA04,
        E.LP3: 0x3FD2492494229359,
        E.LP4: 0x3FCC71C51D8E78AF,
        E.LP5: 0x3FC7466496CB03DE,
        E.LP6: 0x3FC39A09D078C69F,
        E.LP7: 0x3FC2F112DF3E5244,
        E.TWO_THIRDS: 0x3FE5555555555555,
    }
    for value, bits in expected.items():
        assert int(np.array(value).view(np.uint64)) == bits, hex(bits)
    assert E.TWOM1000 == 2.0**-1000 and E.LN2_HI + E.LN2_LO == LN2
    assert int(np.array(E.NAN).view(np.int64)) == NAN_BITS


@pytest.mark.slow
def test_exp_accuracy() -> None:
    x = exp_inputs(np.random.default_rng(1), N_EXP)
    exact, rounded = ulp_errors(E.exp_nonpositive(x), x, true_exp)
    _report("exp_nonpositive", x, exact, rounded)
    assert exact.max() < 1.0 and rounded.max() <= 1.0


@pytest.mark.slow
def test_log1p_accuracy() -> None:
    t = log1p_inputs(np.random.default_rng(2), N_LOG1P)
    exact, rounded = ulp_errors(E.log1p_nonnegative(t), t, true_log1p)
    _report("log1p_nonnegative", t, exact, rounded)
    assert exact.max() < 1.0 and rounded.max() <= 1.0


@pytest.mark.slow
def test_sigmoid_softplus_accuracy() -> None:
    z = z_inputs(np.random.default_rng(3), N_Z)
    proba, softplus = E.sigmoid_softplus(z)
    exact, rounded = ulp_errors(proba, z, true_sigmoid)
    _report("sigmoid_softplus: proba", z, exact, rounded)
    assert exact.max() < 1.0 and rounded.max() <= 1.0
    exact, rounded = ulp_errors(softplus, z, true_softplus)
    _report("sigmoid_softplus: softplus", z, exact, rounded)
    assert exact.max() < 1.0 and rounded.max() <= 1.0


# --------------------------------------------------------------------------- special values


def _nan_with_payload() -> list[float]:
    """Quiet NaNs with a payload and with the sign bit set."""
    return _floats(np.array([0x7FF8000000000001, -0x0008000000000000, -0x0007FFFFFFFFFFFF])).tolist()


def _same(got, want) -> bool:
    return np.array_equal(_bits(np.asarray(got, dtype=np.float64)), _bits(np.asarray(want, dtype=np.float64)))


EXP_SPECIAL = [
    (0.0, 1.0),
    (-0.0, 1.0),
    (-TINY, 1.0),
    (-DBL_MIN, 1.0),
    (-(2.0**-29), 1.0 - 2.0**-29),
    (-(2.0**-54), 1.0),
    (-math.inf, 0.0),
    (-DBL_MAX, 0.0),
    (-746.0, 0.0),
    (-745.1332191019412, 0.0),  # just below the underflow threshold
    (-745.1332191019411, TINY),  # just above: 2**-1074
    (-744.4400719213812, TINY),
    (math.inf, math.inf),
    (710.0, math.inf),
    (DBL_MAX, math.inf),
    (math.nan, E.NAN),
    *[(nan, E.NAN) for nan in _nan_with_payload()],
]
LOG1P_SPECIAL = [
    (0.0, 0.0),
    (-0.0, -0.0),
    (TINY, TINY),
    (DBL_MIN, DBL_MIN),
    (2.0**-55, 2.0**-55),
    (math.inf, math.inf),
    (math.nan, E.NAN),
    *[(nan, E.NAN) for nan in _nan_with_payload()],
    (-TINY, E.NAN),  # t < 0: refused
    (-0.5, E.NAN),
    (-1.0, E.NAN),
    (-math.inf, E.NAN),
]
SIGMOID_SPECIAL = [
    (0.0, (0.5, LN2)),
    (-0.0, (0.5, LN2)),
    (TINY, (0.5, LN2)),
    (-TINY, (0.5, LN2)),
    (math.inf, (1.0, math.inf)),
    (-math.inf, (0.0, 0.0)),
    (DBL_MAX, (1.0, DBL_MAX)),
    (-DBL_MAX, (0.0, 0.0)),
    (800.0, (1.0, 800.0)),
    (-800.0, (0.0, 0.0)),
    (math.nan, (E.NAN, E.NAN)),
    *[(nan, (E.NAN, E.NAN)) for nan in _nan_with_payload()],
]


@pytest.mark.parametrize("x, want", EXP_SPECIAL)
def test_exp_special(x: float, want: float) -> None:
    assert _same(E.exp_nonpositive(x), want) and _same(J.exp_nonpositive(x), want)


@pytest.mark.parametrize("t, want", LOG1P_SPECIAL)
def test_log1p_special(t: float, want: float) -> None:
    assert _same(E.log1p_nonnegative(t), want) and _same(J.log1p_nonnegative(t), want)


@pytest.mark.parametrize("z, want", SIGMOID_SPECIAL)
def test_sigmoid_softplus_special(z: float, want: tuple[float, float]) -> None:
    assert _same(E.sigmoid_softplus(z), want) and _same(J.sigmoid_softplus(z), want)


def test_shapes_and_no_floating_point_warnings() -> None:
    """Any shape in, the same shape out; no overflow/invalid/divide flags raised
    (numpy's default ignores underflow, which subnormal results do raise)."""
    x = np.array([[-1.0, 0.0, math.nan], [-math.inf, math.inf, -800.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        assert E.exp_nonpositive(x).shape == x.shape
        assert E.log1p_nonnegative(-x).shape == x.shape
        assert all(out.shape == x.shape for out in E.sigmoid_softplus(x))
        assert E.exp_nonpositive(-1.0).shape == ()
        assert E.exp_nonpositive(np.empty(0)).shape == (0,)
        rng = np.random.default_rng(4)
        E.exp_nonpositive(exp_inputs(rng, 2000))
        E.log1p_nonnegative(log1p_inputs(rng, 2000))
        E.sigmoid_softplus(z_inputs(rng, 2000))


# --------------------------------------------------------------------------- same bits everywhere


def all_inputs() -> dict[str, np.ndarray]:
    """The accuracy tests' inputs and the special values, per function."""
    return {
        "exp": np.concatenate([exp_inputs(np.random.default_rng(1), N_EXP), [x for x, _ in EXP_SPECIAL]]),
        "log1p": np.concatenate([log1p_inputs(np.random.default_rng(2), N_LOG1P), [t for t, _ in LOG1P_SPECIAL]]),
        "z": np.concatenate([z_inputs(np.random.default_rng(3), N_Z), [z for z, _ in SIGMOID_SPECIAL]]),
    }


def _numpy_outputs(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [E.exp_nonpositive(inputs["exp"]), E.log1p_nonnegative(inputs["log1p"]), *E.sigmoid_softplus(inputs["z"])]


def _numba_outputs(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [
        J.exp_nonpositive_array(inputs["exp"]),
        J.log1p_nonnegative_array(inputs["log1p"]),
        *J.sigmoid_softplus_array(inputs["z"]),
    ]


def _digest(outputs: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for out in outputs:
        h.update(np.ascontiguousarray(out, dtype=np.float64).tobytes())
    return h.hexdigest()


NAMES = ["exp_nonpositive", "log1p_nonnegative", "sigmoid_softplus: proba", "sigmoid_softplus: softplus"]


def test_numpy_and_numba_agree_bit_for_bit() -> None:
    inputs = all_inputs()
    for name, a, b in zip(NAMES, _numpy_outputs(inputs), _numba_outputs(inputs)):
        differ = np.flatnonzero(_bits(a) != _bits(b))
        assert differ.size == 0, f"{name}: {differ.size} differ, first at index {differ[:5]}"
    # the scalars themselves (not only inlined into the array loops)
    z = inputs["z"][::997]
    for zi, p, s in zip(z.tolist(), *E.sigmoid_softplus(z)):
        assert _same(J.sigmoid_softplus(zi), (p, s))
        assert _same(J.exp_nonpositive(-abs(zi)), E.exp_nonpositive(-abs(zi)))
        assert _same(J.log1p_nonnegative(abs(zi)), E.log1p_nonnegative(abs(zi)))


CHILD = textwrap.dedent(
    r"""
    import hashlib, json, sys
    import numpy as np
    from pipeline.kernel import numpy_cpu_dispatch
    data = np.load(sys.argv[1])
    inputs = {name: data[name] for name in data.files}
    if sys.argv[2] == "numpy":
        from pipeline import elementary as E
        outputs = [E.exp_nonpositive(inputs["exp"]), E.log1p_nonnegative(inputs["log1p"]),
                   *E.sigmoid_softplus(inputs["z"])]
        info = {"dispatch": numpy_cpu_dispatch()}
    else:
        import re
        from numba.core import config
        from pipeline import elementary_jit as J
        outputs = [J.exp_nonpositive_array(inputs["exp"]), J.log1p_nonnegative_array(inputs["log1p"]),
                   *J.sigmoid_softplus_array(inputs["z"])]
        FLAGS = "fast|contract|reassoc|arcp|afn|nnan|ninf|nsz"  # LLVM's fast-math flags
        fns = [J.exp_nonpositive_array, J.log1p_nonnegative_array, J.sigmoid_softplus_array]
        ir = "".join(f.inspect_llvm(f.signatures[0]) for f in fns)
        asm = "".join(f.inspect_asm(f.signatures[0]) for f in fns)
        info = {
            "cpu": [config.CPU_NAME, config.CPU_FEATURES],
            "fma_calls": len(re.findall(r"llvm[.](fma|fmuladd)[.]", ir)),
            "fast_flags": len(re.findall(r"= f(add|sub|mul|div|neg|cmp) (" + FLAGS + ")", ir)),
            "fma_instructions": len(re.findall(r"[ \t]v?fn?m(add|sub)\w*", asm)),
            "avx_instructions": len(re.findall(r"[ \t]v(add|sub|mul|div)[sp]d", asm)),
        }
    h = hashlib.sha256()
    for out in outputs:
        h.update(np.ascontiguousarray(out, dtype=np.float64).tobytes())
    info["digest"] = h.hexdigest()
    print(json.dumps(info))
    """
)


def _child(tmp_path: Path, which: str, env: dict[str, str]) -> dict:
    import json

    data = tmp_path / "inputs.npz"
    if not data.exists():
        np.savez(data, **all_inputs())
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(data), which],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_numpy_without_simd_dispatch_gives_the_same_bits(tmp_path: Path) -> None:
    """numpy with its AVX2/AVX-512 code paths turned off: the same digest."""
    disabled = numpy_dispatch_off()
    if disabled is None:
        pytest.skip("numpy dispatches no SIMD targets on this CPU")
    child = _child(tmp_path, "numpy", {"NPY_DISABLE_CPU_FEATURES": disabled})
    assert child["dispatch"] == [], child  # really turned off
    assert child["digest"] == _digest(_numpy_outputs(all_inputs()))


@pytest.mark.slow
def test_numba_for_a_generic_cpu_gives_the_same_bits(tmp_path: Path) -> None:
    """numba compiling for a generic x86-64 (SSE2, no FMA; a fresh cache
    directory, so nothing compiled for this CPU is reused): the same digest
    as here, and as numpy."""
    generic = _child(tmp_path, "numba", {"NUMBA_CPU_NAME": "generic", "NUMBA_CACHE_DIR": str(tmp_path / "generic")})
    assert generic["cpu"] == ["generic", ""]
    digest = _digest(_numba_outputs(all_inputs()))
    assert generic["digest"] == digest == _digest(_numpy_outputs(all_inputs()))
    if platform.machine() in ("x86_64", "AMD64"):
        assert generic["avx_instructions"] == 0  # really compiled for the baseline CPU


@pytest.mark.slow
def test_numba_generates_no_fma(tmp_path: Path) -> None:
    """Compiled for this CPU (fresh cache, so the IR can be inspected): no FMA
    intrinsic, no fast-math flag in the LLVM IR, no FMA instruction in the
    machine code -- even where the CPU has FMA."""
    host = _child(tmp_path, "numba", {"NUMBA_CACHE_DIR": str(tmp_path / "host")})
    assert host["fma_calls"] == host["fast_flags"] == host["fma_instructions"] == 0, host
    assert host["digest"] == _digest(_numpy_outputs(all_inputs()))
    print(f"\nnumba on this CPU: {host}")


# --------------------------------------------------------------------------- the branch-free block


def block_inputs() -> np.ndarray:
    """Margins for :func:`J.sigmoid_softplus_block`: the special values, the
    branch points of exp and of log1p (``exp(-|z|)`` near ``2**-29``,
    ``sqrt(2) - 1``, ``2**-20`` above a power of two), the thresholds,
    subnormals and NaNs with payloads, in a shuffled order so every vector
    lane sees every kind."""
    rng = np.random.default_rng(5)
    specials = [z for z, _ in SIGMOID_SPECIAL] + [
        DBL_MIN,
        -DBL_MIN,
        2.0**-28,
        -(2.0**-28),
        *_floats(np.array([1, -(2**63) + 1, 0x000FFFFFFFFFFFFF, -(2**63) + 0x000FFFFFFFFFFFFF])).tolist(),
        *_nan_with_payload(),
        -math.nan,
    ]
    log1p_points = -np.log(
        np.array([2.0**-29, 2.0**-54, math.sqrt(2.0) - 1.0, _high_word(0x3FDA827A), 0.5, 1.0 - 2.0**-20])
    )
    exp_points = [
        2.0**-28,
        _high_word(0x3FD62E42),
        _high_word(0x3FD62E43),
        _high_word(0x3FF0A2B2),
        1021.5 * LN2,
        708.3964185322641,
        744.4400719213812,
        745.1332191019411,
        709.782712893384,
        36.0,
        37.0,
    ]
    sign = rng.choice([-1.0, 1.0], 3000)
    parts = [
        np.array(specials),
        sign[:2000] * _near(np.concatenate([log1p_points, exp_points]), rng, 2000, 1 << 8),
        sign[2000:] * _log_uniform(rng, 1000, -1074.0, 10.0),
        rng.choice([-1.0, 1.0], 500) * _near((np.arange(0, 1076) + 0.5) * LN2, rng, 500, 4),
        rng.normal(0.0, 5.0, 500),
    ]
    z = np.concatenate(parts)
    return z[rng.permutation(z.size)]


def _block_outputs(z: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`J.sigmoid_softplus_block` of ``z[:n]``, into arrays longer than
    ``n`` whose extra elements must stay untouched."""
    sentinel = _floats(np.array([0x7FF4DEADBEEF0000]))[0]  # a signalling NaN nothing computes
    proba = np.full(n + 3, sentinel)
    softplus = np.full(n + 3, sentinel)
    J.sigmoid_softplus_block(z, n, proba, softplus)
    assert _same(proba[n:], [sentinel] * 3) and _same(softplus[n:], [sentinel] * 3)
    return proba[:n], softplus[:n]


def test_sigmoid_softplus_block_gives_the_same_bits() -> None:
    """The vectorised block function: the bits of the numba scalar and of
    numpy on every input, for every length 0..40 (vector remainders: every
    lane count) at several offsets, and for long arrays."""
    z = block_inputs()
    want_p, want_s = E.sigmoid_softplus(z)
    scalar_p, scalar_s = J.sigmoid_softplus_array(z)
    assert _same(scalar_p, want_p) and _same(scalar_s, want_s)
    for length in range(41):
        for offset in range(0, z.size - length, 97 + length):
            got_p, got_s = _block_outputs(z[offset : offset + length], length)
            assert _same(got_p, want_p[offset : offset + length]), (length, offset)
            assert _same(got_s, want_s[offset : offset + length]), (length, offset)
    got_p, got_s = _block_outputs(z, z.size)
    assert _same(got_p, want_p) and _same(got_s, want_s)
    # the accuracy tests' margins (and their special values), all at once
    z = all_inputs()["z"]
    got_p, got_s = _block_outputs(z, z.size)
    want_p, want_s = E.sigmoid_softplus(z)
    assert _same(got_p, want_p) and _same(got_s, want_s)
    # n below the arrays' length: only z[:n] is read and only [:n] written
    got_p, got_s = _block_outputs(z, 33)
    assert _same(got_p, want_p[:33]) and _same(got_s, want_s[:33])
    for zi, p, s in zip(z[:2000].tolist(), *_block_outputs(z, 2000)):
        assert _same(J.sigmoid_softplus(zi), (p, s))


BLOCK_CHILD = textwrap.dedent(
    r"""
    import hashlib, json, re, sys
    import numpy as np
    from numba.core import config
    from pipeline import elementary_jit as J
    z = np.load(sys.argv[1])
    proba = np.empty_like(z)
    softplus = np.empty_like(z)
    fn = J.sigmoid_softplus_block
    fn(z, z.size, proba, softplus)
    ir = fn.inspect_llvm(fn.signatures[0])
    asm = fn.inspect_asm(fn.signatures[0])
    FLAGS = "fast|contract|reassoc|arcp|afn|nnan|ninf|nsz"  # LLVM's fast-math flags
    NAME = r"[^\n]*@_ZN8pipeline14elementary_jit22sigmoid_softplus_block"  # not its Python wrapper
    (body,) = [f for f in ir.split("\ndefine ") if re.match(NAME, f)]
    info = {
        "cpu": [config.CPU_NAME, config.CPU_FEATURES],
        "fma_calls": len(re.findall(r"llvm[.](fma|fmuladd)[.]", ir)),
        "fast_flags": len(re.findall(r"= f(add|sub|mul|div|neg|cmp) (" + FLAGS + ")", ir)),
        "fma_instructions": len(re.findall(r"[ \t]v?fn?m(add|sub)\w*", asm)),
        # numba functions the compiled function itself (not its Python wrapper) calls
        "calls": sorted(set(re.findall(r"call \S+ @(_ZN\w+)", body))),
        "vector_ir": {w: len(re.findall(r"<" + w + r" x double>", ir)) for w in ("2", "4", "8")},
        "packed_zmm": len(re.findall(r"[ \t]v(add|sub|mul|div)pd[ \t]+[^\n]*zmm", asm)),
        "packed_ymm": len(re.findall(r"[ \t]v(add|sub|mul|div)pd[ \t]+[^\n]*ymm", asm)),
        "packed_xmm": len(re.findall(r"[ \t]v?(add|sub|mul|div)pd[ \t]+[^\n]*xmm", asm)),
        "divpd": len(re.findall(r"[ \t]v?divpd", asm)),
    }
    h = hashlib.sha256()
    for out in (proba, softplus):
        h.update(np.ascontiguousarray(out).tobytes())
    info["digest"] = h.hexdigest()
    print(json.dumps(info))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("cpu", ["host", "generic"])
def test_sigmoid_softplus_block_compiles_without_fma(tmp_path: Path, cpu: str) -> None:
    """The block function compiled in a fresh cache (so its IR and machine code
    can be inspected), for this CPU and for a generic x86-64: no FMA intrinsic,
    no fast-math flag, no FMA instruction, no call left in the loop (the
    helpers are inlined), and the numpy digest.  Whether the loop was
    vectorised (packed operations) is reported (``-s``), not asserted."""
    import json

    z = np.concatenate([block_inputs(), all_inputs()["z"]])
    data = tmp_path / "z.npy"
    np.save(data, z)
    env = {"NUMBA_CACHE_DIR": str(tmp_path / cpu)}
    if cpu == "generic":
        env["NUMBA_CPU_NAME"] = "generic"
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_CHILD, str(data)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["fma_calls"] == info["fast_flags"] == info["fma_instructions"] == 0, info
    assert info["calls"] == [], info
    assert info["digest"] == _digest(list(E.sigmoid_softplus(z)))
    print(f"\nsigmoid_softplus_block, {cpu}: {info}")


def test_sigmoid_alone_is_the_proba_of_sigmoid_softplus() -> None:
    """``elementary.sigmoid`` (predictions) skips the softplus, not a bit of the proba."""
    z = all_inputs()["z"]
    want = E.sigmoid_softplus(z)[0]
    assert np.array_equal(E.sigmoid(z).view(np.int64), want.view(np.int64))


def test_log_positive_is_the_logarithm_and_refuses_what_it_cannot_take() -> None:
    """The path's starting intercepts' logarithm (the same bits on every CPU):
    within an ulp or two of mpmath's, and a ValueError outside its domain (it
    returned NaN for 0, which became a "largest strength 0" error later)."""
    from pipeline.elementary import log_positive

    for x in [1e-300, 5e-324, 0.1, 0.5, 1.0 - 2**-40, 1.0, 1.5, 2.0, 3.0, 1e10, 1.7e308]:
        exact = float(mpmath.log(mpmath.mpf(x)))
        assert abs(log_positive(x) - exact) <= 2 * math.ulp(exact) + 1e-300, x
    assert log_positive(1.0) == 0.0
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="finite number > 0"):
            log_positive(bad)
