"""Batch prediction and evaluation: same bits for any partitioning, scikit-learn's metrics."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from sklearn import metrics as skm

from pipeline.model import Model

#: runs the CLI in subprocesses: left out of the fast loop (-m "not cluster and not slow")
pytestmark = pytest.mark.slow

N = 2000


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((N, 3)) * [1.0, 4.0, 0.3]
    y = (rng.random(N) < 1 / (1 + np.exp(-(X[:, 0] - 0.2 * X[:, 1])))).astype(np.int8)
    return pa.table(
        {
            "id": np.arange(N) * 7,
            "a": X[:, 0],
            "b": X[:, 1],
            "c": X[:, 2],
            "y": y,
            "note": [f"row {i}" for i in range(N)],
        }
    )


def write(table, root, cuts, row_group_size):
    root.mkdir(parents=True)
    bounds = [0, *cuts, table.num_rows]
    for index, (start, stop) in enumerate(zip(bounds, bounds[1:])):
        pq.write_table(
            table.slice(start, stop - start), root / f"part-{index:03d}.parquet", row_group_size=row_group_size
        )
    return root


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, table):
    root = tmp_path_factory.mktemp("model")
    data = write(table, root / "data", [], N)
    result = run_cli(
        "train",
        data,
        "--label",
        "y",
        "--features",
        "a,b,c",
        "--l2",
        "0.01",
        "--in-process",
        "--out",
        root / "model",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    return root / "model"


def scored(out) -> pa.Table:
    files = sorted(out.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files])


def test_predictions_are_the_same_bits_for_any_partitioning(tmp_path, table, model_dir):
    unlabelled = table.drop_columns(["y"])
    one = write(unlabelled, tmp_path / "one", [], N)
    many = write(unlabelled, tmp_path / "many", [1, 700, 701, 1500], 333)
    for data, out in ((one, tmp_path / "p1"), (many, tmp_path / "p2")):
        result = run_cli("predict", model_dir, data, "--out", out, "--columns", "id,note")
        assert result.returncode == 0, result.stderr
    first, second = scored(tmp_path / "p1"), scored(tmp_path / "p2")
    assert first["proba"].to_numpy().tobytes() == second["proba"].to_numpy().tobytes()
    row_groups = sum(pq.ParquetFile(f).num_row_groups for f in many.glob("*.parquet"))
    assert len(list((tmp_path / "p2").glob("part-*.parquet"))) == row_groups == 10  # one per row group
    # canonical order, pass-through columns kept, labels at the threshold
    assert second["id"].to_pylist() == table["id"].to_pylist()
    assert second["note"].to_pylist() == table["note"].to_pylist()
    proba = second["proba"].to_numpy()
    assert (second["prediction"].to_numpy() == (proba > 0.5)).all()
    model = Model.load(model_dir)
    X = np.column_stack([table[c].to_numpy() for c in ("a", "b", "c")])
    assert proba.tobytes() == model.predict_proba(X).tobytes()


def test_prediction_checks_features_and_writes_nothing_on_error(tmp_path, table, model_dir):
    data = write(table.drop_columns(["b"]), tmp_path / "data", [], N)
    out = tmp_path / "out"
    result = run_cli("predict", model_dir, data, "--out", out)
    assert result.returncode == 1 and "ColumnNotFoundError" in result.stderr and "'b'" in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
    result = run_cli("predict", model_dir, write(table, tmp_path / "d2", [], N), "--out", out, "--columns", "nope")
    assert result.returncode == 1 and "'nope'" in result.stderr and not out.exists()


def test_metrics_match_scikit_learn_and_do_not_depend_on_partitioning(tmp_path, table, model_dir):
    results = []
    for name, cuts, size in (("one", [], N), ("many", [3, 999, 1000, 1700], 97)):
        data = write(table, tmp_path / name, cuts, size)
        out = tmp_path / f"{name}.json"
        result = run_cli("evaluate", model_dir, data, "--out", out)
        assert result.returncode == 0, result.stderr
        assert "roc_auc" in result.stdout
        results.append(json.loads(out.read_text()))
    first, second = results
    for key in (
        "log_loss",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "pr_auc",
        "confusion_matrix",
        "calibration",
    ):
        assert first[key] == second[key], key
    model = Model.load(model_dir)
    X = np.column_stack([table[c].to_numpy() for c in ("a", "b", "c")])
    y = table["y"].to_numpy()
    proba = model.predict_proba(X)
    predicted = (proba > 0.5).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, predicted).ravel()
    assert first["confusion_matrix"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    assert first["accuracy"] == skm.accuracy_score(y, predicted)
    assert first["precision"] == pytest.approx(skm.precision_score(y, predicted), rel=1e-12)
    assert first["recall"] == pytest.approx(skm.recall_score(y, predicted), rel=1e-12)
    assert first["f1"] == pytest.approx(skm.f1_score(y, predicted), rel=1e-12)
    assert first["log_loss"] == pytest.approx(skm.log_loss(y, proba), rel=1e-12)
    assert first["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba), rel=1e-12)
    assert first["pr_auc"] == pytest.approx(skm.average_precision_score(y, proba), rel=1e-12)
    counts = [row["count"] for row in first["calibration"]]
    assert sum(counts) == N
    assert first["calibration"][9]["observed_rate"] == pytest.approx(
        y[proba >= 0.9].mean() if (proba >= 0.9).any() else None
    )


def test_data_given_as_a_file_url_is_recorded_as_its_path(tmp_path, table, model_dir, monkeypatch):
    """evaluate's metrics name their data by absolute path, compared with a
    later evaluation's: file:/abs was joined to the working directory
    (…/cwd/file:/abs), so the same evaluation from elsewhere was "other data"."""
    from pipeline.predict import evaluate

    data = write(table, tmp_path / "data", [], N)
    monkeypatch.chdir(tmp_path)
    plain = evaluate(str(model_dir), str(data))["data"]
    assert plain == os.path.realpath(data)
    for url in (f"file:{data}", f"file://{data}", f"file://localhost{data}"):
        assert evaluate(str(model_dir), url)["data"] == plain, url


@pytest.mark.cluster
def test_predict_and_evaluate_on_a_cluster_equal_in_process(tmp_path, table, model_dir):
    data = write(table, tmp_path / "data", [500, 1200], 250)
    local = run_cli("predict", model_dir, data, "--out", tmp_path / "local", "--columns", "id")
    remote = run_cli("predict", model_dir, data, "--out", tmp_path / "remote", "--columns", "id", "--workers", "2")
    assert local.returncode == 0 and remote.returncode == 0, remote.stderr
    assert scored(tmp_path / "local").equals(scored(tmp_path / "remote"))
    evaluated = run_cli("evaluate", model_dir, data, "--workers", "2", "--out", tmp_path / "m.json")
    assert evaluated.returncode == 0, evaluated.stderr
    in_process = run_cli("evaluate", model_dir, data, "--out", tmp_path / "l.json")
    assert in_process.returncode == 0, in_process.stderr
    remote_metrics = json.loads((tmp_path / "m.json").read_text())
    local_metrics = json.loads((tmp_path / "l.json").read_text())
    for key in ("log_loss", "roc_auc", "pr_auc", "confusion_matrix", "calibration", "roc_curve"):
        assert remote_metrics[key] == local_metrics[key], key


def test_a_raw_fits_report_shows_coef_magnitudes_not_coef_times_std(tmp_path, table):
    """A --no-standardize model has no scale: its table's "|coef × std|" was
    |coef| (and ranked by it), as if every feature's spread were 1."""
    from pipeline.report import write_report

    data = write(table, tmp_path / "data", [], N)
    out = tmp_path / "raw"
    result = run_cli(
        "train", data, "--label", "y", "--features", "a,b,c", "--no-standardize", "--in-process", "--out", out
    )
    assert result.returncode == 0, result.stderr
    assert Model.load(out).scale is None
    page = write_report(str(out)).read_text()
    assert "|coef × std|" not in page and "<th>|coef|</th>" in page and "not standardized" in page


def test_report_is_self_contained_and_renders_in_a_headless_browser(tmp_path, table, model_dir):
    import shutil
    import subprocess

    out = tmp_path / "run"
    shutil.copytree(model_dir, out)
    data = write(table, tmp_path / "data", [], N)
    assert run_cli("evaluate", out, data).returncode == 0
    result = run_cli("report", out)
    assert result.returncode == 0, result.stderr
    page = (out / "report.html").read_text()
    model = Model.load(out)
    for fragment in (
        model.digest,
        "<h2>Coefficients</h2>",
        "roc_auc",
        "ROC curve",
        "calibration plot",
        "loss curve",
        "<td>train.l2</td>",
        "|coef × std|",
    ):
        assert fragment in page, fragment
    assert "http://" not in page and "https://" not in page and page.count("data:image/png;base64,") == 4
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no Chromium here (Debian: apt-get install chromium)")
    shot = tmp_path / "report.png"
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    dom = subprocess.run(
        [*common, "--dump-dom", (out / "report.html").as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Coefficients" in dom.stdout and model.digest in dom.stdout
    taken = subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1200,2400", (out / "report.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a rendered page, not a blank one


def test_a_row_at_the_threshold_is_the_first_class_everywhere(tmp_path):
    """A model whose proba is exactly 0.5 (all coefficients 0: balanced
    classes, a strong L1): ``pipeline predict``, ``evaluate`` and the
    estimator all predict the first class -- scikit-learn's
    ``decision_function > 0`` and Spark's ``proba > threshold``.  The command
    said the second class (``>=``) where the estimator said the first."""
    from pipeline.cli import main
    from pipeline.estimator import LogisticRegression

    rng = np.random.default_rng(5)
    data = tmp_path / "data"
    data.mkdir()
    x = rng.standard_normal(200)
    pq.write_table(pa.table({"x": x, "y": np.tile([0, 1], 100).astype(np.int8)}), data / "part-0.parquet")
    assert (
        main(
            ["train", str(data), "--label", "y", "--l1", "10", "--in-process", "--quiet", "--out", str(tmp_path / "m")]
        )
        == 0
    )
    model = Model.load(tmp_path / "m")
    assert model.coef == [0.0] and model.intercept == 0.0
    assert main(["predict", str(tmp_path / "m"), str(data), "--out", str(tmp_path / "scores")]) == 0
    scores = pq.read_table(tmp_path / "scores")
    assert set(scores["proba"].to_pylist()) == {0.5} and set(scores["prediction"].to_pylist()) == {0}
    assert main(["evaluate", str(tmp_path / "m"), str(data), "--out", str(tmp_path / "metrics.json")]) == 0
    confusion = json.loads((tmp_path / "metrics.json").read_text())["confusion_matrix"]
    assert confusion == {"tn": 100, "fp": 0, "fn": 100, "tp": 0}
    estimator = LogisticRegression.from_model(tmp_path / "m")
    assert set(estimator.predict(x[:, None]).tolist()) == {0}
    # a margin of 1e-17 rounds to proba 0.5 too: still the first class (margin > 0 said the second)
    import dataclasses

    dataclasses.replace(model, intercept=1e-17).save(tmp_path / "tiny")
    tiny = LogisticRegression.from_model(tmp_path / "tiny")
    assert set(tiny.predict(x[:, None]).tolist()) == {0} and set(tiny.predict_proba(x[:, None])[:, 1]) == {0.5}


def test_score_file_names_sort_in_row_order_whatever_the_number_of_chunks(tmp_path):
    """part-NNNNN.parquet with as many digits as the last chunk's index needs
    (from 100,000 chunks on, part-100000 sorted before part-99999), and
    --overwrite takes such files as earlier scores."""
    from pipeline.predict import _not_scores, scores_file_name

    assert scores_file_name(42, 7) == "part-00042.parquet"
    names = [scores_file_name(index, 1_000_000) for index in (0, 99_999, 100_000, 999_999)]
    assert names == sorted(names) and names[-1] == "part-999999.parquet" and names[0] == "part-000000.parquet"
    pq.write_table(pa.table({"prediction": [1]}), tmp_path / names[2])
    assert _not_scores(tmp_path) == []
