"""Every door closed: what a new user runs into first, through the CLI and the estimator.

* ``pipeline predict`` without ``--columns`` writes ``proba`` and ``prediction`` only.
* A catalog of missing or damaged model directories (``model.json``; for
  ``pipeline report`` also the ``job.json`` and ``metrics.json`` beside it),
  through ``predict``, ``evaluate``, ``report`` and ``train --init``: each
  exits 1 with one ``ModelFileError: message`` line naming the file, no
  traceback, and writes nothing.  The catalog runs through ``main([...])`` in
  this process (fast); one defect per command also runs as a real process.
* The estimator: NaN/±inf in dask input is refused before training (a
  ``ValueError``, as scikit-learn raises for numpy input), y chunked unlike X
  is aligned, dask and pandas DataFrames/Series are accepted (feature names
  from the columns), and its ``ConvergenceWarning`` is scikit-learn's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli

from pipeline.cli import EXIT_ERROR, main
from pipeline.config import TrainConfig
from pipeline.errors import ConfigError, ModelFileError, NonFiniteInputError, NonFiniteValueError, PipelineError
from pipeline.model import Model, coef_digest
from pipeline.outputs import MODEL_FILE
from pipeline.synth import make_data

ROWS = 400
FEATURES = 3

# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data, model directory): a small dataset and a model trained on it with a
    validation split, so the directory also holds job.json, history.csv and metrics.json."""
    root = tmp_path_factory.mktemp("doors")
    data = root / "data"
    make_data(str(data), ROWS, FEATURES, files=2, row_group_size=150, seed=3)
    model = root / "model"
    code = main(
        [
            "train",
            str(data),
            "--label",
            "y",
            "--out",
            str(model),
            "--in-process",
            "--quiet",
            "--validation-fraction",
            "0.25",
        ]
    )
    assert code == 0
    assert {"model.json", "job.json", "history.csv", "metrics.json"} <= {p.name for p in model.iterdir()}
    return data, model


def snapshot(root: Path) -> dict:
    """Every path under ``root`` with its bytes (None for a directory)."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def run_main(capsys, *args) -> tuple[int, str]:
    code = main([str(arg) for arg in args])
    return code, capsys.readouterr().err


def assert_one_error_line(code: int, stderr: str, name: str, *fragments: str) -> str:
    """The CLI contract: exit status 1, stderr exactly one ``name: message`` line
    (no traceback) holding every fragment; returns the message."""
    assert code == EXIT_ERROR, (code, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"{name}: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def edit_json(name: str, change, *, redigest: bool = False):
    """A defect: ``change(document)`` editing ``name`` in the model directory in place; with
    ``redigest`` the digest is recomputed, so that the change is the only defect."""

    def damage(directory: Path) -> Path:
        path = directory / name
        document = json.loads(path.read_text())
        change(document)  # (in place)
        if redigest:
            document["digest"] = coef_digest(np.array(document["coef"]), document["intercept"])
        path.write_text(json.dumps(document, allow_nan=True))
        return directory

    return damage


def write_file(name: str, content: str | bytes):
    def damage(directory: Path) -> Path:
        path = directory / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return directory

    return damage


def remove_directory(directory: Path) -> Path:
    shutil.rmtree(directory)
    return directory


def empty_directory(directory: Path) -> Path:
    shutil.rmtree(directory)
    directory.mkdir()
    return directory


def file_instead(directory: Path) -> Path:
    shutil.rmtree(directory)
    directory.write_text("not a directory\n")
    return directory


def parquet_dataset(directory: Path) -> Path:
    shutil.rmtree(directory)
    make_data(str(directory), ROWS, FEATURES, files=1, row_group_size=ROWS, seed=3)
    return directory


def without_model_json(directory: Path) -> Path:
    (directory / MODEL_FILE).unlink()  # a job's output directory: job.json, checkpoint, ... but no model
    return directory


def drop(key: str):
    return lambda document: document.pop(key)


def setting(key: str, value):
    return lambda document: document.__setitem__(key, value)


def first_coef(value):
    return lambda document: document["coef"].__setitem__(0, value)


def histories_empty(document: dict) -> None:
    for key in ("loss_history", "grad_norm_history", "step_history", "passes_history"):
        document[key] = []


#: defect -> (function damaging a copy of a good model directory and returning the MODEL_DIR
#: argument, a fragment of the error message: what was expected and what was found)
MODEL_DEFECTS = {
    "missing directory": (remove_directory, "does not exist"),
    "empty directory": (empty_directory, "is empty"),
    "a file, not a directory": (file_instead, "is a file"),
    "a Parquet dataset directory": (
        parquet_dataset,
        "model.json (written by a successful pipeline train), found that {model} holds part-00000.parquet",
    ),
    "a job output directory without model.json": (without_model_json, "holds checkpoint.npz, history.csv, job.json"),
    "model.json empty": (write_file(MODEL_FILE, ""), "not JSON"),
    "model.json truncated": (write_file(MODEL_FILE, '{"features": ["f0", "f1"'), "not JSON"),
    "model.json not text": (write_file(MODEL_FILE, b"\x80\xff\x00garbage"), "cannot be read"),
    "model.json a JSON list": (
        write_file(MODEL_FILE, "[1, 2, 3]\n"),
        "expected a JSON object of the model's fields, found list [1, 2, 3]",
    ),
    "model.json a JSON string": (write_file(MODEL_FILE, '"model"\n'), "expected a JSON object"),
    "coef missing": (edit_json(MODEL_FILE, drop("coef")), "missing key(s) ['coef']"),
    "digest missing": (edit_json(MODEL_FILE, drop("digest")), "missing key(s) ['digest']"),
    "an unknown key": (edit_json(MODEL_FILE, setting("surprise", 1)), "unknown key(s) ['surprise']"),
    "coef a string": (
        edit_json(MODEL_FILE, setting("coef", "0.1,0.2,0.3")),
        'coef must be list[float] | list[list[float]]; found str "0.1,0.2,0.3"',
    ),
    "coef holding a string": (edit_json(MODEL_FILE, first_coef("0.1")), "coef must be list[float]"),
    "intercept null": (
        edit_json(MODEL_FILE, setting("intercept", None)),
        "intercept must be float | list[float]; found null",
    ),
    "features not a list": (edit_json(MODEL_FILE, setting("features", "f0,f1,f2")), "features must be list[str]"),
    "features not strings": (
        edit_json(MODEL_FILE, setting("features", [0, 1, 2])),
        "features must be list[str]; found list [0, 1, 2]",
    ),
    "n_iter a string": (edit_json(MODEL_FILE, setting("n_iter", "9")), "n_iter must be int"),
    "converged a number": (edit_json(MODEL_FILE, setting("converged", 1)), "converged must be bool"),
    "coef NaN": (
        edit_json(MODEL_FILE, first_coef(math.nan), redigest=True),
        "coef must hold finite numbers; found list [NaN",
    ),
    "intercept infinite": (
        edit_json(MODEL_FILE, setting("intercept", -math.inf), redigest=True),
        "intercept must hold finite numbers",
    ),
    "coef beyond float64": (edit_json(MODEL_FILE, first_coef(10**400)), "coef must hold finite numbers"),
    "l2 NaN": (edit_json(MODEL_FILE, setting("l2", math.nan)), "l2 must hold finite numbers; found float nan"),
    "class_weight infinite": (
        edit_json(MODEL_FILE, setting("class_weight", [1.0, math.inf])),
        "class_weight must hold finite numbers; found list [1.0, Infinity]",
    ),
    "n_samples negative": (edit_json(MODEL_FILE, setting("n_samples", -5)), "n_samples must be >= 1; found int -5"),
    "l2 negative": (edit_json(MODEL_FILE, setting("l2", -0.5)), "l2 must be >= 0.0; found float -0.5"),
    "class_weight zero": (
        edit_json(MODEL_FILE, setting("class_weight", [1.0, 0.0])),
        "class_weight must be > 0.0; found list [1.0, 0.0]",
    ),
    "one coefficient too many": (
        edit_json(MODEL_FILE, lambda d: d["coef"].append(0.5), redigest=True),
        "coef has 4 value(s); expected 3",
    ),
    "one feature too many": (
        edit_json(MODEL_FILE, lambda d: d["features"].append("extra")),
        "coef has 3 value(s); expected 4",
    ),
    "center too short": (edit_json(MODEL_FILE, lambda d: d["center"].pop()), "center has 2 value(s); expected 3"),
    "features repeated": (
        edit_json(MODEL_FILE, lambda d: d["features"].__setitem__(1, d["features"][0])),
        "features must be distinct; found ['f0']",
    ),
    "histories empty": (edit_json(MODEL_FILE, histories_empty), "histories must be non-empty"),
    "a newer format_version": (
        edit_json(MODEL_FILE, setting("format_version", 8)),
        "format_version 8; this version of pipeline reads format_version 1 or 2 or 3 or 4 or 5 or 6 or 7",
    ),
    "restored_iteration out of range": (
        edit_json(MODEL_FILE, lambda d: d.update(format_version=7, restored_iteration=len(d["loss_history"]) - 1)),
        "restored_iteration must index an iteration before the last",
    ),
    "restored_iteration in an older format": (
        edit_json(MODEL_FILE, setting("restored_iteration", 0)),
        "has no restored_iteration",
    ),
    "digest mismatch": (
        edit_json(MODEL_FILE, lambda d: d.__setitem__("intercept", d["intercept"] + 1e-9)),
        "does not match its coef and intercept",
    ),
    "digest not a string": (edit_json(MODEL_FILE, setting("digest", 12345)), "digest must be str; found int 12345"),
    # classes: predict wrote them through Arrow (a traceback for mixed types) and took
    # proba as the second one's (unsorted classes flipped every prediction)
    **{
        f"classes {name}": (
            edit_json(
                MODEL_FILE, lambda d, classes=classes: d.update(classes=classes, family="binomial", format_version=4)
            ),
            "classes must be all text, all integers (int64) or all finite numbers, in increasing order",
        )
        for name, classes in [
            ("of mixed types", [0, "a"]),
            ("unsorted", [1, 0]),
            ("unsorted text", ["spam", "ham"]),
            ("beyond int64", [0, 2**63]),
            ("an integer and a float", [0, 1.0]),
        ]
    },
    "coef rows of different lengths": (
        edit_json(
            MODEL_FILE,
            lambda d: d.update(
                family="multinomial",
                classes=[0, 1, 2],
                intercept=[0.0] * 3,
                coef=[d["coef"], d["coef"][:-1], d["coef"]],
            ),
        ),
        f"coef must be rows of one length (one row per class, one value per feature); found rows of lengths "
        f"[{FEATURES}, {FEATURES - 1}, {FEATURES}]",
    ),
    "classes booleans": (
        edit_json(MODEL_FILE, lambda d: d.update(classes=[False, True], family="binomial", format_version=4)),
        "classes must be list[str | int | float] | None; found list [false, true]",
    ),
}

#: command -> its arguments for MODEL_DIR ``model``, dataset ``data``, scratch directory ``tmp``
COMMANDS = {
    "predict": lambda model, data, tmp: ["predict", model, data, "--out", tmp / "scores"],
    "evaluate": lambda model, data, tmp: ["evaluate", model, data],
    "report": lambda model, data, tmp: ["report", model],
    "train --init": lambda model, data, tmp: [
        "train",
        data,
        "--label",
        "y",
        "--in-process",
        "--quiet",
        "--out",
        tmp / "retrained",
        "--init",
        model,
    ],
}


def damaged_copy(trained, tmp_path: Path, defect) -> Path:
    model = tmp_path / "model"
    shutil.copytree(trained[1], model)
    return defect(model)


# --------------------------------------------------------------------------- predict without --columns


def test_predict_without_columns_writes_proba_and_prediction_only(tmp_path, trained):
    data, model_dir = trained
    result = run_cli("predict", model_dir, data, "--out", tmp_path / "scores")
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "scores").glob("part-*.parquet"))
    tables = [pq.read_table(path) for path in files]
    assert len(files) == 4  # one per input row group: 150 + 50 rows in each of the two files
    assert all(table.column_names == ["proba", "prediction"] for table in tables)
    assert sum(table.num_rows for table in tables) == ROWS
    model = Model.load(model_dir)
    features = pq.read_table(data, columns=model.features)
    expected = model.predict_proba(np.column_stack([features[name].to_numpy() for name in model.features]))
    proba = np.concatenate([table["proba"].to_numpy() for table in tables])
    assert proba.tobytes() == expected.tobytes()
    prediction = np.concatenate([table["prediction"].to_numpy() for table in tables])
    assert (prediction == (proba > 0.5)).all()


@pytest.mark.parametrize(
    "columns, fragment", [("", "each non-empty"), ("y,", "each non-empty"), ("y,y", "'y' is given twice")]
)
def test_predict_columns_name_each_column_once(tmp_path, capsys, trained, columns, fragment):
    data, model_dir = trained
    with pytest.raises(SystemExit) as exit_status:  # (a usage error: argparse's status 2)
        main(["predict", str(model_dir), str(data), "--out", str(tmp_path / "scores"), "--columns", columns])
    assert exit_status.value.code == 2 and fragment in capsys.readouterr().err
    assert not (tmp_path / "scores").exists()


def test_a_pass_through_column_twice_in_a_file_is_refused_before_writing(tmp_path, capsys, trained):
    """Written as two ``id`` columns, the scores could not be read back (pyarrow
    cannot unify a schema with a repeated name)."""
    data, model_dir = trained
    copy = tmp_path / "data"
    copy.mkdir()
    for path in sorted(data.glob("*.parquet")):
        table = pq.read_table(path)
        ids = pa.array(np.arange(table.num_rows))
        pq.write_table(table.append_column("id", ids).append_column("id", ids), copy / path.name)
    scores = ["--out", str(tmp_path / "s"), "--columns", "id"]
    code, stderr = run_main(capsys, "predict", str(model_dir), str(copy), *scores)
    assert_one_error_line(code, stderr, "ColumnTypeError", "2 columns named 'id'")
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- the model directory catalog


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("defect", MODEL_DEFECTS)
def test_damaged_model_directory(tmp_path, capsys, trained, defect, command):
    damage, fragment = MODEL_DEFECTS[defect]
    model = damaged_copy(trained, tmp_path, damage)
    before = snapshot(tmp_path)
    code, stderr = run_main(capsys, *COMMANDS[command](model, trained[0], tmp_path))
    message = assert_one_error_line(code, stderr, "ModelFileError", fragment.format(model=model))
    assert message.startswith(f"ModelFileError: {model / MODEL_FILE}: "), message  # names the file
    assert snapshot(tmp_path) == before  # no scores/, metrics.json, report.html or retrained/


def test_a_good_model_file_loads_back_equal(tmp_path):
    model = Model(
        features=["f0", "f1", "f2"],
        coef=[0.5, -1.0, 2.0],
        intercept=0.25,
        solver="lbfgs",
        n_iter=1,
        n_passes=2,
        converged=True,
        message="",
        loss_history=[0.7],
        grad_norm_history=[0.1],
        step_history=[0.0],
        passes_history=[2],
        gradient=[0.0] * 4,
        n_samples=10,
        label="y",
        dataset="data",
        class_weight=[1.0, 3.0],
        center=[0.0] * 3,
        scale=[1.0] * 3,
    )
    model.save(tmp_path)
    assert Model.load(tmp_path) == model and model.format_version == 7
    # format 6 (no restored_iteration), format 5 (no separated either), format 4
    # (no inference either), format 3 (no family or classes either), format 2
    # (no missing-value or categorical keys either) and format 1 models
    # (numpy's exp/log; the same layout) are still read
    old = json.loads((tmp_path / MODEL_FILE).read_text())
    assert old["restored_iteration"] is None
    old.pop("restored_iteration")
    (tmp_path / MODEL_FILE).write_text(json.dumps({**old, "format_version": 6}))
    assert Model.load(tmp_path) == dataclasses.replace(model, format_version=6)
    assert old["separated"] is False
    old.pop("separated")
    (tmp_path / MODEL_FILE).write_text(json.dumps({**old, "format_version": 5}))
    assert Model.load(tmp_path) == dataclasses.replace(model, format_version=5)
    # a format older than the key it holds is refused, naming the format
    (tmp_path / MODEL_FILE).write_text(json.dumps({**old, "separated": True, "format_version": 5}))
    with pytest.raises(ModelFileError, match="format 5 has no separated: a model of separated classes is format 6"):
        Model.load(tmp_path)
    old.pop("inference")
    (tmp_path / MODEL_FILE).write_text(json.dumps({**old, "format_version": 4}))
    assert Model.load(tmp_path) == dataclasses.replace(model, format_version=4)
    for key in ("family", "classes"):
        old.pop(key)
    (tmp_path / MODEL_FILE).write_text(json.dumps({**old, "format_version": 3}))
    assert Model.load(tmp_path) == dataclasses.replace(model, format_version=3)
    for key in ("missing", "nan_as_missing", "impute", "indicators", "categorical"):
        old.pop(key)
    for version in (2, 1):
        (tmp_path / MODEL_FILE).write_text(json.dumps({**old, "format_version": version}))
        loaded = Model.load(tmp_path)
        assert loaded.format_version == version and loaded.missing == "error" and loaded.vocabularies == []
    model.save(tmp_path)
    with pytest.raises(ModelFileError) as raised:  # (one of the catalog's, through the library)
        Model.load(MODEL_DEFECTS["digest mismatch"][0](tmp_path))
    assert raised.value.path == str(tmp_path / MODEL_FILE)


#: report-only defects: a damaged job.json or metrics.json beside a good model.json
REPORT_DEFECTS = {
    "job.json not JSON": ("job.json", write_file("job.json", '{"status": "succ')),
    "job.json a list": ("job.json", write_file("job.json", "[]")),
    "job.json config a string": ("job.json", edit_json("job.json", setting("config", "lbfgs"))),
    "metrics.json not JSON": ("metrics.json", write_file("metrics.json", "{")),
    "metrics.json a number": ("metrics.json", write_file("metrics.json", "0.93")),
    "metrics.json roc_curve of unequal lengths": (
        "metrics.json",
        edit_json("metrics.json", lambda d: d["roc_curve"]["fpr"].pop()),
    ),
    "metrics.json confusion_matrix null": (
        "metrics.json",
        edit_json("metrics.json", setting("confusion_matrix", None)),
    ),
    "metrics.json calibration row without count": (
        "metrics.json",
        edit_json("metrics.json", lambda d: d["calibration"][0].pop("count")),
    ),
    "metrics.json rows a number": ("metrics.json", edit_json("metrics.json", setting("rows", 7))),
}


def _multinomial_metrics(document: dict) -> None:
    """metrics.json as a multinomial model's evaluate writes it (its model_digest kept)."""
    document.clear()
    document.update(
        model_digest=document.get("model_digest"),
        n_samples=2,
        classes=[0, 1, 2],
        log_loss=0.5,
        accuracy=0.5,
        confusion_matrix=[[1, 0, 0], [0, 0, 1], [0, 0, 0]],
        per_class=[{"class": c, "support": 1, "precision": 1.0, "recall": 1.0, "f1": 1.0} for c in range(3)],
    )


REPORT_DEFECTS["metrics.json of a multinomial model beside a binary one"] = (
    "metrics.json",
    edit_json(
        "metrics.json", lambda d: (digest := d["model_digest"], _multinomial_metrics(d), d.update(model_digest=digest))
    ),
)


@pytest.mark.parametrize("defect", REPORT_DEFECTS)
def test_report_of_a_damaged_job_or_metrics_file(tmp_path, capsys, trained, defect):
    name, damage = REPORT_DEFECTS[defect]
    model = damaged_copy(trained, tmp_path, damage)
    before = snapshot(tmp_path)
    code, stderr = run_main(capsys, "report", model)
    assert_one_error_line(code, stderr, "ModelFileError", str(model / name))
    assert snapshot(tmp_path) == before


def test_report_does_not_read_history_csv(tmp_path, capsys, trained):
    model = damaged_copy(trained, tmp_path, write_file("history.csv", "\x00 not, a\ncsv"))
    code, _ = run_main(capsys, "report", model)
    assert code == 0
    assert (model / "report.html").exists()


def test_a_second_run_into_a_finished_jobs_directory_names_the_job(tmp_path, capsys, trained):
    data, model, _ = _copies(tmp_path, trained)
    before = snapshot(model)
    job_id = json.loads((model / "job.json").read_text())["job_id"]
    code, stderr = run_main(capsys, "train", data, "--label", "y", "--in-process", "--quiet", "--out", model)
    assert_one_error_line(code, stderr, "OutputError", f"holds job {job_id} (unnamed, succeeded)", "--overwrite")
    assert snapshot(model) == before


def test_report_after_a_failed_overwrite_shows_the_model_alone(tmp_path, capsys, trained):
    """A retrain with --overwrite that fails keeps the earlier model.json
    (nothing already written is lost) while job.json and metrics.json are
    the failed run's or the earlier one's: the report shows the model with
    a note, not the failed run's status and configuration as its own."""
    _, model, _ = _copies(tmp_path, trained)
    kept = (model / MODEL_FILE).read_bytes()
    rng = np.random.default_rng(0)  # a constant column: the inference fails after the fit
    constant = tmp_path / "constant.parquet"
    pq.write_table(
        pa.table(
            {"a": rng.normal(size=200), "constant_col": np.ones(200), "y": (rng.random(200) < 0.5).astype(np.int8)}
        ),
        constant,
    )
    options = ["--label", "y", "--inference", "hc0", "--in-process", "--quiet", "--overwrite", "--out", model]
    code, stderr = run_main(capsys, "train", constant, *options)
    assert code == EXIT_ERROR and "CollinearityError" in stderr
    assert (model / MODEL_FILE).read_bytes() == kept
    job = json.loads((model / "job.json").read_text())
    assert (model / "metrics.json").exists()  # (the earlier model's: kept with it until a new model is written)
    metrics = json.loads((trained[1] / "metrics.json").read_text())
    metrics["model_digest"] = "0" * 64  # as if of another model
    (model / "metrics.json").write_text(json.dumps(metrics))
    assert run_main(capsys, "report", model)[0] == 0
    page = (model / "report.html").read_text()
    assert job["status"] == "failed"
    assert f"job.json belongs to job {job['job_id']} (failed), which did not write this model.json" in page
    assert "constant_col" not in page  # the failed run's configuration is not shown as the model's
    assert "metrics.json is of another model" in page and "confusion" not in page.lower()
    assert "<h2>Metrics</h2>" in page and "no metrics of this model here" in page  # (not "Validation metrics")
    assert Model.load(model).digest in page


@pytest.mark.parametrize("command", COMMANDS)
def test_damaged_model_in_a_real_process(tmp_path, trained, command):
    model = damaged_copy(trained, tmp_path, MODEL_DEFECTS["model.json truncated"][0])
    before = snapshot(tmp_path)
    result = run_cli(*COMMANDS[command](model, trained[0], tmp_path))
    assert_one_error_line(result.returncode, result.stderr, "ModelFileError", str(model / MODEL_FILE), "not JSON")
    assert snapshot(tmp_path) == before


def test_evaluate_split_names_the_damaged_model_before_its_job_json(tmp_path, capsys, trained):
    model = damaged_copy(trained, tmp_path, remove_directory)
    code, stderr = run_main(capsys, "evaluate", model, trained[0], "--split", "validation")
    assert_one_error_line(code, stderr, "ModelFileError", str(model / MODEL_FILE))


# --------------------------------------------------------------------------- where the outputs go


def _copies(tmp_path: Path, trained) -> tuple[Path, Path, Path]:
    """(data, model, a file): copies to write next to, and a plain file."""
    data, model = tmp_path / "data", tmp_path / "model"
    shutil.copytree(trained[0], data)
    shutil.copytree(trained[1], model)
    plain = tmp_path / "afile"
    plain.write_text("not a directory\n")
    return data, model, plain


def test_evaluate_out_replaces_only_a_metrics_file(tmp_path, capsys, trained):
    """``evaluate --out`` takes a new path or a metrics file evaluate wrote;
    the model it evaluates, a data file, a directory or a path under a file
    or a missing directory are refused before any pass, nothing changed."""
    data, model, plain = _copies(tmp_path, trained)
    before = snapshot(tmp_path)
    data_file = sorted(data.glob("*.parquet"))[0]
    for out, fragments in [
        (model / MODEL_FILE, ["is not a metrics file"]),
        (model / "job.json", ["is not a metrics file"]),
        (data_file, ["lies inside the dataset", "expected a path outside the data"]),
        (data / "metrics.json", ["lies inside the dataset"]),  # (the next read would take it for data)
        (plain, ["is not a metrics file"]),
        (model, ["is a directory"]),
        (plain / "m.json", ["its directory", "is a file"]),
        (tmp_path / "missing" / "m.json", ["its directory", "does not exist"]),
    ]:
        code, stderr = run_main(capsys, "evaluate", model, data, "--out", out)
        assert_one_error_line(code, stderr, "OutputError", str(out), *fragments)
    assert snapshot(tmp_path) == before
    fresh = tmp_path / "metrics-of-data.json"
    for _ in range(2):  # a new path, then the metrics file it wrote
        assert run_main(capsys, "evaluate", model, data, "--out", fresh)[0] == 0
    assert json.loads(fresh.read_text())["n_samples"] == ROWS
    # the model directory's own metrics.json holds training's validation metrics: kept, unless --overwrite
    code, stderr = run_main(capsys, "evaluate", model, data)
    assert_one_error_line(
        code,
        stderr,
        "OutputError",
        "metrics.json",
        "the validation part",
        "not this evaluation's: its data, rows)",
        "--overwrite",
    )
    assert snapshot(model) == snapshot(Path(trained[1]))
    assert run_main(capsys, "evaluate", model, data, "--overwrite")[0] == 0
    assert json.loads((model / "metrics.json").read_text())["rows"] == "all"


def test_predict_out_is_never_an_input_or_a_file(tmp_path, capsys, trained):
    """``predict --out``: a file (with or without --overwrite), a path under a
    file, a directory inside the data (the next read of it would take the
    scores), and with --overwrite the model directory, the data or a directory
    holding either are refused, nothing changed; a pass-through column named
    like a score column is refused (the file would hold two columns of that name)."""
    data, model, plain = _copies(tmp_path, trained)
    before = snapshot(tmp_path)
    for out, extra, fragments in [
        (plain, [], ["is a file"]),
        (plain, ["--overwrite"], ["is a file"]),
        (plain / "scores", [], ["cannot create the output directory"]),
        (model, ["--overwrite"], ["is or holds the input", str(model)]),
        (data, ["--overwrite"], ["is or holds the input", str(data)]),
        (tmp_path, ["--overwrite"], ["is or holds the input"]),
        (data / "scores", [], ["lies inside the dataset", "read as part of the dataset"]),
    ]:
        code, stderr = run_main(capsys, "predict", model, data, "--out", out, *extra)
        assert_one_error_line(code, stderr, "OutputError", str(out), *fragments)
    # the data named as a URL or a glob: its directory all the same
    for named in (f"file://{data}", f"{data}/**"):
        out = data / "scores"
        code, stderr = run_main(capsys, "predict", model, named, "--out", out)
        assert_one_error_line(code, stderr, "OutputError", str(out), "lies inside the dataset")
    code, stderr = run_main(capsys, "predict", model, data, "--out", tmp_path / "s", "--columns", "y,proba")
    assert_one_error_line(code, stderr, "ConfigError", "'proba'", "score column", "proba, prediction")
    assert snapshot(tmp_path) == before
    scores = tmp_path / "scores"
    assert run_main(capsys, "predict", model, data, "--out", scores)[0] == 0
    assert run_main(capsys, "predict", model, data, "--out", scores, "--overwrite")[0] == 0  # a previous prediction
    # scores with the features passed through, scored again into their own directory by a
    # glob (which never "exists"): --overwrite deleted the very files it was reading
    rescored = tmp_path / "rescored"
    assert run_main(capsys, "predict", model, data, "--out", rescored, "--columns", "f0,f1,f2,y")[0] == 0
    kept = snapshot(rescored)
    code, stderr = run_main(capsys, "predict", model, f"{rescored}/*.parquet", "--out", rescored, "--overwrite")
    assert_one_error_line(code, stderr, "OutputError", str(rescored), "is or holds the input")
    assert snapshot(rescored) == kept
    # --overwrite replaces earlier scores only: not a directory of anything else
    # (another model's directory, another dataset, a project), whose files would be lost
    home = tmp_path / "home"
    (home / "project").mkdir(parents=True)
    (home / "project" / "main.py").write_text("code\n")
    (home / "notes.txt").write_text("x\n")
    other_data = tmp_path / "other-data"
    other_data.mkdir()
    shutil.copy(next(Path(data).glob("*.parquet")), other_data / "part-00000.parquet")  # named like scores
    other_model = tmp_path / "other-model"
    shutil.copytree(model, other_model)
    mixed = tmp_path / "mixed"
    shutil.copytree(scores, mixed)
    (mixed / "keep.csv").write_text("1\n")
    before = snapshot(tmp_path)
    for out, fragments in [
        (home, ["notes.txt, project/", "which no prediction writes"]),
        (other_data, ["part-00000.parquet (no 'prediction' column)"]),
        (other_model, ["job.json"]),
        (mixed, ["keep.csv"]),
    ]:
        code, stderr = run_main(capsys, "predict", model, data, "--out", out, "--overwrite")
        assert_one_error_line(code, stderr, "OutputError", str(out), "directory of earlier scores", *fragments)
    assert snapshot(tmp_path) == before


BIG = 1.7e308  # times a coefficient of 2, beyond float64


def rows_directory(path: Path, rows: list[tuple[list[float], object]], label_type=None) -> Path:
    """A dataset of ``rows`` ((features f0.., label y)) in ``path/part.parquet``."""
    columns = {f"f{j}": pa.array([values[j] for values, _ in rows], pa.float64()) for j in range(FEATURES)}
    path.mkdir()
    pq.write_table(pa.table({**columns, "y": pa.array([y for _, y in rows], label_type)}), path / "part.parquet")
    return path


def evaluated_log_loss(capsys, model: Path, data: Path) -> float:
    """``evaluate``'s log_loss of ``model`` on ``data`` (its metrics file beside the data)."""
    out = data.with_name(f"{data.name}.json")
    assert run_main(capsys, "evaluate", model, data, "--out", out)[0] == 0
    return json.loads(out.read_text())["log_loss"]


def test_margins_that_overflow_float64(tmp_path, capsys, trained):
    """Finite values whose margin overflows: on one side its probability is 1
    or 0 and its log-loss 0 (the label's side) or +inf, never NaN; evaluate's
    log-loss is then +inf (one such row made metrics.json say 0.0 for all the
    rows).  Terms overflowing both ways (a NaN margin) have no probability:
    one NonFiniteValueError line naming the row, nothing written (predict
    wrote proba NaN)."""
    model = damaged_copy(trained, tmp_path, edit_json(MODEL_FILE, setting("coef", [2.0] * FEATURES), redigest=True))
    first = pq.read_table(next(iter(sorted(trained[0].glob("*.parquet"))))).slice(0, 20)
    labels = first.column("y").to_pylist()
    normal = [([first.column(f"f{j}")[i].as_py() for j in range(FEATURES)], labels[i]) for i in range(len(labels))]

    def dataset(name: str, rows: list[tuple[list[float], int]]) -> Path:
        return rows_directory(tmp_path / name, normal + rows, first.schema.field("y").type)

    def log_loss(directory: Path) -> float:
        return evaluated_log_loss(capsys, model, directory)

    plain = log_loss(dataset("plain", []))
    assert 0 < plain < math.inf
    with warnings.catch_warnings(record=True) as caught:  # (numpy's overflow warnings were printed)
        warnings.simplefilter("always")
        right = log_loss(dataset("right", [([BIG] * FEATURES, 1), ([-BIG] * FEATURES, 0)]))
        assert right == pytest.approx(plain * len(labels) / (len(labels) + 2), rel=1e-15)  # two rows of loss 0
        assert log_loss(dataset("wrong", [([BIG] * FEATURES, 0)])) == math.inf
        scores = tmp_path / "scores"
        assert run_main(capsys, "predict", model, tmp_path / "right", "--out", scores)[0] == 0
        assert pq.read_table(scores).column("proba").to_pylist()[-2:] == [1.0, 0.0]
        both = dataset("both", [([BIG, -BIG, 0.0], 1)])
        before = snapshot(tmp_path)
        for command in (
            ["evaluate", model, both, "--out", tmp_path / "nan.json"],
            ["predict", model, both, "--out", tmp_path / "nan-scores"],
        ):
            code, stderr = run_main(capsys, *command)
            assert_one_error_line(
                code, stderr, "NonFiniteValueError", "1 row(s)", "not a number", f"row {len(labels)} of the row group"
            )
    assert snapshot(tmp_path) == before
    assert [str(warning.message) for warning in caught if issubclass(warning.category, RuntimeWarning)] == []


def test_an_option_cut_short_is_not_taken_for_a_whole_one(tmp_path, capsys, trained):
    """argparse took ``--over`` for ``--overwrite`` (a finished model replaced)
    and ``--in-proc`` for ``--in-process``: only whole option names now."""
    data, model = trained
    before = snapshot(model)
    for cut in (["--over"], ["--in-proc"], ["--max-it", "3"]):
        with pytest.raises(SystemExit) as exited:
            main(["train", str(data), "--label", "y", "--in-process", "--out", str(model), "--quiet", *cut])
        assert exited.value.code == 2
        assert f"unrecognized arguments: {cut[0]}" in capsys.readouterr().err
    assert snapshot(model) == before


def test_scoring_refuses_a_worker_count_below_one_as_train_does(tmp_path, capsys, trained):
    """``predict``/``evaluate --workers 0`` ran in-process, silently (train
    refuses it), and ``-1`` was refused in an internal name (n_workers)."""
    data, model = trained
    for command in ("predict", "evaluate"):
        for workers in ("0", "-1"):
            code, stderr = run_main(capsys, command, model, data, "--out", tmp_path / "out", "--workers", workers)
            assert_one_error_line(code, stderr, "ConfigError", f"--workers must be an integer >= 1; found {workers}")
    assert not (tmp_path / "out").exists()


def test_the_reference_margins_overflow_without_numpys_warnings():
    """Whichever kernel a process picks (the numpy reference for small
    data), an overflowing margin is an infinity or a NaN that the callers
    judge, without numpy's RuntimeWarnings printed around their one line."""
    from pipeline.kernel import margins

    X = np.array([[BIG, BIG], [BIG, -BIG], [1.0, 2.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = margins(X, np.array([2.0, 2.0, 0.5]))
    assert values[0] == math.inf and math.isnan(values[1]) and values[2] == 6.5


def test_multinomial_margins_that_overflow_float64(tmp_path, capsys):
    """A multinomial model: a class whose margin overflows to +inf has
    probability 1 (the others 0), one at -inf probability 0, and a row's
    log-loss is 0 or +inf accordingly; two classes at +inf have no
    probability (one NonFiniteValueError line, nothing written).  Its report
    refuses a binary model's metrics.json (report read them by their shape)."""
    rng = np.random.default_rng(5)
    n = 90
    data = tmp_path / "data"
    data.mkdir()
    labels = np.array(["a", "b", "c"])[np.arange(n) % 3]
    columns = {f"f{j}": rng.normal(size=n) + (labels == "abc"[j]) for j in range(FEATURES)}
    pq.write_table(pa.table({**columns, "y": labels}), data / "part.parquet")
    model = tmp_path / "model"
    assert (
        run_main(capsys, "train", data, "--label", "y", "--l2", "0.1", "--in-process", "--quiet", "--out", model)[0]
        == 0
    )
    # class k's margin is 2 x_k (+ its intercept, + 2 x_k's centering): a huge x_k sends it to +-inf
    edit_json(MODEL_FILE, setting("coef", np.diag([2.0] * FEATURES).tolist()), redigest=True)(model)
    normal = [([float(columns[f"f{j}"][i]) for j in range(FEATURES)], str(labels[i])) for i in range(30)]

    def dataset(name: str, rows: list[tuple[list[float], str]]) -> Path:
        return rows_directory(tmp_path / name, rows)

    def log_loss(directory: Path) -> float:
        return evaluated_log_loss(capsys, model, directory)

    plain = log_loss(dataset("plain", normal))
    assert 0 < plain < math.inf
    right = log_loss(dataset("right", normal + [([BIG, 0.0, 0.0], "a"), ([0.0, -BIG, 0.0], "c")]))
    assert right < math.inf  # (the -inf row's loss is finite: its label's class is not the one at -inf)
    assert log_loss(dataset("alone", normal + [([BIG, 0.0, 0.0], "a")])) == pytest.approx(plain * 30 / 31, rel=1e-15)
    assert log_loss(dataset("wrong", normal + [([BIG, 0.0, 0.0], "b")])) == math.inf
    scores = tmp_path / "scores"
    assert run_main(capsys, "predict", model, tmp_path / "right", "--out", scores)[0] == 0
    table = pq.read_table(scores)
    assert [table.column(f"proba_{c}")[30].as_py() for c in "abc"] == [1.0, 0.0, 0.0]
    assert table.column("proba_b")[31].as_py() == 0.0 and table.column("prediction")[30].as_py() == "a"
    both = dataset("both", normal + [([BIG, BIG, 0.0], "a")])
    before = snapshot(tmp_path)
    for command in (
        ["evaluate", model, both, "--out", tmp_path / "nan.json"],
        ["predict", model, both, "--out", tmp_path / "nan-scores"],
    ):
        code, stderr = run_main(capsys, *command)
        assert_one_error_line(code, stderr, "NonFiniteValueError", "1 row(s)", "no probability", "first at row 30 ")
    assert snapshot(tmp_path) == before
    # a binary model's metrics.json beside this multinomial model (its digest written in)
    binary_metrics = {"model_digest": json.loads((model / MODEL_FILE).read_text())["digest"], "n_samples": 3}
    (model / "metrics.json").write_text(json.dumps({**binary_metrics, "log_loss": 0.5, "accuracy": 0.5}))
    code, stderr = run_main(capsys, "report", model)
    assert_one_error_line(code, stderr, "ModelFileError", "expected the metrics of this multinomial model")


def test_outputs_that_cannot_be_written_are_one_error_line(tmp_path, capsys, trained):
    """A report.html that is a directory, a metrics file under /proc: one
    OutputError line each, not an OSError traceback after the pass; predict
    --overwrite into a symbolic link to earlier scores replaces the scores
    of the directory it names and keeps the link (rmtree refused the link)."""
    data, model, _ = _copies(tmp_path, trained)
    (model / "report.html").mkdir()
    code, stderr = run_main(capsys, "report", model)
    assert_one_error_line(code, stderr, "OutputError", str(model), "cannot write")
    code, stderr = run_main(capsys, "evaluate", model, data, "--out", "/proc/metrics.json")
    assert_one_error_line(code, stderr, "OutputError", "/proc")
    (model / "job.log").unlink()
    (model / "job.log").mkdir()
    code, stderr = run_main(capsys, "logs", model)
    assert_one_error_line(code, stderr, "JobError", str(model / "job.log"), "cannot be read")
    real, link = tmp_path / "scores", tmp_path / "link"
    assert run_main(capsys, "predict", model, data, "--out", real)[0] == 0
    link.symlink_to(real)
    before = (real / "part-00000.parquet").stat().st_ino
    code, stderr = run_main(capsys, "predict", model, data, "--out", link, "--overwrite")
    assert code == 0, stderr
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert (real / "part-00000.parquet").stat().st_ino != before  # (new scores)
    assert pq.read_table(real / "part-00000.parquet").num_rows > 0


def test_outputs_are_local_paths_or_file_urls(tmp_path, capsys, monkeypatch, trained):
    """Outputs are written on this machine: another filesystem's URL as an
    output is one error line and writes nothing (each was a local directory
    named after its scheme, ``memory:/...`` or ``s3:/...``, reported as
    written), and so is an empty one (``--out file:`` wrote into the current
    directory); a ``file:`` URL is its local path for every output, output
    root ($PIPELINE_OUTPUT_ROOT too: a file: root refused every output, an
    s3:// one made ``s3:/``), model and job directory (``predict --out
    file:scores`` made ``file:scores/``; ``status file:run`` found no job)."""
    data, model, _ = _copies(tmp_path, trained)
    monkeypatch.chdir(tmp_path)  # (where a URL taken for a relative path would land)
    job = tmp_path / "remote.toml"
    job.write_text(f'[data]\nurl = "{data}"\nlabel = "y"\n[output]\ndir = "s3://bucket/run"\n')
    before = snapshot(tmp_path)
    train = ["train", data, "--label", "y", "--in-process", "--quiet"]
    for command, name, fragment in (
        (["predict", model, data, "--out", "memory://scores"], "OutputError", "prediction output directory memory:"),
        (["evaluate", model, data, "--out", "s3://bucket/metrics.json"], "OutputError", "metrics file s3:"),
        (["make-data", "memory://made", "--rows", "10", "--features", "2"], "OutputError", "dataset directory memory:"),
        (["demo", "--out", "memory://demo", "--rows", "100"], "OutputError", "demo output directory memory:"),
        ([*train, "--out", "s3://b/run"], "ConfigError", "--out s3://b/run is a URL"),
        ([*train, "--output-root", "s3://b"], "ConfigError", "--output-root s3://b is a URL"),
        (["submit", job, "--in-process"], "JobFileError", "key 'output.dir' s3://bucket/run is a URL"),
    ):
        code, stderr = run_main(capsys, *command)
        assert_one_error_line(code, stderr, name, fragment, "expected a local path")
    code, stderr = run_main(capsys, *train, "--out", "file:")
    assert_one_error_line(code, stderr, "ConfigError", "--out 'file:' is empty; expected a path")
    with pytest.raises(ConfigError, match="^out memory://x is a URL; expected a local path"):
        TrainConfig(data=str(data), label="y", out="memory://x")  # (the library's door too)
    monkeypatch.setenv("PIPELINE_OUTPUT_ROOT", "s3://bucket/root")
    code, stderr = run_main(capsys, *train, "--out", "run")
    assert_one_error_line(code, stderr, "OutputError", "$PIPELINE_OUTPUT_ROOT s3://bucket/root is a URL")
    monkeypatch.setenv("PIPELINE_OUTPUT_ROOT", f"file://{tmp_path}/root")
    code, stderr = run_main(capsys, "demo", "--out", "demo", "--rows", "100")  # (refused before its data)
    assert_one_error_line(code, stderr, "OutputError", "demo output directory demo is outside the output root")
    code, stderr = run_main(capsys, "demo", "--out", "root/demo", "--workers", "0")  # (so is a bad worker count)
    assert_one_error_line(code, stderr, "ConfigError", "--workers must be")
    monkeypatch.setenv("PIPELINE_OUTPUT_ROOT", "root/")  # (relative, a slash: still the environment's root)
    code, stderr = run_main(capsys, *train, "--out", str(tmp_path / "elsewhere"))
    assert_one_error_line(code, stderr, "ConfigError", "change $PIPELINE_OUTPUT_ROOT where the job runs")
    monkeypatch.setenv("PIPELINE_OUTPUT_ROOT", str(tmp_path / "afile"))  # (a file: the demo cannot make it)
    code, stderr = run_main(capsys, "demo", "--rows", "100")
    assert_one_error_line(code, stderr, "OutputError", "cannot create the output root")
    monkeypatch.setenv("PIPELINE_OUTPUT_ROOT", f"file://{tmp_path}/root")
    assert snapshot(tmp_path) == before
    (tmp_path / "root").mkdir()
    assert run_main(capsys, *train, "--out", f"file://{tmp_path}/root/run")[0] == 0  # (inside the root)
    assert run_main(capsys, "predict", model, data, "--out", "file:root/scores")[0] == 0
    assert run_main(capsys, "status", "file:root/run")[0] == 0
    assert run_main(capsys, "predict", f"file://{tmp_path}/root/run", data, "--out", "root/again")[0] == 0
    assert {"run", "scores", "again"} <= {path.name for path in (tmp_path / "root").iterdir()}
    monkeypatch.delenv("PIPELINE_OUTPUT_ROOT")
    assert TrainConfig(data=str(data), label="y", out="file:run").out == "run"
    for command, written in (
        (["predict", model, data, "--out", "file:scores"], "scores/part-00000.parquet"),
        (["evaluate", model, data, "--out", f"file://{tmp_path}/metrics.json"], "metrics.json"),
        (["make-data", "file:made", "--rows", "10", "--features", "2"], "made/part-00000.parquet"),
        ([*train, "--out", "file:run"], "run/model.json"),
    ):
        assert run_main(capsys, *command)[0] == 0
        assert (tmp_path / written).is_file(), written
    assert not any(path.name.startswith("file:") for path in tmp_path.rglob("*"))


def latin1_text(values: list[bytes]) -> pa.Array:
    """A Parquet ``string`` column holding bytes that are not UTF-8 (what
    another writer's Latin-1 text is), which pyarrow writes as they are."""
    raw = pa.array(values, pa.binary())
    return pa.Array.from_buffers(pa.string(), len(raw), raw.buffers())


def test_text_that_is_not_utf8_is_one_error_line(tmp_path, capsys):
    """A text cell that is not UTF-8, in a categorical column (with the
    footers' statistics or without, hashed or not) or in a text label: one
    ColumnTypeError line naming the column and the row group, and nothing
    written, for train, predict and evaluate (a UnicodeDecodeError traceback
    with statistics; without them predict took the bytes for an unseen level)."""
    rng = np.random.default_rng(2)
    n = 40
    good = pa.table({"x": rng.normal(size=n), "s": ["a", "b"] * (n // 2), "y": np.arange(n) % 2})
    bad = good.set_column(1, "s", latin1_text([b"a", b"\xff\xfe"] * (n // 2)))
    for name, table, statistics in (("good", good, True), ("bad", bad, True), ("bare", bad, False)):
        (tmp_path / name).mkdir()
        pq.write_table(table, tmp_path / name / "part.parquet", write_statistics=statistics)
    label = tmp_path / "label"
    label.mkdir()
    pq.write_table(pa.table({"x": good["x"], "y": latin1_text([b"yes", b"\xe9t\xe9"] * (n // 2))}), label / "p.parquet")
    model = tmp_path / "model"
    assert (
        run_main(
            capsys, "train", tmp_path / "good", "--label", "y", "--l2", "0.1", "--in-process", "--quiet", "--out", model
        )[0]
        == 0
    )
    before = snapshot(tmp_path)
    for data in (tmp_path / "bad", tmp_path / "bare"):
        where = f"column 's' in row group 0 of {data / 'part.parquet'} holds text that is not valid UTF-8"
        for command in (
            ["train", data, "--label", "y", "--in-process", "--out", tmp_path / "new"],
            ["train", data, "--label", "y", "--in-process", "--hash-buckets", "8", "--out", tmp_path / "new"],
            ["predict", model, data, "--out", tmp_path / "scores"],
            ["evaluate", model, data, "--out", tmp_path / "metrics.json"],
        ):
            code, stderr = run_main(capsys, *command)
            assert_one_error_line(code, stderr, "ColumnTypeError", f"categorical {where}", "string index 1")
    code, stderr = run_main(capsys, "train", label, "--label", "y", "--in-process", "--out", tmp_path / "new")
    assert_one_error_line(
        code, stderr, "ColumnTypeError", f"label column 'y' in row group 0 of {label / 'p.parquet'}", "not valid UTF-8"
    )
    assert snapshot(tmp_path) == before


def test_an_init_model_of_other_features_says_how_they_differ_in_a_line():
    """Hashed or many-level columns have thousands of features: the message
    quotes both lists only when they are short (it quoted 65,538 names)."""
    from pipeline.train import SHOWN_FEATURES, feature_difference

    assert feature_difference(["a"], ["a", "b"]) == "features ['a']; expected the training features ['a', 'b']"
    model = [f"k={i}" for i in range(70_000)]
    training = model[:50] + ["j=0"] + model[50:] + [f"j={i}" for i in range(1, 20)]
    said = feature_difference(model, training)
    assert len(said) < 600 and said.startswith("70000 features; expected the training's 70020")
    assert "differ from position 50 ('k=50' where the training has 'j=0')" in said
    assert "only in the model: none" in said
    assert f"only in the training: {[f'j={i}' for i in range(SHOWN_FEATURES)]} ..." in said


def test_an_init_model_must_be_of_the_training_classes(tmp_path, capsys, trained):
    """A binary --init model's coefficients are the log-odds of its second
    class: a model of a 0/1 label cannot start a fit of labels 'no'/'yes'
    and the other way round (it was taken as it was), while a model of the
    same classes can."""
    data, model = trained
    text = tmp_path / "text"
    text.mkdir()
    for path in sorted(data.glob("*.parquet")):
        table = pq.read_table(path)
        labels = pa.array(np.where(table.column("y").to_numpy() == 1, "yes", "no"))
        pq.write_table(table.drop(["y"]).append_column("y", labels), text / path.name)
    text_model = tmp_path / "text-model"
    assert run_main(capsys, "train", text, "--label", "y", "--in-process", "--quiet", "--out", text_model)[0] == 0
    before = snapshot(tmp_path)
    for training, init, fragment in (
        (
            text,
            model,
            "is a binomial model of a 0/1 label; expected a binomial model of the training classes ['no', 'yes']",
        ),
        (
            data,
            text_model,
            "is a binomial model of classes ['no', 'yes']; expected a binomial model of the training's 0/1 label",
        ),
    ):
        code, stderr = run_main(
            capsys, "train", training, "--label", "y", "--in-process", "--init", init, "--out", tmp_path / "new"
        )
        assert_one_error_line(code, stderr, "ConfigError", f"--init model in {init} {fragment}")
    assert snapshot(tmp_path) == before
    again = tmp_path / "again"
    assert (
        run_main(
            capsys, "train", text, "--label", "y", "--in-process", "--quiet", "--init", text_model, "--out", again
        )[0]
        == 0
    )
    assert Model.load(again).coef == Model.load(text_model).coef  # (started at its optimum, stays there)


def test_train_never_removes_the_data_it_reads(tmp_path, capsys, trained):
    """Data inside what a run replaces or clears in its output directory (a
    regularization path's ``path/``, a job file's name), named as a
    directory, a glob or a URL: refused before anything is written, with
    --overwrite too (the run removed the data it trained on)."""
    out = tmp_path / "out"
    shutil.copytree(trained[0], out / "path")
    (out / "history.csv").mkdir()
    shutil.copy(next(Path(trained[0]).glob("*.parquet")), out / "history.csv" / "part-0.parquet")
    before = snapshot(tmp_path)
    for data in (out / "path", f"{out}/path/*.parquet", f"file://{out}/path", out / "history.csv"):
        for extra in ([], ["--overwrite"], ["--overwrite", "--path", "3", "--l2", "1e-2"]):
            code, stderr = run_main(capsys, "train", data, "--label", "y", "--out", out, "--in-process", *extra)
            assert_one_error_line(code, stderr, "OutputError", str(out), "which a run in the output directory")
    assert snapshot(tmp_path) == before


def test_a_corrupt_page_is_one_error_line(tmp_path, capsys, trained):
    """pyarrow's message for a damaged page header spans lines (and carries a
    control character): the CLI still prints one line naming the file."""
    data, _, _ = _copies(tmp_path, trained)
    damaged = sorted(data.glob("*.parquet"))[0]
    content = bytearray(damaged.read_bytes())
    content[4:40] = b"\xff" * 36  # the first page's header
    damaged.write_bytes(bytes(content))
    out = tmp_path / "out"
    code, stderr = run_main(capsys, "train", data, "--label", "y", "--in-process", "--quiet", "--out", out)
    line = assert_one_error_line(code, stderr, "UnreadableFileError", str(damaged), "Deserializing page header failed")
    assert line.isprintable()
    assert not out.exists()


def test_train_out_inside_the_dataset_is_refused(tmp_path, capsys, trained):
    """The model's files would become part of the data it was trained on (its
    next read fails on checkpoint.npz): refused before anything is read or
    written, for the dataset directory itself and any directory inside it."""
    data, _, _ = _copies(tmp_path, trained)
    before = snapshot(data)
    for out in (data, data / "model"):
        code, stderr = run_main(capsys, "train", data, "--label", "y", "--in-process", "--quiet", "--out", out)
        assert_one_error_line(code, stderr, "OutputError", "inside the dataset", "expected a directory outside")
    assert snapshot(data) == before


def test_evaluate_summary_and_report_of_named_classes_say_which_is_positive(tmp_path, capsys):
    """Precision, recall and the AUCs are of the second class: evaluate's
    output names it (metrics.json lists the classes)."""
    rng = np.random.default_rng(8)
    a = rng.standard_normal(400)
    (tmp_path / "data").mkdir()
    label = np.where(rng.random(400) < 1 / (1 + np.exp(-a)), "spam", "ham")
    pq.write_table(pa.table({"a": a, "y": label}), tmp_path / "data" / "p.parquet")
    model = tmp_path / "model"
    assert (
        run_main(capsys, "train", tmp_path / "data", "--label", "y", "--in-process", "--quiet", "--out", model)[0] == 0
    )
    assert main(["evaluate", str(model), str(tmp_path / "data")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "positive   'spam' (negative 'ham')"
    assert json.loads((model / "metrics.json").read_text())["classes"] == ["ham", "spam"]
    assert main(["summary", str(model)]) == 0  # the coefficients' signs: towards 'spam'
    assert "label:      y (1: 'spam')" in capsys.readouterr().out
    assert main(["report", str(model)]) == 0
    assert "positive class</td><td>&#x27;spam&#x27; (negative &#x27;ham&#x27;)" in (model / "report.html").read_text()


def test_train_out_never_clears_files_it_did_not_write_without_overwrite(tmp_path, capsys, trained):
    """A directory without a job of ours that holds files named like a job's
    (a user's report.html, a folder called path/) is refused before anything
    is read or written: a new job clears those names.  With --overwrite the
    run replaces them and trains."""
    data, _, _ = _copies(tmp_path, trained)
    for name in ("report.html", "history.csv", "path/notes.txt"):
        out = tmp_path / f"home-{name.replace('/', '-')}"
        (out / name).parent.mkdir(parents=True)
        (out / name).write_text("the user's own\n")
        (out / "keep.txt").write_text("kept\n")
        before = snapshot(out)
        code, stderr = run_main(capsys, "train", data, "--label", "y", "--in-process", "--quiet", "--out", out)
        shown = name.split("/")[0] + ("/" if "/" in name else "")
        assert_one_error_line(code, stderr, "OutputError", str(out), f"holds {shown},", "--overwrite")
        assert snapshot(out) == before
    code, _ = run_main(capsys, "train", data, "--label", "y", "--in-process", "--quiet", "--out", out, "--overwrite")
    assert code == 0
    assert (out / "model.json").exists() and (out / "keep.txt").read_text() == "kept\n"
    assert not (out / "path").exists()


# --------------------------------------------------------------------------- the estimator


def _arrays(n=300, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * [1.0, 3.0, 0.5] + 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-(X[:, 0] - 0.3 * X[:, 1])))).astype(int)
    return X, y


def test_estimator_error_classes():
    assert issubclass(NonFiniteInputError, ValueError)
    assert issubclass(NonFiniteInputError, NonFiniteValueError)
    assert issubclass(NonFiniteInputError, PipelineError)
    assert issubclass(ModelFileError, PipelineError)


def test_numpy_non_finite_input_is_a_value_error_like_dask_input():
    from pipeline.estimator import LogisticRegression

    X, y = _arrays()
    X[4, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        LogisticRegression().fit(X, y)


def test_pandas_dataframe_and_series():
    import pandas as pd

    from pipeline.estimator import LogisticRegression

    X, y = _arrays()
    reference = LogisticRegression(l2=1e-3).fit(X, y)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    model = LogisticRegression(l2=1e-3).fit(frame, pd.Series(y))
    assert list(model.feature_names_in_) == ["a", "b", "c"]
    assert model.coef_.tobytes() == reference.coef_.tobytes()
    assert model.predict_proba(frame).tobytes() == reference.predict_proba(X).tobytes()


def test_convergence_warning_is_scikit_learns_for_the_estimator_and_the_cli_path():
    from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning

    from pipeline.errors import ConvergenceWarning
    from pipeline.estimator import LogisticRegression
    from pipeline.fitting import train_arrays
    from pipeline.solvers import SolverOptions

    assert issubclass(ConvergenceWarning, SklearnConvergenceWarning)
    X, y = _arrays()
    with pytest.warns(SklearnConvergenceWarning, match="did not converge"):
        LogisticRegression(max_iter=1).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SklearnConvergenceWarning)
        with pytest.raises(SklearnConvergenceWarning):
            train_arrays([(X, y.astype(np.float64))], options=SolverOptions(max_iter=1))


def test_cli_does_not_import_scikit_learn_and_filters_match_once_it_is():
    """``pipeline --help`` stays fast (no scikit-learn); a scikit-learn filter set
    after pipeline was imported still matches a CLI-path training warning."""
    script = """
import sys, warnings
import numpy as np
import pipeline.cli
assert not any(name.startswith("sklearn") for name in sys.modules), "the CLI imported scikit-learn"
from pipeline.solvers import SolverOptions
from pipeline.fitting import train_arrays
import sklearn.exceptions
warnings.simplefilter("error", sklearn.exceptions.ConvergenceWarning)
rng = np.random.default_rng(0)
X = rng.standard_normal((50, 2))
try:
    train_arrays([(X, (X[:, 0] > 0).astype(float))], options=SolverOptions(max_iter=1))
except sklearn.exceptions.ConvergenceWarning as warning:
    print("matched", type(warning).__module__)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "matched pipeline.errors"


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _with(array: np.ndarray, index, value) -> np.ndarray:
    array = array.astype(np.float64)
    array[index] = value
    return array


@pytest.mark.cluster
def test_dask_non_finite_input_is_refused_before_training(client):
    import dask.array as da

    from pipeline.estimator import LogisticRegression

    X, y = _arrays()
    cases = {
        "X NaN": ((_with(X, (7, 1), np.nan), y, None), "Input X contains NaN"),
        "X -inf": ((_with(X, (250, 2), -np.inf), y, None), "Input X contains infinity"),
        "y NaN": ((X, _with(y, 3, np.nan), None), "Input y contains NaN"),
        "sample_weight inf": ((X, y, _with(np.ones(len(y)), 0, np.inf)), "Input sample_weight contains infinity"),
    }
    for name, ((Xc, yc, weights), fragment) in cases.items():
        model = LogisticRegression()
        with pytest.raises(NonFiniteInputError, match=fragment):
            model.fit(
                da.from_array(Xc, chunks=(100, 3)),
                da.from_array(yc, chunks=100),
                sample_weight=None if weights is None else da.from_array(weights, chunks=100),
            )
        assert not hasattr(model, "coef_"), name
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        LogisticRegression().fit(da.from_array(X, chunks=(100, 3)), da.from_array(y[:-1], chunks=100))
    # no rows: scikit-learn's words for numpy input (it said "found 0 classes")
    with pytest.raises(ValueError, match=r"Found array with 0 sample\(s\) \(shape=\(0, 3\)\) while a minimum of 1"):
        LogisticRegression().fit(da.zeros((0, 3), chunks=(10, 3)), da.zeros(0, chunks=10))


@pytest.mark.cluster
def test_dask_y_chunked_unlike_x_and_dask_dataframes(client):
    import dask.array as da
    import dask.dataframe as dd
    import pandas as pd

    from pipeline.estimator import LogisticRegression

    X, y = _arrays()
    reference = LogisticRegression(l2=1e-3).fit(X, y)
    unaligned = LogisticRegression(l2=1e-3).fit(
        da.from_array(X, chunks=(100, 3)),
        da.from_array(y, chunks=70),
        sample_weight=da.from_array(np.ones(len(y)), chunks=120),
    )
    assert unaligned.coef_.tobytes() == reference.coef_.tobytes()
    from sklearn.exceptions import DataConversionWarning

    with pytest.warns(DataConversionWarning, match="column-vector y"):  # raveled, as numpy's (it was refused)
        column = LogisticRegression(l2=1e-3).fit(da.from_array(X, chunks=(100, 3)), da.from_array(y[:, None], 70))
    assert column.coef_.tobytes() == reference.coef_.tobytes()
    frame = dd.from_pandas(pd.DataFrame(X, columns=["a", "b", "c"]), npartitions=3)
    model = LogisticRegression(l2=1e-3).fit(frame, dd.from_pandas(pd.Series(y), npartitions=4))
    assert list(model.feature_names_in_) == ["a", "b", "c"]
    assert model.coef_.tobytes() == reference.coef_.tobytes()
    assert model.predict_proba(frame).compute().tobytes() == reference.predict_proba(X).tobytes()
    assert (model.predict(frame).compute() == reference.predict(X)).all()
    renamed = dd.from_pandas(pd.DataFrame(X, columns=["a", "b", "z"]), npartitions=2)
    with pytest.raises(ValueError, match="feature names should match"):
        model.predict(renamed)
    # a label of a nullable or Arrow dtype: the pandas Series' model (its dask array held objects, which
    # scikit-learn's label check called "unknown")
    for dtype in ("Int64", "int8[pyarrow]", "boolean", "category"):
        labels = pd.Series(y.astype(np.int64)).astype(dtype)
        from_pandas = LogisticRegression(l2=1e-3).fit(X, labels)
        from_dask = LogisticRegression(l2=1e-3).fit(frame, dd.from_pandas(labels, npartitions=2))
        assert from_dask.coef_.tobytes() == from_pandas.coef_.tobytes() == reference.coef_.tobytes(), dtype
        assert list(from_dask.classes_) == list(from_pandas.classes_) == [0, 1]
    unknown = dd.from_pandas(pd.Series(y.astype(np.int64)), npartitions=2).astype("category")  # (categories unknown)
    assert LogisticRegression(l2=1e-3).fit(frame, unknown).coef_.tobytes() == reference.coef_.tobytes()
    text = dd.from_pandas(pd.Series(np.where(y == 1, "spam", "ham")), npartitions=3).astype("category")
    fitted = LogisticRegression(l2=1e-3).fit(frame, text)  # (text categories unknown: as before)
    assert list(fitted.classes_) == ["ham", "spam"] and fitted.coef_.tobytes() == reference.coef_.tobytes()


@pytest.mark.cluster
def test_a_dask_dataframes_nullable_columns_with_na_are_the_pandas_frames(client):
    """A dask DataFrame whose nullable (Int64, boolean, double[pyarrow])
    columns hold NA: its dask array held objects, and float() of NA failed
    inside a dask task; now the pandas frame's model and scores (NA a missing
    value), or the pandas frame's refusal."""
    import dask.dataframe as dd
    import pandas as pd

    from pipeline.estimator import LogisticRegression

    X, y = _arrays()
    gaps = np.arange(len(y)) % 7 == 3
    frame = pd.DataFrame(
        {
            "a": X[:, 0],
            "b": pd.array(np.where(gaps, None, np.round(X[:, 1]).astype(int)), dtype="Int64"),
            "c": pd.array(np.where(gaps[::-1], None, X[:, 2] > 1), dtype="boolean"),
            "d": pd.array(np.where(gaps, None, X[:, 2]), dtype="double[pyarrow]"),
        }
    )
    lazy = dd.from_pandas(frame, npartitions=3)
    for missing in ("mean", "indicator"):
        reference = LogisticRegression(l2=1e-3, missing=missing).fit(frame, y)
        model = LogisticRegression(l2=1e-3, missing=missing).fit(lazy, dd.from_pandas(pd.Series(y), npartitions=2))
        assert model.coef_.tobytes() == reference.coef_.tobytes(), missing
        assert model.predict_proba(lazy).compute().tobytes() == reference.predict_proba(frame).tobytes()
    with pytest.raises(NonFiniteInputError, match="Input X contains NaN"):
        LogisticRegression(l2=1e-3).fit(lazy, y)


@pytest.mark.cluster
def test_dask_input_with_nan_or_inf_is_refused_when_scored(client):
    """Scoring refuses what fitting refuses: no probability is computed from
    NaN (unless it is a missing value) or an infinity, binary or multinomial;
    a 1-d dask X gets scikit-learn's words."""
    import dask.array as da

    from pipeline.estimator import LogisticRegression

    X, y = _arrays()
    bad = _with(X[:6], (0, 0), np.nan)
    bad[2, 1] = np.inf
    for labels in (y, np.arange(len(y)) % 3):
        model = LogisticRegression(l2=1e-3).fit(X, labels)
        for score in (model.predict, model.predict_proba, model.decision_function):
            with pytest.raises(NonFiniteInputError, match="Input X contains NaN and infinity; expected finite values"):
                score(da.from_array(bad, chunks=(3, 3))).compute()
        assert (model.predict(da.from_array(X[:6], chunks=(4, 3))).compute() == model.predict(X[:6])).all()
    imputing = LogisticRegression(l2=1e-3, missing="mean").fit(X, y)
    missing = _with(X[:6], (0, 0), np.nan)
    assert (imputing.predict(da.from_array(missing, chunks=(3, 3))).compute() == imputing.predict(missing)).all()
    with pytest.raises(NonFiniteInputError, match="contains infinity; expected finite values or NaN"):
        imputing.predict(da.from_array(bad, chunks=(3, 3))).compute()
    for fit_or_score in (lambda Z: LogisticRegression().fit(Z, y), model.predict):
        with pytest.raises(ValueError, match="Expected a 2-dimensional X; got a dask Array of shape"):
            fit_or_score(da.from_array(X[:, 0], chunks=100))


@pytest.mark.cluster
def test_dask_dataframes_score_and_a_categorical_frame_refuses_infinity_by_name(client):
    """score() of a dask DataFrame (its predictions' row chunks are unknown:
    len() failed inside accuracy_score); an infinity in a dask DataFrame with a
    categorical column is the NonFiniteInputError the docs promise (it was
    scikit-learn's words from inside a task); a single sample weight for dask
    input, as scikit-learn takes it for numpy."""
    import dask.dataframe as dd
    import pandas as pd

    from pipeline.estimator import LogisticRegression

    X, y = _arrays()
    reference = LogisticRegression(l2=1e-3).fit(X, y)
    frame = dd.from_pandas(pd.DataFrame(X, columns=["a", "b", "c"]), npartitions=3)
    labels = dd.from_pandas(pd.Series(y), npartitions=3)
    model = LogisticRegression(l2=1e-3).fit(frame, labels)
    assert model.score(frame, labels) == reference.score(X, y)
    assert model.score(frame, pd.Series(y)) == reference.score(X, y)
    weights = np.linspace(0.5, 1.5, len(y))
    assert model.score(frame, labels, sample_weight=weights) == reference.score(X, y, sample_weight=weights)
    text = np.random.default_rng(1).choice(["u", "v"], len(y))
    table = pd.DataFrame(X, columns=["a", "b", "c"]).assign(t=text)
    categorical = LogisticRegression(l2=1e-3).fit(dd.from_pandas(table, npartitions=3), labels)
    in_memory = LogisticRegression(l2=1e-3).fit(table, y)
    assert categorical.score(dd.from_pandas(table, npartitions=2), labels) == in_memory.score(table, y)
    table.loc[5, "b"] = np.inf
    with pytest.raises(NonFiniteInputError, match="Input X contains infinity"):
        LogisticRegression().fit(dd.from_pandas(table, npartitions=3), labels)
    doubled = LogisticRegression(l2=1e-3).fit(frame, labels, sample_weight=2.0)
    assert doubled.coef_.tobytes() == LogisticRegression(l2=1e-3).fit(X, y, sample_weight=2.0).coef_.tobytes()


@pytest.mark.parametrize(
    "settings, fragment",
    [
        ({"max_categories": -1}, "max_categories must be an integer >= 1; found -1"),
        ({"max_categories": 0}, "max_categories must be an integer >= 1; found 0"),
        ({"max_categories": 2.5}, "max_categories must be an integer >= 1; found 2.5"),
        ({"max_categories": True}, "max_categories must be an integer >= 1; found True"),
        ({"min_category_count": "3"}, "min_category_count must be an integer >= 1; found '3'"),
        ({"min_category_count": -5}, "min_category_count must be an integer >= 1; found -5"),
    ],
)
def test_the_level_policy_is_checked_like_the_commands(settings, fragment):
    """max_categories=-1 dropped the rarest level without a word (a slice),
    0 sent every value to <other>, 2.5 was a TypeError."""
    import pandas as pd

    from pipeline.errors import ConfigError
    from pipeline.estimator import LogisticRegression
    from pipeline.train import TrainConfig

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.standard_normal(60), "c": rng.choice(["u", "v", "w"], 60)})
    y = np.arange(60) % 2
    with pytest.raises(ValueError, match=re.escape(fragment)):
        LogisticRegression(l2=0.01, **settings).fit(frame, y)
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        TrainConfig(data="d", label="y", **settings)


def test_estimator_tags_say_what_the_settings_take():
    """A missing-value policy takes NaN (scikit-learn's meta-estimators read
    allow_nan: SelectFromModel refused the NaN the model imputes); Newton
    and inference are binary."""
    from sklearn.feature_selection import SelectFromModel
    from sklearn.utils import get_tags

    from pipeline.estimator import LogisticRegression, LogisticRegressionCV

    assert not get_tags(LogisticRegression()).input_tags.allow_nan
    assert get_tags(LogisticRegression(missing="mean")).input_tags.allow_nan
    assert get_tags(LogisticRegression(missing="indicator")).input_tags.allow_nan
    assert get_tags(LogisticRegression()).classifier_tags.multi_class
    assert not get_tags(LogisticRegression(solver="newton")).classifier_tags.multi_class
    assert not get_tags(LogisticRegression(inference="hc0")).classifier_tags.multi_class
    assert not get_tags(LogisticRegressionCV()).classifier_tags.multi_class
    # ... and refuse three classes in scikit-learn's words, as its own check asks
    from sklearn.utils.estimator_checks import check_classifier_not_supporting_multiclass

    for binary in (LogisticRegression(solver="newton"), LogisticRegression(inference="hc0"), LogisticRegressionCV()):
        check_classifier_not_supporting_multiclass(type(binary).__name__, binary)
    X, y = _arrays()
    X = X.copy()
    X[::7, 0] = np.nan
    selected = SelectFromModel(LogisticRegression(l2=0.1, missing="mean")).fit(X, y).transform(X)
    assert selected.shape[0] == X.shape[0]


def test_estimator_parameters_and_names_fail_as_scikit_learn_would(tmp_path):
    """fit_parquet refuses a bad parameter as fit does (ValueError, it was a
    ConfigError); a column name twice (also alike as text) with a categorical
    column is named (a KeyError: 0); LogisticRegressionCV's path is an integer
    (int('3') and int(2.5) were taken) and one class is said in scikit-learn's
    words."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.estimator import LogisticRegression, LogisticRegressionCV

    X, y = _arrays()
    pq.write_table(pa.table({"a": X[:, 0], "y": y}), tmp_path / "d.parquet")
    for bad in ({"l2": -1.0}, {"max_iter": -3}, {"max_categories": 0}):
        with pytest.raises(ValueError, match="must be"):
            LogisticRegression(**bad).fit_parquet(str(tmp_path / "d.parquet"), label="y")
    text = np.array(["u", "v"])[y]
    twice = pd.DataFrame({"a": X[:, 0], "c": text, "d": text})
    twice.columns = ["a", "c", "c"]
    with pytest.raises(ValueError, match=r"more than one column named \['c'\]"):
        LogisticRegression().fit(twice, y)
    with pytest.raises(ValueError, match=r"more than one column named \['1'\] \(as text\)"):
        LogisticRegression().fit(pd.DataFrame({1: X[:, 0], "1": text}), y)
    for path in ("3", 2.5):
        with pytest.raises(ValueError, match="path must be an integer >= 0"):
            LogisticRegressionCV(path=path, cv=3).fit(X, y)
    with pytest.raises(ValueError, match="found 1 class$"):
        LogisticRegressionCV(cv=3).fit(X, np.zeros(len(y)))


def test_frames_with_categorical_columns_and_any_column_names():
    """Column names that are not text (a DataFrame built from a dict of
    integers), a categorical column named by integer, and a frame of
    categorical columns only: each trains and scores like its text-named twin."""
    import pandas as pd

    from pipeline.estimator import LogisticRegression

    rng = np.random.default_rng(3)
    n = 300
    number, text, code = rng.standard_normal(n), rng.choice(["x", "y", "z"], n), rng.integers(0, 4, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(number + (text == "x"))))).astype(int)
    named = LogisticRegression(l2=1e-2).fit(pd.DataFrame({"0": number, "1": text}), y)
    numbered = LogisticRegression(l2=1e-2).fit(pd.DataFrame({0: number, 1: text}), y)
    assert numbered.coef_.tobytes() == named.coef_.tobytes()
    assert list(numbered.feature_names_in_) == ["0", "1"]
    scored = numbered.predict_proba(pd.DataFrame({0: number, 1: text}))
    assert scored.tobytes() == named.predict_proba(pd.DataFrame({"0": number, "1": text})).tobytes()
    coded = LogisticRegression(l2=1e-2, categorical=[1]).fit(pd.DataFrame({0: number, 1: code}), y)
    assert [v.column for v in coded.vocabularies_] == ["1"]
    assert coded.predict(pd.DataFrame({0: number, 1: code})).shape == (n,)
    alone = LogisticRegression(l2=1e-2).fit(pd.DataFrame({"c": text}), y)
    assert alone.coef_.shape == (1, 3) and alone.numeric_columns_ == []
    assert alone.predict(pd.DataFrame({"c": text})).shape == (n,)


@pytest.mark.parametrize(
    "words, expected",
    [
        # the missing --label is what argparse reports; the typo is the cause
        (["train", "data", "--lable", "y", "--out", "out"], "required: --label (--lable: did you mean --label?)"),
        (
            ["train", "data", "--label", "y", "--out", "out", "--max-iters=3", "--l3", "1"],
            "unrecognized arguments: --max-iters=3 --l3 1 (--max-iters: did you mean --max-iter?; "
            "--l3: did you mean --l2?)",
        ),
        (["predict", "model", "data", "--out", "out", "--thresold", "0.5"], "(--thresold: did you mean --threshold?)"),
    ],
)
def test_a_mistyped_option_gets_a_suggestion(capsys, words, expected):
    with pytest.raises(SystemExit) as exited:  # refused before anything is read
        main(words)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"usage: pipeline {words[0]} " in err
    assert expected in err


def test_no_suggestion_for_an_option_like_none_and_after_the_separator(capsys):
    for words in (["train", "data", "--label", "y", "--bogus-option", "1"], ["status", "out", "--", "--lable"]):
        with pytest.raises(SystemExit):
            main(words)
        assert "did you mean" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "command, arguments",
    [("train", ["data", "--label", "y"]), ("predict", ["model", "data", "--out", "out"]), ("status", ["out"])],
)
def test_an_unknown_option_shows_the_commands_usage(capsys, command, arguments):
    with pytest.raises(SystemExit) as exited:  # refused before anything is read
        main([command, *arguments, "--bogus-option", "1"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"usage: pipeline {command} " in err
    assert "unrecognized arguments: --bogus-option 1" in err
    assert len(err.splitlines()) <= 8  # (train: a short usage, not its 30 lines of options above the error)


def test_weights_whose_sum_overflows_are_one_clear_error(tmp_path, capsys):
    """Every weight finite, their sum not (1.7e308 each): the statistics'
    summary raised OverflowError (math.ldexp), a traceback from the CLI and
    not a ValueError from the estimator; now a WeightValueError naming the
    rows, nothing written.  One such weight among ordinary ones still trains."""
    from pipeline.estimator import LogisticRegression

    n = 20
    X, y = (np.arange(n) % 7).astype(np.float64), np.arange(n) % 2
    for name, weights in (("huge", np.full(n, 1.7e308)), ("one", np.r_[1.7e308, np.ones(n - 1)])):
        (tmp_path / name).mkdir()
        pq.write_table(pa.table({"a": X, "y": y, "w": weights}), tmp_path / name / "part.parquet")
    code, err = run_main(
        capsys, "train", tmp_path / "huge", "--label", "y", "--weight-col", "w", "--in-process", "--out", tmp_path / "o"
    )
    assert_one_error_line(code, err, "WeightValueError", "sample weights of 20 row(s) sum to more than", "1.8e308")
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="sum to more than float64's largest value"):  # (the estimator's words)
        LogisticRegression().fit(X[:, None], y, sample_weight=np.full(n, 1.7e308))
    one = ["train", tmp_path / "one", "--label", "y", "--weight-col", "w", "--in-process", "--quiet"]
    assert run_main(capsys, *one, "--out", tmp_path / "p")[0] == 0


def test_column_name_parameters_that_are_not_lists_are_value_errors():
    """categorical=5 and hashed=5 raised TypeError ("'int' object is not
    iterable", "has no len()"); scikit-learn's parameter errors are ValueErrors."""
    import pandas as pd

    from pipeline.estimator import LogisticRegression

    frame, y = pd.DataFrame({"a": np.arange(20.0) % 7, "c": list("ab") * 10}), np.arange(20) % 2
    with pytest.raises(ValueError, match="categorical must be 'from_dtype' or a list of column names; got int 5"):
        LogisticRegression(categorical=5).fit(frame, y)
    with pytest.raises(ValueError, match="hashed must be a list of column names; found 5"):
        LogisticRegression(hash_buckets=8, hashed=5).fit(frame, y)
