"""Bounded-memory streaming passes, the disk cache and cache-mode selection."""

from __future__ import annotations

import dataclasses

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import ClusterSpec, SolverOptions, TrainConfig, open_dataset, train
from pipeline.errors import ConfigError, LabelValueError
from pipeline.kernel import KernelSpec
from pipeline.reduce import InProcessEvaluator, StreamingEvaluator
from pipeline.stream import DiskCache, cached_batches, plan_units
from pipeline.train import choose_cache

pytestmark = pytest.mark.filterwarnings("ignore::pipeline.errors.ConvergenceWarning")

OPTIONS = SolverOptions(max_iter=6, ftol=0.0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(3)
    n = 5000
    X = rng.standard_normal((n, 4)) * [1.0, 2.0, 0.5, 10.0]
    y = (rng.random(n) < 1 / (1 + np.exp(-X[:, 0]))).astype(np.int64)
    w = rng.uniform(0.5, 1.5, n)
    for index, (start, stop, group) in enumerate([(0, 1200, 1200), (1200, 1207, 1), (1207, n, 900)]):
        table = pa.table({**{f"f{j}": X[start:stop, j] for j in range(4)}, "y": y[start:stop], "w": w[start:stop]})
        pq.write_table(table, root / f"part-{index}.parquet", row_group_size=group)
    return root


def test_units_group_small_row_groups_in_canonical_order(data):
    dataset = open_dataset(str(data), "y", weight="w")
    per_row = dataset.reader.row_bytes
    assert per_row == 8 * 6
    units = plan_units(dataset.chunks, per_row, unit_bytes=1000 * per_row)
    assert [chunk for unit in units for chunk in unit] == list(dataset.chunks)  # order kept
    for unit in units:  # each unit stays within budget unless it is one large chunk
        assert len(unit) == 1 or sum(c.n_rows for c in unit) <= 1000
    assert any(len(unit) > 1 for unit in units)  # the 1-row row groups were grouped
    assert len(units) < len(dataset.chunks)


def test_batches_are_the_row_group_in_slices(data):
    dataset = open_dataset(str(data), "y", weight="w")
    reader = dataset.reader
    chunk = dataset.chunks[0]
    whole = reader(chunk)
    parts = list(reader.iter_batches(chunk, 250))
    assert [len(part.y) for part in parts] == [250] * 4 + [200]
    np.testing.assert_array_equal(np.concatenate([p.X for p in parts]), whole.X)
    np.testing.assert_array_equal(np.concatenate([p.weights for p in parts]), whole.weights)


@pytest.mark.parametrize("cache", [False, True])
def test_streaming_equals_in_memory_bit_for_bit(data, tmp_path, cache):
    dataset = open_dataset(str(data), "y", weight="w")
    coef = np.array([0.3, -0.2, 0.1, 0.05, -0.4])
    spec = KernelSpec(center=np.zeros(4), scale=np.array([1.0, 2.0, 0.5, 10.0]), class_weight=(1.0, 3.0))
    reference = InProcessEvaluator(dataset.read_chunks(), 4)
    disk = DiskCache(dataset.fingerprint, str(tmp_path)) if cache else None
    streaming = StreamingEvaluator(None, dataset, disk, unit_bytes=3000, batch_bytes=48 * 77)
    for _ in range(2):  # with a cache: first pass writes it, the second maps it
        assert streaming.partials(coef, spec) == reference.partials(coef, spec)
        assert streaming.stats() == reference.stats()
    if cache:
        files = list((tmp_path / "pipeline-cache").rglob("*.float64"))
        assert len(files) == len(dataset.chunks)
        assert sum(f.stat().st_size for f in files) == dataset.decoded_bytes
        assert not list(tmp_path.rglob("*.tmp"))


def test_cached_passes_read_only_the_cache(data, tmp_path):
    """After the first pass the Parquet files are not needed; each cached batch
    is one Fortran-ordered block the kernel reads in place."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    dataset = open_dataset(str(copy), "y", weight="w")
    coef = np.array([0.3, -0.2, 0.1, 0.05, -0.4])
    expected = InProcessEvaluator(dataset.read_chunks(), 4).partials(coef)
    disk = DiskCache(dataset.fingerprint, str(tmp_path / "cache"))
    streaming = StreamingEvaluator(None, dataset, disk, batch_bytes=48 * 77)
    assert streaming.partials(coef) == expected
    shutil.rmtree(copy)
    assert streaming.partials(coef) == expected
    batches = list(cached_batches(dataset.reader, dataset.chunks[0], streaming.rows, disk))
    assert [len(b.y) for b in batches][:-1] == [streaming.rows] * (len(batches) - 1)
    assert all(b.X.flags.f_contiguous for b in batches)


def test_a_cache_that_cannot_be_written_leaves_the_pass_as_decoded(data, tmp_path, caplog):
    """The cache is a copy: a cache directory that cannot be made is logged and
    the pass reads the Parquet files, with the same sums (it was a raw
    ``FileExistsError`` out of the pass)."""
    dataset = open_dataset(str(data), "y", weight="w")
    coef = np.array([0.3, -0.2, 0.1, 0.05, -0.4])
    expected = InProcessEvaluator(dataset.read_chunks(), 4).partials(coef)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory would go")
    streaming = StreamingEvaluator(None, dataset, DiskCache(dataset.fingerprint, str(blocker)), batch_bytes=48 * 77)
    with caplog.at_level("WARNING", logger="pipeline.stream"):
        assert streaming.partials(coef) == expected
        assert streaming.partials(coef) == expected
    assert "the disk cache cannot be written" in caplog.text
    assert blocker.read_text() == "a file where the cache directory would go"


def test_a_full_disk_leaves_the_pass_as_decoded_and_no_partial_file(data, tmp_path):
    """A disk that fills up while the cache is written (here the file-size
    limit of the process: EFBIG, as ENOSPC) leaves no cache file and no
    temporary, and the passes' sums are those of the Parquet files.  The
    kernels are compiled before the limit is set: numba's own cache files,
    written where no kernel was cached yet, would hit it too."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import resource, signal, pickle, sys
        import numpy as np
        from pipeline import open_dataset
        from pipeline.reduce import StreamingEvaluator
        from pipeline.stream import DiskCache
        dataset = open_dataset({str(data)!r}, "y", weight="w")
        disk = DiskCache(dataset.fingerprint, {str(tmp_path)!r})
        streaming = StreamingEvaluator(None, dataset, disk, batch_bytes=48 * 77)
        coef = np.array([0.3, -0.2, 0.1, 0.05, -0.4])
        from pipeline.reduce import InProcessEvaluator
        InProcessEvaluator(dataset.read_chunks(), 4).partials(coef)  # compiled (and cached) before the limit
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))
        first, second = streaming.partials(coef), streaming.partials(coef)
        sys.stdout.buffer.write(pickle.dumps((first, second)))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode()
    import pickle

    first, second = pickle.loads(run.stdout)
    dataset = open_dataset(str(data), "y", weight="w")
    expected = InProcessEvaluator(dataset.read_chunks(), 4).partials(np.array([0.3, -0.2, 0.1, 0.05, -0.4]))
    assert first == expected and second == expected
    assert b"the disk cache cannot be written" in run.stderr
    cached = list((tmp_path / "pipeline-cache").rglob("*.float64"))
    # the row groups under the limit are cached whole; the larger ones are not there at all
    assert 0 < len(cached) < len(dataset.chunks)
    assert all(f.stat().st_size <= 20_000 for f in cached)
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_cache_cleared_by_another_run_does_not_fail_a_pass(data, tmp_path):
    """Runs on the same data share a cache directory, and each clears it at
    its end: a row group being read from it is read to its end, and one whose
    file has gone is decoded again."""
    dataset = open_dataset(str(data), "y", weight="w")
    coef = np.array([0.3, -0.2, 0.1, 0.05, -0.4])
    expected = InProcessEvaluator(dataset.read_chunks(), 4).partials(coef)
    disk = DiskCache(dataset.fingerprint, str(tmp_path))
    streaming = StreamingEvaluator(None, dataset, disk, batch_bytes=48 * 77)
    assert streaming.partials(coef) == expected  # (the cache written)
    chunk = max(dataset.chunks, key=lambda chunk: chunk.n_rows)
    whole = [b.X.copy() for b in cached_batches(dataset.reader, chunk, streaming.rows, disk)]
    assert len(whole) > 1
    batches = cached_batches(dataset.reader, chunk, streaming.rows, disk)
    first = next(batches)
    disk.clear()
    rest = list(batches)  # (a FileNotFoundError from the next batch's mapping before)
    assert [b.X.tobytes() for b in [first, *rest]] == [X.tobytes() for X in whole]
    assert streaming.partials(coef) == expected


def test_a_cache_file_cut_short_is_written_again(data, tmp_path):
    dataset = open_dataset(str(data), "y", weight="w")
    coef = np.array([0.3, -0.2, 0.1, 0.05, -0.4])
    expected = InProcessEvaluator(dataset.read_chunks(), 4).partials(coef)
    disk = DiskCache(dataset.fingerprint, str(tmp_path))
    streaming = StreamingEvaluator(None, dataset, disk, batch_bytes=48 * 77)
    assert streaming.partials(coef) == expected
    files = sorted((tmp_path / "pipeline-cache").rglob("*.float64"), key=lambda f: f.stat().st_size)
    whole = files[-1].stat().st_size
    with open(files[-1], "r+b") as handle:
        handle.truncate(whole - 48 * 77)
    assert streaming.partials(coef) == expected  # a ValueError from the mapping before
    assert files[-1].stat().st_size == whole


def test_errors_in_a_later_batch_name_the_right_row(tmp_path):
    y = np.zeros(1000, dtype=np.int64)
    y[777] = 3
    pq.write_table(pa.table({"a": np.arange(1000.0), "y": y}), tmp_path / "d.parquet", row_group_size=1000)
    dataset = open_dataset(str(tmp_path), "y")
    with pytest.raises(LabelValueError, match=r"at row 777 of the row group \(dataset row 777\)"):
        StreamingEvaluator(None, dataset, None, batch_bytes=16 * 100).stats()


@pytest.mark.parametrize("mode", ["none", "disk"])
def test_in_process_streaming_trains_the_same_model(data, mode):
    reference = train(TrainConfig(data=str(data), label="y", weight="w", cluster=None, options=OPTIONS))
    model = train(TrainConfig(data=str(data), label="y", weight="w", cluster=None, options=OPTIONS, cache=mode))
    assert model.digest == reference.digest and model.cache == mode
    assert model.loss_history == reference.loss_history


def test_boolean_label_and_feature_stream_like_they_load(tmp_path):
    """Streaming decodes record batches (Arrow arrays, not tables): booleans must
    convert there too (found by tests/test_fuzz.py)."""
    rng = np.random.default_rng(9)
    n = 500
    flag = rng.random(n) < 0.5
    x = rng.standard_normal(n)
    y = rng.random(n) < 1 / (1 + np.exp(-(x + flag)))
    pq.write_table(pa.table({"x": x, "flag": flag, "y": y}), tmp_path / "d.parquet", row_group_size=128)
    models = [
        train(TrainConfig(data=str(tmp_path), label="y", cluster=None, options=OPTIONS, cache=mode))
        for mode in ("memory", "none", "disk")
    ]
    assert len({model.digest for model in models}) == 1
    assert models[0].features == ["x", "flag"] and models[0].n_samples == n


def test_choose_cache():
    gib = 2**30
    assert choose_cache("auto", 1 * gib, 4 * gib, 0.5)[0] == "memory"
    mode, reason = choose_cache("auto", 3 * gib, 4 * gib, 0.5)
    assert mode == "disk" and "exceeds 50% of 4.00 GiB" in reason
    assert choose_cache("auto", 1 * gib, None, 0.5)[0] == "disk"  # unknown memory: be safe
    assert choose_cache("none", 100 * gib, 4 * gib, 0.5)[0] == "none"
    assert choose_cache("disk", 1, 4 * gib, 0.5)[0] == "disk"
    with pytest.raises(ConfigError, match="--cache memory needs 3.00 GiB"):
        choose_cache("memory", 3 * gib, 4 * gib, 0.5)
    # less what each worker holds of its own: 2 workers of 600 MiB took 0.47 GiB in memory, and died
    mib = 2**20
    mode, reason = choose_cache("auto", int(0.47 * gib), 2 * 600 * mib, 0.5, n_workers=2)
    assert mode == "disk" and "less 300 MiB per worker of its own" in reason, reason
    assert choose_cache("auto", int(0.47 * gib), 2 * 800 * mib, 0.5, n_workers=2)[0] == "memory"
    with pytest.raises(ConfigError, match="--cache memory needs"):
        choose_cache("memory", int(0.47 * gib), 2 * 600 * mib, 0.5, n_workers=2)


def test_an_in_process_run_keeps_in_memory_only_what_fits(data):
    """In-process, --cache auto takes the disk cache where the decoded data do
    not fit in --memory-fraction of this process's memory (it always read
    everything into memory, whatever the size: data larger than memory
    failed, and --memory-fraction was ignored); the same model either way,
    and --cache memory beyond the fraction is refused, as on a cluster."""
    from pipeline.cluster import process_memory

    notes: list[str] = []
    config = TrainConfig(data=str(data), label="y", weight="w", cluster=None, options=OPTIONS)
    reference = train(config, notify=notes.append)
    assert reference.cache == "memory" and any(
        "cache: memory (in-process; auto:" in note and "of this process's memory" in note for note in notes
    )
    tiny = dataclasses.replace(config, memory_fraction=1e-9)
    model = train(tiny, notify=notes.append)
    assert model.cache == "disk" and model.digest == reference.digest
    with pytest.raises(ConfigError, match="--cache memory needs .* of this process's memory"):
        train(dataclasses.replace(tiny, cache="memory"))
    assert 0 < process_memory() <= psutil.virtual_memory().total


@pytest.mark.cluster
def test_every_cache_mode_on_a_cluster_gives_the_same_model(data, tmp_path):
    reference = train(TrainConfig(data=str(data), label="y", weight="w", cluster=None, options=OPTIONS))
    for mode in ["memory", "disk", "none", "auto"]:
        model = train(
            TrainConfig(
                data=str(data), label="y", weight="w", options=OPTIONS, cache=mode, cluster=ClusterSpec(n_workers=2)
            )
        )
        assert model.digest == reference.digest, mode
        assert model.loss_history == reference.loss_history
        assert model.cache == ("memory" if mode == "auto" else mode)


def test_the_disk_cache_is_keyed_by_the_files_modification_times_too(tmp_path):
    """The workers' copies were keyed by the dataset fingerprint alone: copies
    that a killed run left were read by the next run on data of the same
    fingerprint, also after values were rewritten at the same size in files
    without statistics (a wrong model, no warning). The same files keep their
    copies (a resumed job reads its killed run's, and removes them)."""
    import os

    rng = np.random.default_rng(8)
    table = pa.table({"x": rng.standard_normal(100), "y": (rng.random(100) < 0.5).astype(np.int8)})
    path = tmp_path / "d" / "part.parquet"
    path.parent.mkdir()
    plain = dict(write_statistics=False, compression="NONE", use_dictionary=False)  # (the size: the layout's)
    pq.write_table(table, path, **plain)
    before = open_dataset(str(path.parent), label="y")
    first = DiskCache.for_data(before)
    assert DiskCache.for_data(open_dataset(str(path.parent), label="y")) == first
    rewritten = pa.table({"x": rng.standard_normal(100), "y": table["y"]})
    pq.write_table(rewritten, path, **plain)
    stamp = os.stat(path).st_mtime_ns
    os.utime(path, ns=(stamp, stamp + 10**9))  # (a later time, whatever the clock's resolution)
    again = open_dataset(str(path.parent), label="y")
    assert again.fingerprint == before.fingerprint  # (what the fingerprint cannot see)
    assert DiskCache.for_data(again) != first
