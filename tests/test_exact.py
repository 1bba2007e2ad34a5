"""Exact, order-independent column sums (pipeline.exact)."""

import math
import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.exact import BIN_WIDTH, BLOCK_ROWS, GRID_E0, N_BINS, ExactSums, top_bin


def exact_oracle(values, depth: int = N_BINS) -> float:
    """sum_i RNE(v_i / u_L) * u_L, rounded once: the specified result
    (``L = T - (depth - 1)``)."""
    values = [float(v) for v in values]
    bound = max((abs(v) for v in values), default=0.0)
    top = int(top_bin(np.array([bound]))[0])
    unit = Fraction(2) ** (GRID_E0 + BIN_WIDTH * (top - (depth - 1)))
    total = sum((round(Fraction(v) / unit) * unit for v in values), Fraction(0))
    return float(total)  # Fraction -> float is correctly rounded


def sums(values) -> float:
    return float(ExactSums.of(np.asarray(values, dtype=np.float64).reshape(-1, 1)).finalize()[0])


def adversarial(rng: np.random.Generator, n: int) -> np.ndarray:
    exponents = rng.uniform(-12, 12, size=n)
    signs = rng.choice([-1.0, 1.0], size=n)
    return signs * 10.0**exponents


def test_top_bin_is_monotone_and_has_capacity():
    bounds = np.array([0.0, 5e-324, 1e-300, 1e-12, 0.5, 1.0, 2.0**39, 1e12, 1e300, 1.7e308])
    tops = top_bin(bounds)
    assert np.all(np.diff(tops) >= 0)
    assert tops[0] == N_BINS - 1
    for bound, top in zip(bounds, tops):
        capacity = 2.0 ** (GRID_E0 + BIN_WIDTH * int(top) + BIN_WIDTH - 1) if top < 52 else math.inf
        assert bound < capacity
        if top > N_BINS - 1:  # the bin below would be too small
            assert bound >= 2.0 ** (GRID_E0 + BIN_WIDTH * (int(top) - 1) + BIN_WIDTH - 1)


@pytest.mark.parametrize("seed", range(5))
def test_adversarial_sums_equal_fsum(seed):
    rng = np.random.default_rng(seed)
    values = adversarial(rng, 5000)
    assert sums(values) == math.fsum(values)


def test_heavy_cancellation_equals_fsum():
    rng = np.random.default_rng(1)
    big = rng.uniform(1e11, 1e12, size=2000)
    small = rng.uniform(-1.0, 1.0, size=2000).round(6)
    values = np.concatenate([big, -big, small, [0.1, 0.2, 0.3, -0.6]])
    rng.shuffle(values)
    assert sums(values) == math.fsum(values)
    # representable on the grid: exact even when everything cancels
    dyadic = np.array([2.0**30, 1.0, -(2.0**30), 2.0**-40, -1.0])
    assert sums(dyadic) == math.fsum(dyadic) == 2.0**-40


@pytest.mark.parametrize("seed", range(3))
def test_matches_rounding_oracle_on_extreme_ranges(seed):
    # Terms far below the largest are rounded to the grid, identically for
    # every split; the result is exactly the specified rounding.
    rng = np.random.default_rng(seed)
    values = np.concatenate([adversarial(rng, 300), [1e-300, -3e-310, 5e-324, 1e200]])
    assert sums(values) == exact_oracle(values)


def test_split_merge_order_and_layout_do_not_matter():
    rng = np.random.default_rng(3)
    values = adversarial(rng, 3 * (BLOCK_ROWS + 17)).reshape(-1, 3)
    reference = ExactSums.of(values)
    for _ in range(5):
        cuts = sorted(rng.choice(values.shape[0], size=6, replace=False))
        parts = [ExactSums.of(p) for p in np.split(values, cuts)]
        random.Random(int(rng.integers(1 << 30))).shuffle(parts)
        total = ExactSums.zeros(3)
        for part in parts:
            total = part.merge(total) if rng.random() < 0.5 else total.merge(part)
        assert total == reference
        assert total.finalize().tobytes() == reference.finalize().tobytes()
    assert ExactSums.of(np.asfortranarray(values)) == reference


@settings(max_examples=120, deadline=None)
@given(
    values=st.lists(
        st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e15, max_value=1e15),
        min_size=0,
        max_size=60,
    ),
    depth=st.sampled_from([N_BINS, N_BINS, 2, 1]),  # fewer bins: the Hessian's (kernel.HESSIAN_BINS)
    data=st.data(),
)
def test_any_merge_tree_gives_the_same_bits(values, depth, data):
    """Any split and merge order gives the specified rounding, for every depth:
    fewer bins are rounded at the last kept bin, independent of the split."""
    array = np.array(values, dtype=np.float64).reshape(-1, 1)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(values)), max_size=8)))
    states = [ExactSums.of(part, depth) for part in np.split(array, cuts)]
    while len(states) > 1:  # random binary merge tree
        i = data.draw(st.integers(0, len(states) - 2))
        states[i : i + 2] = [states[i].merge(states[i + 1])]
    assert states[0].depth == depth
    assert states[0] == ExactSums.of(array, depth)
    result = states[0].finalize()
    assert result.tobytes() == ExactSums.of(array, depth).finalize().tobytes()
    assert result[0] == exact_oracle(values, depth)


def test_empty_state_is_identity():
    values = np.array([[1.5, -2.0], [1e10, 3.0]])
    state = ExactSums.of(values)
    assert state.merge(ExactSums.zeros(2)) == state
    assert ExactSums.zeros(2).merge(state) == state
    assert ExactSums.of(np.empty((0, 2))).finalize().tolist() == [0.0, 0.0]


def test_nan_and_infinities_propagate():
    values = np.array(
        [
            [1.0, 1.0, 1.0, 1.0, 1.0],
            [np.nan, np.inf, -np.inf, np.inf, 2.0],
            [3.0, 2.0, 2.0, -np.inf, 2.0],
        ]
    )
    result = ExactSums.of(values).finalize()
    assert np.isnan(result[0])
    assert result[1] == np.inf
    assert result[2] == -np.inf
    assert np.isnan(result[3])  # +inf and -inf together
    assert result[4] == 5.0
    # flags survive merging from separate chunks
    split = ExactSums.of(values[:2]).merge(ExactSums.of(values[2:])).finalize()
    assert split.tobytes() == result.tobytes()


def test_overflowing_total_becomes_infinity():
    values = np.full((4, 1), 1.7e308)
    assert ExactSums.of(values).finalize()[0] == np.inf
    assert ExactSums.of(-values).finalize()[0] == -np.inf


def test_totals_stay_exact_across_blocks():
    # 40k rows near 2**38: each block sum nears 2**53, the total exceeds it.
    values = np.full((40_000, 1), 2.0**38 + 0.75)
    assert sums(values) == math.fsum(values.ravel())


# -- fewer bins (the Hessian's: pipeline.kernel.HESSIAN_BINS) ------------------------


def test_two_bins_keep_40_bits_below_the_largest_term():
    rng = np.random.default_rng(7)
    values = adversarial(rng, 3 * BLOCK_ROWS + 11).reshape(-1, 1) * 1e-3
    two = float(ExactSums.of(values, 2).finalize()[0])
    assert two == exact_oracle(values[:, 0], 2)
    # every term rounded at 2**-40 of the top bin's unit or finer: the error is
    # far below the terms' size
    largest = float(np.abs(values).max())
    assert abs(two - math.fsum(values[:, 0])) <= len(values) * largest * 2.0**-39
    assert ExactSums.of(values, 2) != ExactSums.of(values)


def test_states_of_different_depths_do_not_merge():
    with pytest.raises(ValueError, match="2 bins"):
        ExactSums.zeros(1).merge(ExactSums.zeros(1, 2))
    with pytest.raises(ValueError, match="depth"):
        ExactSums.zeros(1, 4)
