"""Nothing lost: an interrupted write leaves the previous file and no debris."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pipeline.atomic import write_atomic
from pipeline.checkpoint import load_checkpoint, save_checkpoint
from pipeline.errors import OutputError
from pipeline.fitting import build_model, fit
from pipeline.model import Model
from pipeline.objective import Penalty
from pipeline.reduce import InProcessEvaluator


def _fail(*args, **kwargs):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("where", ["os.fsync", "os.replace"])
def test_an_interrupted_write_leaves_the_previous_file(tmp_path, monkeypatch, where):
    target = tmp_path / "job.json"
    write_atomic(target, b"previous, good\n")
    monkeypatch.setattr(where, _fail)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, b"new, never complete\n")
    assert target.read_bytes() == b"previous, good\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.json"]  # no temporary left


def _model_and_state(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    y = (rng.random(300) < 0.5).astype(float)
    states = []
    result = fit(InProcessEvaluator([(X, y)], 3), on_state=states.append)
    return build_model(
        result, ["a", "b", "c"], 300, solver="lbfgs", penalty=Penalty(), label="y", weight=None, dataset="x"
    ), states


def test_a_failed_model_or_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    model, states = _model_and_state(tmp_path)
    model.save(tmp_path)
    save_checkpoint(tmp_path / "checkpoint.npz", states[1], {"job_id": "a"})
    before_model = (tmp_path / "model.json").read_bytes()
    before_checkpoint = (tmp_path / "checkpoint.npz").read_bytes()
    monkeypatch.setattr(os, "fsync", _fail)
    with pytest.raises(OutputError, match="cannot write the model"):
        model.save(tmp_path)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "checkpoint.npz", states[-1], {"job_id": "a"})
    monkeypatch.undo()
    assert (tmp_path / "model.json").read_bytes() == before_model
    assert (tmp_path / "checkpoint.npz").read_bytes() == before_checkpoint
    assert Model.load(tmp_path).digest == model.digest
    assert load_checkpoint(tmp_path / "checkpoint.npz")[0].solver_state.n_iter == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz", "model.json"]


def test_a_failing_run_keeps_the_previous_runs_model(tmp_path, jobs_data):
    """--overwrite replaces another job only when the new one succeeds: a run
    that fails (here: cancelled after two iterations) leaves model.json as it was."""
    from job_support import write_job

    from pipeline.errors import JobCancelled
    from pipeline.jobfile import load_job
    from pipeline.jobs import run_job

    out = tmp_path / "out"
    first = run_job(load_job(write_job(tmp_path / "a.toml", jobs_data, out, name="a")))
    before = (out / "model.json").read_bytes()
    config = load_job(
        write_job(tmp_path / "b.toml", jobs_data, out, name="b", extra_train="l2 = 0.5"), {"output.overwrite": True}
    )

    def cancel_after_two(record):
        if record.iteration == 2:
            (out / "cancel.request").write_text("stop\n")

    with pytest.raises(JobCancelled):
        run_job(config, progress=cancel_after_two)
    assert (out / "model.json").read_bytes() == before
    assert Model.load(out).digest == first.digest
