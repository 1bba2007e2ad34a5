"""Narrow data stays narrow: float32, small-integer and boolean feature
columns are decoded, cached (in memory and on disk) and passed to the kernels
in their own width, widened exactly inside the kernels, so a model trained on
them has the bytes of the same values stored as float64."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import ClusterSpec, Penalty, SolverOptions, TrainConfig, train
from pipeline.data import NARROW_FEATURE_DTYPES, feature_dtype, open_dataset
from pipeline.reduce import InProcessEvaluator, StreamingEvaluator
from pipeline.stream import DiskCache, batch_bytes

pytestmark = pytest.mark.filterwarnings("ignore::pipeline.errors.ConvergenceWarning")

N_ROWS = 3000
FEATURES = ("a", "b", "c", "d", "e")
#: Narrow Arrow types of the features; "wide" stores the same values as float64.
NARROW = {"a": pa.float32(), "b": pa.int8(), "c": pa.bool_(), "d": pa.int16(), "e": pa.float32()}
OPTIONS = SolverOptions(max_iter=15, tol=1e-10, ftol=0.0)
#: The passes every solver path takes: statistics, loss, Hessian, weights.
FITS = {
    "lbfgs": dict(solver="lbfgs", penalty=Penalty(l2=1e-3)),
    "newton": dict(solver="newton", penalty=Penalty(l2=1e-2), weight="w"),
    "owlqn raw": dict(solver="lbfgs", penalty=Penalty(l1=1e-3), standardize=False, class_weight="balanced"),
}


def columns(seed: int = 5) -> dict[str, np.ndarray]:
    """Values that every narrow type holds exactly (float32-rounded floats)."""
    rng = np.random.default_rng(seed)
    values = {
        "a": (rng.standard_normal(N_ROWS) * 3.0 + 1.0).astype(np.float32),
        "b": rng.integers(-128, 128, N_ROWS).astype(np.int8),
        "c": rng.random(N_ROWS) < 0.3,
        "d": rng.integers(-3000, 3000, N_ROWS).astype(np.int16),
        "e": (rng.standard_normal(N_ROWS) * 1e-3).astype(np.float32),
    }
    margin = 0.8 * values["a"] - 0.01 * values["b"] + values["c"] + 3e-4 * values["d"] - 1.0
    values["y"] = (rng.random(N_ROWS) < 1.0 / (1.0 + np.exp(-margin))).astype(np.int8)
    values["w"] = rng.uniform(0.5, 2.0, N_ROWS).round(3)
    return values


def write(directory: Path, types: dict[str, pa.DataType], cuts=(1000, 1700), row_group=400) -> Path:
    values = columns()
    directory.mkdir(parents=True)
    bounds = [0, *cuts, N_ROWS]
    for index, (start, stop) in enumerate(zip(bounds, bounds[1:])):
        table = pa.table(
            {
                **{name: pa.array(values[name][start:stop], type=types.get(name, pa.float64())) for name in FEATURES},
                "y": values["y"][start:stop],
                "w": values["w"][start:stop],
            }
        )
        pq.write_table(table, directory / f"part-{index}.parquet", row_group_size=row_group)
    return directory


@pytest.fixture(scope="module")
def narrow(tmp_path_factory) -> Path:
    return write(tmp_path_factory.mktemp("narrow") / "data", NARROW)


@pytest.fixture(scope="module")
def wide(tmp_path_factory) -> Path:
    return write(tmp_path_factory.mktemp("wide") / "data", {})


def config(data: Path, name: str, **where) -> TrainConfig:
    return TrainConfig(data=str(data), label="y", features=FEATURES, options=OPTIONS, **FITS[name], **where)


@pytest.fixture(scope="module")
def references(wide):
    return {name: train(config(wide, name)) for name in FITS}


def assert_identical(model, reference) -> None:
    assert np.array(model.coef).tobytes() == np.array(reference.coef).tobytes()
    assert np.float64(model.intercept).tobytes() == np.float64(reference.intercept).tobytes()
    assert model.loss_history == reference.loss_history
    assert model.digest == reference.digest


# ------------------------------------------------------------------ the dtype


@pytest.mark.parametrize(
    "types, expected",
    [
        ([pa.float32()], "float32"),
        ([pa.float16(), pa.float32()], "float32"),
        ([pa.int8(), pa.float32(), pa.bool_()], "float32"),
        ([pa.uint16(), pa.int16(), pa.float32()], "float32"),
        ([pa.int32(), pa.float32()], "float64"),  # an int32 is not always a float32
        ([pa.int8(), pa.uint8()], "int16"),
        ([pa.bool_()], "uint8"),
        ([pa.int8(), pa.int32()], "int32"),
        ([pa.uint32()], "float64"),
        ([pa.int64(), pa.int8()], "float64"),
        ([pa.float64(), pa.float32()], "float64"),
        ([], "float64"),
    ],
)
def test_the_narrowest_exact_dtype(types, expected):
    assert feature_dtype(types) == np.dtype(expected)
    assert feature_dtype(types) in (*NARROW_FEATURE_DTYPES, np.dtype(np.float64))


def test_narrow_columns_are_decoded_narrow(narrow, wide):
    dataset = open_dataset(str(narrow), "y", FEATURES, "w")
    assert dataset.feature_dtype == "float32"
    chunk = dataset.reader(dataset.chunks[0])
    assert chunk.X.dtype == np.float32 and chunk.X.flags.f_contiguous
    assert chunk.y.dtype == np.float64 and chunk.weights.dtype == np.float64
    full = open_dataset(str(wide), "y", FEATURES, "w")
    assert full.feature_dtype == "float64"
    np.testing.assert_array_equal(chunk.X, full.reader(full.chunks[0]).X)
    # half the bytes per feature: 5 * 4 + label + weight, against 5 * 8 + 8 + 8
    assert dataset.reader.row_bytes == 5 * 4 + 16 and full.reader.row_bytes == 5 * 8 + 16
    assert dataset.decoded_bytes == N_ROWS * (5 * 4 + 16)
    # one int8 feature alone stays int8
    assert open_dataset(str(narrow), "y", ["b"]).reader(dataset.chunks[0]).X.dtype == np.int8
    assert open_dataset(str(narrow), "y", ["c"]).reader(dataset.chunks[0]).X.dtype == np.uint8


def test_a_column_stored_wider_in_one_file_widens_the_dataset(tmp_path):
    data = write(tmp_path / "data", NARROW)
    extra = pa.table({**{n: pa.array([1.0], type=pa.float64()) for n in FEATURES}, "y": [1], "w": [1.0]})
    pq.write_table(extra, data / "part-9.parquet")
    dataset = open_dataset(str(data), "y", FEATURES, "w")
    assert dataset.feature_dtype == "float64"
    assert dataset.reader(dataset.chunks[0]).X.dtype == np.float64


# ------------------------------------------------------------------ the same bits


@pytest.mark.parametrize("name", FITS)
def test_narrow_columns_give_the_model_of_the_same_values_as_float64(narrow, references, name):
    assert_identical(train(config(narrow, name)), references[name])
    assert references[name].n_iter >= 3


def test_integer_and_boolean_columns_alone_stay_integers(narrow, wide):
    """int8, bool and int16 features decode to int16 and give the float64 model."""
    features = ("b", "c", "d")
    assert open_dataset(str(narrow), "y", features).feature_dtype == "int16"
    options = dict(label="y", features=features, options=OPTIONS, solver="newton", weight="w")
    model = train(TrainConfig(data=str(narrow), **options))
    assert_identical(model, train(TrainConfig(data=str(wide), **options)))
    assert model.n_iter >= 3


def test_streaming_with_a_narrow_disk_cache_equals_in_memory(narrow, tmp_path):
    dataset = open_dataset(str(narrow), "y", FEATURES, "w")
    coef = np.array([0.3, -0.02, 0.5, 1e-4, 20.0, -0.7])
    in_memory = InProcessEvaluator(dataset.read_chunks(), len(FEATURES))
    assert in_memory.chunks[0].X.dtype == np.float32
    cache = DiskCache(dataset.fingerprint, str(tmp_path))
    rows = 150
    streaming = StreamingEvaluator(None, dataset, cache, unit_bytes=10_000, batch_bytes=rows * dataset.reader.row_bytes)
    for _ in range(2):  # the first pass writes the cache, the second maps it
        assert streaming.partials(coef) == in_memory.partials(coef)
        assert streaming.stats() == in_memory.stats()
    files = sorted((tmp_path / "pipeline-cache").rglob("*.float32"))
    assert len(files) == len(dataset.chunks)
    expected = 0
    for chunk in dataset.chunks:
        full, last = divmod(chunk.n_rows, rows)
        expected += full * batch_bytes(dataset.reader, rows) + (batch_bytes(dataset.reader, last) if last else 0)
    assert sum(f.stat().st_size for f in files) == expected < dataset.n_samples * (5 * 8 + 16)


def test_odd_widths_are_padded_so_batches_stay_aligned(narrow, tmp_path):
    """One int8 feature: 1 byte a row, so each cached batch is padded to 8 bytes."""
    dataset = open_dataset(str(narrow), "y", ["b"], None)
    assert dataset.feature_dtype == "int8"
    reader = dataset.reader
    assert batch_bytes(reader, 7) == 7 * 8 + 8  # labels, then 7 bytes padded to 8
    cache = DiskCache(dataset.fingerprint, str(tmp_path))
    streaming = StreamingEvaluator(None, dataset, cache, unit_bytes=1000, batch_bytes=7 * reader.row_bytes)
    reference = InProcessEvaluator(dataset.read_chunks(), 1)
    coef = np.array([0.01, -0.2])
    for _ in range(2):
        assert streaming.partials(coef) == reference.partials(coef)


@pytest.mark.cluster
@pytest.mark.parametrize("cache", ["memory", "disk", "none"])
def test_narrow_columns_on_a_cluster_in_every_cache_mode(narrow, references, cache, tmp_path):
    model = train(config(narrow, "newton", cluster=ClusterSpec(n_workers=2), cache=cache, out=str(tmp_path / "out")))
    assert_identical(model, references["newton"])


def test_the_estimator_keeps_float32(narrow):
    from pipeline.estimator import LogisticRegression

    values = columns()
    X32 = np.column_stack([values[name].astype(np.float32) for name in FEATURES])
    y = values["y"]
    narrow_fit = LogisticRegression(l2=1e-2, max_iter=20).fit(X32, y)
    wide_fit = LogisticRegression(l2=1e-2, max_iter=20).fit(X32.astype(np.float64), y)
    assert narrow_fit.coef_.tobytes() == wide_fit.coef_.tobytes()
    assert narrow_fit.intercept_.tobytes() == wide_fit.intercept_.tobytes()
    assert narrow_fit.decision_function(X32).tobytes() == wide_fit.decision_function(X32.astype(np.float64)).tobytes()


def test_whole_row_groups_decode_into_fresh_plain_pages(tmp_path):
    """A decoded row group of FRESH_PAGES_BYTES or more is an anonymous memory
    map (plain pages: no transparent-huge-page compaction when it is first
    written), F-ordered and writable; it pickles (Dask moves it) as an ordinary
    array; small arrays and streamed batches are ordinary numpy allocations."""
    import mmap
    import pickle

    from pipeline.data import FRESH_PAGES_BYTES, fresh_array

    def backed_by_map(array) -> bool:
        base = array
        while isinstance(base, np.ndarray):
            base = base.base
        return isinstance(getattr(base, "obj", base), mmap.mmap)  # (numpy keeps a memoryview of it)

    rows = FRESH_PAGES_BYTES // (4 * 8) + 1
    big = fresh_array((rows, 4), np.float64)
    assert big.flags.f_contiguous and big.flags.writeable and backed_by_map(big)
    big[:] = 1.5
    again = pickle.loads(pickle.dumps(big))
    assert again.flags.f_contiguous and np.array_equal(again, big)
    small = fresh_array((10, 4), np.float32)
    assert small.dtype == np.float32 and small.flags.f_contiguous and not backed_by_map(small)

    rng = np.random.default_rng(0)
    rows = FRESH_PAGES_BYTES // (2 * 8) + 1  # two float64 features
    table = pa.table({"x0": rng.standard_normal(rows), "x1": rng.standard_normal(rows), "y": np.zeros(rows)})
    pq.write_table(table, tmp_path / "big.parquet", row_group_size=rows)
    dataset = open_dataset(str(tmp_path / "big.parquet"), "y")
    chunk = dataset.reader(dataset.chunks[0])
    assert backed_by_map(chunk.X) and chunk.X.flags.f_contiguous
    np.testing.assert_array_equal(chunk.X[:, 0], table.column("x0").to_numpy())
    batch = next(dataset.reader.iter_batches(dataset.chunks[0], 1000))
    assert not backed_by_map(batch.X)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the memory counts from /proc (Linux)")
def test_fresh_pages_are_private_memory():
    """A fresh decoded array is private anonymous memory, its pages provided
    when it is made: ``mmap(-1, n)`` alone made a shared map, which Linux
    backs with shared memory (counted as RssShmem), whose page faults cost
    more; it reads as zeros first."""
    from pipeline.data import fresh_array

    def counted(name: str) -> int:
        line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(name))
        return int(line.split()[1]) * 1024

    n_bytes = 64 * 2**20
    before = counted("RssAnon:"), counted("RssShmem:")
    array = fresh_array((n_bytes // (8 * 8), 8), np.float64)
    assert counted("RssAnon:") - before[0] >= 0.9 * n_bytes  # (its pages provided when it is made)
    assert not array[::4096].any()
    array[:] = 1.0
    anon, shmem = counted("RssAnon:") - before[0], counted("RssShmem:") - before[1]
    assert anon >= 0.9 * n_bytes and shmem < 0.1 * n_bytes, (anon, shmem)
