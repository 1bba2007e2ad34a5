"""One fit path and one owner of the output directory: train.run tells its
Recorder in a fixed order; pipeline.outputs names every file a run writes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import TrainConfig
from pipeline.errors import ColumnNotFoundError, JobCancelled, JobError
from pipeline.jobs import run_job
from pipeline.model import Model
from pipeline.outputs import JOB_FILES, MODEL_FILE, JobDocument, OutputDir
from pipeline.predict import split_of
from pipeline.report import write_report
from pipeline.solvers import SolverOptions
from pipeline.train import Recorder, run


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs") / "data"
    root.mkdir()
    rng = np.random.default_rng(5)
    X = rng.standard_normal((900, 3)) * [1.0, 4.0, 0.2]
    y = (rng.random(900) < 1 / (1 + np.exp(-(X[:, 0] - 0.2 * X[:, 1])))).astype(np.int8)
    table = pa.table({"f0": X[:, 0], "f1": X[:, 1], "f2": X[:, 2], "y": y})
    pq.write_table(table, root / "part-0.parquet", row_group_size=250)
    return root


class Calls(Recorder):
    """A recorder that writes down each hook it is called with."""

    def __init__(self, out=None, cancel_at_pass: int | None = None) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.out, self.cancel_at_pass, self.passes = out, cancel_at_pass, 0

    def begin(self, dataset, client):
        self.calls.append("begin")
        return None

    def note(self, message):
        self.calls.append("note")

    def watching(self):
        self.calls.append("watching")
        return super().watching()

    def check_cancel(self):
        self.passes += 1
        self.calls.append("check_cancel")
        if self.passes == self.cancel_at_pass:
            raise JobCancelled("stop here")

    def on_iteration(self, record):
        self.calls.append("on_iteration")

    def on_state(self, state):
        self.calls.append("on_state")

    def on_model(self, model):
        # the model is on disk before the recorder hears of it
        assert self.out is None or Model.load(self.out).digest == model.digest
        self.calls.append("on_model")

    def finish(self, model, kernel):
        self.calls.append("finish")

    def fail(self, error):
        self.calls.append(f"fail:{type(error).__name__}")


def test_run_tells_the_recorder_in_order(data, tmp_path):
    recorder = Calls(out=tmp_path / "out")
    config = TrainConfig(data=str(data), label="y", out=str(tmp_path / "out"), cluster=None)
    model = run(config, recorder)
    calls = recorder.calls
    assert calls[0] == "begin" and calls[-2:] == ["on_model", "finish"]
    assert calls.index("watching") < calls.index("check_cancel")
    assert calls.count("on_state") == model.n_iter + 1  # the start and every iteration
    assert calls.count("on_iteration") == model.n_iter + 1
    assert calls.count("check_cancel") == model.n_passes  # before every pass, statistics included
    assert "note" in calls and not any(call.startswith("fail") for call in calls)


def test_a_stopped_run_tells_fail_and_writes_no_model(data, tmp_path):
    recorder = Calls(cancel_at_pass=3)
    config = TrainConfig(data=str(data), label="y", out=str(tmp_path / "out"), cluster=None)
    with pytest.raises(JobCancelled):
        run(config, recorder)
    assert recorder.calls[-1] == "fail:JobCancelled" and "finish" not in recorder.calls
    assert "on_model" not in recorder.calls and not (tmp_path / "out" / MODEL_FILE).exists()


def test_every_file_a_job_writes_is_named_in_outputs_and_cleared_with_it(data, tmp_path):
    out = tmp_path / "out"
    config = TrainConfig(
        data=str(data),
        label="y",
        out=str(out),
        cluster=None,
        validation_fraction=0.3,
        options=SolverOptions(max_iter=4),
    )
    run_job(config)  # (a job logs its warnings: not converged)
    write_report(str(out))
    OutputDir(out).request_cancel(by="test")
    written = {path.name for path in out.iterdir()}
    assert written <= set(JOB_FILES) | {MODEL_FILE}, written - set(JOB_FILES) - {MODEL_FILE}
    assert {"job.json", "job.log", "history.csv", "checkpoint.npz", "metrics.json", "report.html"} <= written
    # a writer killed between its temporary file and the rename left one behind (it stayed for ever); not
    # one of another name
    (out / ".history.csv.0123456789abcdef0123456789abcdef.tmp").write_text("iteration\n")
    (out / ".history.csv.mine.tmp").write_text("kept\n")
    OutputDir(out).clear_job_files()  # the model stays until replaced, and what describes it with it
    assert {path.name for path in out.iterdir()} == {MODEL_FILE, "metrics.json", "report.html", ".history.csv.mine.tmp"}
    (out / ".history.csv.mine.tmp").unlink()
    OutputDir(out).clear_model_files()
    assert {path.name for path in out.iterdir()} == {MODEL_FILE}


def test_the_job_document_is_typed_and_refuses_what_it_cannot_use(data, tmp_path):
    out = tmp_path / "out"
    run_job(TrainConfig(data=str(data), label="y", out=str(out), cluster=None))
    document = OutputDir(out).read_job()
    assert isinstance(document, JobDocument) and document.status == "succeeded" and document.ended
    assert document.dataset["n_samples"] == 900 and document.config["data.label"] == "y"
    original = json.loads((out / "job.json").read_text())
    assert JobDocument.from_json(original) == document
    for edit, message in (
        (lambda d: d.update(status="paused"), "expected status to be one of queued, running"),
        (lambda d: d.update(config=["a"]), "expected config to be an object, found list"),
        (lambda d: d.update(iteration=True), "expected iteration to be an integer, found bool"),
    ):
        broken = dict(original)
        edit(broken)
        (out / "job.json").write_text(json.dumps(broken))
        with pytest.raises(JobError, match=message):
            OutputDir(out).read_job()
    (out / "job.json").write_text("[1, 2]")
    with pytest.raises(JobError, match="expected a JSON object"):
        OutputDir(out).read_job()


def test_a_bad_validation_key_is_recorded_as_the_runs_failure(data, tmp_path):
    """The split is checked after begin (a job's directory may exist by then:
    a detached or resumed job must end 'failed', not stay 'queued')."""
    recorder = Calls()
    config = TrainConfig(data=str(data), label="y", cluster=None, validation_fraction=0.2, validation_key="nope")
    with pytest.raises(ColumnNotFoundError):
        run(config, recorder)
    assert recorder.calls == ["begin", "watching", "fail:ColumnNotFoundError"]  # (its warnings recorded too)


def test_a_moved_model_still_tells_its_split(data, tmp_path):
    """evaluate --split reads the split from job.json wherever the directory is
    now (the training run's output root does not follow it)."""
    out = tmp_path / "root" / "run"
    run_job(
        TrainConfig(
            data=str(data),
            label="y",
            out=str(out),
            cluster=None,
            validation_fraction=0.25,
            output_root=str(tmp_path / "root"),
            options=SolverOptions(max_iter=3),
        )
    )
    moved = tmp_path / "elsewhere"
    shutil.copytree(out, moved)
    split = split_of(moved, "validation")
    assert (split.fraction, split.key, split.part) == (0.25, None, "validation")
