"""Data layer: resolving Parquet datasets, planning chunks, reading values.

Every test writes real Parquet files with pyarrow (into ``tmp_path``, or into
fsspec's in-memory filesystem) and checks the plan and the values read back.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.data import ChunkSpec, Dataset, open_dataset
from pipeline.errors import ColumnNotFoundError

# --------------------------------------------------------------------------- helpers


def write(path, table: pa.Table, row_group_size: int | None = None) -> Path:
    """Write ``table`` to ``path`` (parents created) in row groups of ``row_group_size``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def write_groups(path, tables: list[pa.Table]) -> Path:
    """Write one row group per table (empty tables give 0-row row groups)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, tables[0].schema) as writer:
        for table in tables:
            writer.write_table(table)
    return path


def make_table(n: int, seed: int = 0, start: int = 0) -> pa.Table:
    """Two float64 features ``a``, ``b`` and an int8 label ``y``; ``a`` encodes the row."""
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "a": np.arange(start, start + n, dtype=np.float64),
            "b": rng.standard_normal(n),
            "y": rng.integers(0, 2, n).astype(np.int8),
        }
    )


def row_groups(path) -> list[int]:
    metadata = pq.read_metadata(path)
    return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]


def concat_chunks(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    chunks = dataset.read_chunks()
    return np.concatenate([c.X for c in chunks]), np.concatenate([c.y for c in chunks])


def expected_xy(tables: list[pa.Table], features: list[str], label: str):
    X = np.column_stack([np.concatenate([t.column(f).to_numpy().astype(np.float64) for t in tables]) for f in features])
    y = np.concatenate([t.column(label).to_numpy().astype(np.float64) for t in tables])
    return X, y


def check_plan(dataset: Dataset, expected: list[tuple[str, int, int]]) -> None:
    """``expected``: (path, row_group, n_rows) per chunk; offsets are the running sum."""
    offsets = np.concatenate([[0], np.cumsum([n for _, _, n in expected])[:-1]]).tolist()
    assert dataset.chunks == tuple(
        ChunkSpec(str(path), group, n, offset) for (path, group, n), offset in zip(expected, offsets)
    )
    assert dataset.n_samples == sum(n for _, _, n in expected)


# --------------------------------------------------------------------------- planning


def test_the_fingerprint_sees_values_rewritten_in_place_in_any_used_column(tmp_path):
    """Same files, sizes and row groups, other values: the columns' Parquet
    statistics differ, in a dense, a categorical or the label column; an
    unused column does not count."""
    root = tmp_path / "data"
    root.mkdir()
    table = pa.table(
        {
            "x": np.arange(8, dtype=np.float64),
            "k": ["a", "a", "a", "a", "b", "b", "b", "b"],
            "unused": np.arange(8, dtype=np.float64),
            "y": [0, 0, 0, 0, 1, 1, 1, 1],
        }
    )

    def fingerprint(changed):
        pq.write_table(changed, root / "p.parquet", row_group_size=4)
        return open_dataset(str(root), "y", ["x", "k"]).fingerprint, (root / "p.parquet").stat().st_size

    before, size = fingerprint(table)
    assert fingerprint(table) == (before, size)
    for name in ("x", "k", "y"):  # the halves swapped: a file of the same size, other row groups' statistics
        values = table.column(name).to_pylist()
        changed = table.set_column(table.schema.get_field_index(name), name, pa.array(values[4:] + values[:4]))
        assert fingerprint(changed)[1] == size and fingerprint(changed)[0] != before, name
    values = table.column("unused").to_pylist()
    assert fingerprint(table.set_column(2, "unused", pa.array(values[4:] + values[:4])))[0] == before


def test_directory_planned_in_canonical_order(tmp_path):
    # Written out of order, with different row-group sizes per file.
    tables = {
        "part-2.parquet": (make_table(25, seed=2, start=70), 10),
        "part-0.parquet": (make_table(30, seed=0, start=0), 7),
        "part-1.parquet": (make_table(40, seed=1, start=30), 40),
    }
    for name, (table, size) in tables.items():
        write(tmp_path / name, table, size)

    dataset = open_dataset(str(tmp_path), label="y")

    names = sorted(tables)
    assert dataset.files == tuple(str(tmp_path / name) for name in names)
    expected = []
    for name in names:
        for group, n in enumerate(row_groups(tmp_path / name)):
            expected.append((tmp_path / name, group, n))
    # 30 rows by 7 -> 7,7,7,7,2 ; 40 by 40 -> 40 ; 25 by 10 -> 10,10,5
    assert [n for _, _, n in expected] == [7, 7, 7, 7, 2, 40, 10, 10, 5]
    check_plan(dataset, expected)
    assert dataset.n_samples == 95
    assert dataset.n_features == 2
    assert dataset.features == ("a", "b")
    assert dataset.partition_keys == ()

    X, y = concat_chunks(dataset)
    np.testing.assert_array_equal(X[:, 0], np.arange(95, dtype=np.float64))  # canonical order
    eX, ey = expected_xy([tables[name][0] for name in names], ["a", "b"], "y")
    np.testing.assert_array_equal(X, eX)
    np.testing.assert_array_equal(y, ey)


def test_plan_is_read_from_metadata_only(tmp_path, monkeypatch):
    write(tmp_path / "part-0.parquet", make_table(20), 6)
    write(tmp_path / "part-1.parquet", make_table(9, seed=1), 4)

    def no_reading(*args, **kwargs):  # pragma: no cover - would fail the test
        raise AssertionError("planning must not read row-group data")

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", no_reading)
    monkeypatch.setattr(pq.ParquetFile, "read", no_reading)
    monkeypatch.setattr(pq, "read_table", no_reading)
    dataset = open_dataset(str(tmp_path), label="y")
    check_plan(
        dataset,
        [
            (tmp_path / "part-0.parquet", 0, 6),
            (tmp_path / "part-0.parquet", 1, 6),
            (tmp_path / "part-0.parquet", 2, 6),
            (tmp_path / "part-0.parquet", 3, 2),
            (tmp_path / "part-1.parquet", 0, 4),
            (tmp_path / "part-1.parquet", 1, 4),
            (tmp_path / "part-1.parquet", 2, 1),
        ],
    )


def test_hive_partitioned_directory(tmp_path):
    layout = [
        ("year=2021/month=1/part-0.parquet", make_table(12, seed=3, start=20), 5),
        ("year=2020/month=2/part-0.parquet", make_table(8, seed=2, start=12), 8),
        ("year=2020/month=1/part-0.parquet", make_table(6, seed=1, start=0), 4),
        ("year=2020/month=1/part-1.parquet", make_table(6, seed=0, start=6), 6),
    ]
    for relative, table, size in layout:
        write(tmp_path / relative, table, size)

    dataset = open_dataset(str(tmp_path), label="y")

    order = sorted(layout, key=lambda item: str(tmp_path / item[0]))
    assert dataset.files == tuple(str(tmp_path / relative) for relative, _, _ in order)
    assert set(dataset.partition_keys) == {"year", "month"}
    assert dataset.features == ("a", "b")  # partition keys are not default features
    expected = []
    for relative, _, _ in order:
        for group, n in enumerate(row_groups(tmp_path / relative)):
            expected.append((tmp_path / relative, group, n))
    check_plan(dataset, expected)
    assert dataset.n_samples == 32

    X, y = concat_chunks(dataset)
    eX, ey = expected_xy([table for _, table, _ in order], ["a", "b"], "y")
    np.testing.assert_array_equal(X, eX)
    np.testing.assert_array_equal(y, ey)
    np.testing.assert_array_equal(X[:, 0], np.arange(32, dtype=np.float64))


@pytest.mark.parametrize("key", ["year", "month"])
def test_partition_key_as_feature_is_column_not_found(tmp_path, key):
    write(tmp_path / "year=2020/month=1/part-0.parquet", make_table(5), 5)
    with pytest.raises(ColumnNotFoundError) as info:
        open_dataset(str(tmp_path), label="y", features=["a", key])
    message = str(info.value)
    assert repr(key) in message
    assert "partition key" in message
    assert str(tmp_path / "year=2020/month=1/part-0.parquet") in message
    assert info.value.column == key


def test_a_file_column_named_like_a_hive_key_is_a_default_feature_as_when_named(tmp_path):
    """Some writers keep the partition column in the files too: it is read
    from the files by default as when named (it was left out without a word)."""
    for value in (1, 2):
        write(tmp_path / f"a={value}" / "part-0.parquet", make_table(5, seed=value), 5)
    dataset = open_dataset(str(tmp_path), label="y")
    assert dataset.partition_keys == ("a",) and dataset.features == ("a", "b")
    assert dataset.features == open_dataset(str(tmp_path), label="y", features=["a", "b"]).features


def test_single_file(tmp_path):
    table = make_table(23, seed=5)
    path = write(tmp_path / "data.parquet", table, 10)
    write(tmp_path / "other.parquet", make_table(7), 7)  # a sibling that must not be read

    dataset = open_dataset(str(path), label="y")

    assert dataset.files == (str(path),)
    check_plan(dataset, [(path, 0, 10), (path, 1, 10), (path, 2, 3)])
    X, y = concat_chunks(dataset)
    eX, ey = expected_xy([table], ["a", "b"], "y")
    np.testing.assert_array_equal(X, eX)
    np.testing.assert_array_equal(y, ey)


def test_glob(tmp_path):
    t0, t1 = make_table(11, seed=0, start=0), make_table(13, seed=1, start=11)
    write(tmp_path / "part-1.parquet", t1, 5)
    write(tmp_path / "part-0.parquet", t0, 11)
    write(tmp_path / "other-0.parquet", make_table(100, seed=9), 100)  # not matched

    dataset = open_dataset(str(tmp_path / "part-*.parquet"), label="y")

    p0, p1 = tmp_path / "part-0.parquet", tmp_path / "part-1.parquet"
    assert dataset.files == (str(p0), str(p1))
    check_plan(dataset, [(p0, 0, 11), (p1, 0, 5), (p1, 1, 5), (p1, 2, 3)])
    X, y = concat_chunks(dataset)
    eX, ey = expected_xy([t0, t1], ["a", "b"], "y")
    np.testing.assert_array_equal(X, eX)
    np.testing.assert_array_equal(y, ey)


@pytest.fixture
def memory_fs():
    fs = fsspec.filesystem("memory")
    root = f"/pipeline-test-{uuid.uuid4().hex}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)
    assert not fs.exists(root)


def test_memory_filesystem_url(memory_fs):
    fs, root = memory_fs
    tables = [make_table(9, seed=0, start=0), make_table(14, seed=1, start=9)]
    for index, table in enumerate(tables):
        with fs.open(f"{root}/part-{index}.parquet", "wb") as handle:
            pq.write_table(table, handle, row_group_size=5)
    with fs.open(f"{root}/_SUCCESS", "wb") as handle:
        handle.write(b"")

    dataset = open_dataset(f"memory://{root.lstrip('/')}", label="y")

    assert [path.rsplit("/", 1)[-1] for path in dataset.files] == ["part-0.parquet", "part-1.parquet"]
    assert [(c.row_group, c.n_rows, c.offset) for c in dataset.chunks] == [
        (0, 5, 0),
        (1, 4, 5),
        (0, 5, 9),
        (1, 5, 14),
        (2, 4, 19),
    ]
    assert [c.path for c in dataset.chunks] == [dataset.files[0]] * 2 + [dataset.files[1]] * 3
    assert dataset.n_samples == 23
    X, y = concat_chunks(dataset)
    eX, ey = expected_xy(tables, ["a", "b"], "y")
    np.testing.assert_array_equal(X, eX)
    np.testing.assert_array_equal(y, ey)


def test_empty_files_and_row_groups_skipped_hidden_files_ignored(tmp_path):
    """Files without rows are skipped, whatever their columns: one lacking a
    feature (it chose the features when it came first), one of type-null
    columns (pandas' empty frame: it refused the dataset)."""
    t_a, t_b, t_c = make_table(4, seed=1, start=0), make_table(3, seed=2, start=4), make_table(5, seed=3, start=7)
    write(tmp_path / "part-0.parquet", make_table(0).drop(["b"]))  # empty file, without "b"
    write_groups(tmp_path / "part-1.parquet", [t_a, make_table(0), t_b, make_table(0)])
    placeholder = pa.schema([(name, pa.null()) for name in make_table(0).schema.names])
    with pq.ParquetWriter(tmp_path / "part-2.parquet", placeholder):
        pass  # a file with no row groups at all, of null-typed columns
    write(tmp_path / "part-3.parquet", t_c, 5)
    (tmp_path / "_SUCCESS").write_bytes(b"")
    (tmp_path / ".part-1.parquet.crc").write_bytes(b"\x00crc garbage")
    (tmp_path / "_temporary").mkdir()
    (tmp_path / "_temporary" / "part-9.parquet").write_bytes(b"not parquet")

    assert row_groups(tmp_path / "part-1.parquet") == [4, 0, 3, 0]
    assert sum(row_groups(tmp_path / "part-0.parquet")) == 0
    assert row_groups(tmp_path / "part-2.parquet") == []

    dataset = open_dataset(str(tmp_path), label="y")

    assert dataset.files == tuple(str(tmp_path / f"part-{i}.parquet") for i in (1, 3))
    assert dataset.features == ("a", "b")
    p1, p3 = tmp_path / "part-1.parquet", tmp_path / "part-3.parquet"
    check_plan(dataset, [(p1, 0, 4), (p1, 2, 3), (p3, 0, 5)])
    assert all(chunk.n_rows > 0 for chunk in dataset.chunks)
    X, y = concat_chunks(dataset)
    eX, ey = expected_xy([t_a, t_b, t_c], ["a", "b"], "y")
    np.testing.assert_array_equal(X, eX)
    np.testing.assert_array_equal(y, ey)


def test_a_default_feature_missing_from_the_first_file_is_named_not_dropped(tmp_path):
    """The features came from the first file's columns: a column only later
    files have was left out without a word (and listing the files another way
    changed the model)."""
    write(tmp_path / "part-0.parquet", make_table(4, seed=1).drop(["b"]))
    write(tmp_path / "part-1.parquet", make_table(4, seed=2))
    with pytest.raises(
        ColumnNotFoundError, match=r"column 'b' of .*part-1.parquet is not in .*part-0.parquet"
    ) as raised:
        open_dataset(str(tmp_path), label="y")
    assert raised.value.column == "b" and "--features" in str(raised.value)
    assert open_dataset(str(tmp_path), label="y", features=["a"]).features == ("a",)  # named: the shared ones


# --------------------------------------------------------------------------- types and values


def test_feature_types_cast_to_float64_exactly(tmp_path):
    n = 12
    rng = np.random.default_rng(4)
    ints = rng.integers(-(2**40), 2**40, n)
    f32 = rng.standard_normal(n).astype(np.float32)
    f64 = rng.standard_normal(n) * 1e10
    bools = rng.integers(0, 2, n).astype(bool)
    table = pa.table(
        {
            "i8": pa.array(rng.integers(-128, 128, n).astype(np.int8)),
            "i32": pa.array(rng.integers(-(2**31), 2**31, n).astype(np.int32)),
            "i64": pa.array(ints, pa.int64()),
            "u16": pa.array(rng.integers(0, 2**16, n).astype(np.uint16)),
            "f32": pa.array(f32),
            "f64": pa.array(f64),
            "flag": pa.array(bools),
            "y": pa.array(rng.integers(0, 2, n).astype(np.int64)),
        }
    )
    write(tmp_path / "part-0.parquet", table, 5)

    dataset = open_dataset(str(tmp_path), label="y")
    assert dataset.features == ("i8", "i32", "i64", "u16", "f32", "f64", "flag")

    X, y = concat_chunks(dataset)
    assert X.dtype == np.float64 and y.dtype == np.float64
    assert X.shape == (n, 7)
    for j, name in enumerate(dataset.features):
        original = table.column(name).to_numpy()
        np.testing.assert_array_equal(X[:, j], original.astype(np.float64))
        # exact: casting back reproduces the stored values bit for bit
        np.testing.assert_array_equal(X[:, j].astype(original.dtype), original)
    np.testing.assert_array_equal(X[:, 4].astype(np.float32), f32)
    np.testing.assert_array_equal(X[:, 6], bools.astype(np.float64))
    np.testing.assert_array_equal(y, table.column("y").to_numpy().astype(np.float64))


def test_decimal_features_and_weights_are_numbers_and_a_decimal_label_is_refused(tmp_path):
    """Spark's money type: a default feature (it was left out without a word),
    each value the float64 nearest to it; a label must be classes."""
    from decimal import Decimal

    from pipeline.errors import ColumnTypeError

    values = [Decimal("12.34"), Decimal("-0.10"), Decimal("99999999.99"), Decimal("0.00")] * 3
    # every value the nearest float64, whatever the decimal type (Arrow's own cast
    # rounds twice: 0.1 of scale 20 was 0.09999999999999999, and values differed by scale)
    rng = np.random.default_rng(7)
    many = [Decimal(f"{v:.2f}") for v in rng.uniform(-1000, 1000, 300)] + [Decimal("0.1")]
    for decimal_type in (pa.decimal128(10, 2), pa.decimal128(18, 4), pa.decimal128(38, 20), pa.decimal256(60, 30)):
        write(
            tmp_path / "types" / "part-0.parquet",
            pa.table({"d": pa.array(many, decimal_type), "y": [0, 1] * 150 + [0]}),
        )
        decoded = open_dataset(str(tmp_path / "types"), label="y")
        np.testing.assert_array_equal(concat_chunks(decoded)[0][:, 0], [float(v) for v in many])
    table = pa.table(
        {
            "price": pa.array(values, pa.decimal128(10, 2)),
            "w": pa.array([Decimal("1.5")] * 12, pa.decimal128(4, 1)),
            "y": pa.array([0, 1] * 6, pa.int8()),
        }
    )
    write(tmp_path / "data" / "part-0.parquet", table, 5)
    dataset = open_dataset(str(tmp_path / "data"), label="y", weight="w")
    assert dataset.features == ("price",) and dataset.feature_dtype == "float64"
    chunks = [dataset.reader(chunk) for chunk in dataset.chunks]
    np.testing.assert_array_equal(np.concatenate([c.X[:, 0] for c in chunks]), [float(v) for v in values])
    np.testing.assert_array_equal(np.concatenate([c.weights for c in chunks]), 1.5)
    write(tmp_path / "label" / "part-0.parquet", table.set_column(2, "y", pa.array([Decimal(1)] * 12)), 5)
    with pytest.raises(ColumnTypeError, match=r"label column 'y' .* has type decimal128\(1, 0\); expected an integer"):
        open_dataset(str(tmp_path / "label"), label="y")


@pytest.mark.parametrize(
    "label_array",
    [
        pa.array([0, 1, 1, 0, 1, 0, 0], pa.int8()),
        pa.array([0, 1, 1, 0, 1, 0, 0], pa.int64()),
        pa.array([0, 1, 1, 0, 1, 0, 0], pa.uint8()),
        pa.array([False, True, True, False, True, False, False], pa.bool_()),
        pa.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0], pa.float64()),
        pa.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0], pa.float32()),
    ],
    ids=["int8", "int64", "uint8", "bool", "float64", "float32"],
)
def test_label_types(tmp_path, label_array):
    table = pa.table({"x": np.arange(7, dtype=np.float64), "label": label_array})
    write(tmp_path / "part-0.parquet", table, 3)

    dataset = open_dataset(str(tmp_path), label="label")

    assert dataset.features == ("x",)
    X, y = concat_chunks(dataset)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, [0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(X[:, 0], np.arange(7, dtype=np.float64))


def test_default_features_schema_order_strings_categorical_without_label_or_partitions(tmp_path):
    n = 6
    table = pa.table(
        {
            "z": np.linspace(0, 1, n),
            "name": pa.array([f"r{i}" for i in range(n)]),
            "y": pa.array([0, 1] * 3, pa.int8()),
            "m": pa.array(np.arange(n, dtype=np.int32)),
            "big_s": pa.array([str(i) for i in range(n)], pa.large_string()),
            "b": pa.array([True, False] * 3),
            "a": np.arange(n, dtype=np.float32),
        }
    )
    write(tmp_path / "country=fr" / "part-0.parquet", table, 4)

    dataset = open_dataset(str(tmp_path), label="y")

    assert dataset.partition_keys == ("country",)
    assert dataset.features == ("z", "m", "b", "a")
    assert dataset.categorical == ("name", "big_s")  # text columns are categorical features
    X, y = concat_chunks(open_dataset(str(tmp_path), label="y", features=["z", "m", "b", "a"]))
    eX, ey = expected_xy([table], ["z", "m", "b", "a"], "y")
    np.testing.assert_array_equal(X, eX)
    np.testing.assert_array_equal(y, ey)


def test_explicit_features_order_kept(tmp_path):
    table = make_table(10)
    write(tmp_path / "part-0.parquet", table, 4)
    dataset = open_dataset(str(tmp_path), label="y", features=["b", "a"])
    assert dataset.features == ("b", "a")
    X, y = concat_chunks(dataset)
    eX, ey = expected_xy([table], ["b", "a"], "y")
    np.testing.assert_array_equal(X, eX)
    np.testing.assert_array_equal(y, ey)


def test_read_chunks_shapes_and_values(tmp_path):
    tables = [make_table(17, seed=0, start=0), make_table(8, seed=1, start=17)]
    write(tmp_path / "part-0.parquet", tables[0], 6)
    write(tmp_path / "part-1.parquet", tables[1], 8)

    dataset = open_dataset(str(tmp_path), label="y")
    chunks = dataset.read_chunks()

    assert len(chunks) == len(dataset.chunks) == 4
    for (X, y, _), spec in zip(chunks, dataset.chunks):
        assert X.shape == (spec.n_rows, 2) and X.dtype == np.float64
        assert y.shape == (spec.n_rows,) and y.dtype == np.float64
        # the first feature encodes the global row index: offsets are right
        np.testing.assert_array_equal(X[:, 0], np.arange(spec.offset, spec.offset + spec.n_rows))
    X = np.concatenate([c.X for c in chunks])
    y = np.concatenate([c.y for c in chunks])
    eX, ey = expected_xy(tables, ["a", "b"], "y")
    assert X.shape == (25, 2)
    np.testing.assert_array_equal(X, eX)
    np.testing.assert_array_equal(y, ey)


def test_to_dask_chunks_known_and_values_equal(tmp_path):
    import dask
    import dask.array as da

    tables = [make_table(13, seed=0, start=0), make_table(0), make_table(10, seed=1, start=13)]
    write(tmp_path / "part-0.parquet", tables[0], 5)
    write(tmp_path / "part-1.parquet", tables[1])
    write(tmp_path / "part-2.parquet", tables[2], 4)

    dataset = open_dataset(str(tmp_path), label="y")
    X, y, weights = dataset.to_dask()
    assert weights is None

    assert isinstance(X, da.Array) and isinstance(y, da.Array)
    sizes = (5, 5, 3, 4, 4, 2)
    assert X.chunks == (sizes, (2,))
    assert y.chunks == (sizes,)
    assert X.shape == (23, 2) and y.shape == (23,)
    assert X.dtype == np.float64 and y.dtype == np.float64
    assert not any(np.isnan(size) for size in X.shape)

    X_value, y_value = dask.compute(X, y, scheduler="sync")
    eX, ey = expected_xy([tables[0], tables[2]], ["a", "b"], "y")
    np.testing.assert_array_equal(X_value, eX)
    np.testing.assert_array_equal(y_value, ey)
    # block by block as well
    for index, spec in enumerate(dataset.chunks):
        block = X.blocks[index].compute(scheduler="sync")
        np.testing.assert_array_equal(block, eX[spec.offset : spec.offset + spec.n_rows])


def test_to_dask_spreads_chunks_evenly_over_workers(tmp_path):
    from pipeline.data import spread

    table = pa.table({"a": np.arange(100, dtype=np.float64), "y": np.zeros(100, dtype=np.int64)})
    pq.write_table(table, tmp_path / "p.parquet", row_group_size=10)
    dataset = open_dataset(str(tmp_path), "y")
    placement = spread([chunk.n_rows for chunk in dataset.chunks], ["w1", "w2", "w3"])
    assert placement == ["w1"] * 3 + ["w2"] * 4 + ["w3"] * 3  # contiguous, balanced
    assert spread([10] * 10, None) == [None] * 10
    X, y, _ = dataset.to_dask(["w1", "w2", "w3"])  # hints do not change the arrays
    np.testing.assert_array_equal(X.compute(scheduler="sync")[:, 0], np.arange(100))


def test_a_file_replaced_after_the_plan_is_named_not_a_key_error(tmp_path):
    """pyarrow reads a row group without a requested column the file lacks
    (no error): a file swapped for another table while a run reads it is one
    ColumnNotFoundError naming it, on every read path (whole row group, batches,
    weights only)."""
    data = tmp_path / "data"
    rows = pa.table({"x0": [0.5, 1.5, 2.5, 3.5], "x1": [1.0, 2.0, 3.0, 4.0], "w": [1.0] * 4, "y": [0, 1, 0, 1]})
    first = write(data / "part-0.parquet", rows)
    write(data / "part-1.parquet", rows)
    dataset = open_dataset(str(data), "y", weight="w")
    write(first, pa.table({"other": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]}))  # replaced after the plan
    reader, chunk = dataset.reader, dataset.chunks[0]
    for read in (lambda: reader(chunk), lambda: list(reader.iter_batches(chunk, 2)), lambda: reader.weights_of(chunk)):
        absent = r"part-0.parquet has no column\(s\) (\['x0', 'x1'|\['w'\])"
        with pytest.raises(ColumnNotFoundError, match=absent) as caught:
            read()
        assert "was the file replaced while the run read it?" in str(caught.value)
    assert reader(dataset.chunks[1]).X.shape == (4, 2)


def test_a_hive_key_kept_in_only_some_files_stays_the_folders_key(tmp_path):
    """Where only some files keep the partition column, it is not a default
    feature (the others would lack it): the key of the folders, as before."""
    write(tmp_path / "a=1" / "part-0.parquet", make_table(5, seed=1), 5)
    write(tmp_path / "a=2" / "part-0.parquet", make_table(5, seed=2).drop(["a"]), 5)
    assert open_dataset(str(tmp_path), label="y").features == ("b",)


def test_a_split_key_named_twice_in_a_file_is_named_not_a_key_error(tmp_path):
    from pipeline.data import dataset_files, split_key_kinds
    from pipeline.errors import ColumnTypeError

    table = make_table(5)
    write(tmp_path / "part-0.parquet", table.append_column("id", table["a"]).append_column("id", table["b"]), 5)
    write(tmp_path / "part-1.parquet", make_table(0).append_column("id", pa.array([], pa.null())))  # no rows
    filesystem, files = dataset_files(str(tmp_path))
    with pytest.raises(ColumnTypeError, match=r"part-0.parquet has 2 columns named 'id'"):
        split_key_kinds(filesystem, files, "id")


def test_a_feature_of_type_null_in_a_file_is_all_missing_there(tmp_path):
    """pandas writes an all-None column as type null: with a missing-value
    policy those rows are missing values (it was refused whatever the policy);
    without one the error says which policy takes it."""
    from pipeline.errors import ColumnTypeError

    write(tmp_path / "part-0.parquet", make_table(4, seed=1), 4)
    write(tmp_path / "part-1.parquet", make_table(3, seed=2).set_column(1, "b", pa.nulls(3)), 3)
    dataset = open_dataset(str(tmp_path), label="y", features=["a", "b"], missing="mean")
    assert dataset.missing == ("b",)
    X, _ = concat_chunks(dataset)
    assert np.isnan(X[4:, 1]).all() and not np.isnan(X[:4]).any()
    with pytest.raises(ColumnTypeError, match=r"part-1.parquet has type null; .*--missing mean or indicator"):
        open_dataset(str(tmp_path), label="y", features=["a", "b"])


def test_a_narrow_column_replaced_by_other_values_is_refused_not_truncated(tmp_path):
    """Planned as int8 (held exactly), then rewritten as float64: the values
    were cast unsafely (300.5 read as 44); now one ColumnTypeError naming the
    column and the row group."""
    from pipeline.errors import ColumnTypeError

    path = write(tmp_path / "part-0.parquet", pa.table({"x": pa.array([1, 2, 3, -1], pa.int8()), "y": [0, 1, 0, 1]}))
    dataset = open_dataset(str(tmp_path), label="y")
    assert dataset.feature_dtype == "int8"
    write(path, pa.table({"x": [1.9, 2.7, 300.5, -0.5], "y": [0, 1, 0, 1]}))
    with pytest.raises(
        ColumnTypeError, match=r"column 'x' in row group 0 of .*part-0.parquet holds values its planned"
    ) as caught:
        dataset.reader(dataset.chunks[0])
    assert (caught.value.path, caught.value.column) == (dataset.chunks[0].path, "x")


@pytest.mark.parametrize(
    "replacement",
    [
        pa.array(["1.5", "2", "3", "4"]),  # parsed as numbers without a word
        pa.array(np.arange(4).astype("datetime64[s]")),  # an ArrowNotImplementedError traceback
        pa.array([[1.0]] * 4),
    ],
    ids=["text", "timestamp", "list"],
)
def test_a_numeric_column_replaced_by_another_type_is_refused_on_every_read_path(tmp_path, replacement):
    """A file rewritten after the plan with a column of another type: one
    ColumnTypeError naming column, row group and type, whole or streamed (text
    was parsed into numbers; a timestamp was a traceback, or "cannot read" when
    streamed)."""
    from pipeline.errors import ColumnTypeError

    path = write(tmp_path / "part-0.parquet", pa.table({"x": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]}))
    dataset = open_dataset(str(tmp_path), label="y")
    write(path, pa.table({"x": replacement, "y": [0, 1, 0, 1]}))
    reader, chunk = dataset.reader, dataset.chunks[0]
    for read in (lambda: reader(chunk), lambda: list(reader.iter_batches(chunk, 2))):
        with pytest.raises(
            ColumnTypeError,
            match=r"column 'x' in row group 0 of .*part-0.parquet has type .+; expected the numeric",
        ) as caught:
            read()
        assert (caught.value.path, caught.value.row_group, caught.value.column) == (chunk.path, 0, "x")


def test_a_streamed_row_group_is_read_a_buffer_at_a_time(tmp_path):
    """pyarrow's default reads a row group's whole column chunk at once: a
    streamed read held the row group, not a batch (8 MB a column here)."""
    n = 1_000_000
    rng = np.random.default_rng(0)
    table = pa.table({"x": rng.random(n), "y": (rng.random(n) < 0.5).astype(np.int8)})
    pq.write_table(table, tmp_path / "part-0.parquet", row_group_size=n, compression="none")
    dataset = open_dataset(str(tmp_path), label="y")
    base = pa.total_allocated_bytes()
    peak = 0
    for batch in dataset.reader.iter_batches(dataset.chunks[0], 1000):
        peak = max(peak, pa.total_allocated_bytes() - base)
        del batch
    assert peak < 4 * 2**20, peak


def _frame(rows: int = 300):
    import pandas as pd

    rng = np.random.default_rng(3)
    X = rng.standard_normal((rows, 3))
    y = (rng.random(rows) < 1 / (1 + np.exp(-X @ [1.0, -0.5, 0.25]))).astype(np.int8)
    return pd.DataFrame({"x1": X[:, 0], "x2": X[:, 1], "x3": X[:, 2], "y": y})


def test_a_stored_pandas_index_is_not_a_default_feature(tmp_path):
    """pandas (a filtered or text index) and Dask store the frame's index as a
    column that their metadata lists as the index: it is a row label, not a
    feature (it was trained on: a row id in the model, a text index one
    level per row), so the model is the rows' whatever the writer kept."""
    import dask.dataframe as dd

    from pipeline import TrainConfig, train

    frame = _frame()
    (tmp_path / "plain").mkdir()
    frame.to_parquet(tmp_path / "plain" / "a.parquet", index=False)
    (tmp_path / "filtered").mkdir()
    order = np.random.default_rng(0).permutation(len(frame))
    frame.iloc[order].to_parquet(tmp_path / "filtered" / "a.parquet")  # (an index not a range is stored)
    (tmp_path / "text").mkdir()
    frame.set_axis([f"row{i}" for i in range(len(frame))]).to_parquet(tmp_path / "text" / "a.parquet")
    dd.from_pandas(frame, npartitions=2).to_parquet(tmp_path / "dask")
    (tmp_path / "mixed").mkdir()  # (one file with its index stored, one without)
    frame.iloc[order[:150]].to_parquet(tmp_path / "mixed" / "a.parquet")
    frame.iloc[order[150:]].to_parquet(tmp_path / "mixed" / "b.parquet", index=False)
    assert "__index_level_0__" in pq.read_schema(tmp_path / "filtered" / "a.parquet").names
    digests = set()
    for name in ("plain", "filtered", "text", "dask", "mixed"):
        dataset = open_dataset(str(tmp_path / name), "y")
        assert dataset.feature_names == ("x1", "x2", "x3"), name
        digests.add(train(TrainConfig(data=str(tmp_path / name), label="y", cluster=None)).digest)
    assert len(digests) == 1
    # named, an index column is a feature like any other
    assert open_dataset(str(tmp_path / "filtered"), "y", ["x1", "__index_level_0__"]).n_features == 2


def test_a_column_all_null_in_the_first_file_is_a_feature_as_in_a_later_one(tmp_path):
    """A column of type null (pandas' type for a column of None) in one file
    and float in another: a feature (with --missing) whichever file sorts
    first (it was refused when the null one came first)."""
    from pipeline import TrainConfig, train

    frame = _frame()
    frame["x4"] = np.where(np.arange(len(frame)) % 3 == 0, np.nan, frame["x1"] * 2)
    empty = frame.iloc[:100].assign(x4=None)
    assert pa.types.is_null(pa.Table.from_pandas(empty).schema.field("x4").type)
    digests = set()
    for first, second in (("a", "b"), ("b", "a")):
        directory = tmp_path / f"null-{first}"
        directory.mkdir()
        empty.to_parquet(directory / f"{first}.parquet", index=False)
        frame.iloc[100:].to_parquet(directory / f"{second}.parquet", index=False)
        dataset = open_dataset(str(directory), "y", missing="mean")
        assert dataset.feature_names == ("x1", "x2", "x3", "x4")
        digests.add(train(TrainConfig(data=str(directory), label="y", cluster=None, missing="mean")).digest)
    assert len(digests) == 1


def test_an_existing_path_with_glob_or_chain_characters_is_that_path(tmp_path):
    """A directory or file that exists with '[', ']', '?' or '*' in its name is
    itself (it was read as a glob: data[1] read data1/, or matched nothing),
    and a local path with '::' is not cut there as a chain of filesystems
    (it was 'no file or directory')."""
    rows = pa.table({"x": np.arange(6, dtype=np.float64), "y": np.array([0, 1] * 3, dtype=np.int8)})
    write(tmp_path / "data[1]" / "a.parquet", rows)
    write(tmp_path / "data1" / "a.parquet", rows.slice(0, 2))  # what the glob data[1] matches
    assert open_dataset(str(tmp_path / "data[1]"), "y").n_samples == 6
    assert open_dataset(str(tmp_path / "data[1]" / "a.parquet"), "y").n_samples == 6
    assert open_dataset(str(tmp_path / "data[1]" / "*.parquet"), "y").n_samples == 2  # (a glob: data1/)
    # an output inside it is inside the data, as for any directory (it was taken for the glob's)
    from pipeline.errors import OutputError
    from pipeline.outputs import OutputDir

    with pytest.raises(OutputError, match="lies inside the dataset"):
        OutputDir(tmp_path / "data[1]" / "scores").check_apart_from(str(tmp_path / "data[1]"))
    write(tmp_path / "exp::v2" / "a.parquet", rows)
    assert open_dataset(str(tmp_path / "exp::v2"), "y").n_samples == 6
    assert open_dataset("file://" + str(tmp_path / "exp::v2" / "a.parquet"), "y").n_samples == 6
    # ... while a chain of filesystems over a local path is still one
    assert open_dataset(f"simplecache::{tmp_path / 'data1'}", "y").n_samples == 2
    # '**' within a name is no glob: the dataset's error, not a ValueError traceback
    from pipeline.errors import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError, match=r"cannot read the glob .*\*\*\.parquet"):
        open_dataset(str(tmp_path / "data1" / "**.parquet"), "y")


def test_memory_data_on_a_cluster_is_refused_before_it_starts(memory_fs, tmp_path):
    """fsspec's memory:// is the training process's own: a cluster's workers
    found nothing there (UnreadableFileError naming a bare path, after
    starting the cluster); in-process it trains."""
    from pipeline import ClusterSpec, TrainConfig, train
    from pipeline.errors import ConfigError

    fs, root = memory_fs
    with fs.open(f"{root}/a.parquet", "wb") as handle:
        pq.write_table(make_table(40, seed=0, start=0), handle)
    url = f"memory://{root.lstrip('/')}"
    with pytest.raises(ConfigError, match=r"in this process's memory .*--in-process"):
        train(TrainConfig(data=url, label="y", cluster=ClusterSpec(n_workers=1)))
    model = train(TrainConfig(data=url, label="y", cluster=None, out=str(tmp_path / "model")))
    assert model.n_samples == 40
    # predict and evaluate refuse them for a cluster too, before the cluster is asked anything
    from pipeline.predict import evaluate, predict

    untouched = object()  # (any use of it as a client would fail otherwise)
    with pytest.raises(ConfigError, match=r"in this process's memory"):
        predict(str(tmp_path / "model"), url, str(tmp_path / "scores"), client=untouched)
    with pytest.raises(ConfigError, match=r"in this process's memory"):
        evaluate(str(tmp_path / "model"), url, client=untouched)
    assert not (tmp_path / "scores").exists()


def test_a_linked_folder_in_a_dataset_is_read_and_nothing_twice(tmp_path):
    """A symbolic link to a folder inside a dataset folder is read like the
    folder (it was 'not a readable Parquet file: ... is a directory', while
    the glob data/* read it); a link back to an enclosing folder reads no
    file twice."""
    import os

    write(tmp_path / "data" / "a.parquet", make_table(6, seed=0, start=0))
    write(tmp_path / "elsewhere" / "2024" / "b.parquet", make_table(4, seed=1, start=6))
    os.symlink(tmp_path / "elsewhere" / "2024", tmp_path / "data" / "2024")
    os.symlink(tmp_path / "data", tmp_path / "data" / "again")
    # a link to a folder that holds the data reads nothing beside it; an ignored name is not walked
    write(tmp_path / "beside" / "c.parquet", make_table(3, seed=2, start=10))
    os.symlink(tmp_path, tmp_path / "data" / "up")
    os.symlink("/", tmp_path / "data" / "_root")
    for url in (tmp_path / "data", f"{tmp_path / 'data'}/*"):
        dataset = open_dataset(str(url), "y")
        assert dataset.n_samples == 10
        assert [path.rsplit("data/", 1)[1] for path in dataset.files] == ["2024/b.parquet", "a.parquet"]


def test_chains_globs_and_outputs_beside_them(tmp_path, monkeypatch):
    """A glob in a folder with '::' in its name is local (it was parsed as a
    chain: 'Protocol not known'); a chain of filesystems stays as written in
    a configuration (the working directory was put before it) and its local
    target is the data an output may not lie in; an output that a glob of
    one level matches, or lies in a folder it matches, is inside the data
    (every folder a glob matches is read whole)."""
    from pipeline.errors import OutputError
    from pipeline.jobfile import config_from_mapping
    from pipeline.outputs import OutputDir

    rows = pa.table({"x": np.arange(6, dtype=np.float64), "y": np.array([0, 1] * 3, dtype=np.int8)})
    write(tmp_path / "exp::v2" / "a.parquet", rows)
    monkeypatch.chdir(tmp_path)
    for url in ("exp::v2/*.parquet", f"{tmp_path}/exp::v2/*.parquet", f"file://{tmp_path}/exp::v2/*.parquet"):
        assert open_dataset(url, "y").n_samples == 6, url
    write(tmp_path / "ds" / "region=a" / "a.parquet", rows)
    chain = f"simplecache::{tmp_path / 'ds'}"
    assert config_from_mapping({"data.url": chain, "data.label": "y"}).data == chain
    assert open_dataset(chain, "y").n_samples == 6
    for data, output in [
        (chain, "ds/preds"),
        ("ds/*", "ds/preds"),
        ("ds/region=*", "ds/region=z"),
        (f"{tmp_path}/d?", "ds/preds/deeper"),
    ]:
        with pytest.raises(OutputError, match="lies inside the dataset"):
            OutputDir(output).check_apart_from(data)
    OutputDir("ds2/preds").check_apart_from("ds/*")  # (beside the data: fine)
    OutputDir("ds/scores").check_apart_from("ds/*.parquet")  # (the glob takes no folder named so)


def test_a_cgroup_limit_of_zero_or_less_is_no_limit(monkeypatch):
    """As distributed counts it: a control group's memory limit of 0 or -1
    is none (it was taken as the process's memory: 0 bytes, and every
    in-process --cache memory run was refused)."""
    import pipeline.cluster as cluster

    class Reads:  # (the control group's files, as a container with no limit set may show them)
        def __init__(self, path):
            self.path = path

        def read_text(self):
            return "0\n" if self.path.endswith("limit_in_bytes") else "-1\n"

    monkeypatch.setattr(cluster, "Path", Reads)
    assert cluster.process_memory() == psutil.virtual_memory().total


def test_a_files_footer_is_parsed_once_per_version(tmp_path, monkeypatch):
    """Each row group's read parsed its file's whole footer again (time
    quadratic in a file's row groups); now once per process and file
    version, and a file replaced since is parsed afresh and read as it is."""
    import os

    from pipeline import data

    path = str(tmp_path / "a.parquet")
    pq.write_table(pa.table({"x": np.arange(100.0), "y": np.arange(100) % 2}), path, row_group_size=10)
    filesystem = fsspec.filesystem("file")
    parsed = []  # the real ParquetFile, its footer parses counted
    real = pq.ParquetFile

    def counting(source, *args, metadata=None, **options):
        parsed.extend([source] if metadata is None else [])
        return real(source, *args, metadata=metadata, **options)

    monkeypatch.setattr(data.pq, "ParquetFile", counting)
    dataset = open_dataset(path, label="y")
    assert len(dataset.chunks) == 10
    assert [dataset.reader(chunk).X[0, 0] for chunk in dataset.chunks] == [10.0 * k for k in range(10)]
    assert [dataset.reader(chunk).X[0, 0] for chunk in dataset.chunks] == [10.0 * k for k in range(10)]
    assert parsed == [path]  # one parse for twenty reads of its row groups
    mtime = os.stat(path).st_mtime_ns
    pq.write_table(pa.table({"x": -np.arange(40.0), "y": np.arange(40) % 2}), path, row_group_size=20)
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))  # (another version, however coarse the clock)
    replaced = data.open_parquet(filesystem, path)
    assert (replaced.metadata.num_rows, replaced.metadata.num_row_groups) == (40, 2)
    dataset = open_dataset(path, label="y")
    assert [dataset.reader(chunk).X[-1, 0] for chunk in dataset.chunks] == [-19.0, -39.0]
    assert parsed == [path, path]
    # a filesystem whose ukey names no version (a zip archive's, HTTP's): read, not kept
    import zipfile

    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.write(path, "inner.parquet")
    zipped = fsspec.filesystem("zip", fo=str(tmp_path / "a.zip"))
    kept = dict(data._FOOTERS)
    assert data.open_parquet(zipped, "inner.parquet").read_row_group(1).column("x").to_pylist()[0] == -20.0
    assert dict(data._FOOTERS) == kept
    # a footer above the bytes kept is read, not kept
    monkeypatch.setattr(data, "FOOTER_BYTES_KEPT", 100)
    big = str(tmp_path / "big.parquet")
    pq.write_table(pa.table({"x": np.arange(100.0)}), big, row_group_size=10)
    assert data.open_parquet(filesystem, big).metadata.num_row_groups == 10
    assert all(key[0] != big for key in data._FOOTERS)
    monkeypatch.undo()
    for k in range(data.FOOTERS_KEPT + 1):  # (a bounded number of footers kept)
        other = str(tmp_path / f"f{k}.parquet")
        pq.write_table(pa.table({"x": [1.0]}), other)
        data.open_parquet(filesystem, other)
    assert len(data._FOOTERS) == data.FOOTERS_KEPT
