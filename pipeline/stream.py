"""Streaming passes with bounded memory: task units, batches and the disk cache.

A pass over a dataset that does not fit in memory runs one task per *unit*:
a run of consecutive chunks (row groups, canonical order) grouped until they
hold about ``unit_bytes`` of decoded data, so tiny row groups do not cost a
task each.  A task streams its row groups in *batches* of at most
``batch_bytes`` decoded bytes — a row group larger than memory is read
slice by slice — applies a kernel to each batch, merges the partial states
and returns only that small state.  A worker therefore holds about one batch
(plus the kernel's block temporaries and the Parquet reader's buffers) at a
time, whatever the dataset size.

:class:`DiskCache` keeps a decoded, column-major copy of each row group
(features in their own dtype) in the worker's local directory: the first pass writes it while
streaming, later passes memory-map it batch by batch instead of decoding
Parquet.  Batches, units and cache hits never change a result: the partial
sums are exact and merge in any order.

Pure data + kernel code: no Dask here (the cluster side is :mod:`pipeline.reduce`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import Chunk, ChunkReader, ChunkSpec, Dataset
from .kernel import Categories, FoldStats, KernelSpec, Partials, Stats, accumulate, fold_stats, level_rows

_log = logging.getLogger(__name__)

__all__ = [
    "BATCH_BYTES",
    "UNIT_BYTES",
    "DiskCache",
    "batch_rows",
    "fold_stats_kernel",
    "loss_kernel",
    "plan_units",
    "stats_kernel",
    "unit_sums",
    "units_sums",
]


def chunk_partials_fast(*args, **kwargs) -> Partials:
    """:func:`pipeline.fused.chunk_partials_fast`, imported on first use: numba
    (and the kernel's self-check) cost half a second that commands which never
    run a pass (status, list, --help) should not pay."""
    from .fused import chunk_partials_fast as compiled

    return compiled(*args, **kwargs)


def chunk_stats_fast(*args, **kwargs) -> Stats:
    """:func:`pipeline.fused.chunk_stats_fast` (compiled wherever numba
    imports; equal to :func:`pipeline.kernel.chunk_stats`), imported on first
    use like :func:`chunk_partials_fast`."""
    from .fused import chunk_stats_fast as compiled

    return compiled(*args, **kwargs)


#: Decoded bytes a task unit aims for when grouping small row groups.
UNIT_BYTES = 64 * 2**20
#: Decoded bytes per streamed batch (bounds a task's working memory).
BATCH_BYTES = 8 * 2**20


def batch_rows(reader: ChunkReader, batch_bytes: int = BATCH_BYTES) -> int:
    return max(1, batch_bytes // reader.row_bytes)


def plan_units(
    chunks: Sequence[ChunkSpec], bytes_per_row: int, unit_bytes: int = UNIT_BYTES
) -> list[tuple[ChunkSpec, ...]]:
    """Consecutive chunks grouped into units of about ``unit_bytes`` (canonical order kept).

    A chunk larger than ``unit_bytes`` is a unit of its own (it is streamed
    in batches, so its size does not matter for memory).
    """
    units: list[tuple[ChunkSpec, ...]] = []
    current: list[ChunkSpec] = []
    size = 0
    for chunk in chunks:
        chunk_bytes = chunk.n_rows * bytes_per_row
        if current and size + chunk_bytes > unit_bytes:
            units.append(tuple(current))
            current, size = [], 0
        current.append(chunk)
        size += chunk_bytes
    if current:
        units.append(tuple(current))
    return units


@dataclass(frozen=True)
class DiskCache:
    """Decoded copies of row groups under ``root/token/`` (one file each).

    ``root``: a directory on the machine that runs the task, or None for the
    Dask worker's own local directory.  ``token``: the data's (:meth:`for_data`).
    """

    token: str
    root: str | None = None

    @classmethod
    def for_data(cls, dataset: Dataset, root: str | None = None) -> DiskCache:
        """The cache of ``dataset``'s decoded copies: its token is the
        dataset fingerprint and the files' modification times, so that a run
        on the same files reads (and at its end removes) what an earlier run
        left -- a resumed job's killed run, say -- while a file rewritten
        since, even at the same size and without statistics (which the
        fingerprint does not see), is decoded again."""
        stamps = [_modified(dataset.filesystem, path) for path in dataset.files]
        return cls(hashlib.sha256(repr((dataset.fingerprint, stamps)).encode()).hexdigest(), root)

    def directory(self, worker=None) -> Path:
        if self.root is not None:
            base = Path(self.root)
        else:
            if worker is None:
                from distributed import get_worker

                worker = get_worker()
            base = Path(worker.local_directory)
        return base / "pipeline-cache" / self.token[:32]

    def clear(self, dask_worker=None) -> None:
        """Remove this dataset's cached copies (``client.run(cache.clear)`` after training)."""
        shutil.rmtree(self.directory(dask_worker), ignore_errors=True)

    def path(self, chunk: ChunkSpec, rows: int, dtype: str = "float64") -> Path:
        name = hashlib.sha256(chunk.path.encode()).hexdigest()[:24]
        return self.directory() / f"{name}-rg{chunk.row_group}-b{rows}.{dtype}"


def _modified(filesystem, path: str) -> str | None:
    """A file's modification time as its filesystem gives it (None: not given)."""
    try:
        return str(filesystem.modified(path))
    except Exception:  # noqa: BLE001 - fsspec filesystems raise what they like for a time they do not keep
        return None


def batch_bytes(reader: ChunkReader, n: int) -> int:
    """Bytes of one cached batch of ``n`` rows: the labels and weights
    (float64), then the features in the reader's dtype, column-major, padded
    to a multiple of 8 bytes so that every batch starts 8-byte aligned."""
    head = 8 * n * (2 if reader.has_weights else 1)
    features = n * reader.width * np.dtype(reader.dtype).itemsize
    return head + -(-features // 8) * 8


def cached_batches(reader: ChunkReader, chunk: ChunkSpec, rows: int, cache: DiskCache | None) -> Iterator[Chunk]:
    """Batches of one row group: from the disk cache, or decoded (and cached).

    A cache file holds the row group's batches one after another
    (:func:`batch_bytes`): each the labels, the weights and a column-major
    ``(batch rows, features)`` block in the features' own dtype (narrow data
    stays narrow on disk), so a batch maps to arrays the kernel reads in
    place (narrow features widened block by block inside the kernel).  The
    batch size and the dtype are part of the file name: another size or type
    never misreads.
    """
    if cache is None:
        yield from reader.iter_batches(chunk, rows)
        return
    path = cache.path(chunk, rows, reader.dtype)
    if _complete(path, reader, chunk, rows):
        try:
            handle = open(path, "rb")  # noqa: SIM115 - held while its batches are read, closed below
        except OSError:  # (removed since: another run on the same data cleared the cache)
            handle = None
        if handle is not None:
            with handle:
                yield from _mapped_batches(handle, reader, chunk, rows)
            return
    yield from _caching_batches(path, reader, chunk, rows)


def cache_file_bytes(reader: ChunkReader, chunk: ChunkSpec, rows: int) -> int:
    """Bytes of a complete cache file of ``chunk`` in batches of ``rows``."""
    full, rest = divmod(chunk.n_rows, rows)
    return full * batch_bytes(reader, rows) + (batch_bytes(reader, rest) if rest else 0)


def _complete(path: Path, reader: ChunkReader, chunk: ChunkSpec, rows: int) -> bool:
    """Whether ``path`` is a whole cache file of ``chunk`` (one cut short or
    grown by something else is decoded and written again, never misread)."""
    try:
        return path.stat().st_size == cache_file_bytes(reader, chunk, rows)
    except OSError:
        return False


def _mapped_batches(handle, reader: ChunkReader, chunk: ChunkSpec, rows: int) -> Iterator[Chunk]:
    """The batches of a whole cache file, open as ``handle``: each is mapped
    from that open file, so the file may be removed meanwhile (a cache
    directory is the same for every run on the same files, and each run
    clears it at its end: :meth:`DiskCache.for_data`) without failing the pass."""
    n_features = reader.width
    dtype = np.dtype(reader.dtype).newbyteorder("<")
    for start in range(0, chunk.n_rows, rows):
        n = min(rows, chunk.n_rows - start)
        # map per batch and drop it after, so mapped pages do not pile up
        block = np.memmap(
            handle,
            dtype=np.uint8,
            mode="r",
            offset=start // rows * batch_bytes(reader, rows),
            shape=(batch_bytes(reader, n),),
        )
        y = block[: 8 * n].view("<f8")
        weights = block[8 * n : 16 * n].view("<f8") if reader.has_weights else None
        head = 8 * n * (2 if reader.has_weights else 1)
        X = block[head : head + n * n_features * dtype.itemsize].view(dtype).reshape((n, n_features), order="F")
        yield Chunk(X, y, weights)
        del block, X, y, weights


def _caching_batches(path: Path, reader: ChunkReader, chunk: ChunkSpec, rows: int) -> Iterator[Chunk]:
    """Decoded batches, written to ``path`` on the way.  The cache is a copy:
    a directory that cannot be made or a disk that fills up (any ``OSError``
    of the writing) leaves the batches as decoded, with no file, and a
    warning in the worker's log; the next pass decodes and tries again."""
    dtype = np.dtype(reader.dtype).newbyteorder("<")
    temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    handle = None
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(temporary, "wb")  # noqa: SIM115 - closed below, where a full disk may also fail
        except OSError as error:
            _not_cached(path, error)
        start = 0
        for data in reader.iter_batches(chunk, rows):
            n = data.X.shape[0]
            # written only while every batch has the size a later read assumes
            if handle is not None and n != min(rows, chunk.n_rows - start):
                handle.close()
                handle = None
            if handle is not None:
                try:
                    handle.write(np.ascontiguousarray(_labels(data), dtype="<f8").tobytes())
                    if data.weights is not None:  # present exactly when reader.has_weights
                        handle.write(np.ascontiguousarray(data.weights, dtype="<f8").tobytes())
                    handle.write(np.asfortranarray(data.X, dtype=dtype).tobytes(order="F"))
                    handle.write(bytes(-(n * reader.width * dtype.itemsize) % 8))
                except OSError as error:
                    _not_cached(path, error)
                    with contextlib.suppress(OSError):
                        handle.close()
                    handle = None
            start += n
            yield data
        if handle is not None:
            try:
                handle.close()
                os.replace(temporary, path)
            except OSError as error:
                _not_cached(path, error)
            handle = None
    finally:
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _not_cached(path: Path, error: OSError) -> None:
    _log.warning("pipeline: the disk cache cannot be written (%s: %s); the pass decodes the row group", path, error)


def _labels(data: Chunk) -> np.ndarray:
    """The labels of a batch of a training pass (a reader with a label column gives them)."""
    if data.y is None:
        raise ValueError("a training pass needs labelled data; this reader reads no label column")
    return data.y


def loss_kernel(data: Chunk, coef: np.ndarray, spec: KernelSpec) -> Partials:
    return chunk_partials_fast(data.X, _labels(data), coef, data.weights, spec)


def fold_stats_kernel(data: Chunk, n_folds: int, categories: Categories | None = None) -> FoldStats:
    """Each fold's statistics over a batch whose labels carry their folds
    (:class:`pipeline.data.Folds`), with its rows per level given ``categories``."""
    return fold_stats(data.X, _labels(data), data.weights, n_folds, chunk_stats_fast, categories)


def stats_kernel(data: Chunk, categories: Categories | None = None) -> Stats:
    stats = chunk_stats_fast(data.X, _labels(data), data.weights).with_extremes(data.X, data.weights)
    return stats if categories is None else stats.with_level_rows(level_rows(data.X, categories))


def unit_sums(reader: ChunkReader, unit: Sequence[ChunkSpec], rows: int, cache: DiskCache | None, kernel, *args):
    """Stream every row group of a unit through ``kernel``; merge the states."""
    total = None
    for chunk in unit:
        for data in cached_batches(reader, chunk, rows, cache):
            total = accumulate(total, kernel(data, *args))
    return total


def units_sums(
    reader: ChunkReader, units: Sequence[Sequence[ChunkSpec]], rows: int, cache: DiskCache | None, kernel, *args
):
    """:func:`unit_sums` over several units, merged (one task's share of a pass)."""
    total = None
    for unit in units:
        total = accumulate(total, unit_sums(reader, unit, rows, cache, kernel, *args))
    return total
