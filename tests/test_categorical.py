"""Categorical columns: text, dictionary and integer-coded columns as levels.

What is shown here:

* the levels depend on the multiset of rows only (files listed or read in
  any order, dictionary pages that differ between files, a level absent
  from some files), sorted by value, ``<null>`` then ``<other>`` last;
* the kernels never build a one-hot matrix, yet the loss and gradient are
  those of the one-hot design, and the compiled pass equals the reference;
* the optimum is scikit-learn's ``ColumnTransformer(OneHotEncoder(
  handle_unknown="ignore"), SimpleImputer(strategy="mean"))`` +
  ``LogisticRegression`` on the same objective, coefficients matched by
  level name, with and without L2, with missing numeric values;
* the model's bytes are the same for any partitioning, in-process, on 1 and
  2 workers in every cache mode, and after a resume;
* ``predict`` maps unseen values to ``<other>`` (or to nothing), and bad
  input gets one clear error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import ClusterSpec, Penalty, SolverOptions, TrainConfig, train
from pipeline.checkpoint import load_checkpoint, save_checkpoint
from pipeline.data import open_dataset
from pipeline.errors import ColumnTypeError, ConfigError, DataWarning, TooManyLevelsError
from pipeline.fitting import fit
from pipeline.fused import fused_partials, margins_fast
from pipeline.kernel import Categories, KernelSpec, chunk_partials, level_top
from pipeline.levels import LevelCounts, Vocabulary, count_levels, vocabulary
from pipeline.model import Model
from pipeline.objective import LogisticObjective
from pipeline.predict import evaluate, predict
from pipeline.reduce import InProcessEvaluator

N_ROWS = 3000
COUNTRIES = np.array(["BR", "DE", "FR", "JP", "US", "ZA"])
OPTIONS = SolverOptions(tol=1e-9)
LOSS_GAP = 1e-9


def columns(seed: int = 11) -> dict[str, np.ndarray]:
    """``x`` numeric (with nulls), ``country`` text (with nulls; ZA in 3 rows), ``device`` integer-coded."""
    rng = np.random.default_rng(seed)
    country = rng.choice(COUNTRIES[:5], N_ROWS, p=[0.1, 0.3, 0.3, 0.2, 0.1])
    country[[5, 1500, 2999]] = "ZA"
    values = {
        "x": rng.standard_normal(N_ROWS),
        "country": country,
        "device": rng.integers(0, 4, N_ROWS).astype(np.int32),
        "x_null": rng.random(N_ROWS) < 0.05,
        "country_null": rng.random(N_ROWS) < 0.04,
    }
    effect = {"BR": 1.0, "DE": -0.3, "FR": 0.4, "JP": -1.0, "US": 0.2, "ZA": 0.0}
    margin = values["x"] + np.array([effect[c] for c in country]) + 0.3 * values["device"] - 0.5
    values["y"] = (rng.random(N_ROWS) < 1.0 / (1.0 + np.exp(-margin))).astype(np.int8)
    return values


def table(start: int, stop: int, dictionary: bool = False) -> pa.Table:
    values = columns()
    part = slice(start, stop)
    country = pa.array(values["country"][part], mask=values["country_null"][part])
    if dictionary:
        country = pc.dictionary_encode(country)
    return pa.table(
        {
            "x": pa.array(values["x"][part], mask=values["x_null"][part]),
            "country": country,
            "device": values["device"][part],
            "y": values["y"][part],
        }
    )


def write(directory: Path, cuts=(1100, 2000), row_group: int = 400) -> Path:
    directory.mkdir(parents=True)
    bounds = [0, *cuts, N_ROWS]
    for index, (start, stop) in enumerate(zip(bounds, bounds[1:])):
        # every other file dictionary-encoded: the files' dictionaries differ
        pq.write_table(
            table(start, stop, dictionary=index % 2 == 1), directory / f"part-{index}.parquet", row_group_size=row_group
        )
    return directory


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write(tmp_path_factory.mktemp("categorical") / "data")


def config(data: Path, **more) -> TrainConfig:
    settings_ = dict(
        data=str(data),
        label="y",
        categorical=("device",),
        options=OPTIONS,
        penalty=Penalty(l2=1e-3),
        missing="mean",
        cluster=None,
    )
    settings_.update(more)
    return TrainConfig(**settings_)


@pytest.fixture(scope="module")
def reference(data) -> Model:
    return train(config(data))


def assert_identical(model: Model, reference: Model) -> None:
    assert model.features == reference.features
    assert np.array(model.coef).tobytes() == np.array(reference.coef).tobytes()
    assert np.float64(model.intercept).tobytes() == np.float64(reference.intercept).tobytes()
    assert model.loss_history == reference.loss_history
    assert model.categorical == reference.categorical
    assert model.digest == reference.digest


def one_hot(values: dict, model: Model) -> np.ndarray:
    """The design scikit-learn's pipeline builds: x (imputed; its indicator when
    the model has one), then one 0/1 column per level."""
    x = np.where(values["x_null"], model.impute[0], values["x"])
    parts = [x[:, None]] + ([values["x_null"][:, None].astype(np.float64)] if model.indicators else [])
    country = np.where(values["country_null"], None, values["country"].astype(object))
    for vocabulary_ in model.vocabularies:
        column = country if vocabulary_.column == "country" else values["device"]
        levels = list(vocabulary_.values) + ([None] if vocabulary_.null else [])
        parts.append(np.column_stack([[v == level for v in column] for level in levels]).astype(np.float64))
    return np.column_stack(parts)


# --------------------------------------------------------------------------- levels


def test_levels_are_sorted_values_then_null_then_other():
    counted = LevelCounts({"b": 5, "a": 5, "c": 1, "d": 9}, nulls=2)
    assert vocabulary("v", "str", counted).level_names() == ["v=a", "v=b", "v=c", "v=d", "v=<null>"]
    rare = vocabulary("v", "str", counted, min_count=2)
    assert rare.level_names() == ["v=a", "v=b", "v=d", "v=<null>", "v=<other>"] and rare.counts == (5, 5, 9, 2, 1)
    top = vocabulary("v", "str", counted, max_levels=2)  # d (9), then a before b (tie: by value)
    assert top.values == ("a", "d") and top.counts == (5, 9, 2, 6)


def test_too_many_levels_without_a_policy_is_refused_with_a_hint():
    counted = LevelCounts({str(i): 1 for i in range(70_000)})
    with pytest.raises(TooManyLevelsError, match="70000 distinct values.*--max-categories.*--hash-buckets"):
        vocabulary("user", "str", counted)
    assert vocabulary("user", "str", counted, max_levels=10).size == 11


def test_codes_of_values_nulls_and_unseen_values():
    levels = vocabulary("c", "str", LevelCounts({"a": 3, "b": 1, "c": 4}, 1), min_count=2)
    assert levels.level_names() == ["c=a", "c=c", "c=<null>", "c=<other>"]
    column = pa.array(["c", None, "b", "zz", "a"])
    assert levels.codes(column).tolist() == [1, 2, 3, 3, 0]
    assert levels.codes(pc.dictionary_encode(column)).tolist() == [1, 2, 3, 3, 0]
    closed = vocabulary("c", "str", LevelCounts({"a": 3, "c": 4}))
    assert closed.codes(column).tolist() == [1, 2, 2, 2, 0]  # no <null>, no <other>: code 2 = size (contributes 0)
    with pytest.raises(ColumnTypeError, match="categorical column 'c'.*expected text"):
        closed.codes(pa.array([1, 2]))


def test_the_levels_do_not_depend_on_the_files_or_their_order(data, tmp_path):
    reference = open_dataset(str(data), "y", categorical=["device"])
    parts = [reference.level_counter(chunk) for chunk in reference.chunks]
    merged = parts[0]
    for part in parts[1:]:
        merged = {name: merged[name].merge(part[name]) for name in merged}
    backwards = parts[-1]
    for part in parts[-2::-1]:
        backwards = {name: backwards[name].merge(part[name]) for name in backwards}
    assert merged == backwards
    whole = count_levels(pa.array(np.where(columns()["country_null"], None, columns()["country"])), "str")
    assert merged["country"] == whole
    one_file = tmp_path / "one"
    one_file.mkdir()
    pq.write_table(table(0, N_ROWS), one_file / "all.parquet", row_group_size=N_ROWS)
    assert train(config(one_file)).categorical == train(config(data)).categorical


# --------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("sizes", [(3, 5, 1), (4, 2)])  # an odd and an even number of columns (paired sweeps)
@pytest.mark.parametrize("layout", ["F", "C", "float32"])
def test_the_compiled_pass_equals_the_reference_and_the_one_hot_loss(layout, sizes):
    rng = np.random.default_rng(4)
    n = 2500
    dense = rng.standard_normal((n, 2))
    codes = np.column_stack([rng.integers(0, k, n) for k in sizes])
    X = np.column_stack([dense, codes])
    X = {"F": np.asfortranarray(X), "C": np.ascontiguousarray(X), "float32": np.asfortranarray(X, np.float32)}[layout]
    y = (rng.random(n) < 0.4).astype(np.float64)
    weights = rng.uniform(0.5, 2.0, n)
    categories = Categories(sizes, level_top(n, 2.0 * 3.0))
    coef = rng.standard_normal(2 + sum(sizes) + 1)
    spec = KernelSpec(center=np.zeros(2), scale=np.full(2, 2.0), class_weight=(1.0, 3.0), categories=categories)
    reference = chunk_partials(X, y, coef, weights, spec)
    assert fused_partials(X, y, coef, weights, spec) == reference
    # split anywhere: the same sums
    halves = chunk_partials(X[:777], y[:777], coef, weights[:777], spec).merge(
        chunk_partials(X[777:], y[777:], coef, weights[777:], spec)
    )
    assert halves == reference
    # the one-hot design's loss and gradient (the margins add in another order: ulps)
    dense = X[:, :2].astype(np.float64)  # (as stored: float32 rounds)
    hot = np.column_stack([dense / 2.0] + [np.eye(k)[codes[:, c]] for c, k in enumerate(sizes)])
    plain = chunk_partials(hot, y, coef, weights, KernelSpec(class_weight=(1.0, 3.0)))
    assert np.allclose(reference.finalize()[1], plain.finalize()[1], rtol=1e-12, atol=1e-9)
    assert np.isclose(reference.finalize()[0], plain.finalize()[0], rtol=1e-14)
    margin = margins_fast(X, coef, None, categories)
    assert np.allclose(margin, dense @ coef[:2] + hot[:, 2:] @ coef[2:-1] + coef[-1], rtol=1e-13, atol=1e-13)


def test_a_cross_validation_pass_with_levels_is_each_fits_own_pass_compiled_or_not():
    """A cross-validation pass (``--cv``) over level codes: each fit's sums --
    a fold's training rows, a fold's held-out rows, every row, each with its
    own spec and level top bin -- are those of a pass over its rows alone, in
    the reference and the compiled kernel alike; each fold's statistics count
    its rows per level."""
    from pipeline.data import FOLD_CODE
    from pipeline.fused import chunk_partials_fast
    from pipeline.kernel import FoldMember, FoldSpec, accumulate, chunk_stats, fold_stats, level_rows
    from pipeline.reduce import state_levels

    rng = np.random.default_rng(8)
    n, sizes = 3000, (4, 7)
    codes = np.column_stack([rng.integers(0, k, n) for k in sizes])
    X = np.asfortranarray(np.column_stack([rng.standard_normal((n, 2)), codes]))
    y = (rng.random(n) < 0.4).astype(np.float64)
    fold = rng.integers(0, 3, n)
    weights = rng.uniform(0.5, 2.0, n)
    high = level_top(n, 2.0**40)  # (a fit's own top bin: any valid one)
    members = (
        FoldMember(0, False, KernelSpec(categories=Categories(sizes, level_top(n, 2.0)))),
        FoldMember(1, True, KernelSpec(center=np.ones(2), scale=np.full(2, 2.0), categories=Categories(sizes, high))),
        FoldMember(-1, False, KernelSpec(class_weight=(1.0, 3.0), categories=Categories(sizes, level_top(n, 6.0)))),
    )
    width = 2 + sum(sizes) + 1
    coef = rng.standard_normal(width * len(members))
    spec = KernelSpec(folds=FoldSpec(members))
    reference = chunk_partials(X, y + FOLD_CODE * fold, coef, weights, spec)
    assert chunk_partials_fast(X, y + FOLD_CODE * fold, coef, weights, spec) == reference
    # a pass's batches add into one running state (each fit's levels in place), as merges would
    first, rest = (chunk_partials(X[s], (y + FOLD_CODE * fold)[s], coef, weights[s], spec) for s in np.s_[:1234, 1234:])
    bins = [part.levels.bins for part in first.parts]
    running = accumulate(first, rest)
    assert running == reference and all(part.levels.bins is b for part, b in zip(running.parts, bins))
    assert state_levels(reference) == 3 * sum(sizes)  # (so a large one merges on the workers)
    for k, (member, rows) in enumerate(zip(members, [fold != 0, fold == 1, fold >= 0])):
        alone = chunk_partials(X[rows], y[rows], coef[k * width : (k + 1) * width], weights[rows], member.spec)
        assert reference.parts[k] == alone  # (its rows' count too)
        assert reference.parts[k].finalize()[1].tobytes() == alone.finalize()[1].tobytes()
    # rows grouped by fold (as the reader gives them): each fit passes over its slices only, to the same sums,
    # weighted or not (a fit's rows then keep the unweighted pass: no weights of 0 and 1)
    order = np.argsort(fold, kind="stable")
    grouped = (np.asfortranarray(X[order]), (y + FOLD_CODE * fold)[order])
    for kernel in (chunk_partials, chunk_partials_fast):
        assert kernel(*grouped, coef, weights[order], spec) == reference
        assert kernel(*grouped, coef, None, spec) == chunk_partials(X, y + FOLD_CODE * fold, coef, None, spec)
    stats = fold_stats(X, y + FOLD_CODE * fold, weights, 3, chunk_stats, Categories(sizes))
    for k in range(3):
        assert stats.parts[k].level_rows.tolist() == level_rows(X[fold == k], Categories(sizes)).tolist()
    assert stats.training(1).level_rows.tolist() == level_rows(X[fold != 1], Categories(sizes)).tolist()
    assert fold_stats(*grouped, weights[order], 3, chunk_stats, Categories(sizes)) == stats


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6000), span=st.integers(0, 320))
def test_the_compiled_level_sums_equal_the_reference_for_terms_of_any_size(seed, n, span):
    """The compiled pass sums a level's terms as 128-bit integers (their room
    never runs out here) and splits them into the three bins at the end; the
    reference adds the three digits apiece.  Terms of every size (weights from 1e-``span``, below the grid's
    last digit, up to the bound), of both signs, thousands on one level
    (carries of the low word), and a ragged last block: the same bins."""
    rng = np.random.default_rng(seed)
    sizes = (1, 2, 7)
    X = np.asfortranarray(
        np.column_stack([rng.standard_normal(n), *(rng.integers(0, k, n) for k in sizes)]).astype(np.float64)
    )
    y = (rng.random(n) < 0.5).astype(np.float64)
    weights = 10.0 ** rng.uniform(-span, 3.0, n)
    coef = rng.standard_normal(1 + sum(sizes) + 1) * 4.0  # probabilities near 0 and 1 too
    spec = KernelSpec(categories=Categories(sizes, level_top(n, 1e3)))
    assert fused_partials(X, y, coef, weights, spec) == chunk_partials(X, y, coef, weights, spec)


@pytest.mark.parametrize(("n", "n_dense"), [(200_000, 1), (20_000, 64)])
def test_the_compiled_level_sums_hold_sums_past_128_bits(n, n_dense):
    """The compiled pass adds a level's terms as 128-bit integers while their
    room lasts.  Here residuals of -1 on one level (every other row weighted 1,
    the others by 1e-30 to 1: digits in every bin), at the top bin of a bound
    of 1 on up to 262,144 rows (26), sum to more than 2**127 units of the last
    bin, past a 128-bit word: blocks of 16,384 rows (one dense feature) take
    more than a full room and go to the three bins directly; blocks of 1,024
    rows (64 features) fit, and the pairs move to the bins whenever the room
    runs out.  The bins equal the reference's either way."""
    rng = np.random.default_rng(11)
    sizes = (1, 3)
    X = np.asfortranarray(np.column_stack([rng.standard_normal((n, n_dense)), np.zeros(n), rng.integers(0, 3, n)]))
    y = np.ones(n)
    weights = np.where(np.arange(n) % 2 == 0, 1.0, 10.0 ** rng.uniform(-30.0, 0.0, n))
    coef = np.concatenate([np.full(n_dense, 0.01), [-40.0, 0.0, 0.0, 0.0, 0.0]])  # residuals -1 (to 2**-53)
    top = level_top(n, 1.0)
    assert top == 26
    spec = KernelSpec(categories=Categories(sizes, top))
    reference = chunk_partials(X, y, coef, weights, spec)
    bins = [int(b) for b in reference.levels.bins[:, 0]]
    assert -((bins[0] << 80) + (bins[1] << 40) + bins[2]) > 2**127
    assert fused_partials(X, y, coef, weights, spec) == reference


@pytest.mark.parametrize("high", [250.0, 300.0, 305.0, 307.0])
def test_the_compiled_level_sums_equal_the_reference_at_the_highest_top_bins(high):
    """Weights up to 10**high put the level sums' fixed top bin at 47 to 52;
    at 52 the compiled digits are taken from the terms scaled down by 2**-40
    (the rounder of that bin would overflow): the same bins as the
    reference's, and an infinite weight marks the sums bad in both."""
    rng = np.random.default_rng(int(high))
    n, sizes = 3000, (3, 5)
    X = np.asfortranarray(
        np.column_stack([rng.standard_normal(n), *(rng.integers(0, k, n) for k in sizes)]).astype(np.float64)
    )
    y = (rng.random(n) < 0.5).astype(np.float64)
    weights = 10.0 ** rng.uniform(high - 30.0, high, n)
    top = level_top(n, float(weights.max()))
    assert top == {250.0: 47, 300.0: 51, 305.0: 52, 307.0: 52}[high]
    coef = rng.standard_normal(1 + sum(sizes) + 1)
    spec = KernelSpec(categories=Categories(sizes, top))
    assert fused_partials(X, y, coef, weights, spec) == chunk_partials(X, y, coef, weights, spec)
    weights[n // 2] = np.inf
    assert fused_partials(X, y, coef, weights, spec) == chunk_partials(X, y, coef, weights, spec)


def test_the_level_top_bin_of_a_bound_times_rows_past_float64_is_the_highest():
    """``bound * n_samples`` past float64's range is the highest top bin (52,
    whose digits hold any float64 term), not the bin of an infinity (26:
    every term's digits would overflow)."""
    assert level_top(3000, 1e305) == level_top(1, np.finfo(np.float64).max) == 52
    assert level_top(10**9, 1e300) == 52
    tops = [level_top(3000, 10.0**e) for e in range(250, 309)]
    assert tops == sorted(tops)


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("policy", ["mean", "indicator"])
@pytest.mark.parametrize("l2", [0.0, 1e-3])
def test_scikit_learns_one_hot_pipeline_reaches_the_same_optimum(data, l2, policy):
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    model = train(config(data, penalty=Penalty(l2=l2), missing=policy))
    values = columns()
    frame = pd.DataFrame(
        {
            "x": np.where(values["x_null"], np.nan, values["x"]),
            "country": pd.Series(values["country"], dtype=object).where(~values["country_null"], None),
            "device": values["device"],
        }
    )
    y = values["y"]
    encode = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="mean", add_indicator=policy == "indicator"), ["x"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["country", "device"]),
        ]
    )
    C = np.inf if l2 == 0 else 1.0 / (l2 * N_ROWS)
    pipe = make_pipeline(encode, LogisticRegression(C=C, tol=1e-12, max_iter=100_000)).fit(frame, y)
    names = [
        name.replace("num__missingindicator_x", "x=<missing>")
        .replace("num__", "")
        .replace("cat__", "")
        .replace("country_None", "country=<null>")
        .replace("_", "=", 1)
        for name in pipe[0].get_feature_names_out()
    ]
    theirs = dict(zip(names, pipe[-1].coef_.ravel()))
    assert sorted(theirs) == sorted(model.features)
    reference = np.append([theirs[name] for name in model.features], pipe[-1].intercept_)
    ours = np.append(model.coef, model.intercept)
    design = one_hot(values, model)
    objective = LogisticObjective(InProcessEvaluator([(design, y.astype(np.float64))], design.shape[1]), Penalty(l2=l2))
    gap = (objective(ours)[0] - objective(reference)[0]) / objective(reference)[0]
    assert gap <= LOSS_GAP
    if l2:  # (without a penalty one-hot levels and the intercept are collinear: only the loss is unique)
        assert np.allclose(ours, reference, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- exactness


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cuts=st.lists(st.integers(1, N_ROWS - 1), min_size=0, max_size=3, unique=True).map(sorted),
    row_group=st.sampled_from([100, 400, 1024, 3000]),
)
def test_any_partitioning_gives_the_same_bytes(reference, tmp_path_factory, cuts, row_group):
    # small row groups hold no ZA at all, and files alternate plain and dictionary pages
    data = write(tmp_path_factory.mktemp("parts") / "data", tuple(cuts), row_group)
    assert_identical(train(config(data)), reference)


@pytest.mark.parametrize("cache", ["disk", "none"])
def test_streaming_in_process_gives_the_same_bytes(data, reference, cache):
    assert_identical(train(config(data, cache=cache)), reference)


@pytest.mark.cluster
@pytest.mark.parametrize("cache, workers", [("memory", 1), ("memory", 2), ("disk", 2), ("none", 2)])
def test_the_same_bytes_on_a_cluster_in_every_cache_mode(data, reference, cache, workers, tmp_path):
    model = train(config(data, cluster=ClusterSpec(n_workers=workers), cache=cache, out=str(tmp_path / "out")))
    assert_identical(model, reference)


def test_a_resumed_fit_ends_on_the_same_bytes(tmp_path):
    rng = np.random.default_rng(2)
    n, sizes = 2000, (4, 3)
    X = np.column_stack([rng.standard_normal(n)] + [rng.integers(0, k, n) for k in sizes])
    y = (rng.random(n) < 0.5).astype(np.float64)
    evaluator = InProcessEvaluator([(X[:900], y[:900]), (X[900:], y[900:])], X.shape[1])
    options = dict(solver="auto", penalty=Penalty(l2=1e-2), options=OPTIONS, levels=sizes)
    states = []
    full = fit(evaluator, on_state=states.append, **options)
    assert full.solver == "lbfgs" and full.coef.shape == (1 + 7 + 1,)
    path = tmp_path / "checkpoint.npz"
    for state in (states[0], states[len(states) // 2]):
        save_checkpoint(path, state, {})
        loaded, _ = load_checkpoint(path)
        assert loaded.categories.sizes == sizes and loaded.categories.top == full.categories.top
        resumed = fit(evaluator, resume=loaded, **options)
        assert resumed.coef.tobytes() == full.coef.tobytes()
        assert resumed.result.history == full.result.history


def test_newton_is_refused_with_categorical_columns(data):
    with pytest.raises(ConfigError, match="newton solver needs dense features"):
        train(config(data, solver="newton"))


# --------------------------------------------------------------------------- model, predict, evaluate


def test_predict_maps_unseen_values_to_other_or_to_nothing(data, reference, tmp_path):
    out = tmp_path / "model"
    reference.save(out)
    saved = json.loads((out / "model.json").read_text())
    assert [v["column"] for v in saved["categorical"]] == ["country", "device"]
    assert saved["features"][:2] == ["x", "country=BR"] and "country=<null>" in saved["features"]
    scoring = tmp_path / "scoring"
    scoring.mkdir()
    pq.write_table(
        pa.table(
            {
                "x": [0.5, None, 1.0],
                "country": ["FR", "XX", None],
                "device": pa.array([1, 7, 0], type=pa.int32()),
            }
        ),
        scoring / "part.parquet",
    )
    predict(str(out), str(scoring), str(tmp_path / "scores"))
    proba = pq.read_table(tmp_path / "scores").column("proba").to_numpy()
    model = Model.load(out)
    coef = dict(zip(model.features, model.coef))
    fill = model.impute[0]
    # unseen country XX: no <other> level, nothing added; unseen device 7 likewise
    expected = [
        0.5 * coef["x"] + coef["country=FR"] + coef["device=1"],
        fill * coef["x"],
        1.0 * coef["x"] + coef["country=<null>"] + coef["device=0"],
    ]
    assert np.allclose(proba, 1.0 / (1.0 + np.exp(-(np.array(expected) + model.intercept))), rtol=1e-13)
    metrics = evaluate(str(out), str(data))
    assert metrics["n_samples"] == N_ROWS


def test_rare_values_share_the_other_level(data, tmp_path):
    model = train(config(data, min_category_count=10, out=str(tmp_path / "out")))
    country = next(v for v in model.vocabularies if v.column == "country")
    assert "ZA" not in country.values and country.other and country.counts[-1] == 3
    assert "country=<other>" in model.features


def test_a_column_of_another_kind_when_scoring_is_refused(reference, tmp_path):
    out = tmp_path / "model"
    reference.save(out)
    scoring = tmp_path / "scoring"
    scoring.mkdir()
    pq.write_table(pa.table({"x": [0.5], "country": [3], "device": pa.array([1], pa.int32())}), scoring / "p.parquet")
    with pytest.raises(ColumnTypeError, match="column 'country' holds integers.*categorical column of text"):
        predict(str(out), str(scoring), str(tmp_path / "scores"))
    assert not (tmp_path / "scores").exists()
    # named by its file, not the directory: the first one that holds integers (not one of nulls only)
    pq.write_table(pa.table({"x": [0.5], "country": pa.array([None], pa.null()), "device": [1]}), scoring / "a.parquet")
    with pytest.raises(ColumnTypeError, match=f"holds integers in {scoring / 'p.parquet'};") as raised:
        predict(str(out), str(scoring), str(tmp_path / "scores"))
    assert raised.value.path == str(scoring / "p.parquet")


def test_mixed_kinds_across_files_are_refused_naming_both(tmp_path):
    data = tmp_path / "mixed"
    data.mkdir()
    pq.write_table(pa.table({"c": ["a", "b"], "y": [0, 1]}), data / "a.parquet")
    pq.write_table(pa.table({"c": [1, 2], "y": [0, 1]}), data / "b.parquet")
    with pytest.raises(ColumnTypeError, match=r"holds text in .*a.parquet but integers in .*b.parquet"):
        train(TrainConfig(data=str(data), label="y", categorical=("c",), out=str(tmp_path / "out"), cluster=None))
    assert not (tmp_path / "out").exists()


def test_a_hashed_column_must_be_a_categorical_feature(tmp_path, capsys):
    """``hashed`` naming a numeric column, a column left out of the features,
    or any column of a fit without categorical features is refused before
    anything is written (it was ignored when no feature was categorical)."""
    data = tmp_path / "hashed"
    data.mkdir()
    pq.write_table(pa.table({"x": [0.5, 1.5, 2.5], "c": ["a", "b", "a"], "y": [0, 1, 1]}), data / "a.parquet")
    for features, hashed in [(("x", "c"), ("x",)), (("x",), ("c",)), (None, ("nope",))]:
        expected = rf"hashed columns \['{hashed[0]}'\] are not categorical features"
        with pytest.raises(ConfigError, match=expected) as info:
            train(
                TrainConfig(
                    data=str(data),
                    label="y",
                    features=features,
                    hash_buckets=8,
                    hashed=hashed,
                    out=str(tmp_path / "out"),
                    cluster=None,
                )
            )
        assert info.value.column == "hashed"
    # a level policy with every categorical column hashed would do nothing: refused (it was ignored)
    for policy in ({"max_categories": 2}, {"min_category_count": 5}):
        (name,) = policy
        with pytest.raises(ConfigError, match=f"^{name} chooses the levels of a column that is not hashed") as info:
            train(
                TrainConfig(
                    data=str(data), label="y", hash_buckets=8, out=str(tmp_path / "out"), cluster=None, **policy
                )
            )
        assert info.value.column == name
    # an empty list hashes nothing: hash_buckets would go unused (it was accepted, silently)
    with pytest.raises(ConfigError, match="^hashed must name at least one column") as info:
        TrainConfig(data=str(data), label="y", hash_buckets=8, hashed=(), max_categories=2, cluster=None)
    assert info.value.column == "hashed"
    # no categorical column at all: nothing is hashed or chosen, nothing refused, and a warning
    # says so (the settings went unused silently)
    with pytest.warns(DataWarning, match=r"^hash_buckets=8, max_categories=2 do nothing: the fit has no categorical"):
        train(TrainConfig(data=str(data), label="y", features=("x",), hash_buckets=8, max_categories=2, cluster=None))
    from pipeline.cli import main

    command = ["train", str(data), "--label", "y", "--features", "x", "--hash-buckets", "8", "--in-process"]
    assert main([*command, "--quiet", "--out", str(tmp_path / "cli")]) == 0
    assert "hash_buckets=8 does nothing: the fit has no categorical features" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unsigned_integers_beyond_int64(tmp_path):
    """uint64 values from 2**63: as a categorical column, one clear error (it
    was an ArrowInvalid traceback); as a validation key, its 64 bits are hashed,
    the split those of the same bits written as int64."""
    rng = np.random.default_rng(2)
    n = 600
    big = np.uint64(2**64 - 5) + (np.arange(n) % 7).astype(np.uint64)
    base = {"x": rng.standard_normal(n), "y": (rng.random(n) < 0.5).astype(np.int8)}
    for name, key in (("unsigned", pa.array(big)), ("signed", pa.array(big.view(np.int64)))):
        (tmp_path / name).mkdir()
        pq.write_table(pa.table({**base, "c": key}), tmp_path / name / "part-0.parquet")
    with pytest.raises(ColumnTypeError, match=r"column 'c' in row group 0 of .* holds a value int64 cannot"):
        train(TrainConfig(data=str(tmp_path / "unsigned"), label="y", categorical=("c",), cluster=None))
    split = dict(label="y", features=("x",), validation_fraction=0.3, validation_key="c", cluster=None)
    models = [train(TrainConfig(data=str(tmp_path / name), **split)) for name in ("unsigned", "signed")]
    assert models[0].digest == models[1].digest and models[0].n_samples == n


def test_a_floating_column_cannot_be_categorical(tmp_path):
    data = tmp_path / "float"
    data.mkdir()
    pq.write_table(pa.table({"c": [0.5, 1.5], "y": [0, 1]}), data / "a.parquet")
    with pytest.raises(ColumnTypeError, match="categorical column 'c'.*expected text"):
        open_dataset(str(data), "y", categorical=["c"])
    with pytest.raises(ConfigError, match="categorical column 'z' is not among the features"):
        open_dataset(str(data), "y", features=["c"], categorical=["z"])


def test_the_cli_trains_with_categorical_options(data, tmp_path):
    from conftest import run_cli

    done = run_cli(
        "train", data, "--label", "y", "--out", tmp_path / "out", "--in-process", "--missing", "mean",
        "--categorical", "device", "--max-categories", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    model = Model.load(tmp_path / "out")
    country = next(v for v in model.vocabularies if v.column == "country")
    assert country.values == ("DE", "FR", "JP") and country.other and country.null


def test_the_report_groups_the_levels_by_column(reference, tmp_path):
    from conftest import run_cli

    out = tmp_path / "run"
    reference.save(out)
    result = run_cli("report", out)
    assert result.returncode == 0, result.stderr
    page = (out / "report.html").read_text()
    assert "<h3>country (categorical, 7 levels)</h3>" in page
    assert "<h3>device (categorical, 4 levels)</h3>" in page
    assert "&lt;null&gt;" in page and "<th>rows</th>" in page


def frame():
    import pandas as pd

    values = columns()
    return pd.DataFrame(
        {
            "x": np.where(values["x_null"], np.nan, values["x"]),
            "country": pd.Series(values["country"], dtype=object).where(~values["country_null"], None),
            "device": pd.Series(values["device"]).astype("category"),
        }
    ), values["y"]


def assert_fits_model(estimator, model: Model) -> None:
    """The estimator's levels and coefficient bytes are the model file's."""
    assert estimator.vocabularies_ == model.vocabularies
    assert estimator.coef_.tobytes() == np.array([model.coef]).tobytes()
    assert estimator.intercept_.tobytes() == np.array([model.intercept]).tobytes()


def test_the_estimator_takes_a_pandas_frame_to_the_parquet_models_bits(reference, tmp_path):
    from pipeline.estimator import LogisticRegression

    X, y = frame()
    estimator = LogisticRegression(l2=1e-3, missing="mean", tol=1e-9).fit(X, y)
    assert [v.column for v in estimator.vocabularies_] == ["country", "device"]
    assert_fits_model(estimator, reference)
    out = tmp_path / "model"
    reference.save(out)
    loaded = LogisticRegression.from_model(str(out))
    assert loaded.decision_function(X).tobytes() == estimator.decision_function(X).tobytes()
    unseen = X.iloc[:2].assign(country=["QQ", "FR"])  # QQ: no <other> level, adds nothing
    margin = estimator.decision_function(unseen)
    coef = dict(zip(reference.features, reference.coef))
    device = [f"device={d}" for d in X["device"].iloc[:2]]
    x = X["x"].iloc[:2].fillna(reference.impute[0]).to_numpy()
    expected = x * coef["x"] + np.array([0.0, coef["country=FR"]]) + [coef[d] for d in device] + reference.intercept
    assert np.allclose(margin, expected, rtol=1e-13)
    with pytest.raises(ValueError, match="X must be a DataFrame with the columns"):
        estimator.decision_function(X[["x", "country"]])
    with pytest.raises(ValueError, match="categorical column 'country' has type double; expected text"):
        estimator.predict(X.assign(country=np.zeros(len(X))))  # (a ValueError, as scikit-learn's callers expect)


def test_a_loaded_models_integer_coded_column_stays_categorical_when_cloned_and_refit(tmp_path):
    import pandas as pd
    from sklearn.base import clone

    from pipeline.estimator import LogisticRegression

    rng = np.random.default_rng(5)
    k = rng.integers(0, 4, 400)
    x = rng.standard_normal(400)
    y = (rng.random(400) < 1 / (1 + np.exp(-(x + (k == 2) - (k == 3))))).astype(np.int8)
    table = pa.table({"x": x, "k": k.astype(np.int32), "y": y})
    pq.write_table(table, tmp_path / "part.parquet")
    out = tmp_path / "model"
    settings_ = dict(data=str(tmp_path / "part.parquet"), label="y", categorical=("k",), out=str(out), cluster=None)
    train(TrainConfig(**settings_, penalty=Penalty(l2=1e-3)))
    loaded = LogisticRegression.from_model(str(out))
    assert loaded.get_params()["categorical"] == ["k"]  # (it was 'from_dtype': an int column is numeric by its dtype)
    refit = clone(loaded).fit(pd.DataFrame({"x": x, "k": k.astype(np.int32)}), y)
    assert refit.coef_.shape == loaded.coef_.shape == (1, 5)
    assert refit.coef_.tobytes() == loaded.coef_.tobytes()


@pytest.mark.cluster
def test_a_dask_frame_trains_on_the_cluster_to_the_same_bits(reference):
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    from pipeline.estimator import LogisticRegression

    X, y = frame()
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        Xd = dd.from_pandas(X, npartitions=3)
        yd = dd.from_pandas(__import__("pandas").Series(y), npartitions=3)
        estimator = LogisticRegression(l2=1e-3, missing="mean", tol=1e-9).fit(Xd, yd)
        margin = estimator.decision_function(Xd).compute()
        # hashed: each partition gives its kind, nothing counted (the in-memory fit's bits)
        hashing = {"hash_buckets": 64, "hashed": ["country"]}
        hashed = LogisticRegression(l2=1e-3, missing="mean", tol=1e-9, **hashing).fit(Xd, yd)
    assert estimator.coef_.tobytes() == np.array([reference.coef]).tobytes()
    in_memory = LogisticRegression(l2=1e-3, missing="mean", tol=1e-9, **hashing).fit(X, y)
    assert hashed.vocabularies_ == in_memory.vocabularies_ and hashed.vocabularies_[0].buckets == 64
    assert hashed.coef_.tobytes() == in_memory.coef_.tobytes()
    local = LogisticRegression(l2=1e-3, missing="mean", tol=1e-9).fit(X, y)
    assert margin.tobytes() == local.decision_function(X).tobytes()


def test_a_warm_start_from_a_categorical_model(data, reference, tmp_path):
    out = tmp_path / "first"
    reference.save(out)
    warm = train(config(data, init=str(out)))
    assert warm.features == reference.features
    assert warm.n_iter <= 2 and np.allclose(warm.coef, reference.coef, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- hashing


def scalar_bucket(column: str, value: bytes, buckets: int) -> int:
    """FNV-1a of column, 0, value; splitmix64; modulo: one value at a time, in Python ints."""
    mask = 2**64 - 1
    state = 0xCBF29CE484222325
    for byte in column.encode() + b"\0" + value:
        state = ((state ^ byte) * 0x100000001B3) & mask
    z = (state + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return (z ^ (z >> 31)) % buckets


def test_hash_buckets_are_fixed_forever():
    from pipeline.levels import hash_buckets

    text = ["FR", "DE", "", "Ünïcode"]
    found = hash_buckets(pa.array(text, pa.large_string()), "country", 2**20).tolist()
    assert found == [1042759, 462722, 550735, 641803]  # golden: a change re-buckets every saved model
    assert found == [scalar_bucket("country", v.encode(), 2**20) for v in text]
    numbers = [0, 1, -5, 2**40]
    found = hash_buckets(pa.array(numbers, pa.int64()), "user", 2**20).tolist()
    assert found == [453056, 837058, 768966, 816831]
    assert found == [scalar_bucket("user", v.to_bytes(8, "little", signed=True), 2**20) for v in numbers]
    # the column name is part of the hash; dictionary pages hash as their values
    assert hash_buckets(pa.array(["FR", "DE"], pa.large_string()), "region", 2**20).tolist() == [572971, 275250]
    hashed = Vocabulary.hashed("country", "str", 2**20)
    assert hashed.codes(pc.dictionary_encode(pa.array(["DE", None, "FR"]))).tolist() == [462722, 2**20, 1042759]


def hashed_config(data: Path, **more) -> TrainConfig:
    return config(data, hash_buckets=2**17, hashed=("country",), **more)


@pytest.fixture(scope="module")
def hashed_reference(data) -> Model:
    return train(hashed_config(data))


def test_a_hashed_column_trains_without_a_vocabulary(hashed_reference, data, tmp_path):
    model = hashed_reference
    country = model.vocabularies[0]
    assert country.buckets == 2**17 and country.size == 2**17 + 1 and country.counts == ()
    assert model.features[1] == "country=#0" and len(model.features) == 1 + 2**17 + 1 + 4
    out = tmp_path / "model"
    model.save(out)
    assert Model.load(out).digest == model.digest
    predict(str(out), str(data), str(tmp_path / "scores"))
    proba = pq.read_table(tmp_path / "scores").column("proba").to_numpy()
    values = columns()
    coef = np.array(model.coef)
    buckets = [scalar_bucket("country", c.encode(), 2**17) for c in values["country"]]
    country_coef = np.where(values["country_null"], coef[1 + 2**17], coef[1 + np.array(buckets)])
    device = coef[1 + 2**17 + 1 + values["device"]]
    x = np.where(values["x_null"], model.impute[0], values["x"])
    margin = x * coef[0] + country_coef + device + model.intercept
    assert np.allclose(proba, 1 / (1 + np.exp(-margin)), rtol=1e-12)


@pytest.mark.parametrize("cuts, row_group", [((500,), 250), ((), 3000)])
def test_a_hashed_column_gives_the_same_bytes_for_any_partitioning(hashed_reference, tmp_path, cuts, row_group):
    assert_identical(train(hashed_config(write(tmp_path / "data", cuts, row_group))), hashed_reference)


@pytest.mark.cluster
def test_large_states_merge_on_the_workers_to_the_same_bytes(data, hashed_reference, tmp_path):
    from pipeline.reduce import TREE_MERGE_LEVELS

    assert 2**17 >= TREE_MERGE_LEVELS  # (so these states merge in a tree on the workers)
    for cache in ("memory", "none"):
        model = train(
            hashed_config(
                data,
                cluster=ClusterSpec(n_workers=2, threads_per_worker=2),
                cache=cache,
                out=str(tmp_path / cache),
            )
        )
        assert_identical(model, hashed_reference)


def test_the_report_lists_a_hashed_columns_buckets(hashed_reference, tmp_path):
    from conftest import run_cli

    out = tmp_path / "run"
    hashed_reference.save(out)
    assert run_cli("report", out).returncode == 0
    page = (out / "report.html").read_text()
    assert f"<h3>country (categorical, {2**17 + 1} levels)</h3>" in page and "<td>#0</td>" in page


def test_a_value_named_like_a_reserved_level_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"c": ["a", "<null>", None, "b"], "y": [0, 1, 0, 1]}), data / "p.parquet")
    with pytest.raises(ColumnTypeError, match="holds the value '<null>', which names a level of its own"):
        train(TrainConfig(data=str(data), label="y", out=str(tmp_path / "out"), cluster=None))
    assert not (tmp_path / "out").exists()
    # named by its file and row group: the second file's
    (data / "p.parquet").rename(data / "q.parquet")
    pq.write_table(pa.table({"c": ["a", "b"], "y": [0, 1]}), data / "p.parquet")
    with pytest.raises(ColumnTypeError, match=f"'c' in row group 0 of {data / 'q.parquet'} holds the value '<null>'"):
        train(TrainConfig(data=str(data), label="y", cluster=None))


def test_a_column_named_like_a_level_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"c": ["a", "b", "a", "b"], "c=a": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]}), data / "p")
    with pytest.raises(ConfigError, match=r"feature names \['c=a'\] occur more than once"):
        train(TrainConfig(data=str(data), label="y", out=str(tmp_path / "out"), cluster=None))
    assert not (tmp_path / "out").exists()


def test_a_text_validation_key_is_not_a_default_feature(data, tmp_path):
    values = columns()
    keyed = tmp_path / "keyed"
    keyed.mkdir()
    frame = table(0, N_ROWS).append_column("user", pa.array([f"u{i % 50}" for i in range(N_ROWS)]))
    pq.write_table(frame, keyed / "p.parquet")
    model = train(config(keyed, validation_fraction=0.2, validation_key="user"))
    assert not any(name.startswith("user") for name in model.features)
    assert values["y"].shape == (N_ROWS,)


def test_null_typed_parts_and_scoring_rows_are_nulls_of_the_column(tmp_path):
    import pandas as pd

    from pipeline.estimator import LogisticRegression

    X, y = frame()
    fitted = LogisticRegression(l2=1e-3, missing="mean").fit(X, y)
    nulls = X.iloc[:3].assign(country=[None, None, None])  # an all-None object column: Arrow type null
    typed = X.iloc[:3].assign(country=pd.Series([None] * 3, dtype="string", index=X.index[:3]))
    expected = fitted.decision_function(typed)
    assert np.array_equal(fitted.decision_function(nulls), expected)
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(table(0, 1500), data / "a.parquet")
    pq.write_table(table(1500, N_ROWS).set_column(1, "country", pa.nulls(N_ROWS - 1500)), data / "b.parquet")
    model = train(config(data))
    assert model.vocabularies[0].column == "country" and model.vocabularies[0].null


def test_text_in_a_numeric_column_when_scoring_is_refused(reference, tmp_path):
    out = tmp_path / "model"
    reference.save(out)
    scoring = tmp_path / "scoring"
    scoring.mkdir()
    pq.write_table(pa.table({"x": ["0.5"], "country": ["FR"], "device": pa.array([1], pa.int32())}), scoring / "p")
    with pytest.raises(ColumnTypeError, match="column 'x' holds text.*treats it as a numeric column"):
        predict(str(out), str(scoring), str(tmp_path / "scores"))


def test_an_unpenalized_categorical_fit_warns_that_its_coefficients_are_not_unique(data):
    from pipeline.estimator import LogisticRegression

    with pytest.warns(DataWarning, match="levels of each categorical column .* add up to the intercept"):
        train(config(data, penalty=Penalty()))
    X, y = frame()  # the estimator's fit warns as the command does
    with pytest.warns(DataWarning, match=r"levels of each categorical column \(country, device\) add up"):
        LogisticRegression(missing="mean", max_iter=5).fit(X, y)


def test_the_estimators_categorical_names_any_sequence_of_columns():
    """An Index, an array or a Series of names (scikit-learn's array-likes)
    names the categorical columns like a list; text other than 'from_dtype'
    is refused (it was read letter by letter)."""
    import pandas as pd

    from pipeline.estimator import LogisticRegression

    X, y = frame()
    X = X.assign(code=np.arange(len(X)) % 3)  # integers: categorical only when named
    as_list = LogisticRegression(l2=1e-3, missing="mean", categorical=["code"]).fit(X, y)
    assert [v.column for v in as_list.vocabularies_] == ["country", "device", "code"]
    for named in (pd.Index(["code"]), np.array(["code"]), pd.Series(["code"])):
        fitted = LogisticRegression(l2=1e-3, missing="mean", categorical=named).fit(X, y)
        assert fitted.coef_.tobytes() == as_list.coef_.tobytes()
    with pytest.raises(ValueError, match=r"categorical must be 'from_dtype' or a list of column names; got 'code'"):
        LogisticRegression(categorical="code").fit(X, y)
    # the library's own refusals are scikit-learn's ValueError too (TooManyLevelsError escaped)
    from pipeline.levels import MAX_LEVELS

    many = pd.DataFrame({"id": [f"u{i}" for i in range(MAX_LEVELS + 1)]})
    with pytest.raises(ValueError, match=f"categorical column 'id' has {MAX_LEVELS + 1} distinct values") as raised:
        LogisticRegression().fit(many, np.arange(MAX_LEVELS + 1) % 2)
    # in this class's words: its parameters, not the command line's options
    assert "max_categories=K" in str(raised.value) and "min_category_count=N" in str(raised.value)
    assert "hash_buckets=N, hashed=['id']" in str(raised.value) and "--" not in str(raised.value)


def test_a_category_of_booleans_is_categorical_by_its_dtype():
    """pandas calls a ``category`` of booleans a boolean dtype; it is a
    ``category`` all the same, so its values are levels (those of the same
    column named categorical: 0 and 1), not one standardized feature."""
    import pandas as pd

    from pipeline.estimator import LogisticRegression

    rng = np.random.default_rng(9)
    flag = rng.random(600) < 0.5
    x = rng.standard_normal(600)
    y = (rng.random(600) < 1 / (1 + np.exp(-(x + flag)))).astype(np.int8)
    by_dtype = LogisticRegression(l2=1e-2).fit(pd.DataFrame({"x": x, "flag": pd.Categorical(flag)}), y)
    assert [(v.column, v.values) for v in by_dtype.vocabularies_] == [("flag", (0, 1))]
    named = LogisticRegression(l2=1e-2, categorical=["flag"]).fit(pd.DataFrame({"x": x, "flag": flag}), y)
    assert by_dtype.coef_.shape == (1, 3)
    assert by_dtype.coef_.tobytes() == named.coef_.tobytes()


def test_the_estimator_hashes_a_frames_column_to_the_commands_bits(hashed_reference, data, tmp_path):
    """``hash_buckets``/``hashed``: the estimator on a pandas frame gives the
    bits of ``pipeline train --hash-buckets --hashed`` on the same rows; a
    model file's hashing comes back as those parameters, so a clone refits to
    the same bytes (it learnt the hashed column's levels from the data)."""
    from sklearn.base import clone

    from pipeline.estimator import LogisticRegression

    X, y = frame()
    estimator = LogisticRegression(l2=1e-3, missing="mean", tol=1e-9, hash_buckets=2**17, hashed=["country"]).fit(X, y)
    assert_fits_model(estimator, hashed_reference)
    out = tmp_path / "model"
    hashed_reference.save(out)
    loaded = LogisticRegression.from_model(str(out))
    assert (loaded.get_params()["hash_buckets"], loaded.get_params()["hashed"]) == (2**17, ["country"])
    refit = clone(loaded).set_params(tol=1e-9).fit(X, y)
    assert refit.coef_.tobytes() == estimator.coef_.tobytes()
    assert loaded.decision_function(X).tobytes() == estimator.decision_function(X).tobytes()
    # the command's rules, as ValueErrors in this class's words
    for params, message in (
        ({"hashed": ["country"]}, "hashed columns need `hash_buckets`"),
        ({"hash_buckets": 8, "hashed": ["x"]}, r"hashed columns \['x'\] are not categorical features"),
        ({"hash_buckets": 8, "max_categories": 2}, r"name the columns to hash \(the hashed parameter\)"),
        ({"hash_buckets": 2**30}, r"hash_buckets must be an integer in 1 \.\. 16777216; found 1073741824"),
        ({"hash_buckets": 4.0}, r"hash_buckets must be an integer in 1 \.\. 16777216; found 4\.0"),
        ({"hash_buckets": 8, "hashed": []}, "hashed must name at least one column"),
    ):
        with pytest.raises(ValueError, match=message):
            LogisticRegression(missing="mean", **params).fit(X, y)
    # numeric features only: hashing does nothing, and says so
    with pytest.warns(DataWarning, match="^hash_buckets=8 does nothing: the fit has no categorical features"):
        LogisticRegression(missing="mean", hash_buckets=8).fit(X[["x"]], y)
    for fitting in (lambda e: e.fit(X, y), lambda e: e.fit_parquet(str(data), label="y")):  # (not letter by letter)
        with pytest.raises(ValueError, match="^hashed must be a list of column names; found the text 'country'"):
            fitting(LogisticRegression(missing="mean", hash_buckets=8, hashed="country"))


def test_an_integer_coded_column_that_pandas_made_float_is_refused_with_the_nullable_dtype_as_hint():
    """A pandas integer column with a missing value is float64: named
    categorical, it is refused with the way out (the nullable ``Int64``), when
    fitting and when scoring."""
    import pandas as pd

    from pipeline.estimator import LogisticRegression

    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"x": rng.standard_normal(200), "c": rng.integers(0, 4, 200).astype(float)})
    frame.loc[3, "c"] = np.nan
    y = rng.integers(0, 2, 200)
    with pytest.raises(ValueError, match=r"'c' has type double; expected text or integers \(.*nullable 'Int64'"):
        LogisticRegression(categorical=["c"]).fit(frame, y)
    fitted = LogisticRegression(categorical=["c"]).fit(frame.astype({"c": "Int64"}), y)
    with pytest.raises(ValueError, match=r"'c' has type double; .*nullable 'Int64'"):
        fitted.predict(frame)
    assert fitted.predict(frame.astype({"c": "Int64"})).shape == (200,)


def test_a_column_of_nulls_only_is_nulls_whatever_pandas_made_its_dtype():
    """A text column whose batch is empty (pandas reads it as float64 NaN)
    scores as nulls, as the same batch of None does -- it was refused as
    'type double' with the nullable-Int64 hint, no advice for text -- and a
    text column with a number in it is refused without that hint."""
    import pandas as pd

    from pipeline.estimator import LogisticRegression

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.standard_normal(200), "c": rng.choice(["a", "b", "c"], 200)})
    y = rng.integers(0, 2, 200)
    fitted = LogisticRegression(l2=1e-2).fit(frame, y)
    empty = frame[["x"]].assign(c=np.nan)
    assert empty["c"].dtype == np.float64
    nones = frame[["x"]].assign(c=pd.Series([None] * 200, dtype=object))
    assert fitted.predict_proba(empty).tobytes() == fitted.predict_proba(nones).tobytes()
    number = frame.assign(c=np.r_[np.nan, 1.5, np.full(198, np.nan)])
    with pytest.raises(ValueError, match="has type double; expected text") as refused:
        fitted.predict(number)
    assert "Int64" not in str(refused.value)
    # fitting: an all-NaN float64 column named categorical is a column of nulls (one level), as None's
    as_nan = LogisticRegression(l2=1e-2, categorical=["c"]).fit(empty, y)
    as_none = LogisticRegression(l2=1e-2, categorical=["c"]).fit(nones, y)
    assert as_nan.coef_.tobytes() == as_none.coef_.tobytes()


@pytest.mark.parametrize("label", ["y", "k"])
def test_summary_leaves_out_the_hashed_buckets_no_row_fell_in(tmp_path, capsys, label):
    """summary printed every bucket (16.7M rows for --hash-buckets 2**24 on
    a 4-level column); now the buckets with coefficient 0 in every class are
    counted, not printed, and every other row is as it was."""
    from pipeline.cli import main

    rng = np.random.default_rng(6)
    n = 2000
    x = rng.standard_normal(n)
    table = pa.table(
        {
            "x": x,
            "c": rng.choice(["a", "b", "c", "d"], n),
            "y": (rng.random(n) < 1 / (1 + np.exp(-x))).astype(int),
            "k": rng.integers(0, 3, n),
        }
    )
    (tmp_path / "d").mkdir()
    pq.write_table(table, tmp_path / "d" / "part.parquet")
    out = str(tmp_path / "out")
    options = ["--label", label, "--features", "x,c", "--hash-buckets", "1024", "--l2", "1e-3", "--quiet"]
    assert main(["train", str(tmp_path / "d"), *options, "--in-process", "--out", out]) == 0
    model = Model.load(out)
    coef = np.atleast_2d(model.coef_array)
    used = [name for j, name in enumerate(model.features) if name.startswith("c=#") and coef[:, j].any()]
    assert 1 <= len(used) <= 4
    capsys.readouterr()
    assert main(["summary", out]) == 0
    shown = capsys.readouterr().out
    rows = [line.split()[0] for line in shown.splitlines() if line.startswith(("x ", "c=", "intercept"))]
    classes = 3 if label == "k" else 1
    assert rows == ["x", *used, "c=<null>", "intercept"] * classes
    assert f"{1024 - len(used)} hashed bucket(s) with coefficient 0 in every class" in shown
