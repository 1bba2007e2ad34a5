"""Solver, penalty, weight and warm-start options through the CLI (in-process, fast)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli

from pipeline import Model

#: runs the CLI in subprocesses: left out of the fast loop (-m "not cluster and not slow")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("options")
    rng = np.random.default_rng(4)
    n = 2000
    X = rng.standard_normal((n, 3)) * [1.0, 5.0, 0.2] + [0.0, 10.0, -1.0]
    z = (X - [0.0, 10.0, -1.0]) @ [1.0, -0.3, 2.0] + 0.2
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    table = pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": y, "w": rng.uniform(0.5, 2.0, n)})
    pq.write_table(table, root / "part-0.parquet", row_group_size=700)
    return root


def train(data, out, *options):
    return run_cli(
        "train", data, "--label", "y", "--features", "a,b,c", "--in-process", "--out", out, "--quiet", *options
    )


def error_line(result, name):
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{name}: ")]
    assert lines, result.stderr
    return lines[0]


@pytest.mark.parametrize("solver", ["lbfgs", "newton", "gd"])
def test_each_solver_writes_its_settings(data, tmp_path, solver):
    result = train(
        data, tmp_path / "m", "--solver", solver, "--l2", "0.01", "--weight-col", "w", "--class-weight", "0:1,1:2"
    )
    assert result.returncode == 0, result.stderr
    stored = json.loads((tmp_path / "m" / "model.json").read_text())
    assert stored["solver"] == solver and stored["converged"]
    assert stored["l2"] == 0.01 and stored["l1"] == 0.0
    assert stored["weight"] == "w" and stored["class_weight"] == [1.0, 2.0]
    assert stored["standardize"] and len(stored["center"]) == 3 and len(stored["scale"]) == 3
    assert stored["n_passes"] == stored["passes_history"][-1]
    assert stored["passes_history"][0] == 2  # statistics pass, then the first evaluation


def test_solvers_agree_on_the_optimum(data, tmp_path):
    coefs = {}
    for solver in ["lbfgs", "newton", "gd"]:
        result = train(data, tmp_path / solver, "--solver", solver, "--l2", "0.01", "--tol", "1e-9", "--ftol", "0")
        assert result.returncode == 0, result.stderr
        coefs[solver] = np.append(Model.load(tmp_path / solver).coef_array, Model.load(tmp_path / solver).intercept)
    np.testing.assert_allclose(coefs["lbfgs"], coefs["newton"], rtol=1e-6)
    np.testing.assert_allclose(coefs["gd"], coefs["newton"], rtol=1e-6)


def test_elastic_net_options_and_exact_zeros(data, tmp_path):
    result = train(data, tmp_path / "enet", "--reg", "0.2", "--alpha", "0.9")
    assert result.returncode == 0, result.stderr
    model = Model.load(tmp_path / "enet")
    assert model.l1 == pytest.approx(0.18) and model.l2 == pytest.approx(0.02)
    assert 0.0 in model.coef  # a strong L1 zeroes the weakest feature exactly


def test_no_standardize_reaches_the_same_optimum(data, tmp_path):
    # lbfgs, whose path depends on the scaling (newton, auto's choice here, does not)
    assert train(data, tmp_path / "s", "--tol", "1e-10", "--solver", "lbfgs").returncode == 0
    raw = train(data, tmp_path / "r", "--no-standardize", "--tol", "1e-10", "--max-iter", "5000", "--solver", "lbfgs")
    assert raw.returncode == 0, raw.stderr
    standardized, unstandardized = Model.load(tmp_path / "s"), Model.load(tmp_path / "r")
    assert not unstandardized.standardize and unstandardized.center is None
    assert unstandardized.loss_history[-1] == pytest.approx(standardized.loss_history[-1], rel=1e-10)
    assert unstandardized.n_passes > standardized.n_passes


def test_warm_start_from_a_converged_model(data, tmp_path):
    assert train(data, tmp_path / "first", "--l2", "0.01").returncode == 0
    result = train(data, tmp_path / "second", "--l2", "0.01", "--init", tmp_path / "first")
    assert result.returncode == 0, result.stderr
    first, second = Model.load(tmp_path / "first"), Model.load(tmp_path / "second")
    assert second.n_iter <= 1 and second.n_passes <= 3
    np.testing.assert_allclose(second.coef, first.coef, rtol=1e-6)


def test_warm_start_with_other_features_is_refused(data, tmp_path):
    assert (
        run_cli(
            "train", data, "--label", "y", "--features", "a,b", "--in-process", "--out", tmp_path / "ab", "--quiet"
        ).returncode
        == 0
    )
    line = error_line(train(data, tmp_path / "abc", "--init", tmp_path / "ab"), "ConfigError")
    assert "['a', 'b']" in line and "['a', 'b', 'c']" in line
    assert not (tmp_path / "abc" / "model.json").exists()


def test_max_iter_stop_warns_and_records_not_converged(data, tmp_path):
    result = train(data, tmp_path / "m", "--max-iter", "2", "--solver", "lbfgs")
    assert result.returncode == 0
    assert "ConvergenceWarning: lbfgs did not converge: reached max_iter=2" in result.stderr
    assert "NOT converged" in result.stdout
    model = Model.load(tmp_path / "m")
    assert not model.converged and model.n_iter == 2


@pytest.mark.parametrize(
    "options, name, fragment",
    [
        (["--reg", "0.1", "--alpha", "0.5", "--l2", "1"], "ConfigError", "--reg/--alpha"),
        (["--reg", "0.1", "--alpha", "1.5"], "ConfigError", "alpha must be in [0, 1]"),
        (["--alpha", "0.5"], "ConfigError", "--alpha is the elastic net's mix of --reg; found it without --reg"),
        (["--l2", "-1"], "ConfigError", "l2 must be"),
        (["--weight-col", "y"], "ConfigError", "weight"),
        (["--weight-col", "nope"], "ColumnNotFoundError", "'nope'"),
        (["--features", ""], "ConfigError", "--features must name columns, each non-empty; found no name"),
        (["--features", "a,"], "ConfigError", "found an empty name in 'a', ''"),
    ],
)
def test_bad_options(data, tmp_path, options, name, fragment):
    line = error_line(train(data, tmp_path / "m", *options), name)
    assert fragment in line
    assert not (tmp_path / "m" / "model.json").exists()


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("0:1,0:2", "class '0' is given twice in '0:1,0:2'"),
        ("0:one,1:2", "expected 'balanced', 'CLASS:w,CLASS:w'"),
        (":1,1:2", "expected 'balanced', 'CLASS:w,CLASS:w'"),
        ("1", "expected 'balanced', 'CLASS:w,CLASS:w'"),
    ],
)
def test_bad_class_weight_is_a_usage_error(data, tmp_path, text, fragment):
    result = train(data, tmp_path / "m", "--class-weight", text)
    assert result.returncode == 2 and fragment in result.stderr


def test_a_class_weight_of_a_negative_class_is_taken_without_an_equals_sign(tmp_path, capsys):
    """``--class-weight -1:1,1:2`` (a -1/1 label) was argparse's "expected one
    argument": a value beginning with '-' was taken for an option."""
    from pipeline.cli import main

    rng = np.random.default_rng(4)
    (tmp_path / "d").mkdir()
    x = rng.standard_normal(300)
    labels = np.where(rng.random(300) < 1 / (1 + np.exp(-x)), 1, -1)
    pq.write_table(pa.table({"x": x, "y": labels}), tmp_path / "d" / "part.parquet")
    common = ["train", str(tmp_path / "d"), "--label", "y", "--in-process", "--quiet"]
    assert main([*common, "--class-weight", "-1:1,1:2", "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--class-weight=-1:1,1:2", "--out", str(tmp_path / "b")]) == 0
    assert main([*common, "--out", str(tmp_path / "c")]) == 0
    digests = [Model.load(tmp_path / name).digest for name in "abc"]
    assert digests[0] == digests[1] != digests[2]
    from pipeline.cli import _joined_values

    # a missing value is not taken from the next option, even one with a ':' in it
    assert _joined_values(["train", "--class-weight", "--out=s3://b/o"]) == [
        "train",
        "--class-weight",
        "--out=s3://b/o",
    ]
    assert _joined_values(["--", "--class-weight", "-1:2"]) == ["--", "--class-weight", "-1:2"]


@pytest.mark.parametrize("text", ["0:1", "0:1,1:2,2:3", "no:1,yes:2"])
def test_class_weights_that_do_not_name_each_class_once_are_refused(data, tmp_path, text):
    """A 0/1 label's classes are 0 and 1: a weight by class must name both,
    and nothing else (a missing class was a usage error, another key was
    refused by the parser only when it was no integer)."""
    line = error_line(train(data, tmp_path / "m", "--class-weight", text), "ConfigError")
    assert "--class-weight keys must be the classes of label 'y', [0, 1], each once" in line
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "weights, fragment",
    [
        ([1.0, -0.5, 1.0, 1.0], "negative"),
        ([0.0, 0.0, 0.0, 0.0], "add up to 0.0"),
    ],
)
def test_bad_weights(tmp_path, weights, fragment):
    table = pa.table({"a": [0.0, 1.0, 2.0, 3.0], "y": [0, 1, 0, 1], "w": weights})
    pq.write_table(table, tmp_path / "d.parquet")
    result = run_cli(
        "train",
        tmp_path / "d.parquet",
        "--label",
        "y",
        "--features",
        "a",
        "--weight-col",
        "w",
        "--in-process",
        "--out",
        tmp_path / "m",
    )
    line = error_line(result, "WeightValueError")
    assert fragment in line
    if fragment == "negative":
        assert "d.parquet" in line and "'w'" in line and "row group 0" in line


def test_constant_column_gets_coefficient_zero_and_a_warning(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.standard_normal(500)
    y = (rng.random(500) < 1 / (1 + np.exp(-2 * a))).astype(np.int64)
    pq.write_table(pa.table({"a": a, "k": np.full(500, 7.5), "y": y}), tmp_path / "d.parquet")
    result = run_cli(
        "train", tmp_path / "d.parquet", "--label", "y", "--in-process", "--out", tmp_path / "m", "--quiet"
    )
    assert result.returncode == 0, result.stderr
    assert "warning: feature 'k' is constant (7.5 in every row)" in result.stderr
    model = Model.load(tmp_path / "m")
    assert model.features == ["a", "k"] and model.coef[1] == 0.0 and model.converged
    assert np.isfinite(model.coef[0]) and model.coef[0] > 1.0
