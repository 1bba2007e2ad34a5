"""Training jobs: job files, submit/status/logs/list/cancel, checkpoints and exact resume.

Cluster tests run on real ``dask scheduler`` / ``dask worker`` processes on
127.0.0.1 (the ``dask_cli_cluster`` fixture); every command runs as its own
``python -m pipeline`` process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import DaskCLICluster, free_port, run_cli
from job_support import (
    N_FEATURES,
    N_ROWS,
    checkpoint_iteration,
    history_rows,
    job_status,
    slow_job,
    wait_for,
    write_job,
)

from pipeline.checkpoint import load_checkpoint
from pipeline.cli import _parser, main
from pipeline.config import TrainConfig
from pipeline.errors import JobError, JobFileError, PipelineError
from pipeline.jobfile import (
    KEYS,
    config_from_mapping,
    load_job,
    suggestion,
)
from pipeline.model import Model
from pipeline.objective import Penalty

#: runs the CLI in subprocesses: left out of the fast loop (-m "not cluster and not slow")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data(jobs_data) -> Path:
    return jobs_data


# --------------------------------------------------------------------------- job files


def test_relative_paths_are_resolved_against_the_working_directory_and_normalized(tmp_path, monkeypatch):
    """``../data`` from ``jobs/`` is ``<root>/data``, not ``<root>/jobs/../data`` (which shows everywhere)."""
    (tmp_path / "jobs").mkdir()
    job = tmp_path / "jobs" / "rel.toml"
    job.write_text('[data]\nurl = "../data"\nlabel = "y"\n[train]\ninit = "./m/../model"\n[output]\ndir = "../out"\n')
    monkeypatch.chdir(tmp_path / "jobs")
    config = load_job(job)
    assert (config.data, config.init, config.out) == (
        str(tmp_path / "data"),
        str(tmp_path / "jobs" / "model"),
        str(tmp_path / "out"),
    )


def test_file_urls_are_local_paths_resolved_where_pipeline_runs(tmp_path, monkeypatch):
    """``file://../data`` passed the submit-side checks, then a detached job's
    worker read it against its own directory; ``file:/abs`` (one slash) was
    taken for a relative path; ``%20`` was not decoded."""
    (tmp_path / "jobs").mkdir()
    monkeypatch.chdir(tmp_path / "jobs")
    for url, expected in [
        ("file://../data", tmp_path / "data"),
        (f"file:{tmp_path}/data", tmp_path / "data"),
        (f"file://{tmp_path}/sp%20ace", tmp_path / "sp ace"),
        (f"file://localhost{tmp_path}/data", tmp_path / "data"),
        (f"file://{tmp_path}/h#1?x", tmp_path / "h#1?x"),  # (no fragment or query in a path)
    ]:
        job = tmp_path / "jobs" / "url.toml"
        job.write_text(f'[data]\nurl = "{url}"\nlabel = "y"\n')
        assert load_job(job).data == str(expected), url
    # the Python API reads them as the same local paths (it took '%20' as it is)
    from pipeline import open_dataset
    from pipeline.synth import make_data

    make_data(str(tmp_path / "sp ace"), rows=20, features=2)
    for url in (f"file://{tmp_path}/sp%20ace", f"file:{tmp_path}/sp%20ace", f"file://localhost{tmp_path}/sp%20ace"):
        assert open_dataset(url, "y").n_samples == 20, url


@pytest.mark.parametrize("name", ["demo.toml", "compose.toml", "lasso-cv.toml"])
def test_shipped_job_files_validate(name):
    config = load_job(ROOT / "jobs" / name)
    assert config.name == Path(name).stem and config.out and config.label == "y"
    if name == "lasso-cv.toml":
        assert (config.cv, config.path, config.penalty.l1) == (5, 20, 1.0)
    if name == "compose.toml":
        assert config.cluster.scheduler == "tcp://scheduler:8786"
        assert config.data.startswith("/data/") and config.out.startswith("/runs/")
    else:
        assert config.cluster.scheduler is None and config.cluster.n_workers == 2
        assert config.generate["rows"] > 0


def test_every_train_option_is_a_job_key():
    """One table behind both: each `pipeline train` option sets a KEYS entry
    (tests/test_options.py checks every key's field, both directions)."""
    train = next(a for a in _parser()._actions if a.dest == "command").choices["train"]
    dests = {action.dest for action in train._actions} - {"help", "data", "quiet"}
    assert dests <= set(KEYS), dests - set(KEYS)
    flagged = {key for key, spec in KEYS.items() if spec.flag and spec.flag.startswith("--")}
    assert flagged == dests


def test_cli_overrides_win_over_the_job_file(tmp_path, data):
    job = write_job(tmp_path / "j.toml", data, tmp_path / "out")
    config = load_job(job, {"output.dir": str(tmp_path / "other"), "train.l2": 0.5})
    assert config.out == str(tmp_path / "other") and config.penalty.l2 == 0.5
    assert config.options.tol == 1e-9  # from the file
    # where it runs: an option of another kind replaces the file's cluster
    embedded = job.read_text().replace("in_process = true", "workers = 3\nthreads_per_worker = 2\nstall_timeout = 9.0")
    job.write_text(embedded)
    assert load_job(job).cluster.n_workers == 3
    elsewhere = load_job(job, {"cluster.scheduler": "tcp://127.0.0.1:1"}).cluster
    assert elsewhere.scheduler == "tcp://127.0.0.1:1" and elsewhere.stall_timeout_s == 9.0
    assert load_job(job, {"cluster.in_process": True}).cluster is None
    resized = load_job(job, {"cluster.workers": 1}).cluster  # an embedded cluster keeps its settings
    assert resized.n_workers == 1 and resized.threads_per_worker == 2
    # the file's own bad values are still the file's error when an option replaces them
    # (workers = 0 or memory_limit = "lots" went through with --in-process)
    for bad, fragment in (("workers = 0", "'cluster.workers' must be an integer >= 1"), ('memory_limit = "lots"', "")):
        job.write_text(embedded.replace("workers = 3", bad))
        for where in ({"cluster.in_process": True}, {"cluster.scheduler": "tcp://127.0.0.1:1"}, {"cluster.workers": 2}):
            with pytest.raises(JobFileError, match=f"^{re.escape(str(job))}: key .*{fragment}") as refused:
                load_job(job, where)
            assert refused.value.column == ("cluster.workers" if fragment else "cluster.memory_limit")


@pytest.mark.parametrize(
    "typed, meant",
    [
        ("train.l2_penalty", "train.l2"),  # a known name, extended
        ("data.feature", "data.features"),  # ... or cut short
        ("train.max_iters", "train.max_iter"),
        ("training.l2", "train.l2"),  # a section misspelt
        ("train.l1_ratio", "train.alpha"),  # scikit-learn's name of the mix
        ("output.directory", "output.dir"),
        ("data.lable", "data.label"),  # difflib's nearest, within the section
        ("train.cv_rules", "train.cv_rule"),  # a near typo of the longer of two siblings
        ("train.path_ratios", "train.path_ratio"),
        ("train.learning_rate", None),  # nothing close: no guess (it was train.path_ratio)
        ("train.quiet", None),  # (it was train.init)
        ("l2", "train.l2"),  # a key without its section: the one section that has it
        ("max_iter", "train.max_iter"),
        ("label", "data.label"),
    ],
)
def test_an_unknown_keys_suggestion_stays_in_its_section_and_knows_other_tools_names(typed, meant):
    assert suggestion(typed) == meant


@pytest.mark.parametrize(
    "body, fragments",
    [
        ('[train]\nsovler = "gd"\n', ["'train.sovler'", "did you mean 'train.solver'"]),
        ("[train]\nquiet = true\n", ["'train.quiet'", "--quiet is a command-line option only"]),
        ('[train]\nmax_iter = "ten"\n', ["'train.max_iter'", "must be an integer", "'ten'"]),
        ('[train]\nsolver = "adam"\n', ["'train.solver'", "lbfgs, newton, gd", "'adam'"]),
        ("[output]\ncheckpoint_every = 0\n", ["'output.checkpoint_every'", ">= 1"]),
        ("[train]\nclass_weight = { 0 = 1, 1 = -2 }\n", ["'train.class_weight'", "positive weights by class"]),
        ('[data]\nlabel = "y"\n', ["missing key 'data.url'"]),
        ("[data\n", ["not valid TOML"]),
        ("[trian]\nl2 = 0.1\n", ["unknown key 'trian.l2' (did you mean 'train.l2'?)"]),  # (was: unknown 'trian')
        ('data = "x"\n', ["'data' is a section: expected a table ([data] holding url, label"]),
        ('[data]\nlabel = "y"\nfeatures = []\n', ["key 'data.features' must name at least one column"]),
        # no hashed column: hash_buckets went unused, silently (--hashed "" was refused)
        (
            '[data]\nlabel = "y"\nhash_buckets = 4\nhashed = []\n',
            ["key 'data.hashed' must name at least one column; found an empty list"],
        ),
        # a quoted dotted key is one key of that name: it was taken for [train] max_iter, and the
        # section's own max_iter silently replaced it
        ('"train.max_iter" = 1\n[train]\nmax_iter = 50\n', ["quoted key 'train.max_iter'", "max_iter under [train]"]),
        # generated data must have rows (an empty dataset was written, kept, and refused by training)
        (
            '[data]\nurl = "{tmp}/g"\nlabel = "y"\ngenerate = { rows = 0, features = 2 }\n',
            ["'data.generate.rows' must be >= 1"],
        ),
        # "file:" is no path (it was taken for the current directory)
        ('[data]\nurl = "file:"\nlabel = "y"\n', ["key 'data.url' is 'file:', which names no path"]),
    ],
)
def test_malformed_job_files_name_file_and_key_and_write_nothing(tmp_path, data, body, fragments):
    job = tmp_path / "bad.toml"
    out = tmp_path / "out"
    body = body.replace("{tmp}", str(tmp_path))  # (a path the test may write: never the working directory)
    text = body if "[data" in body or body.startswith("data =") else body + f'[data]\nurl = "{data}"\nlabel = "y"\n'
    job.write_text(text + f'\n[output]\ndir = "{out}"\n' if "[output]" not in body else text)
    result = run_cli("submit", job)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("JobFileError: "))
    assert str(job) in line
    for fragment in fragments:
        assert fragment in line, line
    assert not out.exists()


def test_a_bad_value_given_on_the_command_line_is_the_command_lines_error(tmp_path, data):
    """An option that overrides a job file's key is checked as the option:
    a ConfigError naming it, not the file (whose value is fine)."""
    out = tmp_path / "out"
    job = write_job(tmp_path / "good.toml", data, out, extra_train="l2 = 0.5\nclass_weight = { 0 = 1, 1 = 3 }")
    for options, fragment in [
        (["--l2", "-1"], "ConfigError: --l2 must be a finite number >= 0; found -1.0"),
        (["--class-weight", "0:1,1:0"], "ConfigError: --class-weight must be 'balanced', or positive weights"),
    ]:
        result = run_cli("submit", job, *options)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith(fragment), result.stderr
        assert str(job) not in result.stderr
    assert not out.exists()


def test_options_over_a_job_file_replace_its_penalty_and_keep_their_own_errors(tmp_path, data, capsys):
    """--reg/--alpha replace a file's l2 (and --l2 a file's reg/alpha): the
    same keys said another way; a column the file names that is not there
    names the file's key; a scheduler given on the command line is not the
    file's; an output that cannot take the job is refused before the first line."""
    out = tmp_path / "out"
    job = write_job(tmp_path / "job.toml", data, out, extra_train="l2 = 0.5")
    assert main(["submit", str(job), "--reg", "1", "--alpha", "0.25", "--quiet"]) == 0
    model = Model.load(out)
    assert (model.l2, model.l1) == (0.75, 0.25)
    capsys.readouterr()
    assert main(["submit", str(job), "--quiet"]) == 1  # succeeded already: refused before "training on"
    streams = capsys.readouterr()
    assert "training on" not in streams.out and streams.err.startswith("OutputError: ")
    typo = tmp_path / "typo.toml"
    typo.write_text(job.read_text().replace('label = "y"', 'label = "lable"'))
    assert main(["submit", str(typo), "--out", str(tmp_path / "o2")]) == 1
    assert capsys.readouterr().err.startswith(f"ColumnNotFoundError: {typo}: data.label: label column 'lable' not")
    port = free_port()
    options = ["--scheduler", f"tcp://127.0.0.1:{port}", "--connect-timeout", "1", "--out", str(tmp_path / "o3")]
    assert main(["submit", str(job), *options]) == 1
    assert capsys.readouterr().err.startswith(f"ClusterError: no Dask scheduler answered at 'tcp://127.0.0.1:{port}'")


def test_missing_dataset_and_unreachable_scheduler_name_file_and_key(tmp_path):
    out = tmp_path / "out"
    job = write_job(tmp_path / "nodata.toml", tmp_path / "nowhere", out)
    result = run_cli("submit", job)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"DatasetNotFoundError: {job}: data.url:" in result.stderr
    assert not out.exists()
    job = write_job(
        tmp_path / "noscheduler.toml", ROOT / "jobs", out, cluster=f'scheduler = "tcp://127.0.0.1:{free_port()}"'
    )
    (tmp_path / "d").mkdir()
    pq.write_table(pa.table({"a": [1.0, 2.0], "y": [0, 1]}), tmp_path / "d" / "p.parquet")
    job.write_text(job.read_text().replace(str(ROOT / "jobs"), str(tmp_path / "d")))
    result = run_cli("submit", job, "--connect-timeout", "2", timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"ClusterError: {job}: cluster.scheduler:" in result.stderr and "within 2 s" in result.stderr
    assert not out.exists()


def test_a_setting_only_the_data_refuses_names_file_and_key(tmp_path, data):
    """class_weight's count is known once the classes are: the error still
    names the job file and its key, unless the command line gave the value."""
    out = tmp_path / "out"
    job = write_job(tmp_path / "weights.toml", data, out, extra_train="class_weight = [1.0, 2.0, 3.0]")
    result = run_cli("submit", job)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"JobFileError: {job}: train.class_weight: class_weight has 3 weights; expected 2")
    assert not (out / "model.json").exists()
    # options given on the command line besides it: still the file's setting
    result = run_cli("submit", job, "--name", "other", "--max-iter", "50", "--overwrite")
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"JobFileError: {job}: train.class_weight: class_weight has 3 weights; expected 2"), line
    job.write_text(job.read_text().replace("class_weight = [1.0, 2.0, 3.0]\n", ""))
    result = run_cli("submit", job, "--class-weight", "1,2,3", "--overwrite")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip().splitlines()[-1].startswith("ConfigError: --class-weight has 3 weights")
    )  # not the file


def test_a_detached_jobs_setting_only_the_data_refuses_names_file_and_key(tmp_path, data, dask_cli_cluster):
    """Where the coordinator runs on a worker, job.json (status, logs) says
    the error in the job file's words too, as the attached run prints it (it
    recorded the bare ConfigError); a value the command line gave stays the option's."""
    address = dask_cli_cluster.address
    job = write_job(
        tmp_path / "weights.toml",
        data,
        tmp_path / "out",
        extra_train="class_weight = [1.0, 2.0, 3.0]",
        cluster=f'scheduler = "{address}"',
    )
    in_file = f"JobFileError: {job}: train.class_weight: class_weight has 3 weights; expected 2"
    for command, words in (
        (["submit", job, "--detach"], in_file),
        (["resume", tmp_path / "out", "--detach"], in_file),  # (the job file's words kept in job.json)
        (["submit", job, "--detach", "--class-weight", "1,2,3", "--overwrite"], "ConfigError: --class-weight has 3"),
    ):
        assert run_cli(*command).returncode == 0
        wait_for(lambda: job_status(tmp_path / "out") == "failed", what="the detached job's failure")
        error = json.loads((tmp_path / "out" / "job.json").read_text())["error"]
        assert error.startswith(words), error


def test_settings_the_data_refuses_name_the_key_once_and_in_neutral_words(tmp_path, data):
    """An init model of other features and inference on three classes: known
    once the data is read, blamed on the key, without CLI words or the key twice."""
    three = tmp_path / "three"
    three.mkdir()
    rng = np.random.default_rng(3)
    pq.write_table(pa.table({"a": rng.standard_normal(90), "y": np.arange(90) % 3}), three / "p.parquet")
    first = tmp_path / "first"
    assert run_cli("train", three, "--label", "y", "--in-process", "--out", first, "--quiet").returncode == 0
    job = write_job(tmp_path / "init.toml", data, tmp_path / "out", extra_train=f'init = "{first}"')
    result = run_cli("submit", job)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"JobFileError: {job}: train.init: init model in {first} has features ['a']"), line
    job = write_job(tmp_path / "inference.toml", three, tmp_path / "out", extra_train='inference = "nonrobust"')
    result = run_cli("submit", job)
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"JobFileError: {job}: train.inference: coefficient inference is for"), line
    # a binary model of a 0/1 label to start a three-class fit: said in those words (not "classes None")
    two = tmp_path / "two"
    two.mkdir()
    pq.write_table(pa.table({"a": rng.standard_normal(90), "y": np.arange(90) % 2}), two / "p.parquet")
    assert run_cli("train", two, "--label", "y", "--in-process", "--out", tmp_path / "binary").returncode == 0
    result = run_cli(
        "train", three, "--label", "y", "--in-process", "--init", tmp_path / "binary", "--out", tmp_path / "m3"
    )
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("ConfigError: --init model in") and "is a binomial model of a 0/1 label; expected" in line


# --------------------------------------------------------------------------- attached jobs, artifacts


def test_attached_job_writes_every_artifact_and_equals_train(tmp_path, data):
    out = tmp_path / "out"
    job = write_job(tmp_path / "job.toml", data, out)
    result = run_cli("submit", job)
    assert result.returncode == 0, result.stdout + result.stderr
    model = Model.load(out)
    document = json.loads((out / "job.json").read_text())
    assert document["status"] == "succeeded" and document["digest"] == model.digest
    assert document["name"] == "test-job" and document["config"]["train.tol"] == 1e-9
    assert document["versions"]["numpy"] == np.__version__
    assert document["started_at"] <= document["ended_at"]
    assert document["dataset"]["n_samples"] == N_ROWS
    rows = history_rows(out)
    assert [float(r["loss"]) for r in rows] == model.loss_history
    assert [int(r["passes"]) for r in rows] == model.passes_history
    assert list(rows[0]) == ["iteration", "loss", "grad_norm", "step", "passes", "elapsed_s"]
    # nothing but model.json after the last iteration: the curves are drawn by `pipeline report`
    assert not (out / "loss.png").exists()
    state, meta = load_checkpoint(out / "checkpoint.npz")
    assert state.solver_state.n_iter == model.n_iter and meta["job_id"] == document["job_id"]
    assert "started" in (out / "job.log").read_text()
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    # the same settings as `pipeline train` options: the same model
    trained = run_cli(
        "train", data, "--label", "y", "--tol", "1e-9", "--in-process", "--out", tmp_path / "train-out", "--quiet"
    )
    assert trained.returncode == 0, trained.stderr
    assert Model.load(tmp_path / "train-out").digest == model.digest
    # a finished job's directory is not reused without --overwrite
    again = run_cli("submit", job)
    assert again.returncode == 1 and "OutputError" in again.stderr and "--overwrite" in again.stderr
    assert json.loads((out / "job.json").read_text())["job_id"] == document["job_id"]


def test_another_job_does_not_overwrite_an_output_directory(tmp_path, data):
    out = tmp_path / "out"
    assert run_cli("submit", write_job(tmp_path / "a.toml", data, out, name="a")).returncode == 0
    before = (out / "model.json").read_bytes()
    result = run_cli("submit", write_job(tmp_path / "b.toml", data, out, name="b"))
    assert result.returncode == 1 and "OutputError" in result.stderr and "'a'" in result.stderr
    assert (out / "model.json").read_bytes() == before
    replaced = run_cli("submit", tmp_path / "b.toml", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads((out / "job.json").read_text())["name"] == "b"


def run_late(late: TrainConfig, first: TrainConfig, refusal: str) -> Model:
    """Two jobs started into one directory at once: ``late`` checks it, then
    ``first`` runs to its end there inside ``late``'s first note (before
    ``late`` writes anything); ``late`` must stop with an OutputError matching
    ``refusal``.  ``first``'s model."""
    from pipeline.errors import OutputError
    from pipeline.jobs import run_job

    finished = []

    def meanwhile(message: str) -> None:
        if not finished:
            finished.append(run_job(first))

    with pytest.raises(OutputError, match=refusal):
        run_job(late, notify=meanwhile)
    return finished[0]


def test_two_jobs_started_into_one_new_directory_at_once_one_refused_having_written_nothing(tmp_path, data):
    """Job A checks the new directory, then job B runs to its end there before
    A writes anything (A's first note, before its first pass: the window of
    two jobs started at once).  A was not refused: it cleared B's files and
    wrote its job.json over B's, and B's model stayed with A's job.json.  Now
    A's first write finds B's job.json: an OutputError naming B, and B's
    files as B left them."""
    out = tmp_path / "out"
    config_b = TrainConfig(data=str(data), label="y", out=str(out), cluster=None, name="b")
    config_a = dataclasses.replace(config_b, name="a", penalty=Penalty(l2=0.1))
    first = run_late(config_a, config_b, r"was taken by job \w+ \('b', succeeded\) after job \w+ checked it")
    model = Model.load(out)
    document = json.loads((out / "job.json").read_text())
    assert document["name"] == "b" and document["status"] == "succeeded"
    assert document["digest"] == model.digest == first.digest and model.l2 == 0.0
    import re

    assert set(re.findall(r" job (\w+) ", (out / "job.log").read_text())) == {document["job_id"]}
    assert not list(out.glob(".*.tmp"))


def test_a_path_job_refused_a_directory_taken_since_leaves_the_other_paths_points(tmp_path, data):
    """The same race with regularization paths: the late job cleared the
    first one's path/ (and wrote a point state there) before it found the
    directory taken; now it takes the directory before its first file."""
    out = tmp_path / "out"
    config_b = TrainConfig(
        data=str(data), label="y", out=str(out), cluster=None, name="b", path=3, penalty=Penalty(l2=1.0)
    )
    config_a = dataclasses.replace(config_b, name="a", path_ratio=0.1)
    run_late(config_a, config_b, r"was taken by job \w+ \('b', succeeded\)")
    points = json.loads((out / "path" / "path.json").read_text())["points"]
    assert len(points) == 3
    for k, point in enumerate(points):
        assert Model.load(out / "path" / f"{k:03d}").digest == point["digest"]
    assert not list((out / "path").rglob("state-*.npz"))


def test_cross_validated_jobs_take_their_directory_once_from_the_folds_threads(tmp_path, data):
    """The folds' fits run in threads of their own and reach their first state
    at once: without a lock the job claimed its directory twice (refused in
    its own name) or cleared path/ under another fit's state file (8 runs of
    10 failed)."""
    from pipeline.jobs import run_job

    for attempt in range(3):
        out = tmp_path / f"out-{attempt}"
        config = TrainConfig(data=str(data), label="y", out=str(out), cluster=None, cv=3, penalty=Penalty(l2=1e-2))
        model = run_job(config)
        assert json.loads((out / "job.json").read_text())["status"] == "succeeded"
        assert Model.load(out).digest == model.digest


def test_an_output_directory_that_goes_away_mid_run_is_one_output_error(tmp_path, data):
    """The directory replaced by a file after the second iteration (as a
    read-only or full one fails a write): the job's next write was a raw
    OSError traceback from history.csv; now an OutputError naming the
    directory."""
    from pipeline.errors import OutputError
    from pipeline.jobs import run_job

    out = tmp_path / "out"
    from pipeline.solvers import SolverOptions

    options = SolverOptions(max_iter=20, tol=0.0, ftol=0.0)
    config = TrainConfig(data=str(data), label="y", out=str(out), cluster=None, solver="gd", options=options)

    def progress(record) -> None:
        if record.iteration == 2:
            out.rename(tmp_path / "moved")
            out.write_text("not a directory")

    with pytest.raises(OutputError, match=r"cannot write in the output directory .*out: .*expected it writable"):
        run_job(config, progress=progress)
    assert json.loads((tmp_path / "moved" / "job.json").read_text())["iteration"] >= 1


def test_the_first_writer_of_a_new_job_file_wins(tmp_path):
    from pipeline.atomic import create_atomic

    target = tmp_path / "job.json"
    assert create_atomic(target, b"first")
    assert not create_atomic(target, b"second")
    assert target.read_bytes() == b"first" and [p.name for p in tmp_path.iterdir()] == ["job.json"]


def test_checkpoints_every_k_iterations(tmp_path, data):
    out = tmp_path / "out"
    seen = []
    job = write_job(tmp_path / "job.toml", data, out, checkpoint_every=3)
    config = load_job(job)
    from pipeline.jobs import run_job

    def spy(record):
        if (out / "checkpoint.npz").exists():
            seen.append(load_checkpoint(out / "checkpoint.npz")[0].solver_state.n_iter)

    model = run_job(config, progress=spy)
    assert set(seen) <= set(range(0, model.n_iter + 1, 3)) and len(set(seen)) >= 2


# --------------------------------------------------------------------------- on a dask CLI cluster


@pytest.mark.cluster
def test_attached_then_detached_submit_give_the_same_model(tmp_path, data, dask_cli_cluster):
    address = dask_cli_cluster.address
    job = write_job(tmp_path / "job.toml", data, tmp_path / "attached", name="pair", cluster=f'scheduler = "{address}"')
    attached = run_cli("submit", job)
    assert attached.returncode == 0, attached.stderr
    digest = Model.load(tmp_path / "attached").digest
    # detached: the submitting process returns (and exits) at once
    detached_out = tmp_path / "detached"
    result = run_cli("submit", job, "--detach", "--out", detached_out, "--name", "pair-detached")
    assert result.returncode == 0, result.stderr
    job_id = json.loads((detached_out / "job.json").read_text())["job_id"]
    assert job_id in result.stdout

    def finished():
        status = run_cli("status", job_id, "--scheduler", address)
        assert status.returncode == 0, status.stderr
        return status.stdout if ("succeeded" in status.stdout or "failed" in status.stdout) else None

    line = wait_for(finished, timeout=120, poll=0.5, what="the detached job")
    assert "succeeded" in line and digest in line
    assert Model.load(detached_out).digest == digest
    document = json.loads((detached_out / "job.json").read_text())
    assert document["coordinator"]["mode"] == "detached"
    from pipeline.probe import kernel_fingerprint

    assert document["kernel"]["fingerprint"]["digest"] == kernel_fingerprint()["digest"]
    assert len(document["kernel"]["workers"]) == 2
    assert document["coordinator"]["pid"] != os.getpid()
    listed = run_cli("list", "--scheduler", address)
    assert listed.returncode == 0 and job_id in listed.stdout and "pair-detached" in listed.stdout
    logs = run_cli("logs", job_id, "--follow", "--scheduler", address)
    assert logs.returncode == 0 and "succeeded" in logs.stdout and "iter 1 " in logs.stdout


def test_a_running_job_whose_coordinator_is_gone_is_told_apart_only_on_its_host():
    from pipeline.jobs import LIVE_TASK_STATES, UNANSWERED, coordinator_gone
    from pipeline.outputs import JobDocument

    attached = {"mode": "attached", "host": "h1", "pid": 42}
    running = JobDocument(status="running", coordinator=attached)
    assert coordinator_gone(running, "h1", alive=lambda pid: False)
    assert not coordinator_gone(running, "h1", alive=lambda pid: True)
    assert not coordinator_gone(running, "h2", alive=lambda pid: False)  # another machine: nothing known
    detached = JobDocument(status="running", coordinator={**attached, "mode": "detached"})
    assert not coordinator_gone(detached, "h1", alive=lambda pid: False)  # (no scheduler to ask: nothing known)
    # a detached one by its scheduler's word: a live task (run again elsewhere if its worker died), none
    # (the scheduler restarted) or a finished one, or no answer (nothing known)
    for state, gone in [*((state, False) for state in LIVE_TASK_STATES), (None, True), ("erred", True)]:
        assert coordinator_gone(detached, task_state=lambda document, state=state: state) is gone, state
    assert not coordinator_gone(detached, task_state=lambda document: UNANSWERED)
    for other in ("queued", "succeeded", "failed", "cancelled"):
        assert not coordinator_gone(JobDocument(status=other, coordinator=attached), "h1", lambda p: False)
    assert not coordinator_gone(JobDocument(status="running"), "h1", alive=lambda pid: False)  # (no coordinator yet)


@pytest.mark.cluster
def test_a_detached_job_whose_scheduler_lost_its_task_is_told_and_can_be_cancelled(tmp_path, data, capsys):
    """The scheduler restarted (or lost the coordinator's task) under a
    detached job: job.json says "running" for ever.  status says so, logs
    --follow ends with that note, and cancel marks it cancelled at once
    (status said running, --follow never ended, cancel waited in vain)."""
    from pipeline.cli import main
    from pipeline.jobs import cancel_orphaned
    from pipeline.outputs import OutputDir

    out = tmp_path / "out"
    assert main(["submit", str(write_job(tmp_path / "job.toml", data, out)), "--quiet"]) == 0
    (tmp_path / "cluster").mkdir()
    restarted = DaskCLICluster(tmp_path / "cluster", n_workers=0)  # (a scheduler that never saw the job)
    try:
        files = OutputDir(out)
        config = {**(files.read_job().config or {}), "cluster.scheduler": restarted.address}
        files.update_job(status="running", config=config, coordinator={"mode": "detached", "host": "w", "pid": 7})
        capsys.readouterr()
        assert main(["status", str(out)]) == 0
        note = f"its coordinator task is no longer on the scheduler at {restarted.address}"
        assert note in capsys.readouterr().out
        assert main(["logs", str(out), "--follow"]) == 1
        assert note in capsys.readouterr().err
        assert main(["cancel", str(out)]) == 0
        assert "cancelled (its coordinator was no longer running)" in capsys.readouterr().out
        assert files.read_job().status == "cancelled" and note in files.read_job().error
        # a job that ended while its scheduler answered (its task gone because it finished): left as it said
        stale = files.update_job(status="running", error=None)
        files.update_job(status="succeeded")
        assert not cancel_orphaned(files, stale) and files.read_job().status == "succeeded"
    finally:
        restarted.close()


def test_overwrite_never_replaces_a_job_that_is_still_running(tmp_path, data):
    """--overwrite replaces a job's files, not a job that still writes them:
    two coordinators would write one directory."""
    from pipeline.jobs import check_job_output
    from pipeline.outputs import OutputDir

    out = OutputDir(tmp_path / "out")
    out.path.mkdir()
    alive = {"mode": "attached", "host": socket.gethostname(), "pid": os.getpid()}
    out.update_job(job_id="a1", name="first", status="running", coordinator=alive)
    config = TrainConfig(data=str(data), label="y", out=str(out.path), overwrite=True)
    with pytest.raises(JobError, match="job a1 is still running"):
        check_job_output(config, None)
    out.update_job(status="failed")
    assert check_job_output(config, None)[1] is None  # (an ended one is replaced)


def test_ctrl_c_cancels_an_attached_job_and_resume_continues_it(tmp_path, data):
    from pipeline.jobs import run_job

    out = tmp_path / "out"
    config = TrainConfig(data=str(data), label="y", out=str(out), cluster=None, solver="gd", standardize=False)

    def interrupt(record):
        if record.iteration == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(config, progress=interrupt)
    document = json.loads((out / "job.json").read_text())
    assert document["status"] == "cancelled" and document["error"].startswith("interrupted (Ctrl-C)")
    resumed = run_cli("resume", out, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at iteration" in (out / "job.log").read_text()


def test_an_interruption_after_the_model_is_written_says_so(tmp_path, data, monkeypatch):
    """A SIGTERM between model.json and the job's end (its metrics, its
    status) left the job cancelled beside a complete model, saying
    "continues it": it now says that resume completes it, which it does."""
    from pipeline import jobs
    from pipeline.jobs import run_job

    out = tmp_path / "out"
    config = TrainConfig(data=str(data), label="y", out=str(out), cluster=None, solver="gd", standardize=False)
    finishing = jobs.JobRecorder._finish

    def interrupted(self, model, kernel):
        raise KeyboardInterrupt("SIGTERM")

    monkeypatch.setattr(jobs.JobRecorder, "_finish", interrupted)  # (the signal's moment, not a stand-in for a part)
    with pytest.raises(KeyboardInterrupt):
        run_job(config)
    written = Model.load(out)
    document = json.loads((out / "job.json").read_text())
    assert document["status"] == "cancelled"
    assert document["error"].startswith("interrupted (SIGTERM) after model.json was written; `pipeline resume")
    monkeypatch.setattr(jobs.JobRecorder, "_finish", finishing)
    assert run_job(config, document["job_id"]).digest == written.digest
    assert json.loads((out / "job.json").read_text())["status"] == "succeeded"


def test_a_cancelled_job_checkpoints_its_last_iteration(tmp_path, data):
    """With --checkpoint-every 1000 a Ctrl-C at iteration 5 resumed from
    iteration 0 (the last multiple): the interrupted job now writes its last
    state, and the resume continues from it to the uninterrupted model."""
    from pipeline.checkpoint import load_checkpoint
    from pipeline.jobs import run_job
    from pipeline.outputs import OutputDir

    settings = dict(data=str(data), label="y", cluster=None, solver="gd", standardize=False, checkpoint_every=1000)
    reference = run_job(TrainConfig(**settings, out=str(tmp_path / "reference")))
    out = tmp_path / "out"
    config = TrainConfig(**settings, out=str(out))

    def interrupt(record):
        if record.iteration == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(config, progress=interrupt)
    state, _ = load_checkpoint(out / "checkpoint.npz")
    assert state.solver_state.n_iter >= 4  # (the last state the job saw: it had none before at 1000)
    resumed = run_job(config, OutputDir(out).read_job().job_id)
    assert "resumed at iteration" in (out / "job.log").read_text()
    assert resumed.digest == reference.digest and resumed.loss_history == reference.loss_history


@pytest.mark.cluster
def test_killed_coordinator_resumes_to_the_identical_model(tmp_path, data, dask_cli_cluster, reference_slow):
    out = tmp_path / "out"
    job = slow_job(tmp_path / "slow.toml", data, out, f'scheduler = "{dask_cli_cluster.address}"')
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "submit", str(job), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: (out / "history.csv").exists() and len(history_rows(out)) >= 15, what="15 iterations")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert not (out / "model.json").exists() and job_status(out) == "running"
    # job.json still says running; status knows better (same host, its pid is gone)
    shown = run_cli("status", out)
    assert shown.returncode == 0 and f"pid {process.pid} on" in shown.stdout, shown.stdout
    assert "is no longer running: the job was killed" in shown.stdout and f"pipeline resume {out}" in shown.stdout
    job_id = json.loads((out / "job.json").read_text())["job_id"]
    listed = run_cli("list", "--scheduler", dask_cli_cluster.address)
    line = next(line for line in listed.stdout.splitlines() if job_id in line)
    assert "running" in line and line.endswith("(its coordinator is gone: killed)")
    followed = run_cli("logs", out, "--follow")  # ends: nothing will write to the log again
    assert followed.returncode == 1 and "is no longer running: the job was killed" in followed.stderr
    cancelled = run_cli("cancel", out)  # no one would read a request: marked cancelled, none left behind
    assert cancelled.returncode == 0 and "cancelled (its coordinator was no longer running)" in cancelled.stdout
    assert job_status(out) == "cancelled" and not (out / "cancel.request").exists()
    listed = run_cli("list", "--scheduler", dask_cli_cluster.address)  # job.json, not the stale index
    assert "cancelled" in next(line for line in listed.stdout.splitlines() if job_id in line)
    saved = load_checkpoint(out / "checkpoint.npz")[0].solver_state.n_iter
    assert 10 <= saved < reference_slow.n_iter  # history.csv is written just before the checkpoint
    resumed = run_cli("resume", out, "--scheduler", dask_cli_cluster.address, "--quiet")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.startswith("resuming job ")  # said even with --quiet
    model = Model.load(out)
    assert model.digest == reference_slow.digest
    assert model.loss_history == reference_slow.loss_history
    assert model.passes_history == reference_slow.passes_history
    assert [float(r["loss"]) for r in history_rows(out)] == reference_slow.loss_history
    assert f"resumed at iteration {saved}" in (out / "job.log").read_text()


@pytest.mark.cluster
def test_cancel_stops_a_detached_job_and_its_checkpoint_resumes(tmp_path, data, dask_cli_cluster, reference_slow):
    address = dask_cli_cluster.address
    out = tmp_path / "out"
    job = slow_job(tmp_path / "slow.toml", data, out, f'scheduler = "{address}"', name="cancel-me")
    submitted = run_cli("submit", job, "--detach")
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads((out / "job.json").read_text())["job_id"]
    wait_for(
        lambda: job_status(out) == "running" and checkpoint_iteration(out) >= 5,
        what="a checkpoint at iteration 5",
    )
    cancelled = run_cli("cancel", job_id, "--scheduler", address, timeout=60)  # (a hang guard, not a timing)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert job_status(out) == "cancelled" and "cancelled" in cancelled.stdout
    assert not (out / "model.json").exists()
    state, meta = load_checkpoint(out / "checkpoint.npz")
    assert meta["job_id"] == job_id and state.solver_state.n_iter >= 5
    shown = run_cli("status", out)  # why it stopped, not an error
    assert shown.returncode == 0 and "reason: job cancelled on request" in shown.stdout
    assert "error:" not in shown.stdout
    # other options or other data: the checkpoint is refused, nothing is overwritten
    changed = tmp_path / "changed.toml"
    changed.write_text(job.read_text().replace("max_iter = 200", "max_iter = 200\nl2 = 0.5"))
    refused = run_cli("submit", changed)
    assert refused.returncode == 1 and "CheckpointError" in refused.stderr
    assert "train.l2: 0.0 -> 0.5" in refused.stderr
    # resume the cancelled job by its id, detached again: its old cancel request
    # does not stop the new run; the uninterrupted model
    resumed = run_cli("resume", job_id, "--scheduler", address, "--detach")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.startswith(f"job {job_id} resumed on {address}")
    wait_for(lambda: job_status(out) in ("succeeded", "failed", "cancelled"), what="the resumed job's end")
    assert job_status(out) == "succeeded", (out / "job.log").read_text()
    model = Model.load(out)
    assert model.digest == reference_slow.digest
    assert model.loss_history == reference_slow.loss_history
    assert job_status(out) == "succeeded"


def test_a_resubmission_compares_class_weights_once_the_classes_resolve_them(tmp_path, data, capsys):
    """'1,5' and '0:1,1:5' are the same weights: a re-submitted unfinished
    job resumes with either spelling; other numbers are refused, naming
    them; a bad option given to resume is the command line's error."""
    from pipeline.cli import main

    out = tmp_path / "out"
    options = ["train", str(data), "--label", "y", "--in-process", "--quiet", "--out", str(out), "--name", "w"]
    options += ["--solver", "gd", "--max-iter", "3"]

    def interrupted():
        document = json.loads((out / "job.json").read_text())
        (out / "job.json").write_text(json.dumps({**document, "status": "failed"}))
        (out / "model.json").unlink()

    assert main([*options, "--class-weight", "1,5"]) == 0
    interrupted()
    capsys.readouterr()
    assert main([*options, "--class-weight", "0:1,1:5"]) == 0
    assert "resumed" in (out / "job.log").read_text()
    interrupted()
    capsys.readouterr()
    assert main([*options, "--class-weight", "0:1,1:4"]) == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith(
        "CheckpointError: the checkpoint was written with other class weights ([1.0, 5.0] -> [1.0, 4.0])"
    )
    assert not (out / "model.json").exists()
    assert main(["resume", str(out), "--workers", "-3"]) == 1
    assert capsys.readouterr().err.strip().startswith("ConfigError: --workers must be")  # (not job.json's)
    numpy_keys = TrainConfig(data=str(data), label="y", class_weight={np.int64(0): 1, np.bool_(True): np.float32(5)})
    assert numpy_keys.class_weight == {0: 1.0, True: 5.0}
    assert all(type(key) in (int, bool) for key in numpy_keys.class_weight)  # (job.json can hold them)


def test_a_checkpoint_of_other_data_or_edited_is_refused(tmp_path, data):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    out = tmp_path / "out"
    job = write_job(tmp_path / "job.toml", copy, out, extra_train="max_iter = 3")
    result = run_cli("submit", job)
    assert result.returncode == 0, result.stderr
    document = json.loads((out / "job.json").read_text())
    document["status"] = "failed"  # as if it had died: resumable
    (out / "job.json").write_text(json.dumps(document))
    (out / "model.json").unlink()
    pq.write_table(pa.table({f"f{j}": [0.5] for j in range(N_FEATURES)} | {"y": [1]}), copy / "part-9.parquet")
    refused = run_cli("resume", out, "--in-process")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "CheckpointError" in refused.stderr and "another dataset" in refused.stderr
    assert str(out / "checkpoint.npz") in refused.stderr
    assert load_checkpoint(out / "checkpoint.npz")[0].solver_state.n_iter == 3  # untouched
    (copy / "part-9.parquet").unlink()
    # one file's values rewritten in place: same files, sizes and row groups, other statistics
    rewritten = copy / "part-0.parquet"
    table = pq.read_table(rewritten)
    layout = pq.ParquetFile(rewritten).metadata
    size = rewritten.stat().st_size
    import pyarrow.compute as pc

    doubled = table.set_column(0, "f0", pc.multiply(table.column("f0"), 2.0))
    pq.write_table(doubled, rewritten, row_group_size=layout.row_group(0).num_rows)
    assert (
        rewritten.stat().st_size == size and pq.ParquetFile(rewritten).metadata.num_row_groups == layout.num_row_groups
    )
    refused = run_cli("resume", out, "--in-process")
    assert refused.returncode == 1 and "another dataset" in refused.stderr, refused.stderr
    pq.write_table(table, rewritten, row_group_size=layout.row_group(0).num_rows)  # (its values back)
    # the original data again, but a checkpoint edited after it was written
    checkpoint = out / "checkpoint.npz"
    with np.load(checkpoint, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["coef"][0] += 0.5
    with open(checkpoint, "wb") as handle:
        np.savez(handle, **arrays)
    refused = run_cli("resume", out, "--in-process")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"CheckpointError: checkpoint {checkpoint} fails its integrity check" in refused.stderr
    assert not (out / "model.json").exists()


def test_a_cancel_request_outlives_a_detached_coordinators_rerun(tmp_path, data):
    """``pipeline cancel`` while the worker that ran a detached job's
    coordinator was dying: the scheduler runs the coordinator again, and it
    stops at once (the request was withdrawn, and the job ran to its end); an
    attached resume still withdraws an earlier run's request."""
    from pipeline.errors import JobCancelled
    from pipeline.jobs import request_cancel, run_job
    from pipeline.outputs import OutputDir
    from pipeline.solvers import SolverOptions

    out = tmp_path / "out"
    config = TrainConfig(data=str(data), label="y", out=str(out), options=SolverOptions(max_iter=3))
    run_job(config, "j1")
    outputs = OutputDir(out)
    (out / "model.json").unlink()
    (out / "checkpoint.npz").unlink()  # (it would start again from iteration 0: passes to cancel)
    outputs.update_job(status="running", coordinator={"mode": "detached"})
    request_cancel(outputs)
    with pytest.raises(JobCancelled):
        run_job(config, "j1", coordinator="detached")
    assert outputs.read_job().status == "cancelled" and not (out / "model.json").exists()
    outputs.update_job(status="running", coordinator={"mode": "attached"})
    request_cancel(outputs)  # (an earlier run's)
    assert run_job(config, "j1").n_iter == 3 and not outputs.cancel_requested()


def test_a_resume_from_a_checkpoint_needs_no_init_model(tmp_path, data):
    """The init model of a job that has a checkpoint is not read again: moved
    away, it blocked the resume (a ModelFileError before any pass)."""
    from pipeline.jobs import run_job
    from pipeline.outputs import OutputDir
    from pipeline.solvers import SolverOptions

    start = tmp_path / "start"
    run_job(TrainConfig(data=str(data), label="y", out=str(start), options=SolverOptions(max_iter=1)), "s1")
    out = tmp_path / "out"
    config = TrainConfig(data=str(data), label="y", out=str(out), init=str(start), options=SolverOptions(max_iter=3))
    finished = run_job(config, "j1")
    OutputDir(out).update_job(status="failed")
    (out / "model.json").unlink()
    start.rename(tmp_path / "moved")
    # detached too: the checks before the scheduler pass (then the scheduler is reached for)
    from pipeline.cluster import ClusterSpec
    from pipeline.errors import ClusterError
    from pipeline.jobs import submit_detached

    nowhere = ClusterSpec(scheduler=f"tcp://127.0.0.1:{free_port()}", connect_timeout_s=1)
    with pytest.raises(ClusterError):
        submit_detached(dataclasses.replace(config, cluster=nowhere), "j1")
    assert run_job(config, "j1").digest == finished.digest
    # without a checkpoint the job starts again from its init model: that one is needed
    OutputDir(out).update_job(status="failed")
    (out / "model.json").unlink()
    (out / "checkpoint.npz").unlink()
    with pytest.raises(PipelineError, match="start"):
        run_job(config, "j1")
    assert OutputDir(out).read_job().status == "failed"


def test_a_second_process_running_a_job_in_the_same_directory_is_refused(tmp_path, data):
    """Two resumes of one job started at once both ran, writing one directory
    together (job.json's pid check sees a coordinator only once it has
    written it there): the directory is held while a job runs in it."""
    from pipeline.errors import JobError
    from pipeline.jobs import run_job
    from pipeline.outputs import OutputDir
    from pipeline.solvers import SolverOptions

    out = tmp_path / "out"
    config = TrainConfig(data=str(data), label="y", out=str(out), options=SolverOptions(max_iter=3))
    finished = run_job(config, "j1")
    OutputDir(out).update_job(status="failed")  # (as if it had died: resumable)
    (out / "model.json").unlink()
    files = {path.name: path.read_bytes() for path in out.iterdir()}
    # another run holding the directory (a lock of another open file description, as another process's)
    with OutputDir(out).exclusive():
        with pytest.raises(JobError, match="job j1 in .* is being run by another process"):
            run_job(config, "j1")
        # a detached resume too: refused before it reaches for the scheduler (it queued the job anew)
        from pipeline.cluster import ClusterSpec
        from pipeline.jobs import submit_detached

        nowhere = ClusterSpec(scheduler=f"tcp://127.0.0.1:{free_port()}", connect_timeout_s=1)
        with pytest.raises(JobError, match="is being run by another process"):
            submit_detached(dataclasses.replace(config, cluster=nowhere), "j1")
        assert {path.name: path.read_bytes() for path in out.iterdir()} == files  # (nothing read or written)
    # what a run killed between a write and its rename left goes with the resume (a user's file stays)
    left = [out / f".checkpoint.npz.{'a' * 32}.tmp", out / f".model.json.{'b' * 32}.tmp"]
    for path in [*left, out / ".notes.tmp"]:
        path.write_bytes(b"half")
    assert run_job(config, "j1").digest == finished.digest  # (released when that run ends)
    assert not any(path.exists() for path in left) and (out / ".notes.tmp").exists()
    # a job in a directory it makes holds it from then on (it held nothing: the directory was not there)
    fresh = tmp_path / "fresh"
    seen: list[bool] = []

    def try_to_take(record) -> None:
        if record.iteration == 2:
            try:
                OutputDir(fresh).exclusive().take()
            except JobError:
                seen.append(True)
            else:
                seen.append(False)

    run_job(dataclasses.replace(config, out=str(fresh)), progress=try_to_take)
    assert seen == [True]


def test_a_resume_without_its_checkpoint_says_it_starts_again(tmp_path, data):
    """A job that got somewhere but whose checkpoint is gone restarts from
    iteration 0 -- to the same model -- and says so, in the output and the log."""
    out = tmp_path / "out"
    job = write_job(tmp_path / "job.toml", data, out, extra_train="max_iter = 3")
    assert run_cli("submit", job).returncode == 0
    finished = Model.load(out)
    document = json.loads((out / "job.json").read_text())
    assert document["iteration"] == 3
    document["status"] = "failed"  # as if it had died: resumable
    (out / "job.json").write_text(json.dumps(document))
    (out / "model.json").unlink()
    (out / "checkpoint.npz").unlink()
    resumed = run_cli("resume", out, "--in-process")
    assert resumed.returncode == 0, resumed.stderr
    said = f"had reached iteration 3 but {out / 'checkpoint.npz'} holds no checkpoint"
    assert said in resumed.stdout and "starts again from iteration 0" in resumed.stdout
    assert said in (out / "job.log").read_text()
    assert Model.load(out).digest == finished.digest
    # another cache mode at resume (a job of cache.mode = memory on a smaller cluster): the same model
    document = json.loads((out / "job.json").read_text())
    (out / "job.json").write_text(json.dumps({**document, "status": "failed"}))
    (out / "model.json").unlink()
    resumed = run_cli("resume", out, "--in-process", "--cache", "none")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "job.json").read_text())["config"]["cache.mode"] == "none"
    assert Model.load(out).digest == finished.digest


def test_resume_and_status_of_an_unknown_job(tmp_path):
    result = run_cli("status", "0123456789ab")
    assert result.returncode == 1 and "JobNotFoundError" in result.stderr
    result = run_cli("resume", tmp_path)
    assert result.returncode == 1 and "JobNotFoundError" in result.stderr


def test_a_malformed_scheduler_address_is_one_line(tmp_path):
    """status/list with a scheduler address Dask cannot parse: the error's
    one line and the exit (the client half built by the failed connection
    was left to close at the interpreter's exit: 20 s, then a traceback)."""
    for command in (["status", "0123456789ab"], ["list"]):
        result = run_cli(*command, "--scheduler", "nonsense")
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip().splitlines() == [
            "ClusterError: no Dask scheduler answered at 'nonsense': missing port number in address 'nonsense'"
        ]


def test_train_config_default_matches_job_defaults():
    config = config_from_mapping({"data.url": "/x", "data.label": "y"})
    assert config == TrainConfig(data="/x", label="y")


@pytest.mark.cluster
def test_a_detached_job_survives_losing_its_coordinators_worker(tmp_path, data, dask_cli_cluster, reference_slow):
    """SIGKILL the worker process that runs the coordinator: the scheduler runs
    the coordinator task again elsewhere, it resumes from the checkpoint, and
    the model is the uninterrupted one."""
    address = dask_cli_cluster.address
    out = tmp_path / "out"
    job = slow_job(tmp_path / "slow.toml", data, out, f'scheduler = "{address}"', name="lose-worker")
    assert run_cli("submit", job, "--detach").returncode == 0
    wait_for(
        lambda: job_status(out) == "running" and checkpoint_iteration(out) >= 9,
        what="a checkpoint at iteration 9",
    )
    first = json.loads((out / "job.json").read_text())["coordinator"]["pid"]
    assert first not in (os.getpid(),) and first in dask_cli_cluster.worker_pids()
    os.kill(first, signal.SIGKILL)
    wait_for(
        lambda: job_status(out) in ("succeeded", "failed", "cancelled"),
        timeout=180,
        poll=0.5,
        what="the job to finish after the worker loss",
    )
    document = json.loads((out / "job.json").read_text())
    assert document["status"] == "succeeded", document.get("error")
    assert document["coordinator"]["pid"] != first and document["resumed_from"] >= 9
    model = Model.load(out)
    assert model.digest == reference_slow.digest
    assert model.loss_history == reference_slow.loss_history
    dask_cli_cluster.wait_for_workers(2)  # the nanny restarted the killed worker


def test_a_job_whose_coordinator_is_alive_is_not_started_twice(tmp_path, data):
    out = tmp_path / "out"
    job = write_job(tmp_path / "job.toml", data, out, extra_train="max_iter = 3")
    assert run_cli("submit", job).returncode == 0
    document = json.loads((out / "job.json").read_text())
    (out / "model.json").unlink()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:  # as if an attached coordinator were still at work in that process
        document.update(status="running", coordinator={**document["coordinator"], "pid": sleeper.pid})
        (out / "job.json").write_text(json.dumps(document))
        refused = run_cli("resume", out, "--in-process")
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert f"JobError: job {document['job_id']} is still running (coordinator pid {sleeper.pid}" in refused.stderr
        assert not (out / "model.json").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    resumed = run_cli("resume", out, "--in-process")  # the coordinator is gone: resume
    assert resumed.returncode == 0, resumed.stderr


def test_a_cancel_request_for_a_queued_job_is_kept(tmp_path, data):
    from pipeline.errors import JobCancelled
    from pipeline.jobs import run_job

    out = tmp_path / "out"
    out.mkdir()
    (out / "job.json").write_text(json.dumps({"job_id": "q1", "name": "queued", "status": "queued"}))
    (out / "cancel.request").write_text("cancelled while queued\n")
    config = load_job(write_job(tmp_path / "job.toml", data, out, name="queued"))
    with pytest.raises(JobCancelled):
        run_job(config, "q1")
    assert job_status(out) == "cancelled" and not (out / "model.json").exists()


# --------------------------------------------------------------------------- what an old job leaves behind


def _stopped_job(out: Path, data: Path, capsys, *extra: str) -> list[str]:
    """A short in-process job in ``out``, then marked as stopped before its end
    (status ``cancelled``, no model): the command line that ran it."""
    from pipeline.cli import main

    options = ["train", str(data), "--label", "y", "--in-process", "--quiet", "--out", str(out)]
    options += ["--solver", "gd", "--max-iter", "3", *extra]
    assert main(options) == 0
    document = json.loads((out / "job.json").read_text())
    (out / "job.json").write_text(json.dumps({**document, "status": "cancelled"}))
    (out / "model.json").unlink()
    capsys.readouterr()
    return options


def test_a_new_job_replaces_an_old_jobs_cancel_request_and_checkpoint_whatever_they_hold(tmp_path, data, capsys):
    """--overwrite starts a new job: the old job's cancel request does not
    cancel it in its first pass (it did: exit 4, nothing written), and its
    checkpoint, damaged here, is replaced, not read (it was a CheckpointError)."""
    from pipeline.cli import main

    out = tmp_path / "out"
    options = _stopped_job(out, data, capsys)
    old_id = json.loads((out / "job.json").read_text())["job_id"]
    (out / "cancel.request").write_text("{}")
    (out / "checkpoint.npz").write_bytes(b"not a checkpoint")
    assert main([*options, "--overwrite"]) == 0, capsys.readouterr().err
    document = json.loads((out / "job.json").read_text())
    assert document["status"] == "succeeded" and document["job_id"] != old_id
    assert not (out / "cancel.request").exists() and load_checkpoint(out / "checkpoint.npz")[1]["job_id"] != old_id


def test_a_detached_coordinator_keeps_its_own_files_under_overwrite(tmp_path, data):
    """The coordinator of ``submit --detach --overwrite`` finds its own queued
    job in the directory: a cancel request made while it was queued stands,
    and the submission's log line stays (it took the job for another one and
    cleared both)."""
    from pipeline.errors import JobCancelled
    from pipeline.jobfile import config_to_mapping
    from pipeline.jobs import check_job_output, run_job
    from pipeline.outputs import QUEUED, OutputDir, now

    out = tmp_path / "out"
    config = TrainConfig(data=str(data), label="y", out=str(out), cluster=None, overwrite=True)
    job_id, _ = check_job_output(config, None)
    outputs = OutputDir(out)  # what submit_detached writes, then a cancel while queued
    outputs.path.mkdir()
    outputs.update_job(job_id=job_id, status=QUEUED, out=str(out), config=config_to_mapping(config), submitted_at=now())
    outputs.log(f"job {job_id} submitted (detached)")
    outputs.request_cancel(by="test")
    with pytest.raises(JobCancelled):
        run_job(config, job_id, coordinator="detached")
    assert outputs.read_job().status == "cancelled"
    assert f"job {job_id} submitted (detached)" in (out / "job.log").read_text()


def test_a_detached_submission_checks_the_init_model_and_the_checkpoint_before_writing(tmp_path, data, capsys):
    """What the coordinator would refuse is refused by ``submit --detach``
    itself, before anything is written or any scheduler is reached (its
    coordinator failed instead, and job.json said ``queued`` for ever)."""
    from pipeline.cli import main

    out = tmp_path / "out"
    job = write_job(tmp_path / "job.toml", data, out, name="again", extra_train="max_iter = 3")
    assert main(["submit", str(job), "--quiet"]) == 0
    document = json.loads((out / "job.json").read_text())
    (out / "job.json").write_text(json.dumps({**document, "status": "cancelled"}))  # stopped: resumable
    (out / "model.json").unlink()
    capsys.readouterr()
    before = (out / "job.json").read_text()
    submit = ["submit", str(job), "--scheduler", f"tcp://127.0.0.1:{free_port()}", "--detach"]
    assert main([*submit, "--l2", "0.5"]) == 1
    assert capsys.readouterr().err.startswith("CheckpointError: checkpoint ")
    assert main([*submit, "--init", str(tmp_path / "no-model")]) == 1  # (another init: another model option)
    assert capsys.readouterr().err.startswith("CheckpointError: checkpoint ")
    # from a checkpoint the init model is not read; without one, the job starts again from it
    (out / "checkpoint.npz").rename(tmp_path / "checkpoint.npz")
    assert main([*submit, "--init", str(tmp_path / "no-model")]) == 1
    assert capsys.readouterr().err.startswith("ModelFileError: ")
    (tmp_path / "checkpoint.npz").rename(out / "checkpoint.npz")
    assert (out / "job.json").read_text() == before
    assert main([*submit, "--connect-timeout", "1"]) == 1  # the checks pass: then the scheduler is reached for
    assert capsys.readouterr().err.startswith("ClusterError: ")


def test_a_detached_job_that_fails_before_it_runs_is_failed_not_queued(tmp_path, data):
    from pipeline.errors import ModelFileError
    from pipeline.jobs import _fail_queued
    from pipeline.outputs import QUEUED, RUNNING, OutputDir, now

    out = tmp_path / "out"
    config = TrainConfig(data=str(data), label="y", out=str(out))
    outputs = OutputDir(out)
    outputs.path.mkdir()
    outputs.update_job(job_id="j1", status=QUEUED, out=str(out), submitted_at=now())
    _fail_queued(config, "j1", ModelFileError("model/model.json: no such file"), None)
    document = outputs.read_job()
    assert document.status == "failed" and document.error == "ModelFileError: model/model.json: no such file"
    assert "job j1 failed: ModelFileError" in (out / "job.log").read_text()
    outputs.update_job(status=RUNNING, error=None)  # a running job's recorder says why itself
    _fail_queued(config, "j1", RuntimeError("late"), None)
    assert outputs.read_job().status == RUNNING
    _fail_queued(config, "j2", RuntimeError("another job's"), None)
    assert outputs.read_job().status == RUNNING


def test_a_job_run_again_that_fails_before_its_first_pass_says_failed(tmp_path, data):
    """A detached job's coordinator run again after its worker died (job.json:
    running), or a resume, failing before its first pass (here: its checkpoint
    damaged): job.json says failed, with the error, not running for ever."""
    from pipeline.errors import CheckpointError
    from pipeline.jobs import run_job
    from pipeline.outputs import OutputDir
    from pipeline.solvers import SolverOptions

    out = tmp_path / "out"
    config = TrainConfig(data=str(data), label="y", out=str(out), options=SolverOptions(max_iter=2))
    run_job(config, "j1")
    outputs = OutputDir(out)
    for coordinator in ("detached", "attached"):
        outputs.update_job(status="running", error=None, coordinator={"mode": coordinator})
        (out / "model.json").unlink(missing_ok=True)
        outputs.checkpoint.write_bytes(b"PK\x03\x04 damaged")
        with pytest.raises(CheckpointError):
            run_job(config, "j1", coordinator=coordinator)
        document = outputs.read_job()
        assert document.status == "failed" and document.error.startswith("CheckpointError: "), document
        assert "job j1 failed: CheckpointError" in (out / "job.log").read_text().splitlines()[-1]
    # a new job that fails before it runs writes nothing
    fresh = tmp_path / "fresh"
    with pytest.raises(PipelineError):
        run_job(dataclasses.replace(config, out=str(fresh), init=str(tmp_path / "missing")), "j2")
    assert not fresh.exists()


@pytest.mark.parametrize("pid", ["4242", 2**70, -1, 0, 1.5])
def test_a_coordinator_pid_that_cannot_be_a_process_says_nothing(tmp_path, data, capsys, pid):
    """A hand-edited pid in job.json: no traceback (a str was a TypeError, a
    huge one an OverflowError) and no claim (-1 made os.kill probe every process)."""
    from pipeline.cli import main
    from pipeline.jobs import coordinator_gone, refuse_if_running
    from pipeline.outputs import OutputDir

    out = tmp_path / "out"
    options = _stopped_job(out, data, capsys)
    document = json.loads((out / "job.json").read_text())
    coordinator = {"mode": "attached", "host": socket.gethostname(), "pid": pid}
    (out / "job.json").write_text(json.dumps({**document, "status": "running", "coordinator": coordinator}))
    running = OutputDir(out).read_job()
    assert not coordinator_gone(running)
    refuse_if_running(running)  # (nothing known: not refused)
    assert main(["status", str(out)]) == 0
    assert main([*options, "--overwrite"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_job_generates_its_data_into_an_empty_directory(tmp_path):
    """An empty directory at data.url was taken for the dataset (and refused:
    no data files), so a job whose generation failed could never generate."""
    from pipeline.jobs import run_job

    (tmp_path / "data").mkdir()
    generate = {"rows": 300, "features": 2, "seed": 1}
    config = TrainConfig(
        data=str(tmp_path / "data"), label="y", generate=generate, cluster=None, out=str(tmp_path / "o")
    )
    assert run_job(config).n_samples == 300


def test_a_job_naming_columns_the_generated_data_lacks_is_refused_before_generating(tmp_path):
    """data.generate writes f0 .. f{d-1} and y: a job naming another label
    generated the dataset, then failed with ColumnNotFoundError and left it
    behind; now refused first, nothing written.  Existing data is not
    generated, so the check is not made there."""
    from pipeline.errors import ConfigError
    from pipeline.jobs import run_job

    generate = {"rows": 300, "features": 3, "seed": 1}
    cases = {
        "data.label": {"label": "target"},
        "data.features": {"label": "y", "features": ("f0", "f3")},
        "data.weight": {"label": "y", "weight": "w"},
        "data.validation_key": {"label": "y", "validation_fraction": 0.2, "validation_key": "id"},
        "data.categorical": {"label": "y", "categorical": ("f0",)},
    }
    for key, names in cases.items():
        config = TrainConfig(
            data=str(tmp_path / "data"), generate=generate, cluster=None, out=str(tmp_path / "o"), **names
        )
        with pytest.raises(ConfigError, match=rf"^{key}: .*(not a column of|none categorical).*nothing was generated"):
            run_job(config)
        assert not (tmp_path / "data").exists() and not (tmp_path / "o").exists()
    good = TrainConfig(
        data=str(tmp_path / "data"),
        label="y",
        features=("f0", "f2"),
        generate=generate,
        cluster=None,
        out=str(tmp_path / "o"),
    )
    assert run_job(good).n_samples == 300


def test_an_init_model_that_is_not_there_is_blamed_on_the_key_that_named_it(tmp_path, data, capsys):
    from pipeline.cli import main

    job = write_job(tmp_path / "job.toml", data, tmp_path / "out", extra_train=f'init = "{tmp_path / "none"}"')
    assert main(["submit", str(job), "--quiet"]) == 1
    assert capsys.readouterr().err.startswith(f"ModelFileError: {job}: train.init: {tmp_path / 'none' / 'model.json'}")
    assert main(["submit", str(job), "--quiet", "--init", str(tmp_path / "other")]) == 1  # the command line's
    assert capsys.readouterr().err.startswith(f"ModelFileError: {tmp_path / 'other' / 'model.json'}")


def test_a_replacing_job_that_stops_leaves_the_model_with_its_metrics(tmp_path, data):
    """An --overwrite job that is cancelled leaves the earlier model.json (as
    documented) and now its metrics.json and report.html too (they were
    cleared at the start, so the report said it had no metrics); a
    successful one replaces the model and takes them away."""
    from pipeline.errors import JobCancelled
    from pipeline.jobs import run_job
    from pipeline.outputs import OutputDir
    from pipeline.report import write_report
    from pipeline.solvers import SolverOptions

    out = tmp_path / "out"
    first = TrainConfig(data=str(data), label="y", cluster=None, out=str(out), validation_fraction=0.25)
    run_job(first)
    write_report(str(out))
    kept = {name: (out / name).read_bytes() for name in ("model.json", "metrics.json", "report.html")}
    outputs = OutputDir(out)
    slow = SolverOptions(max_iter=50, tol=0.0, ftol=0.0)
    again = dataclasses.replace(first, validation_fraction=0.0, overwrite=True, solver="gd", options=slow)

    def cancel_at_two(record):
        if record.iteration == 2:
            outputs.request_cancel(by="test")

    with pytest.raises(JobCancelled):
        run_job(again, progress=cancel_at_two)
    assert {name: (out / name).read_bytes() for name in kept} == kept
    run_job(dataclasses.replace(again, options=SolverOptions(max_iter=3)))
    assert (out / "model.json").read_bytes() != kept["model.json"]
    assert not (out / "metrics.json").exists() and not (out / "report.html").exists()


def test_the_detached_coordinator_marks_an_early_failure(tmp_path, data, monkeypatch):
    """``coordinate`` (a worker's task) records a failure of ``run_job`` before
    the job ran: the wiring of :func:`_fail_queued`, with the cluster's
    ``worker_client`` and the failing run as fakes."""
    import contextlib

    import distributed

    from pipeline import jobs
    from pipeline.errors import ModelFileError
    from pipeline.outputs import QUEUED, OutputDir, now

    out = tmp_path / "out"
    config = TrainConfig(data=str(data), label="y", out=str(out))
    outputs = OutputDir(out)
    outputs.path.mkdir()
    outputs.update_job(job_id="j9", status=QUEUED, out=str(out), submitted_at=now())

    def failing(*args, **kwargs):
        raise ModelFileError("init/model.json: no such file")

    monkeypatch.setattr(distributed, "worker_client", contextlib.nullcontext)
    monkeypatch.setattr(jobs, "run_job", failing)
    with pytest.raises(ModelFileError):
        jobs.coordinate(config, "j9")
    assert outputs.read_job().status == "failed" and "ModelFileError: init/model.json" in outputs.read_job().error


def _start_gd_job(data, out, *extra):
    """An attached in-process job of a few seconds, printing every iteration."""
    command = [sys.executable, "-m", "pipeline", "train", str(data), "--label", "y", "--in-process"]
    command += ["--solver", "gd", "--tol", "0", "--ftol", "0", "--max-iter", "400", "--out", str(out), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_cancels_an_attached_job_as_ctrl_c_does(tmp_path, data):
    """``docker stop``, systemd and ``timeout`` send SIGTERM: the job ends
    cancelled and resumable, not ``running`` with no process behind it."""
    out = tmp_path / "out"
    process = _start_gd_job(data, out)
    try:
        assert process.stdout.readline().startswith("training on")
        wait_for(lambda: checkpoint_iteration(out) >= 3, what="3 iterations")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143 and "Traceback" not in stderr and "interrupted (SIGTERM)" in stderr
    document = json.loads((out / "job.json").read_text())
    assert document["status"] == "cancelled" and document["error"].startswith("interrupted (SIGTERM)")


@pytest.mark.cluster
def test_ctrl_c_and_sigterm_on_an_embedded_cluster_are_one_line(tmp_path, data):
    """A terminal's Ctrl-C reaches the whole process group, the embedded
    workers too: each printed a KeyboardInterrupt traceback, and the client's
    interrupted gather two more (distributed's AllExit), before the CLI's one
    line.  A SIGTERM while the cluster starts left a half-started cluster
    whose clean-up at exit failed with a traceback."""

    def start(out):
        command = [sys.executable, "-m", "pipeline", "train", str(data), "--label", "y", "--workers", "2"]
        command += ["--solver", "gd", "--tol", "0", "--ftol", "0", "--max-iter", "400", "--out", str(out)]
        return subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # (as a terminal's foreground job)
        )  # fmt: skip

    out = tmp_path / "ctrl-c"
    process = start(out)
    try:
        assert process.stdout.readline().startswith("training on")
        wait_for(lambda: checkpoint_iteration(out) >= 3, what="3 iterations")
        os.killpg(process.pid, signal.SIGINT)  # (the whole group, as a terminal sends it)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130 and stderr.strip() == "interrupted", stderr
    assert json.loads((out / "job.json").read_text())["status"] == "cancelled"
    out = tmp_path / "sigterm"
    process = start(out)
    try:
        assert process.stdout.readline().startswith("training on")  # (the cluster starts next)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 143 and stderr.strip() == "interrupted (SIGTERM)", stderr


@pytest.mark.parametrize("quiet", [False, True])
def test_a_reader_that_goes_away_does_not_stop_the_job(tmp_path, data, quiet):
    """``pipeline train ... | head``: the printing stops, the job goes on to
    its model, and the command's status is the job's (quiet: the first line
    to meet the closed pipe is the last one, "model written to")."""
    out = tmp_path / "out"
    process = _start_gd_job(data, out, *(["--quiet"] if quiet else []))
    try:
        assert process.stdout.readline().startswith("training on")
        process.stdout.close()  # (the next line printed meets a closed pipe)
        stderr = process.stderr.read()
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert json.loads((out / "job.json").read_text())["status"] == "succeeded"
    assert Model.load(out).n_iter == 400


def test_the_cli_leaves_the_sigterm_handler_as_it_found_it(tmp_path, capsys):
    """``main`` turns SIGTERM into a cancel while it runs, and only then (a
    process that calls it, a test's, keeps its own handler)."""
    from pipeline.cli import main

    before = signal.getsignal(signal.SIGTERM)
    assert main(["status", str(tmp_path / "no-such-job")]) == 1
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_job_file_without_an_output_is_named_by_its_file(tmp_path, data, capsys):
    """No ``output.dir`` and no ``name``: under an output root the job is the
    file's name and so is its directory; without a root, a JobFileError that
    names the file (a bare JobError before, and the root was not used)."""
    job = tmp_path / "nightly.toml"
    job.write_text(f'[data]\nurl = "{data}"\nlabel = "y"\n[cluster]\nin_process = true\n')
    from pipeline.cli import main

    assert main(["submit", str(job), "--quiet"]) == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith(f"JobFileError: {job}: a job needs an output directory"), stderr
    root = tmp_path / "root"
    root.mkdir()
    result = run_cli("submit", job, "--quiet", "--output-root", root)
    assert result.returncode == 0, result.stderr
    document = json.loads((root / "nightly" / "job.json").read_text())
    assert document["name"] == "nightly" and document["status"] == "succeeded"


@pytest.mark.cluster
def test_a_detached_submit_the_scheduler_never_takes_is_an_error_not_queued(tmp_path, data, monkeypatch):
    """The coordinator task not held by the scheduler in time: submit said
    nothing and job.json stayed ``queued`` for ever; now the task is
    cancelled, the job failed, and submit a ClusterError."""
    from distributed import Client
    from distributed.core import Status

    import pipeline.jobs
    from pipeline.cluster import ClusterSpec
    from pipeline.errors import ClusterError
    from pipeline.jobs import submit_detached

    monkeypatch.setattr(pipeline.jobs, "SUBMIT_WAIT_S", 0.0)  # (no time to ask: never held)
    cluster = DaskCLICluster(tmp_path, n_workers=1)
    try:
        cluster.wait_for_workers(1)
        with Client(cluster.address, timeout=10) as client:
            # paused: the worker starts no task, so the cancelled one never runs
            client.run(lambda dask_worker: setattr(dask_worker, "status", Status.paused))
            out = tmp_path / "out"
            spec = ClusterSpec(scheduler=cluster.address)
            config = TrainConfig(data=str(data), label="y", out=str(out), cluster=spec)
            with pytest.raises(ClusterError, match="did not take the job's coordinator within 0 s"):
                submit_detached(config)
            document = json.loads((out / "job.json").read_text())
            assert document["status"] == "failed" and document["error"].startswith("ClusterError: the scheduler")
            assert not client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks))
    finally:
        cluster.close()


def test_a_job_that_an_earlier_version_stored_with_an_empty_hashed_list_still_resumes(tmp_path, data):
    """``hashed = []`` (accepted before, hashing no column; refused now) read
    back from job.json and compared with a checkpoint's options means no
    hashing: such a job resumes, to the same model, instead of failing."""
    from pipeline.jobs import _comparable
    from pipeline.outputs import OutputDir

    outputs = OutputDir(tmp_path / "out")
    outputs.path.mkdir()
    stored = {"data.url": str(data), "data.label": "y", "data.hash_buckets": 4, "data.hashed": []}
    outputs.claim_job(job_id="a" * 12, config=stored)
    config = outputs.training_config()
    assert config.hash_buckets is None and config.hashed is None
    today = {"data.url": str(data), "data.label": "y"}
    assert _comparable(stored) == _comparable(today)
    assert _comparable({**stored, "data.hashed": ["c"]}) != _comparable(today)  # (hashing something differs)


def test_resume_on_another_cluster_keeps_the_jobs_other_cluster_settings(tmp_path, data):
    """resume --workers / --scheduler / --in-process replace where the job
    runs as the same options over a job file do: the job's timeouts stay
    (and an embedded cluster's threads and memory limit with --workers, a
    scheduler's TLS files with --scheduler); they were all reset to the
    defaults, and written so to job.json."""
    from pipeline.outputs import OutputDir

    outputs = OutputDir(tmp_path / "out")
    outputs.path.mkdir()
    embedded = {
        "cluster.workers": 1,
        "cluster.threads_per_worker": 2,
        "cluster.memory_limit": "1GiB",
        "cluster.connect_timeout": 4.0,
        "cluster.stall_timeout": 7.0,
    }
    outputs.claim_job(job_id="a" * 12, config={"data.url": str(data), "data.label": "y", **embedded})
    cluster = outputs.training_config({"cluster.workers": 3}).cluster
    assert (cluster.n_workers, cluster.threads_per_worker, cluster.memory_limit) == (3, 2, "1GiB")
    assert (cluster.connect_timeout_s, cluster.stall_timeout_s) == (4.0, 7.0)
    cluster = outputs.training_config({"cluster.scheduler": "tcp://127.0.0.1:8786"}).cluster
    assert cluster.scheduler == "tcp://127.0.0.1:8786" and cluster.threads_per_worker == 1
    assert (cluster.connect_timeout_s, cluster.stall_timeout_s) == (4.0, 7.0)
    assert outputs.training_config({"cluster.in_process": True}).cluster is None


@pytest.mark.parametrize(
    "lines, expected",
    [
        ('features = ["f0", "f0"]', "JobFileError: {job}: data.features: feature 'f0' is listed more than once"),
        ('features = ["y"]', "JobFileError: {job}: data.features: the label column 'y' is also listed as a feature"),
        ('weight = "y"', "JobFileError: {job}: data.weight: the label column 'y' cannot also be the weight column"),
        (
            'features = ["f0"]\nweight = "f0"',
            "JobFileError: {job}: data.weight: the weight column 'f0' is also listed as a feature",
        ),
        ('categorical = ["nope"]', "JobFileError: {job}: data.categorical: categorical column 'nope' is not among"),
        (
            'validation_fraction = 0.2\nvalidation_key = "nope"',
            "ColumnNotFoundError: {job}: data.validation_key: validation key column 'nope' not found",
        ),
    ],
)
def test_a_job_files_columns_that_the_data_refuse_name_the_file_and_key(tmp_path, data, capsys, lines, expected):
    """A job file's column settings that the data (or each other) refuse
    name the file and the key, as its label does (they were the bare
    ConfigError, or named neither)."""
    job = write_job(tmp_path / "job.toml", data, tmp_path / "out")
    job.write_text(job.read_text().replace('label = "y"', f'label = "y"\n{lines}'))
    assert main(["submit", str(job), "--quiet"]) == 1
    assert capsys.readouterr().err.startswith(expected.format(job=job))
    assert not (tmp_path / "out").exists()


def test_a_job_file_whose_name_cannot_be_the_jobs_name_says_so(tmp_path, data, capsys):
    """Without a 'name' key the file's name is the job's: one that cannot be
    a job name is the file's error, not --name's (which was not given)."""
    long = tmp_path / f"{'j' * 130}.toml"
    for root in (True, False):
        output = f'root = "{tmp_path / "runs"}"' if root else f'dir = "{tmp_path / "out"}"'
        long.write_text(f'[data]\nurl = "{data}"\nlabel = "y"\n[output]\n{output}\n')
        assert main(["submit", str(long), "--in-process", "--quiet"]) == 1
        error = capsys.readouterr().err
        assert error.startswith(f"JobFileError: {long}: the job has no 'name', and the file's name cannot be"), error
        assert "a job name is 1 to 128 characters" in error and "set 'name' in the file (or --name)" in error
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_a_job_file_read_from_a_pipe_is_read_once(tmp_path, data):
    """A job file on standard input (a pipe, which cannot be read again):
    its value that the data refuse is the file's error (the file was read a
    second time to find its keys, empty then, and the error was put on
    --class-weight, which was not given)."""
    out = tmp_path / "out"
    text = f'[data]\nurl = "{data}"\nlabel = "y"\n[train]\nclass_weight = [1, 2, 3]\n[output]\ndir = "{out}"\n'
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "submit", "/dev/stdin", "--in-process"],
        input=text,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("JobFileError: /dev/stdin: train.class_weight: class_weight has 3 weights; expected 2")
    ), result.stderr
