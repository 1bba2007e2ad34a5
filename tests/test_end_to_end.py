"""Through the CLI, on real multi-process clusters, against scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import run_cli

from pipeline import Model, coef_digest
from pipeline.cluster import ClusterSpec, embedded_worker_count
from pipeline.objective import LogisticObjective
from pipeline.reduce import InProcessEvaluator

pytestmark = pytest.mark.cluster


def make(path, rows, features, files, row_group_size, seed):
    result = run_cli(
        "make-data",
        path,
        "--rows",
        rows,
        "--features",
        features,
        "--files",
        files,
        "--row-group-size",
        row_group_size,
        "--seed",
        seed,
    )
    assert result.returncode == 0, result.stderr


def train_cli(data, out, *where, tol="1e-6", max_iter="1000"):
    result = run_cli("train", data, "--label", "y", "--out", out, "--tol", tol, "--max-iter", max_iter, *where)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return Model.load(out), result.stdout


def test_make_data_is_a_repartitioning(tmp_path):
    make(tmp_path / "a", 1000, 3, 1, 1000, 5)
    make(tmp_path / "b", 1000, 3, 4, 33, 5)
    a = pq.read_table(tmp_path / "a")
    b = pq.read_table(tmp_path / "b")
    assert a.equals(b)
    assert len(list((tmp_path / "b").iterdir())) == 4
    assert pq.ParquetFile(tmp_path / "b" / "part-00000.parquet").metadata.row_group(0).num_rows == 33


def test_cli_cluster_training_reaches_sklearn_optimum(tmp_path):
    from sklearn.linear_model import LogisticRegression

    make(tmp_path / "data", 20_000, 5, 3, 2500, 1)
    model, stdout = train_cli(tmp_path / "data", tmp_path / "out", tol="1e-8")
    expected = embedded_worker_count(ClusterSpec())  # no --workers: one per core here
    assert f"local cluster, {expected} worker process{'' if expected == 1 else 'es'})" in stdout
    cluster = json.loads((tmp_path / "out" / "job.json").read_text())["cluster"]
    assert cluster["n_workers"] == expected
    from distributed.system import MEMORY_LIMIT

    assert 0 < cluster["memory_limit"] <= MEMORY_LIMIT  # all workers together: "auto" shares the machine's
    assert "iter    1" in stdout and "digest " + model.digest in stdout

    stored = json.loads((tmp_path / "out" / "model.json").read_text())
    for key in [
        "features",
        "coef",
        "intercept",
        "solver",
        "n_iter",
        "n_passes",
        "converged",
        "loss_history",
        "n_samples",
        "digest",
    ]:
        assert key in stored
    assert stored["digest"] == coef_digest(np.array(stored["coef"]), stored["intercept"])
    assert model.converged and model.n_samples == 20_000
    assert model.features == [f"f{j}" for j in range(5)]

    table = pq.read_table(tmp_path / "data")
    X = np.column_stack([table[f"f{j}"].to_numpy() for j in range(5)])
    y = table["y"].to_numpy().astype(np.float64)
    sk = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(X, y)
    objective = LogisticObjective(InProcessEvaluator([(X, y)], 5))
    sk_loss, _ = objective(np.append(sk.coef_.ravel(), sk.intercept_))
    our_loss = model.loss_history[-1]
    assert abs(our_loss - sk_loss) <= 1e-6 * sk_loss
    np.testing.assert_allclose(model.coef, sk.coef_.ravel(), rtol=1e-4, atol=1e-5)
    assert model.intercept == pytest.approx(sk.intercept_[0], rel=1e-4, abs=1e-5)


def test_dask_cli_cluster_repartitioned_equals_in_process(tmp_path, dask_cli_cluster):
    make(tmp_path / "one", 3000, 4, 1, 3000, 9)
    make(tmp_path / "many", 3000, 4, 5, 97, 9)
    reference, _ = train_cli(tmp_path / "one", tmp_path / "ref", "--in-process")
    remote, stdout = train_cli(tmp_path / "many", tmp_path / "remote", "--scheduler", dask_cli_cluster.address)
    assert dask_cli_cluster.address in stdout
    assert reference.n_iter > 3
    assert remote.digest == reference.digest
    assert np.array(remote.coef).tobytes() == np.array(reference.coef).tobytes()
    assert remote.loss_history == reference.loss_history
    assert remote.gradient == reference.gradient
    assert remote.n_passes == reference.n_passes


def test_demo_proves_cluster_equals_in_process(tmp_path):
    result = run_cli("demo", "--rows", "20000", "--features", "4", "--out", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "IDENTICAL" in result.stdout
    cluster = Model.load(tmp_path / "model-cluster")
    local = Model.load(tmp_path / "model-in-process")
    assert cluster.digest == local.digest and cluster.n_iter > 3


def _two_class_table(path, flip: int) -> None:
    """Classes that the features separate exactly, with ``flip`` labels flipped."""
    import pyarrow as pa

    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 3))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int8)
    y[:flip] = 1 - y[:flip]
    path.mkdir()
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": y}), path / "part.parquet")


def test_separated_classes_are_warned_about_without_a_penalty(tmp_path):
    """Separable classes: the unpenalized loss goes to 0 only as the
    coefficients grow, so the run warns (printed and logged); a penalty, or a
    few rows on the wrong side, and there is an optimum: no warning."""
    from pipeline.errors import SeparationWarning
    from pipeline.fitting import SEPARATED_LOSS, null_loss, separated
    from pipeline.objective import Penalty

    _two_class_table(tmp_path / "separated", 0)
    _two_class_table(tmp_path / "overlapping", 5)
    warned = "the classes are (nearly) separated"
    run = run_cli("train", tmp_path / "separated", "--label", "y", "--in-process", "--out", tmp_path / "s")
    assert run.returncode == 0 and warned in run.stderr and warned in (tmp_path / "s" / "job.log").read_text()
    separated_model = Model.load(tmp_path / "s")
    assert np.abs(separated_model.coef).max() > 100  # the coefficients ran away
    # ... and the model file keeps the verdict (format 6), which summary and report show
    assert separated_model.separated and separated_model.format_version == 6
    summary = run_cli("summary", tmp_path / "s")
    assert summary.returncode == 0 and "Note: the classes are (nearly) separated" in summary.stdout
    assert all(len(line) <= 92 for line in summary.stdout.splitlines())
    assert run_cli("report", tmp_path / "s").returncode == 0
    assert "The classes are (nearly) separated" in (tmp_path / "s" / "report.html").read_text()
    for data, options in (("separated", ("--l2", "1e-3")), ("overlapping", ())):
        run = run_cli(
            "train", tmp_path / data, "--label", "y", "--in-process", "--out", tmp_path / f"{data}-out", *options
        )
        assert run.returncode == 0 and warned not in run.stdout + run.stderr
        model = Model.load(tmp_path / f"{data}-out")
        assert not model.separated and model.format_version == 3  # (as before: older versions read it)
        assert '"separated"' not in (tmp_path / f"{data}-out" / "model.json").read_text()
        assert "separated" not in run_cli("summary", tmp_path / f"{data}-out").stdout
    # the policy: below SEPARATED_LOSS of the intercept-only loss, only without a penalty
    null = null_loss((3.0, 1.0), None)
    assert null == -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    assert null_loss((3.0, 1.0), (1.0, 3.0)) == np.log(2)  # class weights that balance the classes
    assert null_loss(None, None) is None and null_loss((0.0, 0.0), None) is None
    assert separated(0.9 * SEPARATED_LOSS * null, Penalty(), null)
    assert not separated(1.1 * SEPARATED_LOSS * null, Penalty(), null)
    assert not separated(0.0, Penalty(), None)  # no class totals: nothing to say
    assert not separated(0.0, Penalty(l2=1e-6), null) and not separated(0.0, Penalty(l1=1e-6), null)
    # a rare class that is not separated: a small loss, but the intercept's
    rare = null_loss((400_000.0, 2.0), None)
    assert not separated(0.99 * rare, Penalty(), rare)
    assert issubclass(SeparationWarning, UserWarning)


@pytest.mark.parametrize("l2", [0.0, 1e-3])
def test_a_constant_feature_keeps_coefficient_0_from_any_initial_coefficients(l2):
    """The docs (and the warning) say a constant column's coefficient is 0:
    from initial coefficients its initial value stayed (the intercept took
    the rest), and scored new rows where the column varies."""
    import warnings

    from pipeline.errors import DataWarning
    from pipeline.fitting import fit
    from pipeline.objective import Penalty

    rng = np.random.default_rng(5)
    n = 400
    X = np.column_stack([rng.standard_normal(n), np.full(n, 3.0), rng.standard_normal(n)])
    y = (rng.random(n) < 1 / (1 + np.exp(-X[:, 0]))).astype(np.float64)
    evaluator = InProcessEvaluator([(X[:150], y[:150]), (X[150:], y[150:])], 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        plain = fit(evaluator, penalty=Penalty(l2=l2))
        started = fit(evaluator, penalty=Penalty(l2=l2), init=np.array([0.5, 1.5, -0.2, 0.1]))
    assert plain.coef[1] == 0.0 and started.coef[1] == 0.0
    np.testing.assert_allclose(started.coef, plain.coef, rtol=1e-6, atol=1e-9)
