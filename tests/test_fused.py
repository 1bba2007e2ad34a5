"""The fused compiled kernels (pipeline.fused) against the numpy reference.

``fused_partials`` must return a Partials **equal** to ``chunk_partials``
(same row count, top bins, flags and Python-int bins, Hessian sums included)
and ``fused_stats`` a Stats equal to ``chunk_stats``, for every input.

The per-row exponential and logarithm are the pipeline's own on both sides:
the reference takes ``proba`` and ``softplus`` from
:func:`pipeline.elementary.sigmoid_softplus` (numpy), the compiled kernel from
its numba twin :func:`pipeline.elementary_jit.sigmoid_softplus`, both made of
IEEE basic operations only, so they agree bit for bit on every CPU, AVX-512
ones included (numpy's own SIMD exp/log are no longer used).  There is one
compiled loss pass, the one-sweep ``fused_partials``; it runs wherever numba
imports (:data:`fused.AVAILABLE` is then True, with no CPU probe), and these
tests compare it with the reference directly, here, whatever the CPU.
``chunk_partials_fast`` calls it where numba imports and falls back to the
reference without it.  Besides the shapes, layouts, weights, standardization
and Hessian cases, the margins are driven through the places where the two
elementary functions could part (+-0, +-inf, NaN, the exp overflow and
underflow thresholds, saturation near +-37, tiny and subnormal margins), one
row per call so that no difference is hidden below a block's rounding grid.
The statistics pass has no exp/log and also runs wherever numba imports
(:data:`fused.STATS_AVAILABLE`).
"""

import dataclasses
import math
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import fused, kernel
from pipeline.exact import BIN_WIDTH, BLOCK_ROWS, GRID_E0, top_bin
from pipeline.kernel import (
    KernelSpec,
    Partials,
    Stats,
    chunk_partials,
    chunk_stats,
    triangle_size,
)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference on inf/NaN
#: the compiled passes (loss, Hessian, statistics, margins) run wherever numba imports
requires_numba = pytest.mark.skipif(not fused.STATS_AVAILABLE, reason="numba missing")

SPECIALS = np.array(
    [0.0, -0.0, 0.5, -0.5, 1.5, 2.5, 1e-310, -5e-324, 1e-200, 1e200, -1e300, 3.0, 2.0**-40, 2.0**39, 1.0 + 2.0**-52]
)


def assert_same_sums(got, want):
    """Two ExactSums equal, with the types the reference uses."""
    assert got.top.dtype == np.int64 and got.flags.dtype == np.uint8
    assert got.bins.dtype == object
    assert all(type(v) is int for v in got.bins.ravel())
    np.testing.assert_array_equal(got.top, want.top)
    np.testing.assert_array_equal(got.flags, want.flags)
    assert got == want
    a, b = got.finalize(), want.finalize()
    assert a.tobytes() == b.tobytes() or np.array_equal(a, b, equal_nan=True)


def assert_same(X, y, coef, weights=None, spec=KernelSpec()):
    """fused_partials (the compiled loss pass) equals chunk_partials."""
    want = chunk_partials(X, y, coef, weights, spec)
    got = fused.fused_partials(X, y, coef, weights, spec)
    assert isinstance(got, Partials)
    assert got.n_samples == want.n_samples
    assert_same_sums(got.sums, want.sums)
    if spec.hessian:
        assert got.hessian is not None
        assert got.hessian.n_cols == triangle_size(np.shape(coef)[0])
        assert_same_sums(got.hessian, want.hessian)
    else:
        assert got.hessian is None
    assert got == want
    return got


def problem(seed, n, d, *, scale=1.0, coef_scale=0.5, order="C"):
    rng = np.random.default_rng(seed)
    X = np.asarray(rng.standard_normal((n, d)) * scale, order=order)
    y = (rng.random(n) < 0.4).astype(np.float64)
    coef = rng.normal(0, coef_scale, d + 1)
    return X, y, coef


def full_spec(seed, d, class_weight=(0.7, 3.25)):
    rng = np.random.default_rng(seed + 1000)
    return KernelSpec(center=rng.normal(0, 2, d), scale=rng.random(d) * 3 + 0.1, class_weight=class_weight)


@requires_numba
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize(
    "n, d",
    [
        (0, 3),
        (0, 0),
        (1, 1),
        (1, 7),
        (2, 1),
        (5, 0),
        (257, 6),
        (3, 1000),
        (600, 1000),
        (1000, 33),
        (3000, 64),
        (16384, 2),
        (16385, 2),
        (40_000, 3),
    ],
)
def test_equal_to_reference_on_shapes(order, n, d):
    X, y, coef = problem(n * 31 + d, n, d, order=order)
    assert_same(X, y, coef)
    weights = np.random.default_rng(n).random(n) * 4
    assert_same(X, y, coef, weights, full_spec(n, d))


@requires_numba
@pytest.mark.parametrize("order", ["C", "F"])
def test_every_width_of_the_pairwise_tree(order):
    # d = 1..70 covers every merge pattern of the margin tree (up to 6 levels),
    # and of the 8-column groups up to 3 merges; 263: groups merging 5 times
    for d in [*range(1, 71), 263]:
        X, y, coef = problem(d, 37, d, coef_scale=3.0, order=order)
        assert_same(X, y, coef)


@requires_numba
def test_120k_rows_with_weights_and_standardization():
    X, y, coef = problem(7, 120_000, 5, order="F")
    weights = np.random.default_rng(7).exponential(size=120_000)
    assert_same(X, y, coef)
    assert_same(X, y, coef, weights, full_spec(7, 5, None))
    assert_same(X, y, coef, None, full_spec(8, 5))


@requires_numba
@pytest.mark.parametrize("view", ["rows_step", "cols_step", "reversed", "transposed", "offset", "f_rows_step"])
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


@requires_numba
def test_read_only_and_converted_inputs():
    X, y, coef = problem(4, 800, 5)
    X.flags.writeable = False
    assert_same(X, y, coef)
    assert_same(X.astype(np.float32), y.astype(np.int64), coef)
    assert_same(np.round(X * 10).astype(np.int64), y.astype(bool), list(coef))
    weights = np.random.default_rng(4).random(800).astype(np.float32)
    spec = KernelSpec(
        center=np.ones(5, dtype=np.float32),
        scale=np.full(5, 3.0, dtype=np.float32),
        class_weight=(np.float32(0.3), np.float32(1.7)),
    )
    assert_same(X, y, coef, weights, spec)
    assert_same(X, y, coef, None, KernelSpec(class_weight=(1, 3)))


@requires_numba
@pytest.mark.parametrize("order", ["C", "F"])
def test_weights_class_weights_standardization_combinations(order):
    X, y, coef = problem(5, 5000, 9, order=order)
    weights = np.random.default_rng(5).random(5000) * 10
    weights[::7] = 0.0
    spec = full_spec(5, 9)
    for w in (None, weights):
        for center in (None, spec.center):
            for cw in (None, (1.0, 1.0), (0.25, 4.0)):
                s = KernelSpec(center=center, scale=None if center is None else spec.scale, class_weight=cw)
                assert_same(X, y, coef, w, s)


@requires_numba
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


@requires_numba
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


@requires_numba
def test_nan_labels_and_weights():
    X, y, coef = problem(8, 300, 3)
    y[5] = np.nan
    weights = np.ones(300)
    weights[9] = np.nan
    weights[11] = np.inf
    assert_same(X, y, coef)
    assert_same(X, y, coef, weights)
    assert_same(X, y, coef, weights, KernelSpec(class_weight=(2.0, 0.5)))


@requires_numba
@pytest.mark.parametrize("order", ["C", "F"])
def test_huge_and_zero_margins(order):
    X, y, coef = problem(9, 4000, 4, coef_scale=300.0, order=order)
    assert_same(X, y, coef)  # |z| in the hundreds: exp overflow, loss ~ |z|
    z_exact = np.asarray(np.repeat([[1.0], [-1.0]], 50, axis=0), order=order)
    y2 = np.tile([1.0, 0.0], 50)
    for b in (800.0, -800.0, 745.2, -745.2, 745.0, 710.0, 709.78, -709.78, 37.5, -37.5, 37.0, 0.0, -0.0):
        assert_same(z_exact, y2, np.array([b, 0.0]))
        assert_same(z_exact, y2, np.array([0.0, b]))
    zeros = np.zeros((100, 3), order=order)
    assert_same(zeros, y2, np.zeros(4))  # every margin exactly 0: the log(2) branch
    assert_same(zeros, y2, np.array([1.0, 2.0, 3.0, -0.0]))


@requires_numba
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


@pytest.mark.slow
@requires_numba
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


@requires_numba
def test_magnitudes_change_between_blocks():
    # Top bins rise and fall from one small block to the next (shifts of 1, 2
    # and >= 3 bins): alignment inside the kernel must match ExactSums.merge.
    rng = np.random.default_rng(10)
    n, d = 20_000, 64  # 64 features: blocks of 1024 rows
    X = rng.standard_normal((n, d))
    exponents = rng.choice([-300, -200, -60, -20, -1, 0, 3, 15, 40, 100, 250], size=n // 500)
    X *= np.repeat(10.0**exponents, 500)[:, None]
    X[:, 5] = rng.choice(SPECIALS, size=n)
    y = (rng.random(n) < 0.5).astype(np.float64)
    coef = rng.normal(0, 1e-3, d + 1)
    assert_same(X, y, coef)
    assert_same(np.asfortranarray(X), y, coef)
    weights = np.repeat(10.0 ** rng.integers(-250, 250, size=n // 250), 250)
    assert_same(np.asfortranarray(X), y, coef, weights)


def tops_moving_between_blocks(rng, n: int, d: int, period: int):
    """``(X, weights, exponents)``: F-ordered X whose columns' magnitudes
    (``10**exponents``, from subnormal-making to huge) change every
    ``period`` rows, so that tops rise and fall between blocks; one 1e30 per
    ``period`` rows in column 2, in a row whose weight (1e-40) shrinks its
    residual, so that a bound from the maxima lies above the terms' top."""
    X = rng.standard_normal((n, d))
    exponents = rng.choice([-300, -200, -60, -12, 0, 3, 12, 40, 100, 250], size=(n // period, d))
    X *= np.repeat(10.0**exponents, period, axis=0)
    X[::period, 2] = 1e30
    weights = np.repeat(10.0 ** rng.integers(-200, 200, size=2 * n // period), period // 2)
    weights[::period] = 1e-40
    return np.asfortranarray(X), weights, exponents


@requires_numba
@pytest.mark.parametrize("block", [None, 1, 3, 200])
def test_standardized_terms_at_the_running_top(monkeypatch, block):
    """The standardizing copy of column-major input finds each column's
    largest value on the way, and a block's terms then go to the column's
    running top bin in one sweep where ``max|x~| * max|residual|`` fits under
    it (``_terms``, and the multinomial pass's class loop).  Tops that rise
    and fall between blocks, bounds above a bin edge whose terms are not
    (a large value in a row with a tiny weighted residual), infinite and NaN
    terms: the reference's integers, binary and multinomial."""
    rng = np.random.default_rng(12)
    n, d = 6000, 6
    X, weights, exponents = tops_moving_between_blocks(rng, n, d, 200)
    y = (rng.random(n) < 0.5).astype(np.float64)
    spec = KernelSpec(center=rng.normal(0, 1e-3, d), scale=rng.uniform(0.5, 2.0, d))
    if block is not None:
        monkeypatch.setattr(fused, "_block_rows", lambda d: block)
    coef = rng.normal(0, 1e-3, d + 1)
    assert_same(X, y, coef, weights, spec)
    assert_same(X, y, coef, None, spec)
    extreme = X.copy(order="F")
    extreme[17, 4] = 1e308  # its term overflows once the residual is not tiny
    extreme[33, 1] = np.nan
    assert_same(extreme, y, coef, weights, spec)
    classes = rng.integers(0, 3, n).astype(np.float64)
    softmax = dataclasses.replace(spec, n_classes=3)
    coefs = rng.normal(0, 1e-3, 3 * (d + 1))
    for data in (X, extreme):
        assert fused.fused_partials(data, classes, coefs, weights, softmax) == kernel.softmax_partials(
            data, classes, coefs, weights, softmax
        )
    # a standardization that keeps the values: subnormal and zero x~, a zero
    # column, products that underflow, without the planted outliers
    tiny = np.asfortranarray(rng.standard_normal((n, d)) * np.repeat(10.0**exponents, 200, axis=0))
    tiny[:, 0] = 0.0
    tiny[::7, 3] = 5e-324
    identity = KernelSpec(center=np.zeros(d), scale=np.ones(d))
    small = np.repeat(10.0 ** rng.integers(-300, 5, size=n // 100), 100)
    assert_same(tiny, y, coef, small, identity)
    assert_same(tiny, y, coef, None, identity)


@requires_numba
@pytest.mark.parametrize("block", [1, 2, 3, 255, 1024, BLOCK_ROWS])
def test_block_size_does_not_change_the_result(monkeypatch, block):
    X, y, coef = problem(11, 5000, 5, scale=1e3)
    X[::97] *= 1e-250
    X[::101] *= 1e250
    weights = np.random.default_rng(11).random(5000)
    monkeypatch.setattr(fused, "_block_rows", lambda d: block)
    assert_same(X, y, coef, weights)
    assert_same(np.asfortranarray(X), y, coef, weights, full_spec(11, 5))


def streaming(monkeypatch, rows):
    """Every F-ordered float64 loss pass streams (as from 1,024 features), in
    blocks of ``rows``: X read in place, standardized in registers."""
    monkeypatch.setattr(fused, "_STREAM_FEATURES", 1)
    monkeypatch.setattr(fused, "_STREAM_ROWS", rows)


@requires_numba
@pytest.mark.parametrize("rows", [1, 3, 200, 4096])
def test_the_streaming_pass_equals_the_reference(monkeypatch, rows):
    """Wide F-ordered input streams (``_Job.stream``): each block's margins
    over all of its rows at once, each column's standardized values formed
    in registers where the margins and the deposits read them (no copy).
    The same integers as the reference for every width of the pairwise
    tree, with and without standardization, weights and class weights; tops
    that rise and fall between blocks, outliers whose terms a tiny residual
    shrinks, NaN and inf; and the categorical columns' level sums."""
    streaming(monkeypatch, rows)
    rng = np.random.default_rng(31)
    n = 700
    weights = rng.random(n) * 10
    for d in (1, 2, 7, 8, 9, 16, 17, 33, 70):
        X, y, coef = problem(31 + d, n, d, order="F")
        spec = full_spec(31 + d, d)
        for s in (KernelSpec(), spec, dataclasses.replace(spec, class_weight=None)):
            assert fused._Job.of(X, y, coef, None, s).stream
            for w in (None, weights):
                assert_same(X, y, coef, w, s)
    d = 6
    X, weights, _ = tops_moving_between_blocks(rng, n, d, 50)
    y = (rng.random(n) < 0.5).astype(np.float64)
    coef = rng.normal(0, 1e-3, d + 1)
    spec = KernelSpec(center=rng.normal(0, 1e-3, d), scale=rng.uniform(0.5, 2.0, d))
    identity = KernelSpec(center=np.zeros(d), scale=np.ones(d))
    extreme = X.copy(order="F")
    extreme[17, 4] = 1e308
    extreme[33, 1] = np.nan
    extreme[34, 0] = np.inf
    extreme[35, 5] = -0.0
    for data in (X, extreme):
        for s in (KernelSpec(), spec, identity):
            for w in (None, weights):
                assert_same(data, y, coef, w, s)
    sizes = (3, 5, 1)
    codes = np.column_stack([rng.integers(0, k, n) for k in sizes])
    X = np.asfortranarray(np.column_stack([rng.standard_normal((n, 2)), codes]))
    categories = kernel.Categories(sizes, kernel.level_top(n, 2.0 * 3.0))
    coef = rng.standard_normal(2 + sum(sizes) + 1)
    spec = KernelSpec(center=np.ones(2), scale=np.full(2, 3.0), class_weight=(1.0, 3.0), categories=categories)
    weights = rng.uniform(0.5, 2.0, n)
    assert fused.fused_partials(X, y, coef, weights, spec) == chunk_partials(X, y, coef, weights, spec)


@requires_numba
def test_only_wide_f_ordered_float64_loss_passes_stream(monkeypatch):
    """From 1,024 features the loss pass over F-ordered float64 X streams;
    narrower, row-major, narrow-typed or filled input is copied per block, and
    a Hessian pass does not stream (the same integers either way)."""
    n, d = 5000, fused._STREAM_FEATURES
    X, y, coef = problem(33, n, d, order="F")
    spec = full_spec(33, d)
    job = fused._Job.of(X, y, coef, None, spec)
    assert job.stream and not job.direct
    assert fused._Job.of(X, y, coef, None, KernelSpec()).stream
    assert not fused._Job.of(X[:, :-1], y, coef[1:], None, KernelSpec()).stream
    assert not fused._Job.of(np.ascontiguousarray(X), y, coef, None, spec).stream
    assert not fused._Job.of(X.astype(np.float32, order="F"), y, coef, None, spec).stream
    assert not fused._Job.of(X, y, coef, None, dataclasses.replace(spec, fill=np.zeros(d))).stream
    calls = []
    original = fused._pass_direct

    def spy(*args):
        calls.append((args[7], args[8], args[-1] is not None))  # block, margin rows, standardized
        return original(*args)

    monkeypatch.setattr(fused, "_pass_direct", spy)
    weights = np.random.default_rng(33).random(n)
    assert_same(X, y, coef, weights, spec)  # blocks of 4,096 rows and a ragged one
    assert calls == [(fused._STREAM_ROWS, fused._STREAM_ROWS, True)]
    monkeypatch.setattr(fused, "_STREAM_ROWS", 1100)
    assert_same(X, y, coef, weights, spec)
    assert_same(X, y, coef, None, KernelSpec())
    assert calls[1:] == [(1100, 1100, True), (1100, 1100, False)]
    monkeypatch.setattr(fused, "_STREAM_FEATURES", 1)
    small, y, coef = problem(34, 300, 5, order="F")
    assert_same(small, y, coef, None, hessian_spec(34, 5))


@requires_numba
def test_calls_split_into_int64_safe_pieces(monkeypatch):
    X, y, coef = problem(12, 3000, 4)
    monkeypatch.setattr(fused, "_CALL_ROWS", 700)
    assert_same(X, y, coef)
    assert_same(np.asfortranarray(X), y, coef, np.full(3000, 2.5))


def test_available_wherever_numba_imports():
    # The loss pass's exp/log are the pipeline's own (the same bits on every
    # CPU): no CPU probe, no split path -- AVAILABLE is just "numba imports".
    pytest.importorskip("numba")
    assert fused.AVAILABLE is True
    assert fused.STATS_AVAILABLE is True
    for gone in ("split_partials", "compiled_partials", "_probe", "_probe_kernel", "_numpy_has_own_exp_log"):
        assert not hasattr(fused, gone), gone


@requires_numba
def test_interface_errors():
    X, y, coef = problem(13, 10, 3)
    assert fused.fused_partials(X, y, coef, spec=KernelSpec(hessian=True)).hessian is not None
    with pytest.raises(ValueError, match="coef has shape"):
        fused.fused_partials(X, y, coef[:-1])
    with pytest.raises(TypeError):
        fused.fused_partials(X, y, coef, spec=KernelSpec(center=np.zeros(3)))


def test_chunk_partials_fast_is_a_drop_in_replacement():
    X, y, coef = problem(16, 700, 4, order="F")
    for spec in (KernelSpec(), full_spec(16, 4), full_spec(16, 4).with_hessian(True)):
        assert fused.chunk_partials_fast(X, y, coef, None, spec) == chunk_partials(X, y, coef, None, spec)


@requires_numba
def test_merge_with_reference_partials():
    X, y, coef = problem(14, 2000, 7)
    whole = chunk_partials(X, y, coef)
    mixed = fused.fused_partials(X[:1234], y[:1234], coef).merge(chunk_partials(X[1234:], y[1234:], coef))
    assert mixed == whole
    loss, grad, weight = mixed.finalize()
    assert math.isfinite(loss) and weight == 2000.0


@requires_numba
def test_chunk_partials_fast_uses_the_compiled_pass_where_numba_imports(monkeypatch):
    monkeypatch.setenv("PIPELINE_KERNELS", "compiled")  # (small data would start on the reference)
    X, y, coef = problem(22, 3000, 5, order="F")
    spec = hessian_spec(22, 5)
    want = chunk_partials(X, y, coef, None, spec)
    compiled, reference = [], []
    fused_partials, chunk_partials_ = fused.fused_partials, fused.chunk_partials
    monkeypatch.setattr(fused, "fused_partials", lambda *args: compiled.append(len(args[1])) or fused_partials(*args))
    monkeypatch.setattr(fused, "chunk_partials", lambda *args: reference.append(len(args[1])) or chunk_partials_(*args))
    assert fused.chunk_partials_fast(X, y, coef, None, spec) == want
    assert compiled == [3000] and reference == []
    # without numba (AVAILABLE False): the reference, and fused_partials refuses
    monkeypatch.setattr(fused, "AVAILABLE", False)
    assert fused.chunk_partials_fast(X, y, coef, None, spec) == want
    assert compiled == [3000] and reference == [3000]
    with pytest.raises(RuntimeError, match="unavailable"):
        fused_partials(X, y, coef)


@requires_numba
def test_warm_up_runs_the_compiled_passes(monkeypatch):
    monkeypatch.setenv("PIPELINE_KERNELS", "compiled")  # (under "reference" it compiles nothing)
    calls = []
    fused_partials, fused_stats = fused.fused_partials, fused.fused_stats

    def partials(X, y, coef, weights, spec):
        calls.append(("partials", X.shape[1], weights is not None, spec.center is not None, spec.hessian))
        assert X.flags.f_contiguous and X.dtype == dtype
        return fused_partials(X, y, coef, weights, spec)

    def stats(X, y, weights):
        calls.append(("stats", X.shape[1], weights is not None))
        assert X.flags.f_contiguous and X.dtype == dtype
        return fused_stats(X, y, weights)

    monkeypatch.setattr(fused, "fused_partials", partials)
    monkeypatch.setattr(fused, "fused_stats", stats)
    dtype = np.float64
    fused.warm_up("passes", 3, standardize=True, weighted=True, class_weighted=True, hessian=True)
    fused.warm_up("passes", 2, standardize=False, weighted=False, class_weighted=False, hessian=False)
    fused.warm_up("statistics", 4, standardize=False, weighted=True, class_weighted=False, hessian=False)
    # Newton without a validation split: only the Hessian pass (every evaluation has it)
    fused.warm_up("passes", 3, standardize=True, weighted=False, class_weighted=False, hessian=True, gradient=False)
    dtype = np.float32  # narrow data: the kernels of its own dtype
    fused.warm_up("passes", 2, standardize=True, weighted=False, class_weighted=False, hessian=False, dtype="float32")
    fused.warm_up(
        "statistics", 2, standardize=True, weighted=False, class_weighted=False, hessian=False, dtype="float32"
    )
    assert calls == [
        ("partials", 3, True, True, False),
        ("partials", 3, True, True, True),
        ("partials", 2, False, False, False),
        ("stats", 4, True),
        ("partials", 3, False, True, True),
        ("partials", 2, False, True, False),
        ("stats", 2, False),
    ]


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
    hessian = draw(st.booleans())
    return X, y, coef, weights, KernelSpec(center, scale_, class_weight, hessian), block


@pytest.mark.slow
@requires_numba
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


# --- Newton's Hessian: fused_partials(spec.hessian) against the reference ----


def hessian_spec(seed, d, class_weight=(0.7, 3.25)):
    return full_spec(seed, d, class_weight).with_hessian(True)


HESSIAN_SHAPES = [
    (0, 3),
    (0, 0),
    (1, 0),
    (1, 1),
    (1, 7),
    (2, 1),
    (5, 0),
    (257, 6),
    (1000, 33),
    (3000, 16),
    (16384, 2),
    (16385, 2),
    (40_000, 3),
]


@requires_numba
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("n, d", HESSIAN_SHAPES)
def test_hessian_equal_to_reference_on_shapes(order, n, d):
    X, y, coef = problem(n * 37 + d, n, d, order=order)
    assert_same(X, y, coef, None, KernelSpec(hessian=True))
    weights = np.random.default_rng(n).random(n) * 4
    assert_same(X, y, coef, weights, hessian_spec(n, d))
    assert_same(X, y, coef, weights, hessian_spec(n, d, None))
    assert_same(X, y, coef, None, KernelSpec(class_weight=(0.25, 4.0), hessian=True))


@requires_numba
@pytest.mark.parametrize("order", ["C", "F"])
def test_hessian_every_width(order):
    for d in range(0, 24):
        X, y, coef = problem(d + 500, 41, d, coef_scale=3.0, order=order)
        assert_same(X, y, coef, None, KernelSpec(hessian=True))


@requires_numba
@pytest.mark.parametrize("view", ["rows_step", "cols_step", "reversed", "offset"])
def test_hessian_non_contiguous_inputs(view):
    X, y, coef = problem(17, 2001, 9)
    if view == "rows_step":
        X, y = X[::3], y[::3]
    elif view == "cols_step":
        X, coef = X[:, ::2], np.append(coef[:-1:2], coef[-1])
    elif view == "reversed":
        X, y = X[::-1, ::-1], y[::-1]
    else:
        X, y = X[17:1900, 3:], y[17:1900]
        coef = coef[3:]
    weights = np.linspace(0.1, 2.0, X.shape[0])
    assert_same(X, y, coef, None, KernelSpec(hessian=True))
    assert_same(X, y, coef, weights, hessian_spec(17, X.shape[1]))


@requires_numba
@pytest.mark.parametrize("order", ["C", "F"])
def test_hessian_extreme_values_and_flags(order):
    X, y, coef = problem(18, 3000, 6, coef_scale=30.0, order=order)  # saturated probabilities
    X[::50, 0] *= 1e150  # products overflow to inf
    X[::70, 1] *= 1e-300  # subnormal products
    X[::90, 2] = 0.0
    weights = np.random.default_rng(18).random(3000) * 10.0 ** np.random.default_rng(19).integers(-200, 200, size=3000)
    assert_same(X, y, coef, None, KernelSpec(hessian=True))
    assert_same(X, y, coef, weights, KernelSpec(hessian=True))
    X[10, 3] = np.nan
    X[20, 4] = np.inf
    X[30, 5] = -np.inf
    got = assert_same(X, y, coef, weights, hessian_spec(18, 6))
    assert got.hessian.flags.any()


@requires_numba
def test_hessian_merge_with_reference_partials():
    X, y, coef = problem(19, 2000, 7)
    spec = hessian_spec(19, 7)
    whole = chunk_partials(X, y, coef, None, spec)
    mixed = fused.fused_partials(X[:1234], y[:1234], coef, None, spec).merge(
        chunk_partials(X[1234:], y[1234:], coef, None, spec)
    )
    assert mixed == whole
    assert np.array_equal(mixed.hessian_sum(), whole.hessian_sum())


@requires_numba
@pytest.mark.parametrize("block", [None, 1, 3, 256])
def test_hessian_magnitudes_change_between_blocks(monkeypatch, block):
    # Tops rise and fall between blocks, and a block's terms may sit far below
    # the bound max|c a_j| * max|a_k| (a column's running top is then kept).
    rng = np.random.default_rng(40)
    n, d = 6000, 6
    X = rng.standard_normal((n, d))
    exponents = rng.choice([-300, -150, -60, -20, -1, 0, 3, 15, 40, 100, 150], size=n // 250)
    X *= np.repeat(10.0**exponents, 250)[:, None]
    X[:, 2] = rng.choice(SPECIALS, size=n)
    X[::7, 3] *= 1e-200  # a large bound from other rows than the largest terms
    y = (rng.random(n) < 0.5).astype(np.float64)
    coef = rng.normal(0, 1e-3, d + 1)
    weights = np.repeat(10.0 ** rng.integers(-250, 250, size=n // 125), 125)
    if block is not None:
        monkeypatch.setattr(fused, "_block_rows", lambda d: block)
    assert_same(X, y, coef, None, KernelSpec(hessian=True))
    assert_same(np.asfortranarray(X), y, coef, weights, KernelSpec(hessian=True))
    assert_same(X, y, coef, weights, hessian_spec(40, d))


# --- Margins all zero: proba exactly 1/2, softplus log(2), the intercept's ---
# --- curvature sum exactly a quarter of the weight sum                     ---


def assert_same_zero_margins(X, y, weights=None, spec=KernelSpec()):
    coef = np.zeros(np.shape(X)[1] + 1)
    got = assert_same(X, y, coef, weights, spec)
    if spec.hessian and got.n_samples and not got.hessian.flags[-1]:
        # the intercept's curvature sum: 1/4 of the weight sum, exactly
        assert got.hessian.finalize()[-1] == got.sums.finalize()[-1] / 4
    return got


@requires_numba
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("n, d", HESSIAN_SHAPES + [(3, 200), (600, 64)])
def test_zero_margins_equal_to_reference_on_shapes(order, n, d):
    X, y, _ = problem(n * 41 + d, n, d, scale=3.0, order=order)
    weights = np.random.default_rng(n + 1).random(n) * 4
    for hessian in (False, True):
        assert_same_zero_margins(X, y, None, KernelSpec(hessian=hessian))
        assert_same_zero_margins(X, y, weights, full_spec(n, d).with_hessian(hessian))
        assert_same_zero_margins(X, y, weights, full_spec(n, d, None).with_hessian(hessian))


@requires_numba
@pytest.mark.parametrize("order", ["C", "F"])
def test_zero_margins_every_width(order):
    for d in range(0, 40):
        X, y, _ = problem(d + 900, 29, d, scale=5.0, order=order)
        assert_same_zero_margins(X, y, None, KernelSpec(hessian=True))
        assert_same_zero_margins(X, y, np.arange(29.0), full_spec(d, d).with_hessian(True))


@requires_numba
@pytest.mark.parametrize("view", ["rows_step", "cols_step", "reversed", "transposed", "offset", "f_rows_step"])
def test_zero_margins_non_contiguous_inputs(view):
    X, y, _ = problem(23, 3001, 12)
    if view == "rows_step":
        X, y = X[::3], y[::3]
    elif view == "cols_step":
        X = X[:, ::2]
    elif view == "reversed":
        X, y = X[::-1, ::-1], y[::-1]
    elif view == "transposed":
        X = np.ascontiguousarray(X.T).T
    elif view == "f_rows_step":
        X, y = np.asfortranarray(X)[::3], y[::3]
    else:
        X, y = X[17:2900, 3:], y[17:2900]
    weights = np.linspace(0.1, 2.0, X.shape[0])[::-1]
    for hessian in (False, True):
        assert_same_zero_margins(X, y, None, KernelSpec(hessian=hessian))
        assert_same_zero_margins(X, y, weights, full_spec(23, X.shape[1]).with_hessian(hessian))


@requires_numba
@pytest.mark.parametrize("order", ["C", "F"])
def test_zero_margins_extreme_magnitudes_and_flags(order):
    rng = np.random.default_rng(24)
    n = 2000
    X = np.empty((n, 7), order=order)
    X[:, 0] = rng.random(n) * 1e-310
    X[:, 1] = rng.standard_normal(n) * 1e200  # squares overflow
    X[:, 2] = 0.0
    X[:, 3] = -0.0
    X[:, 4] = rng.choice(SPECIALS, size=n)
    X[:, 5] = rng.integers(-3, 4, size=n) * 0.5
    X[:, 6] = rng.standard_normal(n) * 10.0 ** rng.integers(-160, 160, size=n)
    y = (rng.random(n) < 0.5).astype(np.float64)
    weights = 10.0 ** rng.integers(-300, 300, size=n)
    assert_same_zero_margins(X, y, None, KernelSpec(hessian=True))
    assert_same_zero_margins(X, y, weights, KernelSpec(class_weight=(3.0, 0.5), hessian=True))
    X[10, 1] = np.nan
    X[1500, 3] = np.inf
    X[1600, 3] = -np.inf
    y[7] = np.nan
    weights[9] = np.inf
    got = assert_same_zero_margins(X, y, weights, KernelSpec(hessian=True))
    assert got.hessian.flags.any() and got.sums.flags.any()
    assert_same_zero_margins(X, y, None, KernelSpec(hessian=True))


@requires_numba
@pytest.mark.parametrize("block", [1, 2, 3, 255, 1024, BLOCK_ROWS])
def test_zero_margins_block_size_does_not_change_the_result(monkeypatch, block):
    X, y, _ = problem(25, 5000, 5, scale=1e3)
    X[::97] *= 1e-250
    X[::101] *= 1e150
    weights = np.random.default_rng(25).random(5000)
    monkeypatch.setattr(fused, "_block_rows", lambda d: block)
    assert_same_zero_margins(X, y, weights, KernelSpec(hessian=True))
    assert_same_zero_margins(np.asfortranarray(X), y, weights, hessian_spec(25, 5))
    assert_same_zero_margins(np.asfortranarray(X), y, None, KernelSpec(hessian=True))


@requires_numba
def test_zero_margins_calls_split_into_int64_safe_pieces(monkeypatch):
    X, y, _ = problem(26, 3000, 4)
    monkeypatch.setattr(fused, "_CALL_ROWS", 700)
    assert_same_zero_margins(X, y, None, KernelSpec(hessian=True))
    assert_same_zero_margins(np.asfortranarray(X), y, np.full(3000, 2.5), KernelSpec(hessian=True))


@requires_numba
def test_zero_margins_merge_with_reference_partials():
    X, y, _ = problem(27, 2000, 7, order="F")
    coef = np.zeros(8)
    spec = hessian_spec(27, 7)
    whole = chunk_partials(X, y, coef, None, spec)
    mixed = fused.fused_partials(X[:1234], y[:1234], coef, None, spec).merge(
        chunk_partials(X[1234:], y[1234:], coef, None, spec)
    )
    assert mixed == whole


# --- Adversarial margins: where sigmoid_softplus' numpy and numba twins ---
# --- could part (specials, exp overflow/underflow, saturation, tiny z)  ---

_LN2 = math.log(2.0)
_EXP_OVERFLOW = 709.782712893384  # largest x with a finite exp(x)
_EXP_UNDERFLOW = 745.1332191019411  # exp(-x) rounds to 0 beyond it


def _around(v):
    return [math.nextafter(v, -math.inf), v, math.nextafter(v, math.inf)]


ADVERSARIAL_MAGNITUDES = sorted(
    {
        0.0,
        math.inf,
        800.0,
        745.2,
        745.0,
        *_around(_EXP_UNDERFLOW),
        744.44007192138126,  # exp(-z) ~ 2**-1074, the smallest subnormal
        709.78,
        *_around(_EXP_OVERFLOW),
        708.39641853226408,  # exp(-z) ~ 2**-1022
        37.5,
        *_around(36.7368005696771),  # exp(-z) ~ 2**-53: 1 + e rounds to 1
        36.04365338911715,  # 2**-52
        20.0,
        *_around(1.5 * _LN2),  # fdlibm's k = +-1 shortcut
        *_around(_LN2 / 2),  # k = 0
        1.0,
        0.8813735870195429,  # e ~ 0.41422 (log1p's branch)
        0.5,
        *_around(2.0**-20),
        *_around(2.0**-28),  # exp(-z) = 1 - z
        2.0**-29,
        2.0**-54,
        1e-300,
        2.0**-1022,
        1e-310,
        5e-324,
    }
)
ADVERSARIAL = np.array([s * m for m in ADVERSARIAL_MAGNITUDES for s in (1.0, -1.0)] + [math.nan])


def margin_problem(z, order="C", seed=0):
    """X and coef whose margins are exactly ``z``: ``z*1 + u*(-0.0) + (-0.0)``
    (a second, random column ``u`` for the gradient's and Hessian's cross terms)."""
    z = np.asarray(z, dtype=np.float64)
    rng = np.random.default_rng(seed)
    X = np.empty((z.size, 2), order="F" if order == "F" else "C")
    X[:, 0] = z
    X[:, 1] = np.abs(rng.standard_normal(z.size))  # u >= 0: u*(-0.0) = -0.0 keeps z = -0.0
    if order == "strided":
        X = np.repeat(X, 2, axis=0)[::2]
    coef = np.array([1.0, -0.0, -0.0])
    return X, coef


def margin_specs(n, seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.random(n) * 4 + 0.25
    return [
        (None, KernelSpec()),
        (None, KernelSpec(hessian=True)),
        (weights, KernelSpec(class_weight=(0.7, 3.25), hessian=True)),
        (weights, KernelSpec(center=np.zeros(2), scale=np.ones(2), class_weight=(2.0, 0.5))),
        (weights, KernelSpec(center=np.zeros(2), scale=np.ones(2), hessian=True)),
    ]


@requires_numba
def test_adversarial_margins_are_exact():
    X, coef = margin_problem(ADVERSARIAL)
    got = kernel.margins(X, coef)
    assert got.tobytes() == ADVERSARIAL.tobytes()
    assert fused.margins_fast(X, coef).tobytes() == ADVERSARIAL.tobytes()


@requires_numba
@pytest.mark.parametrize("order", ["C", "F", "strided"])
def test_adversarial_margins_one_row_at_a_time(order):
    # One row per call: the state holds each row's terms exactly (its top bin
    # is the row's), so a last-bit difference in proba or softplus shows.
    for label in (0.0, 1.0):
        y = np.array([label])
        for i, z in enumerate(ADVERSARIAL):
            X, coef = margin_problem([z], order, seed=i)
            for weights, spec in margin_specs(1, seed=i):
                assert_same(X, y, coef, weights, spec)


@requires_numba
@pytest.mark.parametrize("order", ["C", "F", "strided"])
@pytest.mark.parametrize("block", [None, 1, 7, 64])
def test_adversarial_margins_together(monkeypatch, order, block):
    rng = np.random.default_rng(41)
    z = np.concatenate([ADVERSARIAL, rng.permutation(np.repeat(ADVERSARIAL, 3))])
    y = (rng.random(z.size) < 0.5).astype(np.float64)
    if block is not None:
        monkeypatch.setattr(fused, "_block_rows", lambda d: block)
    X, coef = margin_problem(z, order, seed=41)
    for weights, spec in margin_specs(z.size, seed=41):
        assert_same(X, y, coef, weights, spec)
    finite = np.isfinite(z)  # and without the NaN/inf rows: no flags to hide behind
    X, coef = margin_problem(z[finite], order, seed=42)
    for weights, spec in margin_specs(int(finite.sum()), seed=42):
        assert_same(X, y[finite], coef, weights, spec)


@requires_numba
def test_random_margins_over_every_scale():
    # Margins 10**[-320, 3] of both signs, through the margin tree (d = 5) and
    # one row per call for a sample of them.
    rng = np.random.default_rng(43)
    n = 20_000
    z = np.where(rng.random(n) < 0.5, -1.0, 1.0) * 10.0 ** rng.uniform(-320, 3, n)
    y = (rng.random(n) < 0.5).astype(np.float64)
    X, coef = margin_problem(z, "F", seed=43)
    for weights, spec in margin_specs(n, seed=43):
        assert_same(X, y, coef, weights, spec)
    X, y, coef = problem(44, n, 5, coef_scale=60.0, order="F")
    assert_same(X, y, coef, None, KernelSpec(hessian=True))
    for i in rng.choice(n, size=300, replace=False):
        Xi, ci = margin_problem(z[i : i + 1], seed=int(i))
        assert_same(Xi, y[i : i + 1], ci, None, KernelSpec(hessian=True))


@st.composite
def margin_cases(draw):
    z = draw(
        st.lists(
            st.one_of(st.sampled_from(ADVERSARIAL.tolist()), st.floats(), st.floats(-800.0, 800.0)),
            min_size=1,
            max_size=40,
        )
    )
    n = len(z)
    y = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n))
    weights = draw(st.one_of(st.none(), st.lists(st.floats(0.0, 1e6), min_size=n, max_size=n)))
    class_weight = draw(st.sampled_from([None, (1.0, 1.0), (0.1, 7.5)]))
    standardize = draw(st.booleans())
    spec = KernelSpec(
        center=np.zeros(2) if standardize else None,
        scale=np.ones(2) if standardize else None,
        class_weight=class_weight,
        hessian=draw(st.booleans()),
    )
    order = draw(st.sampled_from(["C", "F", "strided"]))
    return z, np.array(y), None if weights is None else np.array(weights), spec, order


@pytest.mark.slow
@requires_numba
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(margin_cases())
def test_hypothesis_margins_equal_to_reference(case):
    z, y, weights, spec, order = case
    X, coef = margin_problem(z, order)
    assert_same(X, y, coef, weights, spec)
    # the first row alone: its terms exactly
    assert_same(X[:1], y[:1], coef, None if weights is None else weights[:1], spec)


@requires_numba
@pytest.mark.parametrize("d, block", [(2, None), (64, None), (3, 7), (9, 1)])
@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_row_counts_around_block_boundaries(monkeypatch, d, block, offset):
    if block is not None:
        monkeypatch.setattr(fused, "_block_rows", lambda d: block)
    rows = fused._block_rows(d)
    for multiple in (1, 2, 3):
        n = multiple * rows + offset
        X, y, coef = problem(n + d, n, d, coef_scale=2.0, order="F" if multiple % 2 else "C")
        if n and d > 3:
            X[n // 2, 0] = np.nan  # a flagged row in the middle of a block
        weights = np.random.default_rng(n).random(n) * 3
        assert_same(X, y, coef)
        assert_same(X, y, coef, weights, hessian_spec(n, d))
    for n in (BLOCK_ROWS - 1 + offset, BLOCK_ROWS + 1 + offset):  # the reference's blocks
        X, y, coef = problem(n, n, d, order="F")
        assert_same(X, y, coef, None, KernelSpec(hessian=d <= 9))


@requires_numba
@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_row_counts_around_call_boundaries(monkeypatch, offset):
    monkeypatch.setattr(fused, "_CALL_ROWS", 700)
    for n in (700 + offset, 1400 + offset):
        X, y, coef = problem(n, n, 4)
        assert_same(X, y, coef, None, KernelSpec(hessian=True))
        assert_same(np.asfortranarray(X), y, coef, np.full(n, 1.5), full_spec(n, 4))


# --- Statistics pass: fused_stats against chunk_stats -----------------------


def assert_same_stats(X, y, weights=None):
    want = chunk_stats(X, y, weights)
    got = fused.fused_stats(X, y, weights)
    assert isinstance(got, Stats)
    assert got.n_samples == want.n_samples
    assert_same_sums(got.sums, want.sums)
    assert got == want
    assert fused.chunk_stats_fast(X, y, weights) == want
    return got


def stats_problem(seed, n, d, *, scale=1.0, order="C"):
    rng = np.random.default_rng(seed)
    X = np.asarray(rng.standard_normal((n, d)) * scale, order=order)
    y = (rng.random(n) < 0.4).astype(np.float64)
    weights = rng.random(n) * 4
    return X, y, weights


@requires_numba
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize(
    "n, d",
    [
        (0, 3),
        (0, 0),
        (1, 1),
        (1, 7),
        (2, 1),
        (5, 0),
        (257, 6),
        (3, 1000),
        (600, 1000),
        (1000, 33),
        (3000, 64),
        (16384, 2),
        (16385, 2),
        (40_000, 3),
    ],
)
def test_stats_equal_to_reference_on_shapes(order, n, d):
    X, y, weights = stats_problem(n * 43 + d, n, d, order=order)
    assert_same_stats(X, y)
    assert_same_stats(X, y, weights)
    # x with a full 53-bit mantissa at every scale: nonzero low parts
    X2 = np.asarray(X * 10.0 ** (np.arange(d) - d // 2) * np.pi, order=order)
    assert_same_stats(X2, y, weights)


@requires_numba
@pytest.mark.parametrize("order", ["C", "F"])
def test_stats_every_width(order):
    for d in range(0, 70):
        X, y, weights = stats_problem(d + 77, 37, d, scale=7.0, order=order)
        assert_same_stats(X, y, weights)


@requires_numba
@pytest.mark.parametrize(
    "view", ["rows_step", "cols_step", "reversed", "transposed", "offset", "f_rows_step", "f_cols_step"]
)
def test_stats_non_contiguous_inputs(view):
    X, y, weights = stats_problem(30, 3001, 12)
    if view == "rows_step":
        X, y, weights = X[::3], y[::3], weights[::3]
    elif view == "cols_step":
        X = X[:, ::2]
    elif view == "reversed":
        X, y, weights = X[::-1, ::-1], y[::-1], weights[::-1]
    elif view == "transposed":
        X = np.ascontiguousarray(X.T).T  # F-ordered
    elif view == "f_rows_step":
        X, y, weights = np.asfortranarray(X)[::3], y[::3], weights[::3]
    elif view == "f_cols_step":
        X = np.asfortranarray(X)[:, ::2]
    else:
        X, y, weights = X[17:2900, 3:], y[17:2900], weights[17:2900]
    assert_same_stats(X, y)
    assert_same_stats(X, y, weights)


@requires_numba
def test_stats_read_only_and_converted_inputs():
    X, y, weights = stats_problem(31, 800, 5)
    X.flags.writeable = False
    y.flags.writeable = False
    weights.flags.writeable = False
    assert_same_stats(X, y, weights)
    assert_same_stats(np.asfortranarray(X), y, weights)
    assert_same_stats(X.astype(np.float32), y.astype(np.int64), weights.astype(np.float32))
    assert_same_stats(np.round(X * 10).astype(np.int64), y.astype(bool), np.arange(800) % 5)
    assert_same_stats(X, y, list(weights))


@requires_numba
@pytest.mark.parametrize("order", ["C", "F"])
def test_stats_extreme_column_magnitudes(order):
    # Subnormal squares, squares that overflow (hi = inf, lo = NaN), values
    # whose Veltkamp split overflows, the edge below sqrt(DBL_MAX) where hi is
    # finite but lo is +inf, zeros, -0.0, ties and exact squares.
    rng = np.random.default_rng(32)
    n = 500
    edge = math.sqrt(np.finfo(np.float64).max)
    X = np.empty((n, 10), order=order)
    X[:, 0] = rng.random(n) * 1e-310
    X[:, 1] = rng.standard_normal(n) * 1e-160
    X[:, 2] = rng.standard_normal(n) * 1e153
    X[:, 3] = 0.0
    X[:, 4] = -0.0
    X[:, 5] = rng.choice(SPECIALS, size=n)
    X[:, 6] = rng.integers(-3, 4, size=n) * 0.5
    X[:, 7] = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, size=n)
    X[:, 8] = rng.standard_normal(n) * 1e300
    X[:, 9] = edge * (1.0 - rng.integers(0, 64, size=n) * 2.0**-52)
    y = (rng.random(n) < 0.5).astype(np.float64)
    got = assert_same_stats(X, y)
    assert got.sums.flags[10 + 8] == 2 and got.sums.flags[20 + 8] == 1  # hi = +inf, lo NaN
    assert got.sums.flags[10 + 9] == 0 and got.sums.flags[20 + 9] == 2  # hi finite, lo = +inf
    assert_same_stats(X, y, rng.random(n) * 1e-300)
    assert_same_stats(X, y, np.full(n, 1.7e308))
    for j in range(X.shape[1]):  # one column at a time: no other column's path
        assert_same_stats(X[:, j : j + 1], y)


@requires_numba
@pytest.mark.parametrize("order", ["C", "F"])
def test_stats_nan_and_inf_flags(order):
    X, y, weights = stats_problem(33, 3000, 6, order=order)
    X[10, 1] = np.nan
    X[2500, 3] = np.inf
    X[2600, 3] = -np.inf
    X[40, 4] = np.inf
    got = assert_same_stats(X, y)
    assert got.sums.flags.any()
    assert_same_stats(X, y, weights)
    y[5] = np.nan
    weights[9] = np.nan
    weights[11] = np.inf
    weights[12] = -np.inf
    assert_same_stats(X, y, weights)
    assert_same_stats(X, y)


@pytest.mark.slow
@requires_numba
def test_stats_top_bin_of_every_exponent():
    # One row, one feature: the x column holds exactly v, so its top bin is
    # top_bin(|v|); hi and lo run through every exponent of the square.
    y = np.array([1.0])
    for k in range(-1074, 1024):
        v = math.ldexp(1.0, k)
        for x in (v, -math.nextafter(v, 0.0), math.nextafter(v, math.inf)):
            got = assert_same_stats(np.array([[x]]), y, np.array([x]))
            assert got.sums.top[0] == top_bin(np.array([abs(x)]))[0]


@requires_numba
def test_stats_magnitudes_change_between_blocks():
    rng = np.random.default_rng(34)
    n, d = 20_000, 64
    X = rng.standard_normal((n, d))
    exponents = rng.choice([-300, -200, -60, -20, -1, 0, 3, 15, 40, 100, 150], size=n // 500)
    X *= np.repeat(10.0**exponents, 500)[:, None]
    X[:, 5] = rng.choice(SPECIALS, size=n)
    y = (rng.random(n) < 0.5).astype(np.float64)
    assert_same_stats(X, y)
    assert_same_stats(np.asfortranarray(X), y)
    weights = np.repeat(10.0 ** rng.integers(-250, 250, size=n // 250), 250)
    assert_same_stats(np.asfortranarray(X), y, weights)


@requires_numba
@pytest.mark.parametrize("block", [1, 2, 3, 255, 1024, BLOCK_ROWS])
def test_stats_block_size_does_not_change_the_result(monkeypatch, block):
    X, y, weights = stats_problem(35, 5000, 5, scale=1e3)
    X[::97] *= 1e-250
    X[::101] *= 1e150
    monkeypatch.setattr(fused, "_block_rows", lambda d: block)
    assert_same_stats(X, y, weights)
    assert_same_stats(np.asfortranarray(X), y)


@requires_numba
def test_stats_calls_split_into_int64_safe_pieces(monkeypatch):
    X, y, weights = stats_problem(36, 3000, 4)
    monkeypatch.setattr(fused, "_CALL_ROWS", 700)
    assert_same_stats(X, y, weights)
    assert_same_stats(np.asfortranarray(X), y)


@requires_numba
def test_stats_merge_with_reference_and_interface_errors():
    X, y, weights = stats_problem(37, 2000, 7, order="F")
    whole = chunk_stats(X, y, weights)
    mixed = fused.fused_stats(X[:1234], y[:1234], weights[:1234]).merge(chunk_stats(X[1234:], y[1234:], weights[1234:]))
    assert mixed == whole
    with pytest.raises(ValueError, match="y has shape"):
        fused.fused_stats(X, y[:-1])
    with pytest.raises(ValueError, match="weights have shape"):
        fused.fused_stats(X, y, weights[:-1])


def test_stats_need_numba_only():
    # No exp/log in the statistics pass: available wherever numba imports.
    pytest.importorskip("numba")
    assert fused.STATS_AVAILABLE is True


def test_chunk_stats_fast_is_a_drop_in_replacement(monkeypatch):
    X, y, weights = stats_problem(38, 700, 4, order="F")
    want = chunk_stats(X, y, weights)
    assert fused.chunk_stats_fast(X, y, weights) == want
    monkeypatch.setattr(fused, "STATS_AVAILABLE", False)
    assert fused.chunk_stats_fast(X, y, weights) == want


def test_evaluators_use_the_compiled_statistics_pass(monkeypatch):
    from pipeline import reduce, stream
    from pipeline.data import Chunk

    X, y, weights = stats_problem(39, 900, 3)
    calls = []
    original = fused.chunk_stats_fast

    def counting(*args):
        calls.append(len(args[1]))
        return original(*args)

    monkeypatch.setattr(fused, "chunk_stats_fast", counting)
    chunks = [(X[:400], y[:400], weights[:400]), (X[400:], y[400:], weights[400:])]
    # (with the extremes of the rows of positive weight, which the evaluators take next to the sums)
    assert reduce.InProcessEvaluator(chunks, 3).stats() == chunk_stats(X, y, weights).with_extremes(X, weights)
    assert stream.stats_kernel(Chunk(X, y, None)) == chunk_stats(X, y)
    assert calls == [400, 500, 900]


@st.composite
def stats_cases(draw):
    n = draw(st.sampled_from([0, 1, 2, 3, 5, 31, 64, 257, 1000]))
    d = draw(st.integers(0, 13))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = 10.0 ** draw(st.sampled_from([-300, -160, -30, -3, 0, 3, 30, 150, 300]))
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
    weights = rng.random(n) * 10.0 ** draw(st.integers(-5, 5)) if draw(st.booleans()) else None
    block = draw(st.sampled_from([None, 1, 7, 64]))
    return X, y, weights, block


@requires_numba
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stats_cases())
def test_hypothesis_stats_equal_to_reference(case):
    X, y, weights, block = case
    if block is None:
        assert_same_stats(X, y, weights)
        return
    original = fused._block_rows
    fused._block_rows = lambda d: block
    try:
        assert_same_stats(X, y, weights)
    finally:
        fused._block_rows = original


# --- Blocks, segments and int64-safe calls with the Hessian ------------------


@requires_numba
@pytest.mark.parametrize("block", [1, 3, 64])
def test_blocks_and_calls_do_not_change_the_hessian_pass(monkeypatch, block):
    X, y, coef = problem(21, 5000, 9, order="F")
    spec = hessian_spec(21, 9)
    want = chunk_partials(X, y, coef, None, spec)
    monkeypatch.setattr(fused, "_block_rows", lambda d: block)
    assert fused.fused_partials(X, y, coef, None, spec) == want
    assert fused.fused_partials(np.ascontiguousarray(X), y, coef, None, spec) == want
    monkeypatch.setattr(fused, "_CALL_ROWS", 1100)
    assert fused.fused_partials(X, y, coef, None, spec) == want


@requires_numba
@pytest.mark.parametrize("block", [1, 3, 64])
def test_segments_and_blocks_do_not_change_the_margins(monkeypatch, block):
    X, _, coef = problem(23, 5000, 9, scale=30.0)
    want = kernel.margins(X, coef)
    monkeypatch.setattr(fused, "_block_rows", lambda d: block)
    monkeypatch.setattr(fused, "_SEGMENT_BYTES", 8 * 9 * 7 * block)
    for Xv in (X, np.asfortranarray(X), X[:, ::-1][:, ::-1]):
        assert fused.margins_fast(Xv, coef).tobytes() == want.tobytes()


@pytest.mark.slow
@requires_numba
@pytest.mark.parametrize("order", ["C", "F", "strided"])
def test_compiled_margins_equal_the_reference(order):
    for d in [0, 1, 2, 3, 7, 8, 9, 33, 64, 70]:
        for n in [0, 1, 5, 3000]:
            X, _, coef = problem(n * 7 + d, n, d, scale=30.0, order="C" if order == "strided" else order)
            if order == "strided":
                X = np.repeat(X, 2, axis=1)[:, ::2]
            if n and d:
                X[0, 0] = np.nan
            got, want = fused.margins_fast(X, coef), kernel.margins(X, coef)
            assert got.tobytes() == want.tobytes(), (n, d)


@requires_numba
def test_the_compile_lock_gives_way_when_it_cannot_be_had(monkeypatch, tmp_path):
    """Without file locks (ENOLCK) or past the wait, a pass compiles on its own."""
    import fcntl

    X, y, coef = problem(31, 200, 3, order="F")
    want = chunk_partials(X, y, coef)

    def no_locks(handle, operation):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(fused, "_COMPILED", set())
    monkeypatch.setattr(fcntl, "flock", no_locks)
    assert fused.fused_partials(X, y, coef) == want
    monkeypatch.undo()
    # another holder of the lock: the wait is bounded
    monkeypatch.setattr(fused, "_COMPILED", set())
    monkeypatch.setattr(fused, "COMPILE_LOCK_WAIT_S", 0.2)
    monkeypatch.setattr(fused.tempfile, "gettempdir", lambda: str(tmp_path))
    with fused._compiling(("held",)):
        holder = next(tmp_path.glob("pipeline-numba-*.lock"))
        with open(holder, "a") as other:
            assert not fused._lock(other)
    with open(holder, "a") as other:  # released with the context
        assert fused._lock(other)


def narrow_values(dtype: str, n: int, d: int, order: str) -> np.ndarray:
    """Values of ``dtype`` spanning its range (extremes included), in ``order``."""
    rng = np.random.default_rng(zlib.crc32(dtype.encode()))  # (hash() of text changes per process)
    kind = np.dtype(dtype)
    if kind == np.bool_:
        values = rng.random((n, d)) < 0.4
    elif kind.kind in "iu":
        info = np.iinfo(kind)
        values = rng.integers(info.min, info.max, (n, d), endpoint=True, dtype=kind)
        values[0] = info.min
        values[1] = info.max
    else:
        values = (rng.standard_normal((n, d)) * np.logspace(-30, 30, d)).astype(kind)
        values[0] = np.finfo(kind).max
        values[1] = np.finfo(kind).tiny / 4  # subnormal
    return np.asarray(values, order=order)


#: each dtype x layout compiles its own kernels (10-15 s apiece on a clean
#: cache), so: column-major (what Parquet decodes to) float32, signed 8 and
#: 32, unsigned 8 (Parquet's booleans and level codes) and 16, and numpy's
#: bool (the estimator's); int16 takes the same integer widening and goes end
#: to end in test_narrow; row-major one float, one integer and the boolean
NARROW_DTYPES = ["float32", "int8", "uint8", "uint16", "int32", "bool"]
NARROW_C_ORDER = ["float32", "int8", "bool"]


@requires_numba
@pytest.mark.parametrize(
    "order, dtype", [("F", dtype) for dtype in NARROW_DTYPES] + [("C", dtype) for dtype in NARROW_C_ORDER]
)
def test_narrow_features_stay_narrow_with_the_same_bits(order, dtype):
    """Narrow features go into the compiled passes as they are (widened exactly
    inside) and give the sums of the same values stored as float64: loss,
    Hessian (standardized or not, weighted or not), statistics and margins,
    including a ragged last block and a transposed tile tail.  Every narrow
    dtype column-major (what Parquet decodes to); row-major for one of each kind."""
    n, d = 2 * 2048 + 7, 6
    X = narrow_values(dtype, n, d, order)
    assert kernel.kernel_features(X) is X
    wide = np.asarray(X.astype(np.float64), order=order)
    rng = np.random.default_rng(1)
    y = (rng.random(n) < 0.5).astype(np.float64)
    scale = np.abs(wide).max(axis=0) + 1.0
    coef = rng.normal(0, 1, d + 1) / np.append(scale, 1.0)
    weights = rng.random(n)
    standardized = KernelSpec(center=wide.mean(axis=0), scale=scale)
    for spec, w in [
        (KernelSpec(), None),
        (KernelSpec(hessian=True), weights),
        (standardized, weights),
        (standardized.with_hessian(True), None),
    ]:
        got = fused.fused_partials(X, y, coef, w, spec)
        assert got == fused.fused_partials(wide, y, coef, w, spec)
        assert got == chunk_partials(wide, y, coef, w, spec)
    assert fused.fused_stats(X, y, weights) == chunk_stats(wide, y, weights)
    assert fused.margins_fast(X, coef).tobytes() == kernel.margins(wide, coef).tobytes()


def test_kernel_features_keeps_narrow_dtypes_and_widens_the_rest():
    for dtype in ["float64", "float32", "int8", "uint8", "int16", "uint16", "int32", "bool"]:
        X = np.zeros((3, 2), dtype=dtype)
        assert kernel.kernel_features(X) is X
    for dtype in ["int64", "uint32", "uint64", "float16", ">f8", ">f4"]:
        X = np.ones((3, 2), dtype=dtype)
        widened = kernel.kernel_features(X)
        assert widened.dtype == np.dtype(np.float64) and widened.dtype.isnative
        np.testing.assert_array_equal(widened, 1.0)


def _reference_digits(values: np.ndarray, top: int, depth: int) -> list[np.ndarray]:
    """Each value's round-half-even digits at top bin ``top`` as
    :func:`pipeline.exact._deposit_block` splits it: scaled by ``2**-(E0 +
    W*top)``, then ``rint`` and ``(y - a) * 2**W`` per bin."""
    scaled = values * np.ldexp(1.0, -(GRID_E0 + BIN_WIDTH * top))
    digits = []
    for _ in range(depth):
        digit = np.rint(scaled)
        digits.append(digit.astype(np.int64))
        scaled = (scaled - digit) * float(2**BIN_WIDTH)
    return digits


@requires_numba
@pytest.mark.parametrize("depth", [3, 2])
def test_deposit_digits_every_value_and_top(depth):
    """The compiled deposit's digits (rounded by adding 1.5 * 2**52 * u_k at
    each bin, no scaling) are the reference's (scaled, then rint) for values
    of every binade, subnormals, exact ties of every bin and every top bin
    from the value's own up to the highest (52, where the rounders would
    overflow and the values are scaled down first): one value per call, so
    no digit error hides in a sum."""
    rng = np.random.default_rng(14)
    exponents = np.arange(-1074, 1024)
    values = list(np.ldexp(1.0 + rng.random(exponents.size), exponents))  # every binade
    values += list(-np.ldexp(rng.random(200), -1022))  # subnormals
    values += [np.finfo(np.float64).max, -np.finfo(np.float64).max, 5e-324, 0.0, -0.0]
    for t in range(2, 53):  # ties at each bin's half unit, and next to them
        for k in range(depth):
            unit = np.ldexp(1.0, GRID_E0 + BIN_WIDTH * (t - k))
            for multiple in (0.5, 1.5, 2.5, 7.5, 2.0**38 + 0.5):
                tie = multiple * unit
                if tie < np.finfo(np.float64).max:
                    values += [tie, -tie, np.nextafter(tie, 0.0), np.nextafter(tie, np.inf)]
    values = np.array(values)
    values = values[np.isfinite(values)]
    ones = np.ones(1)
    own = top_bin(np.abs(values))
    checked = 0
    for v, t_own in zip(values, own):
        for t in sorted({int(t_own), min(int(t_own) + 1, 52), 52}):
            top = np.array([t], dtype=np.int64)
            acc = np.zeros((depth, 1), dtype=np.int64)
            fused._deposit_products(np.array([v]), ones, 1, np.int64(t), 0, top, acc, None)
            want = _reference_digits(np.array([v]), t, depth)
            assert [int(acc[k, 0]) for k in range(depth)] == [int(w[0]) for w in want], (v, t)
            checked += 1
    assert checked > 3 * 2000


@requires_numba
@pytest.mark.parametrize("block", [1, 4, 64])
def test_one_sweep_deposits_at_the_running_top_only_when_it_fits(monkeypatch, block):
    """X read in place: each column's products are deposited at its running
    top bin in the sweep that finds their maximum (``_deposit_column``); a
    block whose terms outgrow that top, hold a NaN or inf, or reach the
    highest top bin (2**1005 and more, scaled down first) must be redone --
    rows ordered so that every column's top rises block after block."""
    rng = np.random.default_rng(15)
    n, d = 600, 4
    rising = np.repeat(10.0 ** np.linspace(-300, 300, n // 20), 20)
    X = np.asfortranarray(rng.standard_normal((n, d)) * rising[:, None])
    X[n - 40 :, 1] *= 1e7  # up to 2**1016 or so: the highest top bin
    X[n - 30 :, 2] = np.ldexp(1.0 + rng.random(30), 1010)
    y = (rng.random(n) < 0.5).astype(np.float64)
    coef = np.zeros(d + 1)  # residuals +-1/2: the terms keep X's magnitudes
    monkeypatch.setattr(fused, "_block_rows", lambda d: block)
    assert_same(X, y, coef)
    assert_same(X, y, coef, rng.random(n) + 0.5)
    late = X.copy(order="F")
    late[n // 2, 0] = np.nan  # after the column's top is set
    late[n // 2 + 7, 3] = np.inf
    late[n - 5, 1] = np.nan  # in a block whose terms reach the highest top bin
    late[n - 1, 2] = np.finfo(np.float64).max  # the largest term: top bin 52
    assert_same(late, y, coef)
    assert_same(late, y, coef.copy(), None, KernelSpec(hessian=True))


@requires_numba
@pytest.mark.parametrize("at", [0, 1, 2])
def test_the_running_top_keeps_a_sweep_only_under_its_capacity(monkeypatch, at):
    """A sweep at a column's running top bin T (``_deposit_column``, and
    ``_deposit_pair`` for two columns side by side) is kept when the block's
    largest term is below ``cap(T) = 2**39 u_T`` and redone at its own top
    otherwise.  Terms around half the capacity, just below it, at it (top
    T + 1) and beyond the rounder's reach, in either column of a pair (``at``
    0 or 1) or in the column left over (2), next to columns that fit: a sweep
    kept past the capacity would leave the column at a top below the
    reference's."""
    top = 27
    unit = math.ldexp(1.0, GRID_E0 + BIN_WIDTH * top)
    cap = 2.0**39 * unit
    half = 2.0**38 * unit
    edges = [
        half,
        -half,
        (2.0**38 - 0.5) * unit,  # a tie at a digit of 2**38
        -(2.0**38 + 0.5) * unit,
        (2.0**38 - 1.0) * unit,
        math.nextafter(half, 0.0),
        math.nextafter(cap, 0.0),
        cap,
        -cap,
        2.0**51 * unit,
        -(2.0**53) * unit,
    ]
    monkeypatch.setattr(fused, "_block_rows", lambda d: 2)
    y = np.array([0.0, 1.0, 0.0, 1.0])  # coef 0: residuals +1/2, -1/2, +1/2, -1/2
    for term in edges:
        X = np.full((4, 3), 2.0 * cap / 4.0, order="F")  # first block: terms cap/4, top T
        X[2:, :] = 2.0 * (half / 3.0)  # second block: terms that fit
        X[2, at] = 2.0 * term
        X[3, at] = -2.0 * term / 3.0
        got = assert_same(X, y, np.zeros(4))
        assert int(got.sums.top[at]) == (top if abs(term) < cap else int(top_bin(np.array([abs(term)]))[0]))
