"""Train/validation split: deterministic, partition-independent, reported per iteration,
early stopping, exact resume."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from sklearn.metrics import accuracy_score, roc_auc_score

from pipeline.checkpoint import load_checkpoint, save_checkpoint
from pipeline.config import TrainConfig
from pipeline.data import Split
from pipeline.errors import DataWarning
from pipeline.model import Model
from pipeline.objective import Penalty
from pipeline.solvers import SolverOptions
from pipeline.train import train

#: runs the CLI in subprocesses: left out of the fast loop (-m "not cluster and not slow")
pytestmark = pytest.mark.slow

N, D = 1500, 4


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(21)
    X = rng.standard_normal((N, D)) * [1.0, 2.0, 0.5, 4.0]
    y = (rng.random(N) < 1 / (1 + np.exp(-(X[:, 0] - 0.3 * X[:, 1])))).astype(np.int8)
    return pa.table({**{f"f{j}": X[:, j] for j in range(D)}, "y": y, "user": rng.integers(0, 300, N)})


def write(table, root, cuts, size):
    root.mkdir(parents=True)
    bounds = [0, *cuts, table.num_rows]
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        pq.write_table(table.slice(a, b - a), root / f"p{i}.parquet", row_group_size=size)
    return root


def test_split_depends_only_on_the_row():
    split = Split(0.25)
    positions = np.arange(100_000)
    mask = split.mask(positions, None)
    assert abs(mask.mean() - 0.75) < 0.01  # the train part
    assert (split.mask(positions[5000:7000], None) == mask[5000:7000]).all()
    validation = Split(0.25, part="validation").mask(positions, None)
    assert (validation == ~mask).all()
    keys = np.repeat(np.arange(50), 3)
    by_key = Split(0.3, key="user", part="validation").mask(np.arange(150), keys)
    assert (by_key.reshape(50, 3) == by_key.reshape(50, 3)[:, :1]).all()  # a key stays on one side


def test_validation_is_the_same_for_any_partitioning_and_reported(tmp_path, table):
    models = []
    for name, cuts, size in (("one", [], N), ("many", [1, 600, 601], 97)):
        data = write(table, tmp_path / name, cuts, size)
        out = tmp_path / f"out-{name}"
        result = run_cli(
            "train",
            data,
            "--label",
            "y",
            "--features",
            "f0,f1,f2,f3",
            "--in-process",
            "--validation-fraction",
            "0.2",
            "--validation-key",
            "user",
            "--out",
            out,
            "--quiet",
        )
        assert result.returncode == 0, result.stderr
        models.append(Model.load(out))
        with open(out / "history.csv") as handle:
            rows = list(csv.DictReader(handle))
        assert [float(r["validation_loss"]) for r in rows] == models[-1].validation_loss_history
    first, second = models
    report = run_cli("report", tmp_path / "out-many")
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "out-many" / "report.html").read_text()
    assert "final validation loss" in page and f"{second.validation_loss_history[-1]:.6g}" in page
    assert "the validation part of the split (validation fraction 0.2, by key &#x27;user&#x27;)" in page
    assert first.digest == second.digest
    assert first.validation_loss_history == second.validation_loss_history
    assert len(first.validation_loss_history) == first.n_iter + 1
    # the final validation loss is the mean log-loss of the held-out rows
    users = table["user"].to_numpy()
    held = Split(0.2, key="user", part="validation").mask(np.arange(N), users)
    X = np.column_stack([table[f"f{j}"].to_numpy() for j in range(D)])[held]
    y = table["y"].to_numpy()[held].astype(float)
    z = X @ np.array(first.coef) + first.intercept
    assert first.validation_loss_history[-1] == pytest.approx(np.mean(np.logaddexp(0, z) - y * z), rel=1e-12)
    # the run wrote the final model's metrics on the held-out rows: the same
    # bits for both partitionings, and scikit-learn's values
    metrics = [_metrics(tmp_path / f"out-{name}") for name in ("one", "many")]
    assert metrics[0] == metrics[1]
    found = metrics[0]
    assert found["rows"] == {"part": "validation", "fraction": 0.2, "key": "user"}
    assert found["n_samples"] == held.sum() and found["n_positive"] == y.sum()
    proba = 1 / (1 + np.exp(-z))
    assert found["accuracy"] == accuracy_score(y, proba > 0.5)
    assert found["roc_auc"] == pytest.approx(roc_auc_score(y, proba), abs=1e-12)
    assert found["log_loss"] == pytest.approx(first.validation_loss_history[-1], rel=1e-12)


def _metrics(path) -> dict:
    """A metrics file (or an output directory's metrics.json) without the fields that name paths."""
    path = path / "metrics.json" if path.is_dir() else path
    found = json.loads(path.read_text())
    return {key: value for key, value in found.items() if key not in ("model", "data")}


def test_evaluate_a_split_of_the_training_data(tmp_path, table):
    data = write(table, tmp_path / "data", [500], 250)
    features = ("--label", "y", "--features", "f0,f1,f2,f3", "--in-process", "--quiet")
    split_run = run_cli("train", data, *features, "--validation-fraction", "0.3", "--out", tmp_path / "split")
    assert split_run.returncode == 0, split_run.stderr
    written = _metrics(tmp_path / "split")
    again = run_cli(
        "evaluate",
        tmp_path / "split",
        data,
        "--split",
        "validation",
        "--in-process",
        "--out",
        tmp_path / "validation.json",
    )
    assert again.returncode == 0, again.stderr
    assert "rows       validation part of the split (validation fraction 0.3, by row position)" in again.stdout
    assert _metrics(tmp_path / "validation.json") == written
    rest = run_cli(
        "evaluate", tmp_path / "split", data, "--split", "train", "--in-process", "--out", tmp_path / "train.json"
    )
    assert rest.returncode == 0, rest.stderr
    everything = run_cli("evaluate", tmp_path / "split", data, "--in-process", "--out", tmp_path / "all.json")
    assert everything.returncode == 0, everything.stderr
    parts = [_metrics(tmp_path / f"{name}.json") for name in ("validation", "train", "all")]
    assert parts[1]["n_samples"] == Split(0.3).mask(np.arange(N), None).sum()
    assert parts[0]["n_samples"] + parts[1]["n_samples"] == parts[2]["n_samples"] == N
    assert parts[2]["rows"] == "all"
    # data whose validation part is empty: said, besides the metrics shown as None
    first_held_out = int(np.argmin(Split(0.3).mask(np.arange(N), None)))
    assert first_held_out > 0
    head = write(table.slice(0, first_held_out), tmp_path / "head", [], first_held_out)
    empty = run_cli(
        "evaluate", tmp_path / "split", head, "--split", "validation", "--in-process", "--out", tmp_path / "e.json"
    )
    assert empty.returncode == 0, empty.stderr
    assert "note       the validation part of the split holds no row of these data" in empty.stdout
    for key in ("tn", "fp", "fn", "tp"):
        assert (
            parts[0]["confusion_matrix"][key] + parts[1]["confusion_matrix"][key] == parts[2]["confusion_matrix"][key]
        )
    # the validation metrics training wrote are not replaced by another evaluation by accident ...
    before = (tmp_path / "split" / "metrics.json").read_bytes()
    clobber = run_cli("evaluate", tmp_path / "split", data, "--in-process")
    assert clobber.returncode == 1 and "Traceback" not in clobber.stderr
    expected = "(the validation part; not this evaluation's: its rows); expected a new path (--out)"
    assert expected in clobber.stderr and "or pass --overwrite" in clobber.stderr
    assert (tmp_path / "split" / "metrics.json").read_bytes() == before
    # ... nor by the same rows at another threshold
    other = run_cli("evaluate", tmp_path / "split", data, "--split", "validation", "--threshold", "0.9", "--in-process")
    assert other.returncode == 1 and "--overwrite" in other.stderr
    assert (tmp_path / "split" / "metrics.json").read_bytes() == before
    # ... while the same evaluation replaces them, and --overwrite any
    same = run_cli("evaluate", tmp_path / "split", data, "--split", "validation", "--in-process")
    assert same.returncode == 0, same.stderr
    assert run_cli("report", tmp_path / "split").returncode == 0
    page = (tmp_path / "split" / "report.html").read_text()
    assert "<h2>Validation metrics</h2>" in page and "weighted as in training" not in page
    # with class weights the objective's validation loss is weighted, the metrics' log-loss not: the page says so
    weighted = run_cli(
        "train", data, *features, "--validation-fraction", "0.3", "--class-weight", "balanced", "--out", tmp_path / "w"
    )
    assert weighted.returncode == 0, weighted.stderr
    assert run_cli("report", tmp_path / "w").returncode == 0
    assert (
        "final validation loss (weighted as in training; the metrics are not)"
        in (tmp_path / "w" / "report.html").read_text()
    )
    # (without a validation split there is no such loss to say it of)
    alone = run_cli("train", data, *features, "--class-weight", "balanced", "--out", tmp_path / "w-all")
    assert alone.returncode == 0, alone.stderr
    assert run_cli("report", tmp_path / "w-all").returncode == 0
    assert "weighted as in training" not in (tmp_path / "w-all" / "report.html").read_text()
    replaced = run_cli("evaluate", tmp_path / "split", data, "--in-process", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert _metrics(tmp_path / "split")["rows"] == "all"
    assert run_cli("report", tmp_path / "split").returncode == 0
    html = (tmp_path / "split" / "report.html").read_text()
    assert "<h2>Metrics</h2>" in html and "Validation metrics" not in html  # (all rows: not validation)
    # a model trained on every row has no split to evaluate
    plain = run_cli("train", data, *features, "--out", tmp_path / "plain")
    assert plain.returncode == 0, plain.stderr
    assert not (tmp_path / "plain" / "metrics.json").exists()
    refused = run_cli("evaluate", tmp_path / "plain", data, "--split", "validation", "--in-process")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "was trained without a validation split" in refused.stderr
    assert "data.validation_fraction is not set" in refused.stderr
    assert not (tmp_path / "plain" / "metrics.json").exists()
    # a later job's job.json beside the model (it failed or was cancelled, so
    # model.json is still the earlier job's): its split is not the model's
    document = json.loads((tmp_path / "split" / "job.json").read_text())
    config = {**document["config"], "data.validation_fraction": 0.5}
    later = {**document, "job_id": "later", "status": "cancelled", "digest": None, "config": config}
    (tmp_path / "split" / "job.json").write_text(json.dumps(later))
    other_job = run_cli("evaluate", tmp_path / "split", data, "--split", "validation", "--in-process", "--overwrite")
    assert other_job.returncode == 1 and "Traceback" not in other_job.stderr
    assert "is of job later (cancelled), whose model is not the one in" in other_job.stderr


def test_training_uses_only_the_training_rows(tmp_path, table):
    data = write(table, tmp_path / "data", [], N)
    split_model = train(
        TrainConfig(
            data=str(data),
            label="y",
            features=tuple(f"f{j}" for j in range(D)),
            cluster=None,
            validation_fraction=0.2,
            options=SolverOptions(tol=1e-10),
        )
    )
    keep = Split(0.2).mask(np.arange(N), None)
    filtered = write(table.filter(pa.array(keep)), tmp_path / "filtered", [], N)
    direct = train(
        TrainConfig(
            data=str(filtered),
            label="y",
            features=tuple(f"f{j}" for j in range(D)),
            cluster=None,
            options=SolverOptions(tol=1e-10),
        )
    )
    np.testing.assert_allclose(split_model.coef, direct.coef, rtol=1e-6)
    assert split_model.n_samples == N and direct.n_samples == keep.sum()


@pytest.mark.parametrize("zero_rows", ["validation", "weight"])
def test_a_feature_constant_on_the_training_rows_gets_coefficient_0(tmp_path, table, zero_rows):
    """A column that varies only on rows that do not count (the validation
    part, rows of weight 0) is constant on the rows that do: standardized, it
    was collinear with the intercept and took a coefficient of 0.75 set by
    the held-out rows (the loss alone cannot tell), where raw features
    give 0.  Now 0 either way, with the DataWarning of a constant feature;
    the rows that count give the same model as before."""
    training = Split(0.3).mask(np.arange(N), None)
    promo = np.where(training, 0.0, (np.arange(N) % 3 == 0) * 1.0)
    weight = np.where(training, 1.0, 0.0)
    data = write(
        table.append_column("promo", pa.array(promo)).append_column("w", pa.array(weight)), tmp_path / "d", [700], 256
    )
    features = (*(f"f{j}" for j in range(D)), "promo")
    common = dict(data=str(data), label="y", features=features, cluster=None, options=SolverOptions(tol=1e-10))
    if zero_rows == "validation":
        common["validation_fraction"] = 0.3
    else:
        common["weight"] = "w"
    models = {}
    for standardize in (True, False):
        with pytest.warns(DataWarning, match="feature 'promo' is constant") if standardize else _no_warning():
            models[standardize] = train(TrainConfig(**common, standardize=standardize))
    assert models[True].coef[-1] == 0.0 and models[False].coef[-1] == 0.0
    np.testing.assert_allclose(models[True].coef, models[False].coef, rtol=1e-6, atol=1e-9)
    assert models[True].intercept == pytest.approx(models[False].intercept, rel=1e-6)


def _no_warning():
    import contextlib

    return contextlib.nullcontext()


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """Few rows, many noise features: the validation loss turns up while training improves."""
    rng = np.random.default_rng(3)
    n, d = 240, 40
    X = rng.standard_normal((n, d))
    y = (rng.random(n) < 1 / (1 + np.exp(-X[:, 0]))).astype(np.int8)
    root = tmp_path_factory.mktemp("noisy") / "data"
    root.mkdir()
    pq.write_table(pa.table({**{f"x{j}": X[:, j] for j in range(d)}, "y": y}), root / "d.parquet")
    return root


def test_early_stopping_stops_when_validation_loss_stops_improving(noisy):
    full = train(
        TrainConfig(
            data=str(noisy), label="y", cluster=None, validation_fraction=0.3, options=SolverOptions(max_iter=200)
        )
    )
    stopped = train(
        TrainConfig(
            data=str(noisy),
            label="y",
            cluster=None,
            validation_fraction=0.3,
            early_stopping=3,
            options=SolverOptions(max_iter=200),
        )
    )
    history = stopped.validation_loss_history
    best = int(np.argmin(history))
    assert stopped.converged and "early stopping" in stopped.message
    assert len(history) - 1 - best == 3 and stopped.n_iter < full.n_iter
    assert history == full.validation_loss_history[: len(history)]  # the same path until the stop


def split_evaluators(data, fraction=0.3):
    """In-process evaluators of the training and the validation part of ``data`` (label ``y``)."""
    from pipeline.data import open_dataset
    from pipeline.reduce import InProcessEvaluator

    dataset = open_dataset(str(data), "y")
    return tuple(
        InProcessEvaluator(dataset.with_split(Split(fraction, part=part)).read_chunks(), dataset.n_features)
        for part in ("train", "validation")
    )


def test_checkpoints_keep_the_validation_history(tmp_path, noisy):
    from pipeline.fitting import fit

    def evaluators():
        return split_evaluators(noisy)

    options = dict(options=SolverOptions(max_iter=60), penalty=Penalty(l2=1e-3), early_stopping=4)
    states = []
    training, validation = evaluators()
    full = fit(training, validation=validation, on_state=states.append, **options)
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, states[len(states) // 2], {})
    loaded, _ = load_checkpoint(path)
    training, validation = evaluators()
    resumed = fit(training, validation=validation, resume=loaded, **options)
    assert resumed.coef.tobytes() == full.coef.tobytes()
    assert resumed.validation_loss == full.validation_loss
    assert resumed.result.message == full.result.message


@pytest.mark.cluster
def test_validation_on_a_cluster_equals_in_process(tmp_path, table):
    data = write(table, tmp_path / "data", [700], 200)
    results = []
    for where, cache in ((["--in-process"], "memory"), (["--workers", "2"], "memory"), (["--workers", "2"], "disk")):
        out = tmp_path / f"out-{len(results)}"
        result = run_cli(
            "train",
            data,
            "--label",
            "y",
            "--features",
            "f0,f1,f2,f3",
            *where,
            "--cache",
            cache,
            "--validation-fraction",
            "0.25",
            "--out",
            out,
            "--quiet",
        )
        assert result.returncode == 0, result.stderr
        results.append(Model.load(out))
    assert len({m.digest for m in results}) == 1
    assert all(m.validation_loss_history == results[0].validation_loss_history for m in results)
    metrics = [_metrics(tmp_path / f"out-{index}") for index in range(len(results))]
    assert metrics[0]["n_samples"] > 0 and all(found == metrics[0] for found in metrics)


def test_a_split_key_of_another_type_is_refused_where_it_would_move_rows(tmp_path, table):
    """Ids written as float64 (pandas with nulls, a CSV round trip) hash
    apart from the int64 ids of training: evaluate's "validation part" would
    hold training rows, so it is refused, naming the file; files of one
    dataset whose key types differ are refused at training."""
    data = write(table, tmp_path / "data", [], N)
    options = ("--label", "y", "--features", "f0,f1,f2,f3", "--in-process", "--quiet")
    trained = run_cli(
        "train", data, *options, "--validation-fraction", "0.2", "--validation-key", "user", "--out", tmp_path / "m"
    )
    assert trained.returncode == 0, trained.stderr
    as_float = table.set_column(table.schema.get_field_index("user"), "user", pc.cast(table["user"], pa.float64()))
    floats = write(as_float, tmp_path / "floats", [], N)
    refused = run_cli(
        "evaluate", tmp_path / "m", floats, "--split", "validation", "--in-process", "--out", tmp_path / "v.json"
    )
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    line = refused.stderr.strip()
    assert (
        line.startswith("ColumnTypeError: validation key column 'user' holds float values in ") and str(floats) in line
    )
    assert "the model's split was drawn from its integer values" in line and not (tmp_path / "v.json").exists()
    same = run_cli(
        "evaluate", tmp_path / "m", data, "--split", "validation", "--in-process", "--out", tmp_path / "v.json"
    )
    assert same.returncode == 0, same.stderr
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    pq.write_table(table.slice(0, 700), mixed / "a.parquet")
    pq.write_table(as_float.slice(700), mixed / "b.parquet")
    refused = run_cli(
        "train", mixed, *options, "--validation-fraction", "0.2", "--validation-key", "user", "--out", tmp_path / "o"
    )
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "ColumnTypeError: validation key column 'user' holds integer values in " in refused.stderr
    assert "expected one type in every file" in refused.stderr


def test_string_and_other_typed_keys_split_by_value(tmp_path):
    """A user id is often a string: rows with equal keys stay on one side, in
    any partitioning; integer-like keys (bool, date, timestamp) use their int64
    value, so an int64 column and a timestamp column of the same ticks split alike."""
    from pipeline.data import ChunkSpec, key_bits

    ids = np.repeat([f"user-{i}" for i in range(400)], 3)
    chunk = ChunkSpec("memory", 0, len(ids), 0)
    bits = key_bits(pa.chunked_array([ids[:500], ids[500:]]), "id", chunk, 0)
    assert bits.dtype == np.uint64 and len(np.unique(bits)) == 400
    assert (bits == key_bits(pa.array(ids), "id", chunk, 0)).all()
    assert (bits == key_bits(pa.array(ids).cast(pa.large_binary()), "id", chunk, 0)).all()
    # dictionary-encoded (as pyarrow writes text), each part with its own dictionary
    encoded = pa.chunked_array([pa.array(ids[:500]).dictionary_encode(), pa.array(ids[500:][::-1]).dictionary_encode()])
    reversed_tail = np.concatenate([ids[:500], ids[500:][::-1]])
    assert (key_bits(encoded, "id", chunk, 0) == key_bits(pa.array(reversed_tail), "id", chunk, 0)).all()
    held = Split(0.3, key="id", part="validation").mask(np.arange(len(ids)), bits)
    assert (held.reshape(400, 3) == held.reshape(400, 3)[:, :1]).all() and 0.2 < held.mean() < 0.4
    ticks = np.arange(-5, 1000, dtype=np.int64)
    as_int = key_bits(pa.array(ticks), "t", chunk, 0)
    assert (as_int == key_bits(pa.array(ticks).cast(pa.timestamp("us")), "t", chunk, 0)).all()
    assert (key_bits(pa.array(ticks.astype(np.int32)), "t", chunk, 0) == as_int).all()
    assert (Split(0.5, key="t").mask(ticks, as_int) == Split(0.5, key="t").mask(ticks, ticks)).all()


def test_a_string_key_trains_the_same_for_any_partitioning(tmp_path, table):
    with_ids = table.append_column("id", pa.array([f"u{v:04d}" for v in table["user"].to_numpy()]))
    models = []
    for name, cuts, size in (("one", [], N), ("many", [1, 600, 601], 97)):
        data = write(with_ids, tmp_path / name, cuts, size)
        models.append(
            train(
                TrainConfig(
                    data=str(data),
                    label="y",
                    features=tuple(f"f{j}" for j in range(D)),
                    cluster=None,
                    validation_fraction=0.25,
                    validation_key="id",
                    options=SolverOptions(max_iter=5),
                )
            )
        )
    assert models[0].digest == models[1].digest
    assert models[0].validation_loss_history == models[1].validation_loss_history


@pytest.mark.parametrize(
    "column, error, found",
    [
        (pa.array([1.5, None, 2.0] * 500), "MissingValueError", "null"),
        (pa.array([[1], [2], [3]] * 500), "ColumnTypeError", "has type list<"),
    ],
)
def test_a_bad_key_column_is_one_clear_error(tmp_path, table, column, error, found):
    data = write(table.append_column("key", column), tmp_path / "data", [], N)
    result = run_cli(
        "train",
        data,
        "--label",
        "y",
        "--features",
        "f0,f1",
        "--validation-fraction",
        "0.2",
        "--validation-key",
        "key",
        "--in-process",
        "--out",
        tmp_path / "out",
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{error}: ") and "'key'" in result.stderr and found in result.stderr


def test_a_split_with_an_empty_side_says_which(tmp_path, table):
    """A fraction so small or so large, or a key with one value, that one part
    of the split has no rows: one EmptyDatasetError naming that part and what
    decides it (before, a 'sample weights add up to 0.0' that named neither)."""
    from pipeline.errors import EmptyDatasetError

    data = write(table.append_column("same", pa.array(np.zeros(N, dtype=np.int64))), tmp_path / "data", [700], 512)
    cases = [
        (dict(validation_fraction=1e-9), "the validation part"),
        (dict(validation_fraction=0.99999999), "the training part"),
        (dict(validation_fraction=0.5, validation_key="same"), "part of the validation split has no rows"),
    ]
    for options, fragment in cases:
        config = TrainConfig(data=str(data), label="y", features=("f0", "f1"), cluster=None, **options)
        with pytest.raises(EmptyDatasetError, match=fragment) as caught:
            train(config)
        assert "--validation-fraction" in str(caught.value) and "--validation-key" in str(caught.value)


@pytest.mark.parametrize("kind", [pa.date32(), pa.time32("ms")], ids=str)  # (Parquet stores time32[s] as ms)
def test_a_32_bit_date_or_time_key_splits_by_its_value(tmp_path, kind):
    """date32 and time32 keys (documented: dates and times) raised Arrow's
    "Unsupported cast to int64" as a traceback; they split as their int32
    value does (the same model as the key written as integers)."""
    rng = np.random.default_rng(3)
    n = 400
    x = rng.standard_normal(n)
    y = (rng.random(n) < 1 / (1 + np.exp(-x))).astype(np.int8)
    values = rng.integers(0, 20_000, n).astype(np.int32)
    models = []
    for name, key in (("temporal", pa.array(values).cast(kind)), ("integer", pa.array(values))):
        (tmp_path / name).mkdir()
        pq.write_table(pa.table({"x": x, "k": key, "y": y}), tmp_path / name / "part-0.parquet")
        split = dict(features=("x",), validation_fraction=0.3, validation_key="k", cluster=None)
        models.append(train(TrainConfig(data=str(tmp_path / name), label="y", **split)))
    assert models[0].digest == models[1].digest


def test_restore_best_keeps_the_iterate_of_the_least_validation_loss(tmp_path, noisy):
    """``--restore-best``: the model is the iterate of the least validation
    loss, the very bytes of a fit stopped there by ``--max-iter``; the
    histories still cover every iteration, and the model file says which one
    it holds (format 7)."""
    common = ["train", noisy, "--label", "y", "--in-process", "--quiet", "--validation-fraction", "0.3"]
    result = run_cli(*common, "--early-stopping", "3", "--restore-best", "--out", tmp_path / "best")
    assert result.returncode == 0, result.stderr
    model = Model.load(tmp_path / "best")
    history = model.validation_loss_history
    best = int(np.argmin(history))
    assert best == len(history) - 1 - 3 and model.n_iter == len(history) - 1
    assert model.restored_iteration == best and model.format_version == 7
    assert model.loss == model.loss_history[best] and model.validation_loss == history[best]
    assert f"restored iteration {best}" in model.message and f"loss={model.loss_history[best]!r}" in result.stdout
    stopped = run_cli(*common, "--max-iter", str(best), "--out", tmp_path / "stopped")
    assert stopped.returncode == 0, stopped.stderr
    there = Model.load(tmp_path / "stopped")
    assert there.digest == model.digest and there.restored_iteration is None
    assert np.array(there.gradient).tobytes() == np.array(model.gradient).tobytes()
    last = run_cli(*common, "--early-stopping", "3", "--out", tmp_path / "last")
    assert last.returncode == 0, last.stderr
    assert Model.load(tmp_path / "last").digest != model.digest  # (without it: the last iterate)
    refused = run_cli("train", noisy, "--label", "y", "--in-process", "--restore-best", "--out", tmp_path / "no")
    assert refused.returncode == 1 and "--restore-best needs a validation set" in refused.stderr
    assert not (tmp_path / "no").exists()


def test_restore_best_is_refused_where_the_model_would_not_be_the_restored_iterate(noisy):
    """Inference moves the model to the optimum; a path warm-starts each
    strength from the last iterate of the one before (from a restored one,
    every later strength restored its starting point: one model for all)."""
    from pipeline.errors import ConfigError
    from pipeline.fitting import fit, with_inference

    common = dict(data=str(noisy), label="y", cluster=None, validation_fraction=0.3, restore_best=True)
    with pytest.raises(ConfigError, match="restore_best keeps an iterate .* inference is at the optimum"):
        TrainConfig(**common, inference="nonrobust")
    with pytest.raises(ConfigError, match="restore_best cannot be used with a regularization path"):
        TrainConfig(**common, path=4, penalty=Penalty(l2=0.1))
    training, validation = split_evaluators(noisy)  # (the API: a restored fit refuses inference itself)
    restored = fit(training, validation=validation, early_stopping=3, restore_best=True)
    assert restored.restored_iteration is not None
    with pytest.raises(ConfigError, match="restored earlier iterate"):
        with_inference(training, restored, [f"x{j}" for j in range(training.n_features)])


def test_a_resumed_fit_restores_the_same_best_iterate(tmp_path, noisy):
    from pipeline.fitting import fit

    def evaluators():
        return split_evaluators(noisy)

    options = dict(options=SolverOptions(max_iter=60), penalty=Penalty(l2=1e-4), early_stopping=4, restore_best=True)
    states = []
    training, validation = evaluators()
    full = fit(training, validation=validation, on_state=states.append, **options)
    assert full.restored_iteration is not None and full.restored_iteration < full.result.n_iter
    path = tmp_path / "checkpoint.npz"
    for state in (states[1], states[full.restored_iteration + 1], states[-2]):
        save_checkpoint(path, state, {})
        loaded, _ = load_checkpoint(path)
        assert loaded.best is not None and loaded.best.coef.tobytes() == state.best.coef.tobytes()
        training, validation = evaluators()
        resumed = fit(training, validation=validation, resume=loaded, **options)
        assert resumed.coef.tobytes() == full.coef.tobytes()
        assert resumed.gradient.tobytes() == full.gradient.tobytes()
        assert resumed.restored_iteration == full.restored_iteration
        assert resumed.result.message == full.result.message


def test_a_checkpoint_of_a_job_recorded_before_restore_best_still_matches():
    """Jobs recorded before the option have no ``train.restore_best`` in their
    model options: that reads as false, so their checkpoints still resume."""
    from pipeline.jobs import _comparable

    earlier = {"data.label": "y", "data.validation_fraction": 0.3, "train.l2": 0.1}
    assert _comparable(earlier) == _comparable({**earlier, "train.restore_best": False})
    assert _comparable(earlier) != _comparable({**earlier, "train.restore_best": True})
