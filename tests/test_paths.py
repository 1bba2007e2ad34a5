"""Regularization paths (``--path N``, :mod:`pipeline.paths`): the grid and
its largest strength, warm starts, the choice by validation loss, the same
bytes for any partitioning and worker count, point-wise resume of a killed
job, the report's plots, and the refusals."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.cluster import ClusterSpec
from pipeline.config import TrainConfig
from pipeline.errors import ConfigError, ModelFileError
from pipeline.jobs import run_job
from pipeline.model import Model
from pipeline.objective import Penalty
from pipeline.outputs import OutputDir
from pipeline.paths import DEFAULT_RATIO, PathPoint, choose, null_intercepts, strengths
from pipeline.report import write_report
from pipeline.train import train
from tests.conftest import fair_frame, run_cli, write_frame


def fair(path, row_group: int = 2000, files: int = 1) -> str:
    return write_frame(path, fair_frame(), row_group, files)


def path_points(out) -> tuple[list[dict], int]:
    document = json.loads(OutputDir(out).path_summary.read_text())
    return document["points"], document["chosen"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return fair(tmp_path_factory.mktemp("fair") / "data")


def config(data, out, **options) -> TrainConfig:
    return TrainConfig(data=data, label="y", cluster=None, out=str(out), **options)


@pytest.mark.parametrize("penalty", [Penalty(l1=1.0), Penalty.elastic_net(1.0, 0.5)], ids=["l1", "enet"])
def test_lambda_max_gives_all_zeros_and_the_next_point_not(data, tmp_path, penalty):
    model = train(config(data, tmp_path / "out", penalty=penalty, path=6))
    points, chosen = path_points(tmp_path / "out")
    assert [point["index"] for point in points] == list(range(6)) and chosen == 5
    assert points[0]["n_nonzero"] == 0 and points[1]["n_nonzero"] > 0
    assert np.count_nonzero(Model.load(tmp_path / "out" / "path" / "000").coef_array) == 0
    # lambda_max = max_j |(1/n) sum_i (p - y_i) x_ij| / alpha, p the share of label 1
    frame = pq.read_table(data).to_pandas()
    y = frame.pop("y").to_numpy()
    gradient = frame.to_numpy().T @ (y.mean() - y) / len(y)
    alpha = penalty.l1 / (penalty.l1 + penalty.l2)
    assert points[0]["strength"] == pytest.approx(np.abs(gradient).max() / alpha, rel=1e-12)
    assert points[0]["l1"] == pytest.approx(points[0]["strength"] * alpha, rel=1e-15)
    assert [p["strength"] for p in points] == strengths(points[0]["strength"], 6, 1e-4)
    # without a validation split the path's model is its last (the smallest strength)
    assert model.digest == points[-1]["digest"] and model.l1 == points[-1]["l1"]


def test_an_l2_path_walks_down_from_the_stated_maximum(data, tmp_path):
    train(config(data, tmp_path / "out", penalty=Penalty(l2=0.5), path=4, path_ratio=1e-3))
    points, _ = path_points(tmp_path / "out")
    assert [p["l2"] for p in points] == pytest.approx([0.5, 0.05, 0.005, 0.0005], rel=1e-12)
    assert all(p["l1"] == 0.0 for p in points) and all(p["n_nonzero"] == 8 for p in points)
    norms = [np.abs(Model.load(tmp_path / "out" / "path" / f"{k:03d}").coef_array).sum() for k in range(4)]
    assert norms == sorted(norms)  # less shrinkage as the strength falls


def test_each_point_is_the_fit_warm_started_from_the_one_before(data, tmp_path):
    options = dict(penalty=Penalty(l1=1.0), path=4)
    train(config(data, tmp_path / "out", **options))
    points, _ = path_points(tmp_path / "out")
    plain = train(
        config(
            data,
            tmp_path / "plain",
            penalty=Penalty(l2=points[2]["l2"], l1=points[2]["l1"]),
            init=str(tmp_path / "out" / "path" / "001"),
        )
    )
    assert plain.digest == points[2]["digest"]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "out"
    model = train(config(data, out, penalty=Penalty.elastic_net(1.0, 0.7), path=5, validation_fraction=0.25))
    return model, path_points(out)


def test_the_validation_loss_chooses_the_model(reference):
    model, (points, chosen) = reference
    losses = [point["validation_loss"] for point in points]
    assert chosen == int(np.argmin(losses)) and model.digest == points[chosen]["digest"]
    assert 0 < chosen < len(points) - 1 or losses[chosen] == min(losses)


def test_any_partitioning_gives_the_same_path(reference, tmp_path):
    model, expected = reference
    data = fair(tmp_path / "data", row_group=333, files=3)
    again = train(
        config(data, tmp_path / "out", penalty=Penalty.elastic_net(1.0, 0.7), path=5, validation_fraction=0.25)
    )
    assert path_points(tmp_path / "out") == expected and again.digest == model.digest


@pytest.mark.cluster
def test_a_two_worker_cluster_gives_the_same_path(data, reference, tmp_path):
    model, expected = reference
    options = dict(penalty=Penalty.elastic_net(1.0, 0.7), path=5, validation_fraction=0.25)
    on_cluster = train(
        TrainConfig(data=data, label="y", cluster=ClusterSpec(n_workers=2), out=str(tmp_path / "out"), **options)
    )
    assert path_points(tmp_path / "out") == expected and on_cluster.digest == model.digest


class Killed(Exception):
    pass


def test_a_killed_path_job_resumes_to_the_same_bytes(data, reference, tmp_path):
    model, expected = reference
    target = config(data, tmp_path / "out", penalty=Penalty.elastic_net(1.0, 0.7), path=5, validation_fraction=0.25)
    seen = []

    def kill_in_the_fourth_point(record) -> None:
        seen.append(record.iteration)
        if sum(1 for iteration in seen if iteration == 0) == 4 and record.iteration == 1:
            raise Killed

    with pytest.raises(Killed):
        run_job(target, progress=kill_in_the_fourth_point)
    done, _ = path_points(tmp_path / "out")
    assert len(done) == 3
    job_id = OutputDir(tmp_path / "out").read_job().job_id
    left = [
        tmp_path / "out" / "path" / f".path.json.{'c' * 32}.tmp",
        tmp_path / "out" / "path" / "001" / f".model.json.{'d' * 32}.tmp",
    ]
    for path in left:  # (a run killed between a write and its rename)
        path.write_bytes(b"half")
    notes: list[str] = []
    resumed = run_job(target, job_id, notify=notes.append)
    assert resumed.digest == model.digest and path_points(tmp_path / "out") == expected
    assert not any(path.exists() for path in left)
    # (points named by their folders, path/000 the first)
    assert not any("path point path/000 " in note or "path point path/002 " in note for note in notes)
    assert any("path point path/003 of 5" in note for note in notes)
    assert "path point path/003: 1 fit(s) resumed from their states" in notes  # (not from its warm start)
    assert not list((tmp_path / "out" / "path").glob("*/state-*.npz"))  # (cleared with each finished point)


def test_the_report_shows_the_path(reference, data, tmp_path):
    train(config(data, tmp_path / "out", penalty=Penalty(l1=1.0), path=3))
    page = write_report(str(tmp_path / "out")).read_text()
    assert "Regularization path" in page and 'alt="coefficient paths"' in page and 'alt="loss along the path"' in page
    # a path.json edited by hand: one ModelFileError naming it (a KeyError or TypeError traceback before)
    summary = tmp_path / "out" / "path" / "path.json"
    document = json.loads(summary.read_text())
    for edit, fragment in [
        (lambda point: point.update(cv_loss=0.5), "'cv_std' with its 'cv_loss'"),
        (lambda point: point.update(loss="low"), "'loss' to be a number"),
        (lambda point: point.update(validation_loss=[1]), "'validation_loss' to be a number or null"),
    ]:
        edited = json.loads(json.dumps(document))
        edit(edited["points"][1])
        summary.write_text(json.dumps(edited))
        with pytest.raises(ModelFileError, match=f"{summary}: expected point 1.*{re.escape(fragment)}"):
            write_report(str(tmp_path / "out"))


def test_what_a_path_cannot_be_is_refused(data, tmp_path):
    with pytest.raises(ConfigError, match="^a regularization path needs a penalty whose strength it chooses") as path:
        TrainConfig(data=data, label="y", path=5)
    assert path.value.column == "path"
    with pytest.raises(ConfigError, match="^cross-validation needs a penalty whose strength it chooses") as cv:
        TrainConfig(data=data, label="y", cv=5)
    assert cv.value.column == "cv"  # the option given, not --path
    assert "l1 > 0 or l2 > 0" in str(cv.value)  # (the settings' names first: the estimator's words too)
    unpenalized = run_cli("train", data, "--label", "y", "--in-process", "--cv", "5")
    assert unpenalized.returncode == 1 and unpenalized.stderr.strip().startswith("ConfigError: --cv: cross-validation")
    with pytest.raises(ConfigError, match="path"):
        TrainConfig(data=data, label="y", path=1, penalty=Penalty(l1=1.0))
    with pytest.raises(ConfigError, match="path_ratio"):
        TrainConfig(data=data, label="y", path=3, path_ratio=1.0, penalty=Penalty(l1=1.0))
    with pytest.raises(ConfigError, match="init"):
        TrainConfig(data=data, label="y", path=3, penalty=Penalty(l1=1.0), init=str(tmp_path))
    with pytest.raises(ConfigError, match="inference"):
        TrainConfig(data=data, label="y", path=3, penalty=Penalty(l2=1.0), inference="nonrobust")
    # the path's end without a path would be ignored: refused (the default is not)
    with pytest.raises(ConfigError, match="path_ratio sets the end of a regularization path.*found path_ratio 0.01"):
        TrainConfig(data=data, label="y", penalty=Penalty(l2=1.0), path_ratio=0.01)
    TrainConfig(data=data, label="y", penalty=Penalty(l2=1.0), path_ratio=DEFAULT_RATIO)
    done = run_cli("train", data, "--label", "y", "--l2", "1", "--path-ratio", "0.01", "--out", str(tmp_path / "o"))
    assert done.returncode == 1 and "Traceback" not in done.stderr and "path_ratio" in done.stderr
    assert not (tmp_path / "o").exists()


def test_the_command_says_what_the_whole_path_did_and_names_the_chosen_models_folder(data, tmp_path):
    """One numbering everywhere: the chosen model is named by its folder
    (path.json's 'chosen', the report's), its cross-validation loss shown
    even with --quiet, and points that did not converge are counted."""
    out = tmp_path / "out"
    done = run_cli(
        "train", data, "--label", "y", "--l1", "1", "--path", "3", "--cv", "2", "--max-iter", "3", "--in-process",
        "--quiet", "--out", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    path = json.loads((out / "path" / "path.json").read_text())
    chosen, unconverged = path["chosen"], sum(not point["converged"] for point in path["points"])
    assert unconverged  # (3 iterations: the denser points stop short)
    line = next(line for line in done.stdout.splitlines() if line.startswith("path of 3 strengths in "))
    assert f"({unconverged} of 3 points NOT converged)" in line
    assert f"chosen: path/{chosen:03d} (l2=0.0, l1={path['points'][chosen]['l1']!r}, cross-validation loss " in line
    assert "chosen model: " in done.stdout
    assert json.loads((out / "path" / f"{chosen:03d}" / "model.json").read_text()) == json.loads(
        (out / "model.json").read_text()
    )
    page = write_report(str(out)).read_text()
    assert f"path/{chosen:03d} chosen" in page
    # the summary table: the chosen point's cross-validation loss, no validation loss (it showed "–")
    assert "cross-validation loss (mean of 2 folds&#x27; held-out losses)" in page
    assert f"{path['points'][chosen]['cv_loss']:.6g}" in page and "final validation loss" not in page
    # `pipeline summary` shows the whole path under the chosen model's table
    table = run_cli("summary", out).stdout.split("Regularization path of 3 strengths (path/path.json): * chosen, ")[1]
    header, *rows = table.splitlines()[1:]
    assert header.split() == [
        "strength",
        "l2",
        "l1",
        "nonzero",
        "train",
        "loss",
        "cv",
        "loss",
        "cv",
        "std",
        "passes",
        "converged",
    ]
    assert [row.split()[0] for row in rows] == ["path/000", "path/001", "path/002"]
    for point, row in zip(path["points"], rows):
        cells = row.replace(" *", "").split()
        assert (" *" in row) == (point["index"] == chosen)
        assert cells[4:7] == [str(point["n_nonzero"]), f"{point['loss']:.6g}", f"{point['cv_loss']:.6g}"]
        assert cells[-1] == ("yes" if point["converged"] else "NO")


def test_the_pure_decisions():
    assert strengths(2.0, 3, 0.25) == [2.0, 1.0, 0.5]
    point = PathPoint(0, 1.0, 0.0, 1.0, 0.5, None, 0, 1, 1, True, "d")
    assert choose([point, point]) == 1  # no validation: the last
    losses = [0.3, 0.2, 0.2, 0.4]
    scored = [PathPoint(k, 1.0, 0.0, 1.0, 0.5, loss, 0, 1, 1, True, "d") for k, loss in enumerate(losses)]
    assert choose(scored) == 1  # the smallest, the larger strength of a tie
    share = 0.3  # binary: the gradient at zero is 1/2 - p
    assert null_intercepts(np.array([0.1, 0.5 - share]), 0) == pytest.approx([np.log(share / (1 - share))])
    shares = np.array([0.2, 0.5, 0.3])  # multinomial: 1/K - p_k, centered logs
    gradient = np.column_stack([np.zeros(3), 1 / 3 - shares]).ravel()
    logs = np.log(shares)
    assert null_intercepts(gradient, 3) == pytest.approx(logs - logs.mean())


def test_a_later_job_in_the_directory_clears_the_path(data, tmp_path):
    out = tmp_path / "out"
    train(config(data, out, penalty=Penalty(l1=1.0), path=3))
    assert (out / "path" / "path.json").exists()
    (out / "model.json").unlink()  # as if interrupted: train() (no job.json) runs again over its own path
    train(config(data, out, penalty=Penalty(l1=1.0), path=3))
    run_job(TrainConfig(data=data, label="y", cluster=None, out=str(out), overwrite=True, penalty=Penalty(l2=1.0)))
    assert not (out / "path").exists()
    assert "Regularization path" not in write_report(str(out)).read_text()


def test_the_first_point_is_all_zeros_with_an_unscaled_column(tmp_path):
    """At lambda_max itself the largest weight's condition holds with
    equality: rounding between standardized and original units left a
    column of ages at 3e-17 in a trial's table; the bound's margin keeps 0."""
    import pyarrow as pa

    rng = np.random.default_rng(0)
    n = 20_000
    columns = {f"x{j}": rng.standard_normal(n) for j in range(3)}
    columns["noise"] = rng.standard_normal(n).astype(np.float32)
    columns["age"] = rng.integers(18, 80, n).astype(np.float64)  # (the largest gradient: it sets lambda_max)
    margin = columns["x0"] + 0.03 * (columns["age"] - 50)
    columns["y"] = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(np.int64)
    (tmp_path / "data").mkdir()
    for k, rows in enumerate(np.array_split(np.arange(n), 4)):
        table = pa.table({name: values[rows] for name, values in columns.items()})
        pq.write_table(table, tmp_path / "data" / f"part-{k}.parquet")
    train(config(str(tmp_path / "data"), tmp_path / "out", penalty=Penalty(l1=1.0), path=8))
    assert Model.load(tmp_path / "out" / "path" / "000").coef == [0.0] * 5


def test_nan_losses_lose_and_tiny_l1_shares_are_floored():
    from pipeline.paths import LAMBDA_MAX_MARGIN, MAX_POINTS, MIN_ALPHA, lambda_max

    points = [PathPoint(k, 1.0, 0.0, 1.0, 0.5, loss, 0, 1, 1, True, "d") for k, loss in enumerate([np.nan, 0.4, 0.3])]
    assert choose(points) == 2
    gradient = np.array([0.2, -0.5, 0.0])
    assert lambda_max(Penalty(l1=1.0), gradient) == 0.5 * (1.0 + LAMBDA_MAX_MARGIN)
    assert lambda_max(Penalty.elastic_net(1.0, 1e-9), gradient) == 0.5 / MIN_ALPHA * (1.0 + LAMBDA_MAX_MARGIN)
    with pytest.raises(ConfigError, match="path"):
        TrainConfig(data="d", label="y", path=MAX_POINTS + 1, penalty=Penalty(l1=1.0))


def test_a_new_jobs_files_are_cleared_without_the_path_it_is_writing(tmp_path):
    """A job writes its directory after its first pass, while a path's fits
    (threads, with --cv) already save their states in path/: clearing the job
    files must leave path/ alone (the run that writes a model clears it)."""
    outputs = OutputDir(tmp_path)
    state = outputs.path_point(0) / "state-3.npz"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"x")
    outputs.clear_job_files()
    assert state.exists()


def test_a_path_jobs_status_and_history_are_the_chosen_models(data, tmp_path, capsys):
    """job.json's progress (status) and history.csv described the path's
    last point beside the chosen model's digest; now the chosen model's, as
    model.json, and each point keeps its own history.  A path.json that did
    not choose model.json's model (a replacing run stopped on its way) is
    left out of the report (it showed its chosen point beside another model)."""
    from pipeline.cli import main

    out = tmp_path / "out"
    options = ["--reg", "1", "--alpha", "0.7", "--path", "5", "--validation-fraction", "0.25"]
    assert main(["train", data, "--label", "y", "--in-process", "--quiet", *options, "--out", str(out)]) == 0
    points, chosen = path_points(out)
    assert chosen < len(points) - 1  # (else the last point's progress would be the chosen one's anyway)
    model, job = Model.load(out), OutputDir(out).read_job()
    assert (job.iteration, job.loss, job.n_passes) == (model.n_iter, model.loss, model.n_passes)
    with open(OutputDir(out).history) as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["loss"]) for row in rows] == model.loss_history
    assert job.elapsed_s == float(rows[-1]["elapsed_s"])  # (the chosen point's too)
    assert all((OutputDir(out).path_point(point["index"]) / "history.csv").exists() for point in points)
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    assert f"iteration {model.n_iter}  loss {model.loss:.12g}" in capsys.readouterr().out
    page = write_report(str(out)).read_text()
    assert "Regularization path" in page and "final validation loss" in page and "cross-validation loss" not in page
    capsys.readouterr()
    assert main(["summary", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "Regularization path of 5 strengths" in shown and "validation  passes  converged" in shown
    assert f"path/{chosen:03d} *" in shown and "cv loss" not in shown
    # any point is evaluated on its run's split (its folder has no job.json: it was refused)
    point = OutputDir(out).path_point(1)
    evaluate = ["evaluate", str(point), data, "--split", "validation", "--out", str(tmp_path / "m.json")]
    assert main([*evaluate, "--overwrite"]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["log_loss"] == pytest.approx(points[1]["validation_loss"], rel=1e-14)
    document = json.loads(OutputDir(out).path_summary.read_text())
    document["points"][chosen]["digest"] = "0" * 64  # (another run's path.json)
    OutputDir(out).path_summary.write_text(json.dumps(document))
    assert "Regularization path" not in write_report(str(out)).read_text()
    capsys.readouterr()
    assert main(["summary", str(out)]) == 0
    assert "Regularization path" not in capsys.readouterr().out
    OutputDir(out).path_summary.write_text('{"points": [{"index": 0}]}')  # (unusable: the model's table stands)
    assert main(["summary", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "coef" in shown and "path/path.json not shown: " in shown and "expected each point to have" in shown
    assert main([*evaluate, "--overwrite"]) == 1  # (that path.json did not choose this job's model)
    assert "whose model is not the one in" in capsys.readouterr().err
    # the library's run keeps no history: no other run's history.csv is copied into its points
    library = tmp_path / "library"
    library.mkdir()
    (library / "history.csv").write_text("iteration,loss\n0,1.0\n")
    train(config(data, library, penalty=Penalty(l1=1.0), path=3, overwrite=True))
    assert not any((library / "path").glob("*/history.csv"))
