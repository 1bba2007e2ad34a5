"""Multinomial (softmax) logistic regression: K classes, exact, on the Parquet path.

What is shown here:

* the compiled pass equals the numpy reference bit for bit (layouts, narrow
  features, sample and class weights, standardization, missing values), and
  both equal the softmax cross-entropy and its gradient;
* the optimum is scikit-learn's (multinomial ``LogisticRegression``, lbfgs,
  tol 1e-12) on iris, wine and digits with L2 (relative loss gap <= 1e-9,
  coefficients matched where scikit-learn converges), and two classes with
  ``--family multinomial`` reach the binary model's optimum;
* the classes come from an exact pass (sorted values of any label type);
  the model's bytes are the same for any partitioning, in-process, on 1 and
  2 workers in every cache mode, and after a resume;
* ``predict`` writes ``proba_<class>`` and ``prediction``; ``evaluate``'s
  metrics equal scikit-learn's on the same predictions; bad labels get one
  clear error.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.special import softmax as scipy_softmax
from sklearn.datasets import load_digits, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from pipeline import ClusterSpec, Penalty, SolverOptions, TrainConfig, train
from pipeline.checkpoint import load_checkpoint, save_checkpoint
from pipeline.data import Split
from pipeline.errors import (
    ColumnTypeError,
    ConfigError,
    ConvergenceWarning,
    DataWarning,
    LabelValueError,
    MissingValueError,
    ModelFileError,
    NonFiniteValueError,
)
from pipeline.fitting import fit
from pipeline.fused import fused_partials
from pipeline.kernel import KernelSpec, softmax_partials
from pipeline.model import Model
from pipeline.objective import LogisticObjective
from pipeline.predict import evaluate, predict
from pipeline.reduce import InProcessEvaluator

pytestmark = pytest.mark.filterwarnings("ignore:feature .* is constant:UserWarning")  # digits' blank pixels

N_ROWS = 3000
SPECIES = np.array(["ant", "bee", "cat"])
OPTIONS = SolverOptions(tol=1e-9)
GAP = 1e-9


def columns(seed: int = 5) -> dict[str, np.ndarray]:
    """Four badly scaled features and a 3-class text label drawn from a softmax model."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N_ROWS, 4)) * [1.0, 100.0, 0.01, 5.0] + [0.0, 50.0, 0.0, -3.0]
    W = np.array([[1.0, 0.01, 50.0, 0.2], [-0.5, 0.02, -30.0, 0.0], [0.0, -0.01, 0.0, -0.3]])
    proba = scipy_softmax(X @ W.T, axis=1)
    label = SPECIES[(rng.random(N_ROWS)[:, None] > np.cumsum(proba, axis=1)).sum(axis=1)]
    return {**{f"x{j}": X[:, j] for j in range(4)}, "species": label}


def write(directory, cuts=(), row_group: int = 512, dictionary: bool = False):
    """The rows of :func:`columns` in files cut at ``cuts``, ``row_group`` rows per group."""
    directory.mkdir(parents=True)
    values = columns()
    bounds = [0, *cuts, N_ROWS]
    for index, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        table = pa.table({name: column[start:stop] for name, column in values.items()})
        pq.write_table(
            table,
            directory / f"part-{index}.parquet",
            row_group_size=row_group,
            use_dictionary=bool(dictionary or index % 2),
        )
    return directory


def config(data, **options) -> TrainConfig:
    fields = {"cluster": None, "options": OPTIONS, "penalty": Penalty(l2=1e-3), **options}
    return TrainConfig(data=str(data), label="species", **fields)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write(tmp_path_factory.mktemp("multinomial") / "data", cuts=(1000, 1700))


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    return train(config(data, out=str(tmp_path_factory.mktemp("reference") / "out")))


def assert_identical(model: Model, reference: Model) -> None:
    assert model.digest == reference.digest
    assert model.coef_array.tobytes() == reference.coef_array.tobytes()
    assert model.loss_history == reference.loss_history
    assert np.array(model.gradient).tobytes() == np.array(reference.gradient).tobytes()


# --------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("n_classes", [2, 3, 10])
@pytest.mark.parametrize("layout", ["F", "C", "float32"])
def test_the_compiled_pass_equals_the_reference_and_the_cross_entropy(n_classes, layout):
    rng = np.random.default_rng(n_classes)
    n, d = 2500, 5
    X = rng.standard_normal((n, d)) * [1.0, 10.0, 100.0, 0.01, 3.0]
    X[rng.random((n, d)) < 0.02] = np.nan  # missing values, filled by spec.fill
    X = {"F": np.asfortranarray(X), "C": np.ascontiguousarray(X), "float32": np.asfortranarray(X, np.float32)}[layout]
    y = rng.integers(0, n_classes, n).astype(np.float64)
    coef = rng.standard_normal(n_classes * (d + 1))
    weights = rng.uniform(0.5, 2.0, n)
    center, scale, fill = rng.standard_normal(d), rng.uniform(0.5, 2.0, d), rng.standard_normal(d)
    class_weight = tuple(rng.uniform(0.5, 2.0, n_classes))
    for spec, w in [
        (KernelSpec(fill=fill, n_classes=n_classes), None),
        (KernelSpec(center, scale, class_weight, fill=fill, n_classes=n_classes), weights),
    ]:
        reference = softmax_partials(X, y, coef, w, spec)
        assert fused_partials(X, y, coef, w, spec) == reference
        # split anywhere: the same sums
        assert (
            fused_partials(X[:777], y[:777], coef, None if w is None else w[:777], spec).merge(
                softmax_partials(X[777:], y[777:], coef, None if w is None else w[777:], spec)
            )
            == reference
        )
    # and they are the weighted cross-entropy and its gradient
    Xs = (np.where(np.isnan(X), fill, X).astype(np.float64) - center) / scale
    blocks = coef.reshape(n_classes, d + 1)
    margin = Xs @ blocks[:, :-1].T + blocks[:, -1]
    s = weights * np.asarray(class_weight)[y.astype(int)]
    codes = y.astype(int)
    loss = (s * (logsumexp(margin, axis=1) - margin[np.arange(n), codes])).sum()
    residual = s[:, None] * (scipy_softmax(margin, axis=1) - (codes[:, None] == np.arange(n_classes)))
    grad = np.hstack([residual.T @ Xs, residual.sum(axis=0)[:, None]]).ravel()
    loss_sum, grad_sum, weight_sum = reference.finalize()
    assert loss_sum == pytest.approx(loss, rel=1e-12) and weight_sum == pytest.approx(s.sum(), rel=1e-15)
    np.testing.assert_allclose(grad_sum, grad, rtol=1e-9, atol=1e-9 * np.abs(grad).max())


# --------------------------------------------------------------------------- the optimum


def cross_entropy(X, y, coef, intercept, l2):
    margin = X @ coef.T + intercept
    return (logsumexp(margin, axis=1) - margin[np.arange(len(y)), y]).mean() + 0.5 * l2 * (coef * coef).sum()


@pytest.mark.parametrize("name, loader", [("iris", load_iris), ("wine", load_wine), ("digits", load_digits)])
def test_scikit_learns_multinomial_optimum(name, loader):
    X, y = loader(return_X_y=True)
    # (pixels in [0, 1]: on raw 0..16 pixels scikit-learn's lbfgs needs 4,000 iterations, 45 s)
    X = X.astype(np.float64) / (16.0 if name == "digits" else 1.0)
    n_classes, (n, d) = len(np.unique(y)), X.shape
    l2 = 1e-3
    with warnings.catch_warnings():  # (on raw wine features it stops short of tol=1e-12: an upper bound)
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        sk = LogisticRegression(C=1.0 / (l2 * n), tol=1e-12, max_iter=20_000).fit(X, y)
    ours = fit(
        InProcessEvaluator([(X[: n // 3], y[: n // 3]), (X[n // 3 :], y[n // 3 :])], d),
        penalty=Penalty(l2=l2),
        n_classes=n_classes,
    )
    assert ours.solver == "lbfgs" and ours.result.converged
    blocks = ours.coef.reshape(n_classes, d + 1)
    theirs = cross_entropy(X, y, sk.coef_, sk.intercept_, l2)
    gap = (cross_entropy(X, y, blocks[:, :-1], blocks[:, -1], l2) - theirs) / theirs
    assert gap <= GAP
    if -gap <= GAP:  # where scikit-learn converged (on raw wine it stops 3e-4 above), the same coefficients
        np.testing.assert_allclose(blocks[:, :-1], sk.coef_, rtol=1e-3, atol=1e-3 * np.abs(sk.coef_).max())
        # and the intercepts, centered as ours are
        np.testing.assert_allclose(blocks[:, -1], sk.intercept_ - sk.intercept_.mean(), atol=1e-3)


def test_two_classes_as_multinomial_reach_the_binary_optimum():
    X, y = load_iris(return_X_y=True)
    y = (y == 2).astype(np.float64)
    evaluator = InProcessEvaluator([(X, y)], X.shape[1])
    binary = fit(evaluator, penalty=Penalty(l2=1e-3), options=SolverOptions(tol=1e-10))
    # the softmax of two classes is the sigmoid of their difference w = w_1 - w_0; centered,
    # w_k = -+w/2, so the penalty on both rows is l2/4 |w|^2: twice the strength gives the same objective
    two = fit(evaluator, penalty=Penalty(l2=2e-3), options=SolverOptions(tol=1e-10), n_classes=2)
    blocks = two.coef.reshape(2, -1)
    difference = blocks[1] - blocks[0]
    binary_loss = LogisticObjective(evaluator, Penalty(l2=1e-3))(binary.coef)[0]
    assert LogisticObjective(evaluator, Penalty(l2=1e-3))(difference)[0] == pytest.approx(binary_loss, rel=1e-12)
    np.testing.assert_allclose(difference, binary.coef, rtol=1e-5)
    np.testing.assert_allclose(blocks[0], -blocks[1], rtol=1e-12, atol=1e-12)  # centered


def test_without_a_penalty_the_coefficients_are_centered():
    X, y = load_iris(return_X_y=True)
    keep = y != 0  # versicolor vs virginica overlap: a finite unpenalized optimum
    X, y = X[keep], (y[keep] - 1).astype(np.float64)
    y[:3] = 2.0  # and a third class
    result = fit(InProcessEvaluator([(X, y)], X.shape[1]), n_classes=3, options=SolverOptions(max_iter=3000))
    assert np.abs(result.coef.reshape(3, -1).sum(axis=0)).max() < 1e-12


# --------------------------------------------------------------------------- the Parquet path


def test_the_classes_are_sorted_values_of_any_label_type(reference, tmp_path):
    assert reference.family == "multinomial" and reference.classes == ["ant", "bee", "cat"]
    assert np.array(reference.coef).shape == (3, 4) and len(reference.intercept) == 3
    assert abs(sum(reference.intercept)) < 1e-12  # centered
    values = columns()
    codes = np.searchsorted(SPECIES, values["species"])
    for label, expected in [(codes * 10 - 5, [-5, 5, 15]), (codes + 0.5, [0.5, 1.5, 2.5])]:
        directory = tmp_path / f"{label.dtype}"
        directory.mkdir()
        pq.write_table(pa.table({**values, "species": label}), directory / "a.parquet", row_group_size=700)
        model = train(config(directory))
        assert model.classes == expected
        assert model.coef_array.tobytes() == reference.coef_array.tobytes()  # the same codes: the same bytes


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cuts=st.lists(st.integers(1, N_ROWS - 1), min_size=0, max_size=3, unique=True).map(sorted),
    row_group=st.sampled_from([100, 700, 3000]),
    dictionary=st.booleans(),
)
def test_any_partitioning_gives_the_same_bytes(reference, tmp_path_factory, cuts, row_group, dictionary):
    data = write(tmp_path_factory.mktemp("parts") / "data", tuple(cuts), row_group, dictionary)
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
    X, y = load_wine(return_X_y=True)
    evaluator = InProcessEvaluator([(X[:100], y[:100]), (X[100:], y[100:])], X.shape[1])
    options = dict(penalty=Penalty(l2=1e-2), options=OPTIONS, n_classes=3)
    states = []
    full = fit(evaluator, on_state=states.append, **options)
    path = tmp_path / "checkpoint.npz"
    for state in (states[0], states[len(states) // 2]):
        save_checkpoint(path, state, {})
        loaded, _ = load_checkpoint(path)
        resumed = fit(evaluator, resume=loaded, **options)
        assert resumed.coef.tobytes() == full.coef.tobytes()
        assert resumed.result.history == full.result.history


def test_a_warm_start_from_a_multinomial_model(data, reference, tmp_path):
    start = tmp_path / "start"
    reference.save(start)
    model = train(config(data, init=str(start)))
    assert model.n_iter <= 2 and np.allclose(model.coef_array, reference.coef_array, atol=1e-6)


def test_a_zero_one_label_is_the_binary_model_bit_for_bit(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((1000, 3))
    y = (rng.random(1000) < 1 / (1 + np.exp(-X @ [1.0, -2.0, 0.5]))).astype(np.int8)
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": y}), tmp_path / "d.parquet")
    base = dict(data=str(tmp_path / "d.parquet"), label="y", cluster=None)
    auto = train(TrainConfig(**base))
    assert auto.family == "binomial" and auto.classes is None
    assert train(TrainConfig(**base, family="binomial")).digest == auto.digest
    two = train(TrainConfig(**base, family="multinomial", penalty=Penalty(l2=1e-3)))
    assert two.family == "multinomial" and two.classes == [0, 1] and np.array(two.coef).shape == (2, 3)


def test_two_text_classes_make_the_binomial_model(data, tmp_path):
    values = columns()
    keep = values["species"] != "cat"
    pq.write_table(pa.table({k: v[keep] for k, v in values.items()}), tmp_path / "two.parquet")
    model = train(config(tmp_path / "two.parquet", out=str(tmp_path / "out")))
    assert model.family == "binomial" and model.classes == ["ant", "bee"]
    predict(str(tmp_path / "out"), str(tmp_path / "two.parquet"), str(tmp_path / "scores"))
    scores = pq.read_table(tmp_path / "scores").to_pandas()
    assert set(scores["prediction"]) <= {"ant", "bee"}
    assert ((scores["proba"] > 0.5) == (scores["prediction"] == "bee")).all()
    metrics = evaluate(str(tmp_path / "out"), str(tmp_path / "two.parquet"))
    truth = (values["species"][keep] == "bee").astype(int)
    assert metrics["classes"] == ["ant", "bee"]
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(truth, scores["proba"]), rel=1e-12)
    # the CLI and the report say the threshold, and name the confusion matrix's classes (it said 0 and 1)
    result = run_cli("evaluate", tmp_path / "out", tmp_path / "two.parquet", "--threshold", "0.7")
    assert result.returncode == 0, result.stderr
    assert "threshold  0.7 " in result.stdout
    assert run_cli("report", tmp_path / "out").returncode == 0
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<td>threshold</td>" in page and "<th>predicted bee</th>" in page and "<td>actual ant</td>" in page


def test_predict_and_evaluate_agree_with_scikit_learn(data, reference, tmp_path):
    model_dir = tmp_path / "model"
    reference.save(model_dir)
    summary = predict(str(model_dir), str(data), str(tmp_path / "scores"), columns=["species"])
    scores = pq.read_table(tmp_path / "scores").to_pandas()
    assert summary["rows"] == N_ROWS
    assert list(scores.columns) == ["species", "proba_ant", "proba_bee", "proba_cat", "prediction"]
    proba = scores[["proba_ant", "proba_bee", "proba_cat"]].to_numpy()
    assert np.abs(proba.sum(axis=1) - 1.0).max() < 1e-15
    assert (scores["prediction"].to_numpy() == SPECIES[proba.argmax(axis=1)]).all()
    truth = np.searchsorted(SPECIES, scores["species"].to_numpy())
    predicted = proba.argmax(axis=1)
    metrics = evaluate(str(model_dir), str(data))
    assert metrics["n_samples"] == N_ROWS and metrics["classes"] == ["ant", "bee", "cat"]
    assert metrics["confusion_matrix"] == confusion_matrix(truth, predicted).tolist()
    assert metrics["accuracy"] == accuracy_score(truth, predicted)
    assert metrics["log_loss"] == pytest.approx(log_loss(truth, proba), rel=1e-12)
    assert metrics["f1_macro"] == pytest.approx(f1_score(truth, predicted, average="macro"), rel=1e-12)
    assert metrics["f1_weighted"] == pytest.approx(f1_score(truth, predicted, average="weighted"), rel=1e-12)
    assert metrics["precision_macro"] == pytest.approx(
        precision_score(truth, predicted, average="macro", zero_division=0), rel=1e-12
    )
    assert metrics["roc_auc_ovr_macro"] == pytest.approx(roc_auc_score(truth, proba, multi_class="ovr"), rel=1e-12)
    for c, row in enumerate(metrics["per_class"]):
        assert row["roc_auc"] == pytest.approx(roc_auc_score(truth == c, proba[:, c]), rel=1e-12)
    # partition-independent: the same metrics on other files
    other = write(tmp_path / "other", cuts=(5, 2222), row_group=333)
    assert {k: v for k, v in evaluate(str(model_dir), str(other)).items() if k != "data"} == {
        k: v for k, v in metrics.items() if k != "data"
    }
    # rows of two classes, none predicted as the third: the macro means are over the classes held or predicted,
    # as scikit-learn's by default (the third's zeros made a perfect classifier's F1 0.67)
    keep = np.flatnonzero(predicted != 2)
    subset = pa.table({name: column[keep] for name, column in columns().items()})
    (tmp_path / "subset").mkdir()
    pq.write_table(subset, tmp_path / "subset" / "part.parquet")
    metrics = evaluate(str(model_dir), str(tmp_path / "subset"))
    held = truth[keep]
    assert 2 in held  # (the third class is held, not predicted: it counts)
    assert metrics["f1_macro"] == pytest.approx(f1_score(held, predicted[keep], average="macro"), rel=1e-12)
    keep = np.flatnonzero((predicted != 2) & (truth != 2))
    pq.write_table(
        pa.table({name: column[keep] for name, column in columns().items()}), tmp_path / "subset" / "part.parquet"
    )
    metrics = evaluate(str(model_dir), str(tmp_path / "subset"))
    for key, average in (("f1_macro", "macro"), ("precision_macro", "macro"), ("recall_macro", "macro")):
        function = {"f1_macro": f1_score, "precision_macro": precision_score, "recall_macro": recall_score}[key]
        expected = function(truth[keep], predicted[keep], average=average, zero_division=0)
        assert metrics[key] == pytest.approx(expected, rel=1e-12), key


def test_the_cli_trains_evaluates_and_reports(data, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "train",
        str(data),
        "--label",
        "species",
        "--l2",
        "1e-3",
        "--family",
        "multinomial",
        "--out",
        str(out),
        "--in-process",
    )
    assert result.returncode == 0, result.stderr
    assert "classes of 'species': 3" in result.stdout + result.stderr
    result = run_cli("evaluate", str(out), str(data))
    assert result.returncode == 0, result.stderr
    assert "confusion matrix" in result.stdout and "roc_auc_ovr_macro" in result.stdout
    assert json.loads((out / "metrics.json").read_text())["classes"] == ["ant", "bee", "cat"]
    result = run_cli("report", str(out))
    assert result.returncode == 0, result.stderr
    page = (out / "report.html").read_text()
    assert "predicted cat" in page and "3 classes (softmax)" in page
    # a threshold has nothing to apply to (it was silently ignored): refused, nothing written
    metrics = (out / "metrics.json").read_bytes()
    for command in (["evaluate", str(out), str(data)], ["predict", str(out), str(data), "--out", str(tmp_path / "s")]):
        result = run_cli(*command, "--threshold", "0.9")
        assert result.returncode == 1 and result.stderr.startswith("ConfigError: threshold 0.9 applies to a binary")
        assert "Traceback" not in result.stderr
    assert (out / "metrics.json").read_bytes() == metrics and not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- bad input


def test_a_single_class_is_refused(tmp_path):
    values = columns()
    pq.write_table(pa.table({**values, "species": np.full(N_ROWS, "ant")}), tmp_path / "one.parquet")
    with pytest.raises(LabelValueError, match="single class .'ant'."):
        train(config(tmp_path / "one.parquet"))


def test_a_stray_label_value_is_warned_about(tmp_path, recwarn, capsys):
    """A 0/1 label with one stray 2 trains a 3-class model (the documented
    auto family) but says that a class has a single row; real classes do not warn."""
    rng = np.random.default_rng(8)
    X = rng.standard_normal((400, 2))
    label = (X[:, 0] > 0).astype(np.int64)
    label[123] = 2
    pq.write_table(pa.table({"x0": X[:, 0], "x1": X[:, 1], "y": label}), tmp_path / "stray.parquet")
    stray = TrainConfig(data=str(tmp_path / "stray.parquet"), label="y", cluster=None, penalty=Penalty(l2=1e-2))
    with pytest.warns(DataWarning, match=r"label column 'y': 1 of its 3 classes have a single row \(2\); a stray"):
        assert train(stray).family == "multinomial"
    recwarn.clear()
    train(config(write(tmp_path / "species"), options=SolverOptions(max_iter=3)))
    assert not [w for w in recwarn if "single row" in str(w.message)]
    # the command prints it as its other warnings: one line (it was Python's
    # two, with the source line of the call that warned), logged in job.log
    from pipeline.cli import main

    out = tmp_path / "out"
    assert (
        main(
            ["train", str(tmp_path / "stray.parquet"), "--label", "y", "--l2", "0.01", "--in-process"]
            + ["--quiet", "--out", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().err
    assert "warning: label column 'y': 1 of its 3 classes have a single row (2)" in printed
    assert "DataWarning" not in printed and "return run(" not in printed
    assert "warning: label column 'y': 1 of its 3 classes" in (out / "job.log").read_text()


def test_too_many_classes_are_refused(data):
    with pytest.raises(LabelValueError, match="3 classes .* at most max_classes = 2"):
        train(config(data, max_classes=2))


def test_binomial_with_three_classes_is_refused(data):
    with pytest.raises(LabelValueError, match="binomial family needs exactly 2"):
        train(config(data, family="binomial"))


def test_a_null_label_is_refused(tmp_path):
    values = columns()
    label = pa.array(values["species"]).to_pylist()
    label[17] = None
    pq.write_table(pa.table({**values, "species": pa.array(label)}), tmp_path / "null.parquet")
    with pytest.raises(
        MissingValueError, match="1 null value.* first at row 17 of the row group .dataset row 17."
    ) as found:
        train(config(tmp_path / "null.parquet"))
    assert found.value.row_group == 0 and found.value.rows == (17, 18)  # (where it is, as a 0/1 label's null)


def test_an_unknown_class_when_evaluating_is_refused(reference, tmp_path):
    reference.save(tmp_path / "model")
    values = columns()
    values["species"] = values["species"].copy()
    values["species"][42] = "dog"
    pq.write_table(pa.table(values), tmp_path / "dog.parquet")
    with pytest.raises(LabelValueError, match="unknown class .first 'dog'. .* row 42"):
        evaluate(str(tmp_path / "model"), str(tmp_path / "dog.parquet"))


def test_newton_is_refused(data):
    with pytest.raises(ConfigError, match="newton solver is not available for the multinomial model"):
        train(config(data, solver="newton"))


def test_class_weights_must_match_the_classes(data):
    with pytest.raises(ConfigError, match="class_weight has 2 weights; expected 3"):
        train(config(data, class_weight=(1.0, 2.0)))
    balanced = train(config(data, class_weight="balanced"))
    counts = np.unique(columns()["species"], return_counts=True)[1]
    assert balanced.class_weight == pytest.approx((N_ROWS / (3 * counts)).tolist(), rel=1e-15)


def test_class_weights_by_class_name_the_text_classes(data, tmp_path):
    """Weights keyed by the classes (any order; the command line's
    'bee:2,...' and a job file's table) are the weights in the classes'
    sorted order, to the bit; keys that are not each class once are refused
    by name (a '0:1,1:2,2:3' used to be read by position for text classes)."""
    ordered = train(config(data, class_weight=(1.0, 2.0, 3.0)))
    named = train(config(data, class_weight={"cat": 3.0, "ant": 1, "bee": 2.0}))
    assert_identical(named, ordered)
    assert named.class_weight == [1.0, 2.0, 3.0]
    for wrong in (
        {"0": 1.0, "1": 2.0, "2": 3.0},
        {"ant": 1.0, "bee": 2.0},
        {"ant": 1.0, "bee": 2.0, "cat": 1, "dog": 1},
    ):
        with pytest.raises(ConfigError, match=r"class_weight keys must be the classes of label 'species', \['ant', "):
            train(config(data, class_weight=wrong))
    out = tmp_path / "cli"
    result = run_cli(
        "train", data, "--label", "species", "--l2", "1e-3", "--tol", "1e-9", "--in-process", "--quiet",
        "--out", out, "--class-weight", "bee:2,ant:1,cat:3",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert Model.load(out).digest == ordered.digest
    job = tmp_path / "weights.toml"
    job.write_text(
        f'[data]\nurl = {json.dumps(str(data))}\nlabel = "species"\n[train]\nl2 = 1e-3\ntol = 1e-9\n'
        'class_weight = { cat = 3, "ant" = 1.0, bee = 2 }\n'
        f"[cluster]\nin_process = true\n[output]\ndir = {json.dumps(str(tmp_path / 'job'))}\n"
    )
    result = run_cli("submit", job, "--quiet")
    assert result.returncode == 0, result.stderr
    assert Model.load(tmp_path / "job").digest == ordered.digest
    stored = json.loads((tmp_path / "job" / "job.json").read_text())["config"]["train.class_weight"]
    assert stored == {"cat": 3.0, "ant": 1.0, "bee": 2.0}  # (a resumed job resolves it again)
    result = run_cli(
        "train", data, "--label", "species", "--in-process", "--quiet", "--out", tmp_path / "bad",
        "--class-weight", "0:1,1:2,2:3",
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "ConfigError: --class-weight keys must be the classes of label 'species', ['ant', 'bee', 'cat']" in (
        result.stderr
    )
    assert not (tmp_path / "bad").exists()


def test_a_damaged_multinomial_model_file_is_refused(reference, tmp_path):
    reference.save(tmp_path)
    document = json.loads((tmp_path / "model.json").read_text())
    document["intercept"] = document["intercept"][:2]
    (tmp_path / "model.json").write_text(json.dumps(document))
    with pytest.raises(ModelFileError, match="one intercept per class"):
        Model.load(tmp_path)


# --------------------------------------------------------------------------- the estimator


def test_the_estimator_takes_any_labels_to_the_parquet_models_bits(data, reference):
    from pipeline.estimator import LogisticRegression as Estimator

    values = columns()
    X = np.column_stack([values[f"x{j}"] for j in range(4)])
    model = Estimator(l2=1e-3, tol=OPTIONS.tol).fit(X, values["species"])
    assert list(model.classes_) == ["ant", "bee", "cat"]
    assert model.coef_.shape == (3, 4) and model.intercept_.shape == (3,)
    assert model.coef_.tobytes() == reference.coef_array.tobytes()
    assert model.intercept_.tobytes() == np.array(reference.intercept).tobytes()
    proba = model.predict_proba(X)
    assert proba.shape == (N_ROWS, 3) and proba.tobytes() == reference.predict_proba(X).tobytes()
    assert (model.predict(X) == SPECIES[proba.argmax(axis=1)]).all()
    assert model.decision_function(X).shape == (N_ROWS, 3)


def test_an_estimator_from_a_multinomial_model_file_scores_the_same(reference, tmp_path):
    from pipeline.estimator import LogisticRegression as Estimator

    values = columns()
    X = np.column_stack([values[f"x{j}"] for j in range(4)])
    reference.save(tmp_path)
    loaded = Estimator.from_model(str(tmp_path))
    assert list(loaded.classes_) == ["ant", "bee", "cat"] and loaded.coef_.shape == (3, 4)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(4)])
    assert loaded.predict_proba(frame).tobytes() == reference.predict_proba(X).tobytes()


def test_the_estimator_weights_classes_like_scikit_learn():
    from pipeline.estimator import LogisticRegression as Estimator

    X, y = load_wine(return_X_y=True)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    l2 = 1e-2
    options = dict(l2=l2, tol=1e-10, class_weight="balanced")
    ours = Estimator(**options).fit(X, y, sample_weight=weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        theirs = LogisticRegression(C=1.0, class_weight="balanced", tol=1e-12, max_iter=20_000)
        # scikit-learn's C multiplies the weighted sum of losses: l2 on the mean of S = sum of s_i
        counts = np.bincount(y, weights=weights)
        s = weights * (weights.sum() / (3 * counts))[y]
        theirs.set_params(C=1.0 / (l2 * s.sum())).fit(X, y, sample_weight=weights)
    margin = X @ ours.coef_.T + ours.intercept_
    sk_margin = X @ theirs.coef_.T + theirs.intercept_

    def objective(m, coef):
        return (s * (logsumexp(m, axis=1) - m[np.arange(len(y)), y])).sum() / s.sum() + 0.5 * l2 * (coef**2).sum()

    assert objective(margin, ours.coef_) <= objective(sk_margin, theirs.coef_) * (1 + GAP)


@pytest.mark.cluster
def test_dask_arrays_train_a_multinomial_model_to_the_same_bits():
    import dask.array as da
    from distributed import Client, LocalCluster

    from pipeline.estimator import LogisticRegression as Estimator

    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    reference = Estimator(l2=1e-3).fit(X, labels)
    # weights over 16 orders of magnitude: a plain float sum of each class's would depend on the chunks
    weights = 10.0 ** np.random.default_rng(1).uniform(-8, 8, len(y))
    balanced = Estimator(l2=1e-3, class_weight="balanced").fit(X, labels, sample_weight=weights)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        model = Estimator(l2=1e-3).fit(da.from_array(X, chunks=(40, 4)), da.from_array(labels, chunks=(40,)))
        proba = model.predict_proba(da.from_array(X, chunks=(40, 4))).compute()
        predicted = model.predict(da.from_array(X, chunks=(40, 4))).compute()
        weighted = Estimator(l2=1e-3, class_weight="balanced").fit(
            da.from_array(X, chunks=(37, 4)), da.from_array(labels, chunks=(37,)), sample_weight=weights
        )
    assert weighted._class_totals == balanced._class_totals
    assert weighted.coef_.tobytes() == balanced.coef_.tobytes()
    assert model.coef_.tobytes() == reference.coef_.tobytes()
    assert proba.tobytes() == reference.predict_proba(X).tobytes()
    assert (predicted == reference.predict(X)).all()


# --------------------------------------------------------------------------- categorical columns


def categorical_table(seed: int = 3, n: int = 3000) -> dict[str, np.ndarray]:
    """``x`` numeric, ``country`` text, ``device`` integer-coded, a 3-class text label."""
    rng = np.random.default_rng(seed)
    country = rng.choice(["BR", "DE", "FR", "JP"], n, p=[0.1, 0.4, 0.3, 0.2])
    device = rng.integers(0, 4, n).astype(np.int32)
    x = rng.standard_normal(n) * 10.0
    effect = {"BR": 0.0, "DE": 1.0, "FR": -1.0, "JP": 0.5}
    margin = np.column_stack([x / 10.0, np.vectorize(effect.get)(country), device * 0.3 - 0.5])
    label = SPECIES[np.where(rng.random(n) < 0.8, margin.argmax(axis=1), rng.integers(0, 3, n))]
    return {"x": x, "country": country, "device": device, "species": label}


def test_the_compiled_level_sums_of_every_class_hold_sums_past_128_bits():
    """Each class's levels have a 128-bit pair per level and a room of their
    own.  Class 1's probability is about 1 on every row of one level; label 0
    on even rows (weight 1), 2 on odd rows (weight 2.9): residuals -1 and 0
    (class 0), 1 and 2.9 (class 1), 0 and -2.9 (class 2), whose sums pass
    2**127 units of the last bin (top bin 26).  Class 1's room runs out
    first, so one room for all the classes would never flush class 0's pairs;
    with a room apiece every class's bins equal the reference's."""
    from pipeline.kernel import Categories, level_top

    rng = np.random.default_rng(12)
    n, d, sizes, n_classes = 20_000, 64, (1, 3), 3
    X = np.asfortranarray(np.column_stack([rng.standard_normal((n, d)), np.zeros(n), rng.integers(0, 3, n)]))
    y = np.where(np.arange(n) % 2 == 0, 0.0, 2.0)
    weights = np.where(y == 2.0, 2.9, 1.0)
    per_class = np.zeros((n_classes, d + sum(sizes) + 1))
    per_class[1, d] = 40.0  # class 1's probability about 1 on every row
    spec = KernelSpec(categories=Categories(sizes, level_top(n, 2.9)), n_classes=n_classes)
    reference = softmax_partials(X, y, per_class.ravel(), weights, spec)
    bins = reference.levels.bins
    for k in range(n_classes):
        column = k * sum(sizes)  # each class's first level
        assert abs((int(bins[0, column]) << 80) + (int(bins[1, column]) << 40) + int(bins[2, column])) > 2**127
    assert fused_partials(X, y, per_class.ravel(), weights, spec) == reference


@pytest.mark.parametrize("layout", ["F", "C"])
def test_the_compiled_pass_with_levels_equals_the_reference_and_the_one_hot_loss(layout):
    from pipeline.kernel import Categories, level_top

    rng = np.random.default_rng(6)
    n, sizes, n_classes = 2500, (3, 5, 1), 4
    dense = rng.standard_normal((n, 2))
    codes = np.column_stack([rng.integers(0, k, n) for k in sizes])
    X = np.column_stack([dense, codes])
    X = np.asfortranarray(X) if layout == "F" else np.ascontiguousarray(X)
    y = rng.integers(0, n_classes, n).astype(np.float64)
    weights = rng.uniform(0.5, 2.0, n)
    class_weight = tuple(rng.uniform(1.0, 3.0, n_classes))
    categories = Categories(sizes, level_top(n, 2.0 * 3.0))
    coef = rng.standard_normal(n_classes * (2 + sum(sizes) + 1))
    spec = KernelSpec(np.zeros(2), np.full(2, 2.0), class_weight, categories=categories, n_classes=n_classes)
    reference = softmax_partials(X, y, coef, weights, spec)
    assert fused_partials(X, y, coef, weights, spec) == reference
    assert (
        fused_partials(X[:999], y[:999], coef, weights[:999], spec).merge(
            softmax_partials(X[999:], y[999:], coef, weights[999:], spec)
        )
        == reference
    )
    one_hot = np.column_stack([dense / 2.0] + [(codes[:, [c]] == np.arange(k)) * 1.0 for c, k in enumerate(sizes)])
    blocks = coef.reshape(n_classes, -1)
    margin = one_hot @ blocks[:, :-1].T + blocks[:, -1]
    s = weights * np.asarray(class_weight)[y.astype(int)]
    loss = (s * (logsumexp(margin, axis=1) - margin[np.arange(n), y.astype(int)])).sum()
    residual = s[:, None] * (scipy_softmax(margin, axis=1) - (y[:, None] == np.arange(n_classes)))
    grad = np.hstack([residual.T @ one_hot, residual.sum(axis=0)[:, None]]).ravel()
    loss_sum, grad_sum, _ = reference.finalize(n_classes)
    assert loss_sum == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(grad_sum, grad, rtol=1e-9, atol=1e-9 * np.abs(grad).max())


def test_categorical_columns_reach_scikit_learns_one_hot_optimum_for_any_partitioning(tmp_path):
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    values = categorical_table()
    n = len(values["x"])
    for name, row_group in [("a", 700), ("b", 3000)]:
        (tmp_path / name).mkdir()
        pq.write_table(pa.table(values), tmp_path / name / "part.parquet", row_group_size=row_group)
    options = dict(label="species", categorical=("device",), penalty=Penalty(l2=1e-3), options=OPTIONS, cluster=None)
    model = train(TrainConfig(data=str(tmp_path / "a"), out=str(tmp_path / "model"), **options))
    assert model.family == "multinomial" and np.array(model.coef).shape == (3, 1 + 4 + 4)
    assert_identical(train(TrainConfig(data=str(tmp_path / "b"), cache="none", **options)), model)
    frame = pd.DataFrame({k: v for k, v in values.items() if k != "species"})
    encode = ColumnTransformer([("n", "passthrough", ["x"]), ("c", OneHotEncoder(), ["country", "device"])])
    design = encode.fit_transform(frame)
    sk = LogisticRegression(C=1.0 / (1e-3 * n), tol=1e-12, max_iter=10_000).fit(design, values["species"])
    codes = np.searchsorted(SPECIES, values["species"])
    ours, theirs = np.array(model.coef), sk.coef_
    gap = cross_entropy(design, codes, ours, np.array(model.intercept), 1e-3) / cross_entropy(
        design, codes, theirs, sk.intercept_, 1e-3
    )
    assert gap - 1.0 <= GAP
    names = ["x"] + [name.replace("c__", "").replace("_", "=", 1) for name in encode.get_feature_names_out()[1:]]
    assert names == model.features
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    # predict and evaluate with the levels
    predict(str(tmp_path / "model"), str(tmp_path / "a"), str(tmp_path / "scores"))
    scores = pq.read_table(tmp_path / "scores").to_pandas()
    np.testing.assert_allclose(scores[["proba_ant", "proba_bee", "proba_cat"]], sk.predict_proba(design), atol=1e-5)
    assert evaluate(str(tmp_path / "model"), str(tmp_path / "a"))["n_samples"] == n
    # the report's level tables, a column per class (the levels were mixed into the features' table)
    from pipeline.report import write_report

    page = write_report(str(tmp_path / "model")).read_text()
    for vocabulary in model.vocabularies:
        assert f"<h3>{vocabulary.column} (categorical, {vocabulary.size} levels)</h3>" in page
    main = page[page.index("<h2>Coefficients</h2>") : page.index("<h3>")]
    assert "country=" not in main and "device=" not in main and "<td>x</td>" in main


def test_the_estimator_takes_a_frame_with_categories_to_the_parquet_models_bits(tmp_path):
    from pipeline.estimator import LogisticRegression as Estimator

    values = categorical_table()
    pq.write_table(pa.table(values), tmp_path / "data.parquet", row_group_size=1000)
    model = train(
        TrainConfig(
            data=str(tmp_path / "data.parquet"),
            label="species",
            categorical=("device",),
            penalty=Penalty(l2=1e-3),
            options=OPTIONS,
            cluster=None,
        )
    )
    frame = pd.DataFrame({k: v for k, v in values.items() if k != "species"})
    estimator = Estimator(l2=1e-3, tol=OPTIONS.tol, categorical=["device"]).fit(frame, values["species"])
    assert estimator.coef_.tobytes() == model.coef_array.tobytes()
    proba = estimator.predict_proba(frame)
    assert proba.shape == (len(frame), 3)
    assert (estimator.predict(frame) == SPECIES[proba.argmax(axis=1)]).all()


# --------------------------------------------------------------------------- jobs and validation


@pytest.mark.filterwarnings("ignore::pipeline.errors.ConvergenceWarning")  # (5 iterations)
def test_a_multinomial_job_resumes_from_its_checkpoint_to_the_uninterrupted_model(data, tmp_path):
    out = tmp_path / "out"
    job = tmp_path / "job.toml"
    job.write_text(
        f'name = "classes"\n[data]\nurl = "{data}"\nlabel = "species"\nfamily = "multinomial"\n'
        f"[train]\nl2 = 1e-3\ntol = {OPTIONS.tol}\nmax_iter = 5\n[cluster]\nin_process = true\n"
        f'[output]\ndir = "{out}"\ncheckpoint_every = 2\n'
    )
    assert run_cli("submit", str(job), "--quiet").returncode == 0
    finished = Model.load(out)
    # as if it had died after its last checkpoint (iteration 4)
    document = json.loads((out / "job.json").read_text())
    document["status"] = "failed"
    (out / "job.json").write_text(json.dumps(document))
    (out / "model.json").unlink()
    resumed = run_cli("resume", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at iteration 4" in (out / "job.log").read_text()
    assert_identical(Model.load(out), finished)
    uninterrupted = train(config(data, family="multinomial", options=SolverOptions(tol=OPTIONS.tol, max_iter=5)))
    assert_identical(finished, uninterrupted)


def test_a_validation_split_and_early_stopping_with_classes(data):
    model = train(config(data, validation_fraction=0.25, early_stopping=2))
    assert model.family == "multinomial" and model.validation_loss_history
    assert len(model.validation_loss_history) == len(model.loss_history)
    shuffled = write(data.parent / "validation-other", cuts=(123, 2500), row_group=250)
    again = train(config(shuffled, validation_fraction=0.25, early_stopping=2))
    assert_identical(again, model)
    assert again.validation_loss_history == model.validation_loss_history
    # through the CLI, whose run then writes the validation rows' metrics
    out = data.parent / "validation-cli"
    result = run_cli(
        "train", str(data), "--label", "species", "--l2", "1e-3", "--validation-fraction", "0.25",
        "--in-process", "--quiet", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert "per_class" in metrics and metrics["n_samples"] > 0
    assert f"ROC AUC {metrics['roc_auc_ovr_macro']!r}" in (out / "job.log").read_text()


def test_balanced_class_weights_with_a_weight_column_match_the_estimator(tmp_path):
    from pipeline.estimator import LogisticRegression as Estimator

    values = columns()
    weights = np.random.default_rng(4).uniform(0.1, 3.0, N_ROWS)
    pq.write_table(pa.table({**values, "w": weights}), tmp_path / "data.parquet", row_group_size=500)
    model = train(config(tmp_path / "data.parquet", weight="w", class_weight="balanced"))
    codes = np.searchsorted(SPECIES, values["species"])
    totals = np.array([weights[codes == k].sum() for k in range(3)])
    assert model.class_weight == pytest.approx((weights.sum() / (3 * totals)).tolist(), rel=1e-14)
    X = np.column_stack([values[f"x{j}"] for j in range(4)])
    estimator = Estimator(l2=1e-3, tol=OPTIONS.tol, class_weight="balanced").fit(
        X, values["species"], sample_weight=weights
    )
    assert estimator.coef_.tobytes() == model.coef_array.tobytes()


def test_gradient_descent_and_l1_work_with_classes(data):
    with pytest.warns(ConvergenceWarning, match="gd did not converge"):
        gd = train(config(data, solver="gd", options=SolverOptions(max_iter=30)))
    assert gd.solver == "gd" and gd.n_iter == 30
    lasso = train(config(data, penalty=Penalty(l1=1e-2)))
    assert lasso.converged and (np.array(lasso.coef) == 0.0).any()  # OWL-QN: exact zeros


def test_a_class_without_weight_is_refused(tmp_path):
    values = columns()
    weights = np.where(values["species"] == "cat", 0.0, 1.0)
    pq.write_table(pa.table({**values, "w": weights}), tmp_path / "data.parquet")
    with pytest.raises(
        LabelValueError, match=r"label column 'species' has class\(es\) \['cat'\] with no sample weight"
    ):
        train(config(tmp_path / "data.parquet", weight="w"))


def test_badly_scaled_ten_classes_reach_scikit_learns_newton_optimum():
    # scikit-learn's lbfgs does not converge on such data (bench/multinomial.py: 39% above after
    # 1,000 iterations at 1M rows); its newton-cholesky, insensitive to the scaling, is the reference
    rng = np.random.default_rng(10)
    n, d, k, l2 = 20_000, 8, 10, 1e-4
    spread = np.logspace(-2, 3, d)
    X = rng.standard_normal((n, d)) * spread + rng.standard_normal(d) * spread
    margin = (X - X.mean(axis=0)) @ (rng.standard_normal((k, d)) / spread).T
    y = (rng.random(n)[:, None] > np.cumsum(scipy_softmax(margin, axis=1), axis=1)).sum(axis=1).clip(0, k - 1)
    sk = LogisticRegression(C=1.0 / (l2 * n), solver="newton-cholesky", tol=1e-12, max_iter=100).fit(X, y)
    ours = fit(InProcessEvaluator([(X, y.astype(np.float64))], d), penalty=Penalty(l2=l2), n_classes=k)
    blocks = ours.coef.reshape(k, d + 1)
    theirs = cross_entropy(X, y, sk.coef_, sk.intercept_, l2)
    assert (cross_entropy(X, y, blocks[:, :-1], blocks[:, -1], l2) - theirs) / theirs <= GAP
    np.testing.assert_allclose(blocks[:, :-1] * spread, sk.coef_ * spread, atol=1e-4)  # per unit of spread


# --------------------------------------------------------------------------- labels of every kind, scored


def test_minus_zero_and_zero_are_one_class_and_infinite_labels_are_refused(tmp_path):
    values = columns()
    codes = np.searchsorted(SPECIES, values["species"]).astype(np.float64)
    signed = np.where((codes == 0) & (np.arange(N_ROWS) % 2 == 1), -0.0, codes)
    pq.write_table(pa.table({**values, "species": signed}), tmp_path / "signed.parquet", row_group_size=700)
    plain = tmp_path / "plain"
    plain.mkdir()
    pq.write_table(pa.table({**values, "species": codes}), plain / "plain.parquet", row_group_size=1000)
    model = train(config(tmp_path / "signed.parquet"))
    assert model.classes == [0.0, 1.0, 2.0] and not math.copysign(1.0, model.classes[0]) < 0
    assert_identical(model, train(config(plain)))
    pq.write_table(pa.table({**values, "species": np.where(codes == 2, np.inf, codes)}), tmp_path / "inf.parquet")
    with pytest.raises(NonFiniteValueError, match="non-finite"):
        train(config(tmp_path / "inf.parquet"))


def test_a_label_of_text_in_one_file_and_numbers_in_another_is_refused(tmp_path):
    values = columns()
    (tmp_path / "d").mkdir()
    pq.write_table(pa.table({k: v[:100] for k, v in values.items()}), tmp_path / "d" / "a.parquet")
    codes = np.searchsorted(SPECIES, values["species"][100:])
    pq.write_table(
        pa.table({**{k: v[100:] for k, v in values.items()}, "species": codes}), tmp_path / "d" / "b.parquet"
    )
    with pytest.raises(ColumnTypeError, match="label column 'species' holds text .* but int64"):
        train(config(tmp_path / "d"))


def test_a_label_of_another_kind_when_scoring_is_refused(reference, tmp_path):
    reference.save(tmp_path / "model")
    values = columns()
    pq.write_table(pa.table({**values, "species": np.searchsorted(SPECIES, values["species"])}), tmp_path / "n.parquet")
    with pytest.raises(
        ColumnTypeError, match="holds numbers in .*n.parquet .*; the model's classes are \\['ant', 'bee', 'cat'\\]"
    ):
        evaluate(str(tmp_path / "model"), str(tmp_path / "n.parquet"))
    binary = tmp_path / "binary"
    X = np.column_stack([values[f"x{j}"] for j in range(4)])
    pq.write_table(pa.table({**values, "y": (X[:, 0] > 0).astype(np.int8)}), tmp_path / "b.parquet")
    train(TrainConfig(data=str(tmp_path / "b.parquet"), label="y", features=tuple(f"x{j}" for j in range(4)),
                      cluster=None, out=str(binary)))  # fmt: skip
    with pytest.raises(ColumnTypeError, match="holds text in .*b.parquet .*; the model's label is 0/1") as raised:
        evaluate(str(binary), str(tmp_path / "n.parquet").replace("n.parquet", "b.parquet"), label="species")
    assert raised.value.path == str(tmp_path / "b.parquet")  # (the file, not only the dataset)


def test_a_class_only_in_the_validation_rows_is_explained(tmp_path):
    values = columns()
    values["species"] = values["species"].copy()
    position = next(
        i for i in range(N_ROWS) if Split(0.3, None, "validation").mask(np.array([i]), None)[0]
    )  # a row of the validation part
    values["species"][position] = "yak"
    pq.write_table(pa.table(values), tmp_path / "data.parquet")
    with pytest.raises(LabelValueError, match="unknown class .first 'yak'.* every class needs training rows"):
        train(config(tmp_path / "data.parquet", validation_fraction=0.3))


def test_a_binary_model_of_a_zero_one_label_is_still_format_3(tmp_path):
    values = columns()
    X = np.column_stack([values[f"x{j}"] for j in range(4)])
    label = (X[:, 0] > 0).astype(np.int8)
    label[::7] = 1 - label[::7]  # (not separated: a separated model is format 6)
    pq.write_table(pa.table({**values, "y": label}), tmp_path / "b.parquet")
    model = train(TrainConfig(data=str(tmp_path / "b.parquet"), label="y", features=("x0", "x1"), cluster=None,
                              out=str(tmp_path / "out")))  # fmt: skip
    document = json.loads((tmp_path / "out" / "model.json").read_text())
    assert document["format_version"] == 3 and "family" not in document and "classes" not in document
    assert "separated" not in document
    assert Model.load(tmp_path / "out") == model


def test_the_estimator_predicts_the_most_probable_class_of_a_tie():
    from pipeline.estimator import _most_probable

    margin = np.array([[0.0, 1e-17, -1.0]])  # the first two probabilities round to the same value
    assert _most_probable(margin).tolist() == [0]


def test_a_two_class_multinomial_model_is_one_vector_in_the_estimator(tmp_path):
    from pipeline.estimator import LogisticRegression as Estimator

    values = columns()
    keep = values["species"] != "cat"
    pq.write_table(pa.table({k: v[keep] for k, v in values.items()}), tmp_path / "two.parquet")
    model = train(config(tmp_path / "two.parquet", family="multinomial", out=str(tmp_path / "out")))
    estimator = Estimator.from_model(str(tmp_path / "out"))
    assert estimator.coef_.shape == (1, 4) and list(estimator.classes_) == ["ant", "bee"]
    frame = pd.DataFrame({f"x{j}": values[f"x{j}"][keep] for j in range(4)})
    np.testing.assert_allclose(estimator.predict_proba(frame), model.predict_proba(frame.to_numpy()), atol=1e-12)


def test_the_cli_takes_a_weight_per_class(data, tmp_path):
    out = tmp_path / "out"
    result = run_cli("train", str(data), "--label", "species", "--class-weight", "1,2,0.5", "--out", str(out),
                     "--in-process", "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert Model.load(out).class_weight == [1.0, 2.0, 0.5]


def test_a_failed_jobs_warnings_are_told_too(tmp_path, capsys):
    """A stray label value makes 3 classes, and two class weights then fail:
    the warning that says why is printed (it was caught and dropped)."""
    from pipeline.cli import main

    rng = np.random.default_rng(8)
    X = rng.standard_normal((300, 2))
    label = (X[:, 0] > 0).astype(np.int64)
    label[7] = 2
    pq.write_table(pa.table({"x0": X[:, 0], "x1": X[:, 1], "y": label}), tmp_path / "stray.parquet")
    options = ["train", str(tmp_path / "stray.parquet"), "--label", "y", "--in-process", "--quiet"]
    assert main([*options, "--class-weight", "1,5", "--out", str(tmp_path / "out")]) == 1
    printed = capsys.readouterr().err
    assert "warning: label column 'y': 1 of its 3 classes have a single row (2)" in printed
    assert printed.strip().splitlines()[-1].startswith("ConfigError: ")


def test_a_setting_the_classes_refuse_is_named_as_the_option(tmp_path, capsys):
    """--inference or --cv with a 3-class label are refused once the classes
    are known: the message names the option, as every other of the command
    line's (it opened with the field: "inference: ...")."""
    from pipeline.cli import main

    rng = np.random.default_rng(2)
    pq.write_table(pa.table({"a": rng.standard_normal(90), "y": np.arange(90) % 3}), tmp_path / "three.parquet")
    options = ["train", str(tmp_path / "three.parquet"), "--label", "y", "--in-process", "--quiet"]
    for extra, start in ((["--inference", "hc0"], "--inference: "), (["--cv", "3", "--l2", "0.1"], "--cv: ")):
        assert main([*options, *extra, "--out", str(tmp_path / "o")]) == 1
        assert capsys.readouterr().err.startswith(f"ConfigError: {start}")


def test_a_multinomial_path_has_coefficient_paths_in_its_report(data, tmp_path):
    """A multinomial path's report plots, per feature, the norm over the
    classes of ``coef × std`` at each point (its plot was empty): 0 where
    the L1 penalty removed the feature from every class, as at the first point."""
    from pipeline.outputs import OutputDir
    from pipeline.report import coefficient_paths, write_report

    out = tmp_path / "out"
    train(config(data, out=str(out), penalty=Penalty(l1=1.0), path=3))
    outputs = OutputDir(out)
    models = [Model.load(outputs.path_point(index)) for index in range(3)]
    paths, what = coefficient_paths(models)
    assert what == "‖coef × std‖ over the classes" and paths.shape == (3, 4)
    assert not paths[0].any() and np.count_nonzero(paths[1]) < np.count_nonzero(paths[2]) == 3
    for row, model in zip(paths, models):
        np.testing.assert_array_equal(row, np.linalg.norm(model.coef_array * np.array(model.scale), axis=0))
    assert 'alt="coefficient paths"' in write_report(str(out)).read_text()
