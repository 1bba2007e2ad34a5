"""Every error case through the real CLI, in a subprocess.

Each case runs ``python -m pipeline train ... --in-process`` (fast: no Dask
cluster) and checks the CLI contract: exit status 1, ``ErrorName: message`` at
the start of a stderr line, a message naming the file (and the column, row
group and dataset row where they apply), no traceback, and no ``model.json``
left behind.  One case runs on a real one-worker cluster to show an error
raised inside a cluster task reaches the CLI under the same name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import free_port

from pipeline.errors import OutputError

#: runs the CLI in subprocesses: left out of the fast loop (-m "not cluster and not slow")
pytestmark = pytest.mark.slow

EXIT_ERROR = 1

# --------------------------------------------------------------------------- helpers


def write(path, table: pa.Table, row_group_size: int | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def good_table(n: int = 10, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "a": rng.standard_normal(n),
            "b": rng.standard_normal(n),
            "y": pa.array(rng.integers(0, 2, n).astype(np.int8)),
        }
    )


def good_dataset(root: Path, files: int = 2, n: int = 10, row_group_size: int = 4) -> list[Path]:
    """``files`` files of ``n`` rows, row groups of ``row_group_size`` (4, 4, 2 by default)."""
    return [write(root / f"part-{i}.parquet", good_table(n, seed=i), row_group_size) for i in range(files)]


def with_column(table: pa.Table, name: str, values) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def run_cli(*args: str, timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def train(data, out: Path, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return run_cli("train", str(data), "--label", "y", "--out", str(out), "--quiet", *extra, timeout=timeout)


def train_in_process(data, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return train(data, out, "--in-process", *extra)


def error_message(result: subprocess.CompletedProcess, name: str) -> str:
    """Check the CLI error contract; return the message after ``name: ``."""
    stderr = result.stderr
    assert result.returncode == EXIT_ERROR, (result.returncode, result.stdout, stderr)
    match = re.search(rf"^{name}: (.*)$", stderr, re.MULTILINE)
    assert match, f"no line starting with {name!r} in stderr:\n{stderr}"
    for other in re.findall(r"^(\w+Error): ", stderr, re.MULTILINE):
        assert other == name, f"stderr names {other}, expected {name}:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    return match.group(1)


def assert_error(
    result: subprocess.CompletedProcess,
    name: str,
    *fragments: str,
    out: Path | None = None,
) -> str:
    message = error_message(result, name)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in message: {message}"
    if out is not None:
        assert not (out / "model.json").exists()
    return message


# --------------------------------------------------------------------------- dataset resolution


def test_missing_dataset_path(tmp_path):
    missing = tmp_path / "no-such-dir"
    out = tmp_path / "out"
    result = train_in_process(missing, out)
    assert_error(result, "DatasetNotFoundError", str(missing), out=out)


def test_empty_directory(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "out"
    result = train_in_process(data, out)
    assert_error(result, "DatasetNotFoundError", str(data), out=out)


def test_directory_of_only_hidden_files(tmp_path):
    data = tmp_path / "data"
    write(data / "_tmp" / "part-0.parquet", good_table())
    (data / "_SUCCESS").write_bytes(b"")
    (data / ".part-0.parquet.crc").write_bytes(b"crc")
    out = tmp_path / "out"
    result = train_in_process(data, out)
    assert_error(result, "DatasetNotFoundError", str(data), out=out)


def test_glob_matching_nothing(tmp_path):
    good_dataset(tmp_path / "data")
    pattern = tmp_path / "data" / "nothing-*.parquet"
    out = tmp_path / "out"
    result = train_in_process(pattern, out)
    assert_error(result, "DatasetNotFoundError", str(pattern), out=out)


def test_directory_of_only_empty_files(tmp_path):
    data = tmp_path / "data"
    empty = good_table(0)
    write(data / "part-0.parquet", empty)
    write(data / "part-1.parquet", empty)
    with pq.ParquetWriter(data / "part-2.parquet", empty.schema):
        pass  # no row groups at all
    out = tmp_path / "out"
    result = train_in_process(data, out)
    assert_error(result, "EmptyDatasetError", str(data), out=out)


# --------------------------------------------------------------------------- unreadable files


def test_non_parquet_file_among_good_ones(tmp_path):
    data = tmp_path / "data"
    good_dataset(data, files=2)
    bad = data / "part-1b.csv"
    bad.write_text("a,b,y\n1.0,2.0,1\n")
    out = tmp_path / "out"
    result = train_in_process(data, out)
    message = assert_error(result, "UnreadableFileError", str(bad), out=out)
    for good in ("part-0.parquet", "part-1.parquet"):
        assert good not in message


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.0], ids=["half", "most", "zero-bytes"])
def test_truncated_parquet_file(tmp_path, keep):
    data = tmp_path / "data"
    paths = good_dataset(data, files=3, n=50, row_group_size=20)
    victim = paths[1]
    content = victim.read_bytes()
    victim.write_bytes(content[: int(len(content) * keep)])
    out = tmp_path / "out"
    result = train_in_process(data, out)
    message = assert_error(result, "UnreadableFileError", str(victim), out=out)
    assert str(paths[0]) not in message and str(paths[2]) not in message


# --------------------------------------------------------------------------- columns


def test_label_column_missing(tmp_path):
    data = tmp_path / "data"
    paths = good_dataset(data)
    out = tmp_path / "out"
    result = run_cli("train", str(data), "--label", "target", "--out", str(out), "--in-process")
    assert_error(result, "ColumnNotFoundError", "'target'", "label", str(paths[0]), out=out)


def test_feature_column_missing(tmp_path):
    data = tmp_path / "data"
    paths = good_dataset(data)
    out = tmp_path / "out"
    result = train_in_process(data, out, "--features", "a,nope")
    assert_error(result, "ColumnNotFoundError", "'nope'", "feature", str(paths[0]), out=out)


def test_feature_column_missing_in_one_file_only(tmp_path):
    data = tmp_path / "data"
    good_dataset(data, files=2)
    odd = write(data / "part-2.parquet", good_table().drop_columns(["b"]))
    out = tmp_path / "out"
    result = train_in_process(data, out)  # default features from the first file: a, b
    assert_error(result, "ColumnNotFoundError", "'b'", str(odd), out=out)


def test_partition_key_as_feature(tmp_path):
    data = tmp_path / "data"
    path = write(data / "day=1" / "part-0.parquet", good_table())
    out = tmp_path / "out"
    result = train_in_process(data, out, "--features", "a,day")
    assert_error(result, "ColumnNotFoundError", "'day'", "partition key", str(path), out=out)


def test_string_column_as_feature_is_categorical(tmp_path):
    data = tmp_path / "data"
    table = good_table()
    table = table.append_column("name", pa.array([f"row{i % 3}" for i in range(table.num_rows)]))
    write(data / "part-0.parquet", table)
    out = tmp_path / "out"
    result = train_in_process(data, out, "--features", "a,name", "--l2", "0.1")
    assert result.returncode == 0, result.stderr
    features = json.loads((out / "model.json").read_text())["features"]
    assert features == ["a", "name=row0", "name=row1", "name=row2"]


def test_timestamp_column_as_label(tmp_path):
    # (text labels are classes: tests/test_multinomial.py)
    data = tmp_path / "data"
    table = good_table()
    table = table.set_column(2, "y", pa.array(np.arange(10).astype("datetime64[s]")))
    path = write(data / "part-0.parquet", table)
    out = tmp_path / "out"
    result = train_in_process(data, out)
    assert_error(result, "ColumnTypeError", "'y'", "label", str(path), out=out)


# --------------------------------------------------------------------------- values
#
# Two files of 10 rows in row groups of 4, 4, 2; the bad value is put in the
# second file, row group 1, row 2 of the group: dataset row 10 + 4 + 2 = 16.

BAD_FILE, BAD_GROUP, BAD_ROW_IN_GROUP, BAD_DATASET_ROW = 1, 1, 2, 16


def bad_value_dataset(root: Path, column: str, value, dtype) -> Path:
    paths = good_dataset(root, files=2, n=10, row_group_size=4)
    table = good_table(10, seed=BAD_FILE)
    values = table.column(column).to_pylist()
    values[4 + BAD_ROW_IN_GROUP] = value
    table = with_column(table, column, pa.array(values, dtype))
    write(paths[BAD_FILE], table, 4)
    return paths[BAD_FILE]


def location_fragments(path: Path, column: str) -> tuple[str, ...]:
    return (
        str(path),
        repr(column),
        f"row group {BAD_GROUP}",
        f"dataset row {BAD_DATASET_ROW}",
    )


@pytest.mark.parametrize(
    "value, dtype",
    [(2, pa.int8()), (-1, pa.int64()), (0.5, pa.float64())],
    ids=["2", "-1", "0.5"],
)
def test_label_value_outside_0_1(tmp_path, value, dtype):
    # the binomial family keeps a numeric label's 0/1 contract (auto would see three classes)
    data = tmp_path / "data"
    path = bad_value_dataset(data, "y", value, dtype)
    out = tmp_path / "out"
    result = train_in_process(data, out, "--family", "binomial")
    assert_error(result, "LabelValueError", *location_fragments(path, "y"), out=out)


@pytest.mark.parametrize(
    "column, value",
    [("a", float("nan")), ("b", float("inf")), ("a", float("-inf")), ("y", float("nan"))],
    ids=["nan-feature", "inf-feature", "-inf-feature", "nan-label"],
)
def test_non_finite_value(tmp_path, column, value):
    data = tmp_path / "data"
    path = bad_value_dataset(data, column, value, pa.float64())
    out = tmp_path / "out"
    result = train_in_process(data, out)
    assert_error(result, "NonFiniteValueError", *location_fragments(path, column), out=out)


@pytest.mark.parametrize("column, dtype", [("b", pa.float64()), ("y", pa.int8())], ids=["feature", "label"])
def test_null_value(tmp_path, column, dtype):
    data = tmp_path / "data"
    path = bad_value_dataset(data, column, None, dtype)
    out = tmp_path / "out"
    result = train_in_process(data, out)
    assert_error(result, "MissingValueError", *location_fragments(path, column), out=out)


def test_label_value_message_shows_plain_number(tmp_path):
    data = tmp_path / "data"
    bad_value_dataset(data, "y", 2, pa.int8())
    out = tmp_path / "out"
    message = error_message(train_in_process(data, out, "--family", "binomial"), "LabelValueError")
    assert "np.float64" not in message
    assert "first 2.0 at row" in message


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "features, fragment",
    [("a,a", "'a'"), ("a, b,a", "'a'"), ("a,y", "'y'")],
    ids=["duplicate", "duplicate-spaced", "label-as-feature"],
)
def test_bad_feature_list(tmp_path, features, fragment):
    data = tmp_path / "data"
    good_dataset(data)
    out = tmp_path / "out"
    result = train_in_process(data, out, "--features", features)
    assert_error(result, "ConfigError", fragment, out=out)


# --------------------------------------------------------------------------- output


def test_output_dir_with_existing_model(tmp_path):
    data = tmp_path / "data"
    good_dataset(data)
    out = tmp_path / "out"
    out.mkdir()
    existing = out / "model.json"
    content = b'{"sentinel": "do not touch"}\n'
    existing.write_bytes(content)
    stat = existing.stat()
    result = train_in_process(data, out)
    assert_error(result, "OutputError", str(out / "model.json"))
    assert existing.read_bytes() == content
    assert existing.stat().st_mtime_ns == stat.st_mtime_ns
    assert sorted(p.name for p in out.iterdir()) == ["model.json"]


def test_output_is_a_file(tmp_path):
    data = tmp_path / "data"
    good_dataset(data)
    out = tmp_path / "out"
    out.write_text("a file, not a directory")
    result = train_in_process(data, out)
    assert_error(result, "OutputError", str(out))
    assert out.read_text() == "a file, not a directory"


def test_make_data_into_non_empty_directory(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("keep me")
    result = run_cli("make-data", str(target), "--rows", "10", "--features", "2")
    assert_error(result, "OutputError", str(target))
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "keep me"


def test_make_data_under_a_file_is_one_error_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    result = run_cli("make-data", str(tmp_path / "afile" / "data"), "--rows", "10", "--features", "2")
    assert_error(result, "OutputError", "afile/data", "cannot write the dataset")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_make_data_stopped_on_the_way_leaves_no_partial_dataset(tmp_path, monkeypatch):
    """A generation stopped after some of its files (killed, Ctrl-C, a full
    disk), or while it gives them their names, leaves no dataset behind: a
    job's data.generate would have taken the files written so far for the
    whole dataset and trained on fewer rows.  Into a new directory or an
    existing empty one; a run that finds another's file in its place gives up
    and takes its own back."""
    from pipeline import synth

    calls = []

    def stop_at_the_third_row_group(*args):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return generate_rows(*args)

    generate_rows = synth.generate_rows
    monkeypatch.setattr(synth, "generate_rows", stop_at_the_third_row_group)
    target = tmp_path / "data"
    with pytest.raises(KeyboardInterrupt):
        synth.make_data(str(target), rows=300, features=2, files=3, row_group_size=100)
    assert list(tmp_path.iterdir()) == []  # (nor the hidden directory it was written in)
    target.mkdir()
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        synth.make_data(str(target), rows=300, features=2, files=3, row_group_size=100)
    assert list(target.iterdir()) == [] and not synth.holds_data(target)
    monkeypatch.setattr(synth, "generate_rows", generate_rows)
    # stopped between the files' names: the ones named are taken back
    link, links = os.link, []

    def second_link_fails(source, name):
        links.append(name)
        if len(links) == 2:
            raise KeyboardInterrupt
        link(source, name)

    monkeypatch.setattr(synth.os, "link", second_link_fails)
    with pytest.raises(KeyboardInterrupt):
        synth.make_data(str(target), rows=300, features=2, files=3, row_group_size=100)
    assert list(target.iterdir()) == []
    # another run's file in the place of one: refused, its file kept, ours taken back
    links.clear()

    def another_run_first(source, name):
        links.append(name)
        if len(links) == 2:
            Path(name).write_bytes(b"another run's")
        link(source, name)

    monkeypatch.setattr(synth.os, "link", another_run_first)
    with pytest.raises(OutputError, match="already exists and is not an empty directory"):
        synth.make_data(str(target), rows=300, features=2, files=3, row_group_size=100)
    assert [p.name for p in target.iterdir()] == ["part-00001.parquet"]
    monkeypatch.setattr(synth.os, "link", link)
    # what a kill -9 leaves (a hidden partial file) is no data: neither read nor in the way
    (target / "part-00001.parquet").unlink()
    (target / ".part-00000.parquet.0123abcd.partial").write_bytes(b"PAR1")
    assert not synth.holds_data(target)
    written = synth.make_data(str(target), rows=300, features=2, files=3, row_group_size=100)
    assert [path.name for path in written] == sorted(p.name for p in target.iterdir() if not p.name.startswith("."))
    assert synth.holds_data(target)


def test_make_data_into_the_current_directory_or_a_link(tmp_path, monkeypatch):
    from pipeline import synth

    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert len(synth.make_data(".", rows=20, features=2, files=2)) == 2
    assert sorted(p.name for p in here.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    synth.make_data(str(tmp_path / "link"), rows=20, features=2)
    assert (tmp_path / "link").is_symlink() and [p.name for p in real.iterdir()] == ["part-00000.parquet"]


# --------------------------------------------------------------------------- cluster


def test_unreachable_scheduler(tmp_path):
    data = tmp_path / "data"
    good_dataset(data)
    out = tmp_path / "out"
    address = f"tcp://127.0.0.1:{free_port()}"
    result = train(data, out, "--scheduler", address, "--connect-timeout", "2", timeout=60)  # (a hang guard)
    assert_error(result, "ClusterError", address, out=out)
    assert "within 2 s" in result.stderr


@pytest.fixture(scope="module")
def cluster_bad_label(tmp_path_factory):
    """One run on a real one-worker cluster with a bad label (clusters take seconds)."""
    root = tmp_path_factory.mktemp("cluster")
    data, out = root / "data", root / "out"
    path = bad_value_dataset(data, "y", 2, pa.int8())
    result = train(data, out, "--workers", "1", "--family", "binomial", timeout=120)
    return result, path, out


@pytest.mark.cluster
def test_error_inside_cluster_task_reaches_cli(cluster_bad_label):
    result, path, out = cluster_bad_label
    stderr = result.stderr
    assert result.returncode == EXIT_ERROR, (result.returncode, result.stdout, stderr)
    match = re.search(r"^LabelValueError: (.*)$", stderr, re.MULTILINE)
    assert match, stderr
    for fragment in location_fragments(path, "y"):
        assert fragment in match.group(1)
    assert not (out / "model.json").exists()


@pytest.mark.cluster
def test_error_inside_cluster_task_has_no_traceback(cluster_bad_label):
    result, _, _ = cluster_bad_label
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- happy path


def test_make_data_then_train(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    made = run_cli(
        "make-data",
        str(data),
        "--rows",
        "300",
        "--features",
        "3",
        "--files",
        "2",
        "--row-group-size",
        "70",
        "--seed",
        "3",
    )
    assert made.returncode == 0, made.stderr
    result = train_in_process(data, out)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr

    model = json.loads((out / "model.json").read_text())
    for key in (
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
    ):
        assert key in model, key
    assert model["features"] == ["f0", "f1", "f2"]
    assert len(model["coef"]) == 3
    assert model["n_samples"] == 300
    assert model["solver"] == "newton"  # auto, resolved for 3 features
    assert len(model["loss_history"]) >= 1
    values = np.array(model["coef"] + [model["intercept"]], dtype="<f8")
    assert model["digest"] == hashlib.sha256(values.tobytes()).hexdigest()
