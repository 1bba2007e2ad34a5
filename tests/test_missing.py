"""Missing values: ``--missing mean | indicator`` (and ``--nan-as-missing``).

A null feature value (or, with ``nan_as_missing``, a NaN) takes its column's
exact mean over the training rows' present values; ``indicator`` adds a 0/1
feature per column that may be missing.  What is shown here:

* the optimum is scikit-learn's ``SimpleImputer(strategy="mean"[,
  add_indicator=True])`` + ``LogisticRegression`` on the same objective, on
  real data (scikit-learn's breast cancer with cells knocked out) and on
  Parquet tables, with and without L2;
* the model's bytes do not depend on the partitioning (files, row groups,
  chunks where a column is entirely null), the cache mode or the workers;
* the fill values are stored in ``model.json`` and used by ``predict``,
  ``evaluate``, the estimator and a resumed fit;
* bad input gets one clear error, and nothing is written.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_breast_cancer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression as SkLogisticRegression
from sklearn.pipeline import make_pipeline

from pipeline import ClusterSpec, Penalty, SolverOptions, TrainConfig, train
from pipeline.checkpoint import load_checkpoint, save_checkpoint
from pipeline.data import open_dataset
from pipeline.errors import ConfigError, DataWarning, MissingValueError, NonFiniteValueError
from pipeline.estimator import LogisticRegression
from pipeline.fitting import fit
from pipeline.kernel import KernelSpec, chunk_partials, chunk_stats, margins
from pipeline.model import Model
from pipeline.objective import LogisticObjective
from pipeline.predict import evaluate, predict
from pipeline.reduce import InProcessEvaluator

N_ROWS = 2400
FEATURES = ("a", "b", "c", "d")
OPTIONS = SolverOptions(tol=1e-10)
LOSS_GAP = 1e-9


def columns(seed: int = 3) -> dict[str, np.ndarray]:
    """Features with missing values: ``a`` float64 with nulls (all of its first
    300 rows), ``b`` int16 with nulls, ``c`` float32 without, ``d`` float64
    with NaN values (missing only with nan_as_missing); masks are True where missing."""
    rng = np.random.default_rng(seed)
    values = {
        "a": rng.standard_normal(N_ROWS) * 2.0 + 1.0,
        "b": rng.integers(-50, 50, N_ROWS).astype(np.int16),
        "c": rng.standard_normal(N_ROWS).astype(np.float32),
        "d": rng.standard_normal(N_ROWS) * 0.5,
    }
    masks = {
        "a": (rng.random(N_ROWS) < 0.1) | (np.arange(N_ROWS) < 300),
        "b": rng.random(N_ROWS) < 0.05,
        "c": np.zeros(N_ROWS, bool),
        "d": rng.random(N_ROWS) < 0.08,
    }
    margin = 0.7 * values["a"] - 0.02 * values["b"] + values["c"] - values["d"] + 0.5 * masks["a"] - 0.3
    values["y"] = (rng.random(N_ROWS) < 1.0 / (1.0 + np.exp(-margin))).astype(np.int8)
    return values, masks


def write(directory: Path, cuts=(700, 1500), row_group: int = 300, nan_in_d: bool = True) -> Path:
    values, masks = columns()
    directory.mkdir(parents=True)
    bounds = [0, *cuts, N_ROWS]
    for index, (start, stop) in enumerate(zip(bounds, bounds[1:])):
        part = slice(start, stop)
        d = values["d"][part].copy()
        if nan_in_d:
            d[masks["d"][part]] = np.nan
        table = pa.table(
            {
                "a": pa.array(values["a"][part], mask=masks["a"][part]),
                "b": pa.array(values["b"][part], mask=masks["b"][part]),
                "c": pa.array(values["c"][part]),
                "d": pa.array(d),
                "y": values["y"][part],
            }
        )
        pq.write_table(table, directory / f"part-{index}.parquet", row_group_size=row_group)
    return directory


def design(nan_in_d: bool = True) -> np.ndarray:
    """The features as numpy, NaN where missing (what scikit-learn's imputer takes)."""
    values, masks = columns()
    X = np.column_stack([values[name].astype(np.float64) for name in FEATURES])
    for j, name in enumerate(FEATURES):
        if name != "d" or nan_in_d:
            X[masks[name], j] = np.nan
    return X


def labels() -> np.ndarray:
    return columns()[0]["y"].astype(np.float64)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write(tmp_path_factory.mktemp("missing") / "data")


def config(data: Path, missing: str = "indicator", **more) -> TrainConfig:
    return TrainConfig(
        data=str(data),
        label="y",
        features=FEATURES,
        options=OPTIONS,
        penalty=Penalty(l2=1e-3),
        missing=missing,
        nan_as_missing=True,
        **{"cluster": None, **more},
    )


@pytest.fixture(scope="module")
def reference(data) -> Model:
    return train(config(data))


def assert_identical(model: Model, reference: Model) -> None:
    assert np.array(model.coef).tobytes() == np.array(reference.coef).tobytes()
    assert np.float64(model.intercept).tobytes() == np.float64(reference.intercept).tobytes()
    assert model.loss_history == reference.loss_history
    assert model.impute == reference.impute
    assert model.digest == reference.digest


def imputed(X: np.ndarray, fill: np.ndarray, indicators: bool) -> np.ndarray:
    """``X`` with NaN replaced by ``fill``, and indicator columns for columns with NaN."""
    missing = np.isnan(X)
    full = np.where(missing, fill, X)
    if indicators:
        full = np.column_stack([full, missing[:, missing.any(axis=0)].astype(np.float64)])
    return full


def our_loss(X: np.ndarray, y: np.ndarray, coef: np.ndarray, l2: float) -> float:
    """Our objective (raw space) at ``coef`` on the imputed design ``X``."""
    return LogisticObjective(InProcessEvaluator([(X, y)], X.shape[1]), Penalty(l2=l2))(coef)[0]


def sklearn_optimum(X: np.ndarray, y: np.ndarray, l2: float, indicators: bool) -> np.ndarray:
    C = np.inf if l2 == 0 else 1.0 / (l2 * X.shape[0])
    pipe = make_pipeline(
        SimpleImputer(strategy="mean", add_indicator=indicators),
        SkLogisticRegression(C=C, tol=1e-12, max_iter=100_000),
    ).fit(X, y)
    model = pipe[-1]
    return np.append(model.coef_.ravel(), model.intercept_)


# --------------------------------------------------------------------------- decoding


def test_nulls_decode_as_nan_and_indicators_follow_the_columns(data):
    dataset = open_dataset(str(data), "y", FEATURES, missing="indicator", nan_as_missing=True)
    # c is float32 without nulls, but may hold NaN (nan_as_missing); b's int16 with nulls needs a float
    assert dataset.missing == ("a", "b", "c", "d") and dataset.indicators == dataset.missing
    assert dataset.feature_names == (*FEATURES, "a=<missing>", "b=<missing>", "c=<missing>", "d=<missing>")
    assert dataset.feature_dtype == "float32" or dataset.feature_dtype == "float64"
    X = np.concatenate([chunk.X for chunk in dataset.read_chunks()])
    expected = design()
    assert np.array_equal(np.isnan(X[:, :4]), np.isnan(expected))
    assert np.array_equal(X[:, 4:], np.isnan(expected).astype(X.dtype))
    assert np.array_equal(X[:, :4][~np.isnan(expected)], expected[~np.isnan(expected)].astype(X.dtype))


def test_without_nan_as_missing_only_columns_with_nulls_are_imputed(data):
    dataset = open_dataset(str(data), "y", ("a", "b", "c"), missing="indicator")
    assert dataset.missing == ("a", "b") and dataset.indicators == ("a", "b")
    mean_only = open_dataset(str(data), "y", ("a", "b", "c"), missing="mean")
    assert mean_only.missing == ("a", "b") and mean_only.indicators == ()
    assert mean_only.feature_names == ("a", "b", "c")


def test_the_statistics_count_missing_values_and_the_fill_is_the_exact_mean(data):
    X = design()
    stats = chunk_stats(X, labels())
    assert stats.n_missing.tolist() == np.isnan(X).sum(axis=0).tolist()
    model = train(config(data, "mean"))
    for j, name in enumerate(FEATURES):
        present = X[~np.isnan(X[:, j]), j]
        exact = sum(Fraction(float(v)) for v in present) / len(present)
        assert model.impute[j] == float(exact), name


def test_the_loss_pass_fills_before_standardizing():
    X = design()
    y = labels()
    fill = np.nanmean(X, axis=0)
    coef = np.linspace(-0.5, 0.5, X.shape[1] + 1)
    spec = KernelSpec(center=fill, scale=np.nanstd(X, axis=0), fill=fill)
    filled = np.where(np.isnan(X), fill, X)
    assert chunk_partials(X, y, coef, None, spec) == chunk_partials(
        filled, y, coef, None, KernelSpec(center=fill, scale=np.nanstd(X, axis=0))
    )


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("policy", ["mean", "indicator"])
@pytest.mark.parametrize("l2", [1e-3, 1e-2])
def test_real_data_reaches_scikit_learns_imputed_optimum(policy, l2):
    X, y = load_breast_cancer(return_X_y=True)
    X = X.copy()
    rng = np.random.default_rng(0)
    X[rng.random(X.shape) < 0.1] = np.nan
    ours = LogisticRegression(l2=l2, missing=policy, tol=1e-10).fit(X, y)
    assert np.allclose(ours.impute_, np.nanmean(X, axis=0), rtol=1e-13, atol=0)
    indicators = policy == "indicator"
    full = imputed(X, ours.impute_, indicators)
    coef = np.append(ours.coef_.ravel(), ours.intercept_)
    reference = sklearn_optimum(X, y, l2, indicators)
    assert coef.shape == reference.shape == (full.shape[1] + 1,)
    gap = (our_loss(full, y, coef, l2) - our_loss(full, y, reference, l2)) / our_loss(full, y, reference, l2)
    assert gap <= LOSS_GAP
    # scored with the fill: the margins of the imputed design
    assert ours.decision_function(X).tobytes() == margins(full, coef).tobytes()


@pytest.mark.parametrize("policy", ["mean", "indicator"])
@pytest.mark.parametrize("l2", [0.0, 1e-3])
def test_parquet_training_reaches_scikit_learns_imputed_optimum(data, policy, l2):
    model = train(
        TrainConfig(
            data=str(data),
            label="y",
            features=FEATURES,
            options=OPTIONS,
            penalty=Penalty(l2=l2),
            missing=policy,
            nan_as_missing=True,
            cluster=None,
        )
    )
    X, y = design(), labels()
    indicators = policy == "indicator"
    full = imputed(X, np.array(model.impute), indicators)
    coef = np.append(model.coef, model.intercept)
    reference = sklearn_optimum(X, y, l2, indicators)
    ours, theirs = our_loss(full, y, coef, l2), our_loss(full, y, reference, l2)
    assert (ours - theirs) / theirs <= LOSS_GAP
    assert np.allclose(coef, reference, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- exactness


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cuts=st.lists(st.integers(1, N_ROWS - 1), min_size=0, max_size=3, unique=True).map(sorted),
    row_group=st.sampled_from([100, 300, 512, 2400]),
)
def test_any_partitioning_gives_the_same_bytes(reference, tmp_path_factory, cuts, row_group):
    # row groups of 100 and 300 hold chunks where column a is entirely null
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


def test_a_resumed_fit_keeps_the_fill_and_ends_on_the_same_bytes(tmp_path):
    X, y = design(), labels()
    evaluator = InProcessEvaluator([(X[:1000], y[:1000]), (X[1000:], y[1000:])], X.shape[1])
    options = dict(solver="lbfgs", penalty=Penalty(l2=1e-3), options=OPTIONS, impute=True)
    states = []
    full = fit(evaluator, on_state=states.append, **options)
    assert full.fill is not None and states[-1].n_missing.tolist() == np.isnan(X).sum(axis=0).tolist()
    path = tmp_path / "checkpoint.npz"
    for state in (states[0], states[len(states) // 2]):
        save_checkpoint(path, state, {})
        loaded, _ = load_checkpoint(path)
        assert loaded.fill.tobytes() == full.fill.tobytes()
        assert loaded.n_missing.tolist() == full.n_missing.tolist()
        resumed = fit(evaluator, resume=loaded, **options)
        assert resumed.coef.tobytes() == full.coef.tobytes()
        assert resumed.result.history == full.result.history


# --------------------------------------------------------------------------- model, predict, evaluate


def test_predict_and_evaluate_fill_missing_values_as_training_did(data, reference, tmp_path):
    out = tmp_path / "model"
    reference.save(out)
    saved = json.loads((out / "model.json").read_text())
    assert saved["missing"] == "indicator" and saved["nan_as_missing"] is True
    # c has no missing value: its indicator (0 in every row) is left out, as scikit-learn does
    assert saved["indicators"] == ["a", "b", "d"] and len(saved["impute"]) == len(FEATURES)
    loaded = Model.load(out)
    predict(str(out), str(data), str(tmp_path / "scores"))
    proba = pq.read_table(tmp_path / "scores").column("proba").to_numpy()
    X = design()
    full = np.where(np.isnan(X), np.array(reference.impute), X)
    full = np.column_stack([full, np.isnan(X[:, [0, 1, 3]])])
    assert proba.tobytes() == loaded.predict_proba(full).tobytes()
    assert np.allclose(proba, 1 / (1 + np.exp(-(full @ loaded.coef_array + loaded.intercept))), rtol=1e-12)
    metrics = evaluate(str(out), str(data))
    assert metrics["n_samples"] == N_ROWS


def test_an_indicated_column_without_nulls_when_scoring_still_gets_its_indicator(reference, tmp_path):
    out = tmp_path / "model"
    reference.save(out)
    values, _ = columns()
    clean = tmp_path / "clean"
    clean.mkdir()
    pq.write_table(pa.table({name: values[name] for name in FEATURES}), clean / "part.parquet")
    predict(str(out), str(clean), str(tmp_path / "scores"))
    proba = pq.read_table(tmp_path / "scores").column("proba").to_numpy()
    X = np.column_stack([values[name].astype(np.float64) for name in FEATURES] + [np.zeros(N_ROWS)] * 3)
    assert proba.tobytes() == Model.load(out).predict_proba(X).tobytes()


def test_a_model_file_with_inconsistent_missing_fields_is_refused(reference, tmp_path):
    from pipeline.errors import ModelFileError

    out = tmp_path / "model"
    reference.save(out)
    document = json.loads((out / "model.json").read_text())
    document["impute"] = document["impute"][:-1]
    (out / "model.json").write_text(json.dumps(document))
    with pytest.raises(ModelFileError, match="impute has 3 value"):
        Model.load(out)


def test_the_estimator_fits_and_scores_from_the_model_file(reference, tmp_path):
    out = tmp_path / "model"
    reference.save(out)
    estimator = LogisticRegression.from_model(str(out))
    X = design()
    assert estimator.missing == "indicator" and estimator.indicator_features_.tolist() == [0, 1, 3]
    full = np.column_stack([np.where(np.isnan(X), np.array(reference.impute), X), np.isnan(X[:, [0, 1, 3]])])
    assert estimator.decision_function(X).tobytes() == reference.decision_function(full).tobytes()


# --------------------------------------------------------------------------- bad input


def test_a_null_without_a_policy_names_file_column_and_row(data):
    with pytest.raises(MissingValueError, match=r"column 'a' has \d+ null value\(s\) in row group 0 of .*part-0"):
        train(TrainConfig(data=str(data), label="y", features=FEATURES, cluster=None))


def test_nan_without_nan_as_missing_is_still_an_error(data):
    with pytest.raises(NonFiniteValueError, match=r"column 'd' has \d+ non-finite value.*--nan-as-missing"):
        train(TrainConfig(data=str(data), label="y", features=FEATURES, missing="mean", cluster=None))


def test_a_null_label_is_an_error_whatever_the_policy(tmp_path):
    values, masks = columns()
    path = tmp_path / "data"
    path.mkdir()
    pq.write_table(
        pa.table({"a": pa.array(values["a"], mask=masks["a"]), "y": pa.array(values["y"], mask=masks["b"])}),
        path / "part.parquet",
    )
    with pytest.raises(MissingValueError, match="column 'y' has"):
        train(TrainConfig(data=str(path), label="y", missing="mean", out=str(tmp_path / "out"), cluster=None))
    assert not (tmp_path / "out").exists()


def test_a_column_missing_everywhere_is_refused_by_name(tmp_path):
    values, _ = columns()
    path = tmp_path / "data"
    path.mkdir()
    pq.write_table(
        pa.table({"a": pa.nulls(N_ROWS, pa.float64()), "c": values["c"], "y": values["y"]}), path / "part.parquet"
    )
    with pytest.raises(MissingValueError, match="feature 'a' is missing in all 2400 rows"):
        train(TrainConfig(data=str(path), label="y", missing="mean", out=str(tmp_path / "out"), cluster=None))
    assert not (tmp_path / "out").exists()
    # the estimator names a DataFrame's column too (it said "feature number 0"), after
    # categorical columns and indicators as well; a constant one's warning likewise
    import pandas as pd

    frame = pd.DataFrame({"x": values["c"], "k": pd.Categorical(np.arange(N_ROWS) % 3), "a": np.nan})
    labels = values["y"]
    for policy in ("mean", "indicator"):
        with pytest.raises(ValueError, match="^feature 'a' is missing in all 2400 rows"):
            LogisticRegression(l2=1e-2, missing=policy).fit(frame, labels)
    with pytest.warns(DataWarning, match="^feature 'a' is constant"):
        LogisticRegression(l2=1e-2, missing="indicator").fit(frame.assign(a=np.where(frame.x > 0, 1.0, np.nan)), labels)


def test_nan_as_missing_needs_a_policy():
    with pytest.raises(ConfigError, match="nan_as_missing needs"):
        TrainConfig(data="x", label="y", nan_as_missing=True)
    with pytest.raises(ConfigError, match="missing must be one of"):
        TrainConfig(data="x", label="y", missing="median")
    with pytest.raises(ValueError, match="missing must be one of"):
        LogisticRegression(missing="median").fit(np.eye(3), [0, 1, 0])


def test_the_cli_takes_the_options_and_explains_a_null(data, tmp_path):
    from conftest import run_cli

    refused = run_cli("train", data, "--label", "y", "--features", "a,b", "--out", tmp_path / "no", "--in-process")
    assert refused.returncode == 1 and "--missing mean|indicator" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "no").exists()
    done = run_cli(
        "train",
        data,
        "--label",
        "y",
        "--out",
        tmp_path / "yes",
        "--in-process",
        "--missing",
        "indicator",
        "--nan-as-missing",
        "--features",
        ",".join(FEATURES),
        "--l2",
        "1e-3",
        "--tol",
        "1e-10",
    )
    assert done.returncode == 0, done.stderr
    assert Model.load(tmp_path / "yes").features == list(reference_features())


def reference_features() -> tuple[str, ...]:
    return (*FEATURES, *(f"{name}=<missing>" for name in ("a", "b", "d")))


@pytest.mark.cluster
def test_dask_input_with_nan_trains_on_the_cluster_to_the_in_memory_bits():
    import dask.array as da
    from distributed import Client, LocalCluster

    X, y = design(), labels()
    reference = LogisticRegression(l2=1e-3, missing="indicator").fit(X, y)
    assert reference.indicator_features_.tolist() == [0, 1, 3]
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        Xd = da.from_array(X, chunks=(700, 4))
        model = LogisticRegression(l2=1e-3, missing="indicator").fit(Xd, da.from_array(y, chunks=(700,)))
        margin = model.decision_function(Xd).compute()
    assert model.indicator_features_.tolist() == [0, 1, 3]
    assert model.coef_.tobytes() == reference.coef_.tobytes()
    assert model.impute_.tobytes() == reference.impute_.tobytes()
    assert margin.tobytes() == reference.decision_function(X).tobytes()


def test_a_job_file_sets_the_missing_value_policy(data, tmp_path):
    from pipeline.jobfile import config_to_mapping, load_job

    job = tmp_path / "job.toml"
    job.write_text(
        f'[data]\nurl = "{data}"\nlabel = "y"\nmissing = "indicator"\nnan_as_missing = true\n'
        f'[output]\ndir = "{tmp_path / "out"}"\n'
    )
    loaded = load_job(job)
    assert loaded.missing == "indicator" and loaded.nan_as_missing is True
    mapping = config_to_mapping(loaded)
    assert mapping["data.missing"] == "indicator" and mapping["data.nan_as_missing"] is True
    job.write_text(f'[data]\nurl = "{data}"\nlabel = "y"\nmissing = "median"\n')
    with pytest.raises(ConfigError, match="data.missing.* must be one of error, mean, indicator"):
        load_job(job)


def test_indicators_depend_on_the_values_not_on_the_parquet_statistics(data, reference, tmp_path):
    """Without statistics (or with NaN, which no footer counts) a counting pass
    settles the indicators: the model of files without statistics, and the
    estimator's on the same values, have the reference's bits."""
    bare = tmp_path / "bare"
    bare.mkdir()
    for path in sorted(data.iterdir()):
        pq.write_table(pq.read_table(path), bare / path.name, write_statistics=False, row_group_size=300)
    assert_identical(train(config(bare)), reference)
    estimator = LogisticRegression(l2=1e-3, missing="indicator", tol=1e-10).fit(design(), labels())
    assert estimator.coef_.tobytes() == np.array([reference.coef]).tobytes()
    assert estimator.intercept_.tobytes() == np.array([reference.intercept]).tobytes()
