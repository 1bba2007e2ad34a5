"""The fused compiled kernel (pipeline.fused) against the numpy reference.

``fused_partials`` must return a Partials **equal** to ``chunk_partials``
(same row count, top bins, flags and Python-int bins) for every input.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import fused
from pipeline.exact import BLOCK_ROWS, top_bin
from pipeline.kernel import KernelSpec, Partials, chunk_partials

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference on inf/NaN
requires_fused = pytest.mark.skipif(not fused.AVAILABLE, reason="numba kernel unavailable here")

SPECIALS = np.array([0.0, -0.0, 0.5, -0.5, 1.5, 2.5, 1e-310, -5e-324, 1e-200, 1e200,
                     -1e300, 3.0, 2.0**-40, 2.0**39, 1.0 + 2.0**-52])


def assert_same(X, y, coef, weights=None, spec=KernelSpec()):
    want = chunk_partials(X, y, coef, weights, spec)
    got = fused.fused_partials(X, y, coef, weights, spec)
    assert isinstance(got, Partials) and got.hessian is None
    assert got.n_samples == want.n_samples
    assert got.sums.top.dtype == np.int64 and got.sums.flags.dtype == np.uint8
    assert got.sums.bins.dtype == object
    assert all(type(v) is int for v in got.sums.bins.ravel())
    np.testing.assert_array_equal(got.sums.top, want.sums.top)
    np.testing.assert_array_equal(got.sums.flags, want.sums.flags)
    assert got == want
    a, b = got.sums.finalize(), want.sums.finalize()
    assert a.tobytes() == b.tobytes() or np.array_equal(a, b, equal_nan=True)
    return got


def problem(seed, n, d, *, scale=1.0, coef_scale=0.5, order="C"):
    rng = np.random.default_rng(seed)
    X = np.asarray(rng.standard_normal((n, d)) * scale, order=order)
    y = (rng.random(n) < 0.4).astype(np.float64)
    coef = rng.normal(0, coef_scale, d + 1)
    return X, y, coef


def full_spec(seed, d, class_weight=(0.7, 3.25)):
    rng = np.random.default_rng(seed + 1000)
    return KernelSpec(center=rng.normal(0, 2, d), scale=rng.random(d) * 3 + 0.1,
                      class_weight=class_weight)


@requires_fused
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("n, d", [(0, 3), (0, 0), (1, 1), (1, 7), (2, 1), (5, 0), (257, 6),
                                  (3, 1000), (600, 1000), (1000, 33), (3000, 64),
                                  (16384, 2), (16385, 2), (40_000, 3)])
def test_equal_to_reference_on_shapes(order, n, d):
    X, y, coef = problem(n * 31 + d, n, d, order=order)
    assert_same(X, y, coef)
    weights = np.random.default_rng(n).random(n) * 4
    assert_same(X, y, coef, weights, full_spec(n, d))


@requires_fused
@pytest.mark.parametrize("order", ["C", "F"])
def test_every_width_of_the_pairwise_tree(order):
    # d = 1..70 covers every merge pattern of the margin tree (up to 6 levels).
    for d in range(1, 71):
        X, y, coef = problem(d, 37, d, coef_scale=3.0, order=order)
        assert_same(X, y, coef)


@requires_fused
def test_120k_rows_with_weights_and_standardization():
    X, y, coef = problem(7, 120_000, 5, order="F")
    weights = np.random.default_rng(7).exponential(size=120_000)
    assert_same(X, y, coef)
    assert_same(X, y, coef, weights, full_spec(7, 5, None))
    assert_same(X, y, coef, None, full_spec(8, 5))


@requires_fused
@pytest.mark.parametrize("view", ["rows_step", "cols_step", "reversed", "transposed", "offset",
                                  "f_rows_step"])
def test_non_contiguous_inputs(view):
    X, y, coef = problem(3, 3001, 12)
    if view == "rows_step":
        X, y = X[::3], y[::3]
    elif view == "cols_step":
        X, coef = X[:, ::2], np.append(coef[:-1:2], coef[-1])
    elif view == "reversed":
        X, y = X[::-1, ::-1], y[::-1]
    elif view == "transposed":
        X = np.ascontiguousarray(X.T).T  # F-ordered
    elif view == "f_rows_step":
        X, y = np.asfortranarray(X)[::3], y[::3]
    else:
        X, y = X[17:2900, 3:], y[17:2900]
        coef = coef[3:]
    weights = np.linspace(0.1, 2.0, X.shape[0])[::-1]
    assert_same(X, y, coef)
    assert_same(X, y, coef, weights, full_spec(3, X.shape[1]))


@requires_fused
def test_read_only_and_converted_inputs():
    X, y, coef = problem(4, 800, 5)
    X.flags.writeable = False
    assert_same(X, y, coef)
    assert_same(X.astype(np.float32), y.astype(np.int64), coef)
    assert_same(np.round(X * 10).astype(np.int64), y.astype(bool), list(coef))
    weights = np.random.default_rng(4).random(800).astype(np.float32)
    spec = KernelSpec(center=np.ones(5, dtype=np.float32), scale=np.full(5, 3.0, dtype=np.float32),
                      class_weight=(np.float32(0.3), np.float32(1.7)))
    assert_same(X, y, coef, weights, spec)
    assert_same(X, y, coef, None, KernelSpec(class_weight=(1, 3)))


@requires_fused
@pytest.mark.parametrize("order", ["C", "F"])
def test_weights_class_weights_standardization_combinations(order):
    X, y, coef = problem(5, 5000, 9, order=order)
    weights = np.random.default_rng(5).random(5000) * 10
    weights[::7] = 0.0
    spec = full_spec(5, 9)
    for w in (None, weights):
        for center in (None, spec.center):
            for cw in (None, (1.0, 1.0), (0.25, 4.0)):
                s = KernelSpec(center=center, scale=None if center is None else spec.scale,
                               class_weight=cw)
                assert_same(X, y, coef, w, s)


@requires_fused
@pytest.mark.parametrize("order", ["C", "F"])
def test_nan_and_inf_flags(order):
    X, y, coef = problem(6, 3000, 6, order=order)
    X[10, 1] = np.nan
    X[2500, 3] = np.inf
    X[2600, 3] = -np.inf
    X[40, 4] = np.inf
    got = assert_same(X, y, coef)
    assert got.sums.flags.any()
    # the rows with NaN/inf have NaN margins: every term column of those rows flags
    assert_same(X, y, coef, np.ones(3000), full_spec(6, 6))
    # a non-finite value with zero weight: margin still NaN, weighted terms NaN
    coef0 = coef.copy()
    coef0[1] = 0.0  # 0 * nan = nan still
    assert_same(X, y, coef0)


@requires_fused
def test_infinite_terms_without_nan():
    # x = 1e300 and residual ~ -1: the product is finite; x = inf with w = 0
    # gives NaN.  Terms of +-inf come from huge weights.
    X = np.array([[1e300, 1.0], [-1e300, 2.0], [3.0, 1.0], [1.0, -1.0]])
    y = np.array([1.0, 0.0, 1.0, 0.0])
    coef = np.array([0.0, 1.0, 0.5])
    weights = np.array([1e308, 1e308, 1.0, 2.0])
    assert_same(X, y, coef, weights)
    assert_same(X, y, coef, -weights)
    assert_same(X, y, coef, weights, KernelSpec(class_weight=(10.0, 10.0)))


@requires_fused
def test_nan_labels_and_weights():
    X, y, coef = problem(8, 300, 3)
    y[5] = np.nan
    weights = np.ones(300)
    weights[9] = np.nan
    weights[11] = np.inf
    assert_same(X, y, coef)
    assert_same(X, y, coef, weights)
    assert_same(X, y, coef, weights, KernelSpec(class_weight=(2.0, 0.5)))


@requires_fused
@pytest.mark.parametrize("order", ["C", "F"])
def test_huge_and_zero_margins(order):
    X, y, coef = problem(9, 4000, 4, coef_scale=300.0, order=order)
    assert_same(X, y, coef)  # |z| in the hundreds: exp overflow, loss ~ |z|
    z_exact = np.asarray(np.repeat([[1.0], [-1.0]], 50, axis=0), order=order)
    y2 = np.tile([1.0, 0.0], 50)
    for b in (800.0, -800.0, 745.0, 710.0, 37.0, 0.0):
        assert_same(z_exact, y2, np.array([b, 0.0]))
        assert_same(z_exact, y2, np.array([0.0, b]))
    zeros = np.zeros((100, 3), order=order)
    assert_same(zeros, y2, np.zeros(4))  # every margin exactly 0: the log(2) branch
    assert_same(zeros, y2, np.array([1.0, 2.0, 3.0, -0.0]))


@requires_fused
@pytest.mark.parametrize("order", ["C", "F"])
def test_extreme_column_magnitudes(order):
    # Whole columns subnormal, near the top of the float range, exact zeros,
    # -0.0 and ties: top bins from the lowest (2) to the highest.
    rng = np.random.default_rng(15)
    n = 500
    X = np.empty((n, 6), order=order)
    X[:, 0] = rng.random(n) * 1e-310
    X[:, 1] = rng.standard_normal(n) * 1e307
    X[:, 2] = 0.0
    X[:, 3] = -0.0
    X[:, 4] = rng.choice(SPECIALS, size=n)
    X[:, 5] = rng.integers(-3, 4, size=n) * 0.5
    y = (rng.random(n) < 0.5).astype(np.float64)
    coef = np.array([1e300, 1e-320, 5.0, -5.0, 1e-3, 0.25, 0.0])
    assert_same(X, y, coef)
    assert_same(X, y, np.zeros(7))
    assert_same(X, y, coef, rng.random(n) * 1e-300)
    assert_same(X, y, np.array([0.0, 1e-307, 0, 0, 0, 0.0, 0.0]), np.full(n, 1.7e308))


@requires_fused
def test_top_bin_of_every_exponent():
    # One row, no features: the weight column holds exactly v, so its top bin
    # is top_bin(|v|) -- checked at every power of two and just below it.
    X = np.empty((1, 0))
    y = np.array([1.0])
    coef = np.array([0.0])
    for k in range(-1074, 1024):
        v = math.ldexp(1.0, k)
        for w in (v, -math.nextafter(v, 0.0), math.nextafter(v, math.inf)):
            got = assert_same(X, y, coef, np.array([w]))
            assert got.sums.top[-1] == top_bin(np.array([abs(w)]))[0]


@requires_fused
def test_magnitudes_change_between_blocks():
    # Top bins rise and fall from one small block to the next (shifts of 1, 2
    # and >= 3 bins): alignment inside the kernel must match ExactSums.merge.
    rng = np.random.default_rng(10)
    n, d = 20_000, 64  # 64 features: blocks of 1024 rows
    X = rng.standard_normal((n, d))
    exponents = rng.choice([-300, -200, -60, -20, -1, 0, 3, 15, 40, 100, 250], size=n // 500)
    X *= np.repeat(10.0 ** exponents, 500)[:, None]
    X[:, 5] = rng.choice(SPECIALS, size=n)
    y = (rng.random(n) < 0.5).astype(np.float64)
    coef = rng.normal(0, 1e-3, d + 1)
    assert_same(X, y, coef)
    assert_same(np.asfortranarray(X), y, coef)
    weights = np.repeat(10.0 ** rng.integers(-250, 250, size=n // 250), 250)
    assert_same(np.asfortranarray(X), y, coef, weights)


@requires_fused
@pytest.mark.parametrize("block", [1, 2, 3, 255, 1024, BLOCK_ROWS])
def test_block_size_does_not_change_the_result(monkeypatch, block):
    X, y, coef = problem(11, 5000, 5, scale=1e3)
    X[::97] *= 1e-250
    X[::101] *= 1e250
    weights = np.random.default_rng(11).random(5000)
    monkeypatch.setattr(fused, "_block_rows", lambda d: block)
    assert_same(X, y, coef, weights)
    assert_same(np.asfortranarray(X), y, coef, weights, full_spec(11, 5))


@requires_fused
def test_calls_split_into_int64_safe_pieces(monkeypatch):
    X, y, coef = problem(12, 3000, 4)
    monkeypatch.setattr(fused, "_CALL_ROWS", 700)
    assert_same(X, y, coef)
    assert_same(np.asfortranarray(X), y, coef, np.full(3000, 2.5))


def test_available_where_numpy_uses_libm():
    pytest.importorskip("numba")
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_features__
    if __cpu_features__.get("AVX512F"):
        pytest.skip("numpy may use its own exp/log kernels on AVX-512 CPUs")
    assert fused.AVAILABLE


@requires_fused
def test_interface_errors():
    X, y, coef = problem(13, 10, 3)
    with pytest.raises(ValueError, match="Hessian"):
        fused.fused_partials(X, y, coef, spec=KernelSpec(hessian=True))
    with pytest.raises(ValueError, match="coef has shape"):
        fused.fused_partials(X, y, coef[:-1])
    with pytest.raises(TypeError):
        fused.fused_partials(X, y, coef, spec=KernelSpec(center=np.zeros(3)))
    assert isinstance(fused.AVAILABLE, bool)


def test_chunk_partials_fast_is_a_drop_in_replacement():
    X, y, coef = problem(16, 700, 4, order="F")
    for spec in (KernelSpec(), full_spec(16, 4), full_spec(16, 4).with_hessian(True)):
        assert fused.chunk_partials_fast(X, y, coef, None, spec) == chunk_partials(
            X, y, coef, None, spec)


@requires_fused
def test_merge_with_reference_partials():
    X, y, coef = problem(14, 2000, 7)
    whole = chunk_partials(X, y, coef)
    mixed = fused.fused_partials(X[:1234], y[:1234], coef).merge(
        chunk_partials(X[1234:], y[1234:], coef))
    assert mixed == whole
    loss, grad, weight = mixed.finalize()
    assert math.isfinite(loss) and weight == 2000.0


@st.composite
def cases(draw):
    n = draw(st.sampled_from([0, 1, 2, 3, 5, 31, 64, 257, 1000]))
    d = draw(st.integers(0, 13))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = 10.0 ** draw(st.sampled_from([-300, -30, -3, 0, 3, 30, 300]))
    X = rng.standard_normal((n, d)) * scale
    if n and d and draw(st.booleans()):
        picks = rng.integers(0, n * d, size=draw(st.integers(1, 5)))
        X.flat[picks] = rng.choice(np.append(SPECIALS, [np.nan, np.inf, -np.inf]), size=picks.size)
    layout = draw(st.sampled_from(["C", "F", "rows_step"]))
    if layout == "F":
        X = np.asfortranarray(X)
    y = (rng.random(n) < draw(st.sampled_from([0.0, 0.3, 1.0]))).astype(np.float64)
    if layout == "rows_step":
        X, y = np.repeat(X, 2, axis=0)[::2], np.repeat(y, 2)[::2]
    coef = rng.normal(0, draw(st.sampled_from([0.0, 1e-3, 1.0, 50.0, 800.0])), d + 1)
    weights = rng.random(n) * 10.0 ** draw(st.integers(-5, 5)) if draw(st.booleans()) else None
    class_weight = draw(st.sampled_from([None, (1.0, 1.0), (0.1, 7.5)]))
    center = scale_ = None
    if draw(st.booleans()):
        center = rng.normal(0, scale, d)
        scale_ = rng.random(d) * scale + scale * 1e-3
    block = draw(st.sampled_from([None, 1, 7, 64]))
    return X, y, coef, weights, KernelSpec(center, scale_, class_weight), block


@requires_fused
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_hypothesis_equal_to_reference(case):
    X, y, coef, weights, spec, block = case
    if block is None:
        assert_same(X, y, coef, weights, spec)
        return
    original = fused._block_rows
    fused._block_rows = lambda d: block
    try:
        assert_same(X, y, coef, weights, spec)
    finally:
        fused._block_rows = original
