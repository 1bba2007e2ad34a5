"""Bad-input catalog, part two: the cases ``test_cli_errors.py`` does not cover.

Every case runs the real CLI in a subprocess
(``python -m pipeline train DATA --label y --out OUT --in-process --quiet``) on
real Parquet files written by pyarrow, and checks the CLI contract:

* exit status 1;
* exactly one stderr line starting with ``ErrorName: ``, no other error name,
  no ``Traceback``;
* a message naming the file, the column and (for values) the row group and
  the row, as ``pipeline/data.py`` words them;
* nothing left behind: the ``--out`` directory did not exist before the run
  and still does not exist after it (for the unwritable directory: it stays
  empty).

Cases: nested feature columns, schemas that disagree between files, non-finite
/ negative / all-zero sample weights, a single-class label, more features than
rows, and an unwritable output directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from test_cli_errors import (
    error_message,
    good_dataset,
    good_table,
    train_in_process,
    write,
)

#: runs the CLI in subprocesses: left out of the fast loop (-m "not cluster and not slow")
pytestmark = pytest.mark.slow

# --------------------------------------------------------------------------- helpers


def fresh_out(tmp_path: Path) -> Path:
    """An output directory that does not exist yet."""
    out = tmp_path / "out"
    assert not out.exists()
    return out


def assert_bad_input(result: subprocess.CompletedProcess, name: str, *fragments: str, out: Path | None) -> str:
    """The full error contract of this module; returns the message.

    ``out``: the ``--out`` directory, which must not exist after the run
    (None: the caller checks what is left itself).
    """
    message = error_message(result, name)  # exit 1, ``name: `` line, no other error, no traceback
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{name}: ")]
    assert len(lines) == 1, f"expected one {name!r} line in stderr:\n{result.stderr}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in message: {message}"
    if out is not None:
        left = sorted(p.name for p in out.iterdir()) if out.is_dir() else None
        assert not out.exists(), (
            f"the failed run left the output directory {out} behind (holding {left}); stderr:\n{result.stderr}"
        )
    return message


def assert_success(result: subprocess.CompletedProcess, out: Path) -> dict:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert not re.search(r"^\w+Error: ", result.stderr, re.MULTILINE), result.stderr
    return json.loads((out / "model.json").read_text())


# Two files of 10 rows in row groups of 4, 4, 2; a bad value goes into the
# second file, row group 1, row 2 of the group: dataset row 10 + 4 + 2 = 16.
BAD_FILE, BAD_GROUP, BAD_ROW_IN_GROUP, BAD_DATASET_ROW = 1, 1, 2, 16


def weighted_table(n: int = 10, seed: int = 0, weights=None) -> pa.Table:
    table = good_table(n, seed)
    if weights is None:
        weights = np.random.default_rng(seed + 100).uniform(0.5, 2.0, n)
    return table.append_column("w", pa.array(weights, pa.float64()))


def weighted_dataset(root: Path, bad_value=None) -> list[Path]:
    """Two weighted files; with ``bad_value``, it is the weight at the bad location."""
    paths = [write(root / f"part-{i}.parquet", weighted_table(10, seed=i), row_group_size=4) for i in range(2)]
    if bad_value is not None:
        weights = weighted_table(10, seed=BAD_FILE).column("w").to_numpy().copy()
        weights[4 + BAD_ROW_IN_GROUP] = bad_value
        write(paths[BAD_FILE], weighted_table(10, seed=BAD_FILE, weights=weights), 4)
    return paths


def location(path: Path, column: str) -> tuple[str, ...]:
    """What a value error must name: file, column, row group, row (both numberings)."""
    return (
        str(path),
        repr(column),
        f"row group {BAD_GROUP}",
        f"row {BAD_ROW_IN_GROUP} of the row group",
        f"dataset row {BAD_DATASET_ROW}",
    )


# --------------------------------------------------------------------------- 1. nested columns


@pytest.mark.parametrize(
    "values, type_name",
    [
        (pa.array([[float(i), 1.0] for i in range(10)], pa.list_(pa.float64())), "list"),
        (
            pa.array(
                [{"p": float(i), "q": 1.0} for i in range(10)], pa.struct([("p", pa.float64()), ("q", pa.float64())])
            ),
            "struct",
        ),
    ],
    ids=["list-double", "struct"],
)
def test_nested_column_as_feature(tmp_path, values, type_name):
    data = tmp_path / "data"
    path = write(data / "part-0.parquet", good_table(10).append_column("nested", values))
    out = fresh_out(tmp_path)
    result = train_in_process(data, out, "--features", "a,nested")
    assert_bad_input(result, "ColumnTypeError", "feature", "'nested'", str(path), type_name, out=out)


# --------------------------------------------------------------------------- 2. schemas that disagree


@pytest.mark.parametrize("features", [None, "a,b"], ids=["default-features", "explicit-features"])
def test_feature_float_in_one_file_string_in_another(tmp_path, features):
    data = tmp_path / "data"
    first = write(data / "part-0.parquet", good_table(10, seed=0))
    table = good_table(10, seed=1)
    table = table.set_column(1, "b", pa.array([f"v{i}" for i in range(10)]))
    second = write(data / "part-1.parquet", table)
    out = fresh_out(tmp_path)
    extra = () if features is None else ("--features", features)
    result = train_in_process(data, out, *extra)
    # b is text in one file (a categorical column) and numbers in the other: both named
    assert_bad_input(result, "ColumnTypeError", "'b'", str(second), "string", str(first), "double", out=out)


def test_weight_column_missing_in_one_file_only(tmp_path):
    # (a feature missing from one file is test_cli_errors.test_feature_column_missing_in_one_file_only)
    data = tmp_path / "data"
    weighted_dataset(data)
    odd = write(data / "part-2.parquet", good_table(10, seed=2))  # no "w"
    out = fresh_out(tmp_path)
    result = train_in_process(data, out, "--weight-col", "w")
    assert_bad_input(result, "ColumnNotFoundError", "weight", "'w'", str(odd), out=out)


def test_int64_in_one_file_float64_in_another_is_accepted(tmp_path):
    data = tmp_path / "data"
    ints = good_table(10, seed=0)
    ints = ints.set_column(1, "b", pa.array(np.arange(10, dtype=np.int64) % 4))
    write(data / "part-0.parquet", ints)
    write(data / "part-1.parquet", good_table(10, seed=1))  # "b" is float64 here
    out = fresh_out(tmp_path)
    model = assert_success(train_in_process(data, out), out)
    assert model["features"] == ["a", "b"]
    assert model["n_samples"] == 20


@pytest.mark.parametrize("scale", [1e160, 1e306], ids=["squares-overflow", "near-the-largest-float"])
def test_a_feature_too_large_to_standardize(tmp_path, scale):
    """Finite values whose squares overflow: no mean deviation to standardize
    with.  The column was used raw (scale 1), margins overflowed, and the fit
    exited 0 with an all-zero model after a flood of numpy warnings."""
    data = tmp_path / "data"
    for i in range(2):
        table = good_table(10, seed=i)
        write(data / f"part-{i}.parquet", table.set_column(1, "b", pa.array(table["b"].to_numpy() * scale)))
    out = fresh_out(tmp_path)
    result = train_in_process(data, out)
    message = assert_bad_input(result, "NonFiniteValueError", "feature 'b'", "too large to standardize", out=out)
    assert "rescale the column" in message and "warning" not in result.stderr


@pytest.mark.parametrize("kernels", ["auto", "reference"])
def test_one_value_too_large_to_standardize_is_one_line(tmp_path, monkeypatch, kernels):
    """One 1e200 among ordinary values: the same error, and nothing before it
    (on small data, which start on the numpy reference, numpy's overflow
    warnings of the exact squares were printed first)."""
    monkeypatch.setenv("PIPELINE_KERNELS", kernels)
    data = tmp_path / "data"
    table = good_table(1000, seed=4)
    b = table["b"].to_numpy().copy()
    b[500] = 1e200
    write(data / "part-0.parquet", table.set_column(1, "b", pa.array(b)))
    out = fresh_out(tmp_path)
    result = train_in_process(data, out)
    assert_bad_input(result, "NonFiniteValueError", "feature 'b'", "too large to standardize", out=out)
    assert "warning" not in result.stderr, result.stderr


@pytest.mark.parametrize("repeated, extra", [("b", ()), ("b", ("--features", "a,b")), ("y", ())])
def test_a_column_name_twice_in_a_file(tmp_path, repeated, extra):
    """pyarrow writes a name twice if asked: a feature was a KeyError
    traceback, a label 'not found' (in a file listing it twice)."""
    data = tmp_path / "data"
    write(data / "part-0.parquet", good_table(10, seed=0))
    table = good_table(10, seed=1)
    odd = write(data / "part-1.parquet", table.append_column(repeated, table[repeated]))
    out = fresh_out(tmp_path)
    result = train_in_process(data, out, *extra)
    assert_bad_input(result, "ColumnTypeError", str(odd), f"2 columns named {repeated!r}", out=out)


# --------------------------------------------------------------------------- 3. non-finite weights


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "+inf", "-inf"])
def test_non_finite_weight(tmp_path, value):
    data = tmp_path / "data"
    paths = weighted_dataset(data, bad_value=value)
    out = fresh_out(tmp_path)
    result = train_in_process(data, out, "--weight-col", "w")
    message = assert_bad_input(result, "NonFiniteValueError", *location(paths[BAD_FILE], "w"), out=out)
    assert str(paths[0]) not in message


# --------------------------------------------------------------------------- 4. negative / all-zero weights


def test_negative_weight(tmp_path):
    data = tmp_path / "data"
    paths = weighted_dataset(data, bad_value=-1.0)
    out = fresh_out(tmp_path)
    result = train_in_process(data, out, "--weight-col", "w")
    assert_bad_input(result, "WeightValueError", *location(paths[BAD_FILE], "w"), "-1.0", "negative", out=out)


@pytest.mark.parametrize("extra", [(), ("--no-standardize",)], ids=["standardized", "no-standardize"])
def test_all_zero_weights(tmp_path, extra):
    # both labels present: the only thing wrong is the weights
    data = tmp_path / "data"
    for i in range(2):
        write(data / f"part-{i}.parquet", weighted_table(10, seed=i, weights=np.zeros(10)), 4)
    out = fresh_out(tmp_path)
    result = train_in_process(data, out, "--weight-col", "w", *extra)
    message = assert_bad_input(result, "WeightValueError", out=out)
    assert "zero" in message or "positive" in message, message


# --------------------------------------------------------------------------- 5. single-class label


@pytest.mark.parametrize(
    "label, extra",
    [
        (0, ()),
        (1, ()),
        (1, ("--no-standardize",)),  # no statistics pass: refused from the Parquet statistics
    ],
    ids=["all-0", "all-1", "all-1-no-standardize"],
)
def test_single_class_label(tmp_path, label, extra):
    data = tmp_path / "data"
    for i in range(2):
        table = good_table(10, seed=i)
        table = table.set_column(2, "y", pa.array(np.full(10, label, dtype=np.int8)))
        write(data / f"part-{i}.parquet", table, 4)
    out = fresh_out(tmp_path)
    result = train_in_process(data, out, *extra)
    assert_bad_input(result, "LabelValueError", "single class", "'y'", out=out)


# --------------------------------------------------------------------------- 6. more features than rows


def wide_dataset(root: Path) -> Path:
    """3 rows x 5 features (f0..f4), both classes."""
    rng = np.random.default_rng(7)
    columns = {f"f{j}": rng.standard_normal(3) for j in range(5)}
    columns["y"] = pa.array(np.array([0, 1, 0], dtype=np.int8))
    return write(root / "part-0.parquet", pa.table(columns))


WIDE_WARNING = "more features (5) than rows (3)"


def wide_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: ") and WIDE_WARNING in line]


def test_more_features_than_rows_warns_without_penalty(tmp_path):
    data = tmp_path / "data"
    wide_dataset(data)
    out = fresh_out(tmp_path)
    result = train_in_process(data, out)
    model = assert_success(result, out)
    assert model["n_samples"] == 3 and len(model["features"]) == 5
    assert wide_warnings(result.stderr), f"no 'warning: ... {WIDE_WARNING}' line:\n{result.stderr}"


def test_more_features_than_rows_with_l2_does_not_warn(tmp_path):
    data = tmp_path / "data"
    wide_dataset(data)
    out = fresh_out(tmp_path)
    result = train_in_process(data, out, "--l2", "0.1")
    model = assert_success(result, out)
    assert model["l2"] == 0.1
    assert "more features" not in result.stderr, result.stderr


# --------------------------------------------------------------------------- 7. unwritable output


def test_unwritable_output_directory(tmp_path):
    """As root (CI containers), the CLI runs without the capabilities that let
    root ignore permissions (setpriv), so the check is real there too."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root ignores directory permissions and setpriv is not installed")
        caps = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]
    data = tmp_path / "data"
    good_dataset(data)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        result = subprocess.run(
            [
                *prefix,
                sys.executable,
                "-m",
                "pipeline",
                "train",
                str(data),
                "--label",
                "y",
                "--out",
                str(out),
                "--quiet",
                "--in-process",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert_bad_input(result, "OutputError", str(out), "not writable", out=None)
        assert list(out.iterdir()) == []
    finally:
        out.chmod(0o700)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_output_where_directories_cannot_be_created_is_refused_before_training(tmp_path):
    """/proc: permissions say writable (as root), creating a directory says
    no. The probe creates one before training: one error line, no traceback."""
    data = tmp_path / "data"
    good_dataset(data)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "train", str(data), "--label", "y", "--out", "/proc/pipeline-out"]
        + ["--quiet", "--in-process"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_bad_input(result, "OutputError", "/proc/pipeline-out", "not writable", out=None)
    assert "iter" not in result.stdout  # (refused before training)


def write_weighted_labels(data: Path, weight_of_label_1: float) -> Path:
    """``data/part-0.parquet``: 12 rows, labels 0 and 1 in turn, weight column
    ``w`` of 1.5 for label 0 and ``weight_of_label_1`` for label 1."""
    table = good_table(12, seed=3)
    y = np.array([0, 1] * 6, dtype=np.int8)
    table = table.set_column(table.schema.get_field_index("y"), "y", pa.array(y))
    table = table.append_column("w", pa.array(np.where(y == 1, weight_of_label_1, 1.5)))
    write(data / "part-0.parquet", table, 5)
    return data


@pytest.mark.parametrize(
    "options",
    [(), ("--no-standardize",), ("--no-standardize", "--solver", "newton")],
    ids=["standardized", "raw", "raw-newton"],
)
def test_single_class_by_weight(tmp_path, options):
    """Both labels occur, but every row of label 1 has weight 0.  Without
    standardization no statistics pass ran to say so: the fit "converged" to
    an intercept of -16 (now the first pass, at coef = 0, tells)."""
    data = write_weighted_labels(tmp_path / "data", 0.0)
    out = fresh_out(tmp_path)
    result = train_in_process(data, out, "--weight-col", "w", *options)
    assert_bad_input(result, "LabelValueError", "single class", "'y'", "on label 0", out=out)


def test_single_class_by_weight_through_the_estimator():
    """scikit-learn refuses one class; so does the estimator where the sample
    weights leave one (with or without standardization)."""
    from pipeline.estimator import LogisticRegression

    rng = np.random.default_rng(4)
    X = rng.standard_normal((40, 2))
    y = np.arange(40) % 2
    for standardize in (True, False):
        with pytest.raises(
            ValueError, match=r"single class: all the sample weight of the 40 rows is on class 1 \(class 0"
        ):
            LogisticRegression(standardize=standardize).fit(X, y, sample_weight=(y == 1).astype(float))
        # in the words of the caller's labels, not the fit's 0/1 codes
        named = np.where(y == 1, "bee", "ant")
        with pytest.raises(ValueError, match="on class 'ant' .class 'bee' has none."):
            LogisticRegression(standardize=standardize).fit(X, named, sample_weight=(y == 0).astype(float))
        three = np.array(["a", "b", "c"])[np.arange(40) % 3]
        with pytest.raises(ValueError, match=r"y has class\(es\) \['c'\] with no sample weight"):
            LogisticRegression(standardize=standardize).fit(X, three, sample_weight=(three != "c").astype(float))
        # a class of weight below an ulp of the total is a class (the rounded totals read it as none)
        tiny = np.where(y == 1, 1e-17, 1.0)
        assert LogisticRegression(standardize=standardize, l2=1e-3).fit(X, y, sample_weight=tiny).converged_


def test_a_class_without_weight_is_named_by_its_value(tmp_path):
    """The fit counts in class codes: with text classes the CLI said "on
    label 0; expected both 0 and 1" (and "class(es) number [2]")."""
    rng = np.random.default_rng(0)
    for name, values in [("two", ["ant", "bee"]), ("three", ["a", "b", "c"])]:
        y = np.array(values * 12)
        table = pa.table({"x": rng.standard_normal(len(y)), "y": y, "w": np.where(y == values[-1], 0.0, 1.0)})
        write(tmp_path / name / "part-0.parquet", table, 12)
        out = tmp_path / f"out-{name}"
        result = train_in_process(tmp_path / name, out, "--weight-col", "w", "--features", "x")
        message = assert_bad_input(result, "LabelValueError", "label column 'y'", out=out)
        expected = (
            "is on class 'ant' (class 'bee' has none)" if name == "two" else "has class(es) ['c'] with no sample weight"
        )
        assert expected in message, message


def test_a_cross_validation_fold_of_a_single_class_is_named(tmp_path):
    """Folds are not stratified: a rare class may leave a fold's training rows
    with one class; the refusal names the fold (it read as if the data had one)."""
    from pipeline import LogisticRegressionCV

    data = tmp_path / "data"
    rng = np.random.default_rng(3)
    table = pa.table({"x": rng.standard_normal(12), "y": np.array([0] * 11 + [1], dtype=np.int8)})
    write(data / "part-0.parquet", table, 12)
    out = fresh_out(tmp_path)
    result = train_in_process(data, out, "--cv", "3", "--l2", "0.1")
    message = assert_bad_input(result, "LabelValueError", "single class", "'y'", out=None)
    assert message.startswith("cross-validation fold ") and "(its training rows)" in message
    assert "not stratified by class" in message and "use fewer folds" in message
    with pytest.raises(
        ValueError, match=r"cross-validation fold \d \(its training rows\): y has a single class: .* on class 1"
    ):
        LogisticRegressionCV(cv=3, path=3).fit(rng.standard_normal((10, 1)), np.array([1] * 9 + [2]))
    # a class without weight in every row is the data's: said as without --cv (it named fold 0, advising fewer folds)
    weighted = write_weighted_labels(tmp_path / "weighted", 0.0)
    for options in [(), ("--no-standardize",)]:
        out = tmp_path / f"out{len(options)}"
        result = train_in_process(weighted, out, "--weight-col", "w", "--cv", "3", "--l2", "0.1", *options)
        message = assert_bad_input(result, "LabelValueError", "single class", "on label 0", out=None)
        assert "fold" not in message, message


def test_single_class_by_weight_on_a_raw_lasso_path(tmp_path):
    """The path's largest strength comes from the intercept-only optimum at
    coef = 0: without standardization no statistics pass checked the labels
    (a ConfigError about a strength of 0; before, a math domain error)."""
    from pipeline import TrainConfig, train
    from pipeline.errors import LabelValueError
    from pipeline.objective import Penalty

    data = write_weighted_labels(tmp_path / "data", 0.0)
    config = TrainConfig(
        data=str(data), label="y", weight="w", cluster=None, standardize=False, penalty=Penalty(l1=1e-3), path=3
    )
    with pytest.raises(LabelValueError, match="label column 'y' has a single class"):
        train(config)
    # a class whose weight float64 cannot resolve next to the total: a class, but no path start
    write_weighted_labels(data, 1e-17)
    with pytest.raises(LabelValueError, match="its share rounds to 0"):  # (a ValueError traceback of log)
        train(config)
