"""Parquet dataset → chunk plan → numpy chunks or Dask arrays.

:func:`open_dataset` resolves a directory (hive-style ``key=value/`` folders
allowed), a single file or a glob on any fsspec filesystem, reads only the
Parquet footers, checks the columns, and plans one chunk per non-empty row
group in canonical order: files sorted by path, row groups in file order.
Chunk sizes are therefore known before any data is read.

Reading a chunk (:class:`ChunkReader`) projects the label and feature
columns, casts them to float64 and validates every value: nulls, NaN/inf and
label values outside {0, 1} raise an error naming the file, column, row group
and row.  Rows are never dropped.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any, NamedTuple

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import (
    ColumnNotFoundError,
    ColumnTypeError,
    ConfigError,
    WeightValueError,
    DatasetNotFoundError,
    EmptyDatasetError,
    LabelValueError,
    MissingValueError,
    NonFiniteValueError,
    UnreadableFileError,
)

__all__ = ["Chunk", "ChunkReader", "ChunkSpec", "Dataset", "open_dataset"]

#: Path components starting with these are not data (``_SUCCESS``, ``.crc``).
IGNORED_PREFIXES = (".", "_")
_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class ChunkSpec:
    """One row group: where it is, how many rows, where it starts globally."""

    path: str
    row_group: int
    n_rows: int
    offset: int

    def where(self) -> str:
        return f"row group {self.row_group} of {self.path}"


class Chunk(NamedTuple):
    """One chunk's data: ``X`` (n, d) Fortran-ordered, ``y`` (n,) in {0, 1},
    ``weights`` (n,) >= 0 or None when the dataset has no weight column."""

    X: np.ndarray
    y: np.ndarray
    weights: np.ndarray | None = None


@dataclass(frozen=True)
class ChunkReader:
    """Reads and validates one chunk as float64 numpy arrays.

    Small and picklable: this, not the whole dataset, travels with each task.
    """

    filesystem: Any
    label: str
    features: tuple[str, ...]
    weight: str | None = None

    @property
    def columns(self) -> list[str]:
        return [*self.features, self.label] + ([self.weight] if self.weight else [])

    def __call__(self, chunk: ChunkSpec) -> Chunk:
        table = self._read_table(chunk)
        if table.num_rows != chunk.n_rows:
            raise UnreadableFileError(
                f"{chunk.where()}: metadata promised {chunk.n_rows} rows, "
                f"reading found {table.num_rows}",
                path=chunk.path,
                row_group=chunk.row_group,
            )
        X = np.empty((chunk.n_rows, len(self.features)), dtype=np.float64, order="F")
        for j, name in enumerate(self.features):
            X[:, j] = _column_values(table, name, chunk)
        y = _column_values(table, self.label, chunk)
        _check_label(y, self.label, chunk)
        weights = None
        if self.weight:
            weights = _column_values(table, self.weight, chunk)
            _check_weights(weights, self.weight, chunk)
        return Chunk(X, y, weights)

    def _read_table(self, chunk: ChunkSpec) -> pa.Table:
        try:
            parquet = pq.ParquetFile(chunk.path, filesystem=self.filesystem)
            return parquet.read_row_group(chunk.row_group, columns=self.columns)
        except (pa.ArrowException, OSError) as exc:
            raise UnreadableFileError(
                f"cannot read {chunk.where()}: {exc}",
                path=chunk.path,
                row_group=chunk.row_group,
            ) from None


def _column_values(table: pa.Table, name: str, chunk: ChunkSpec) -> np.ndarray:
    column = table.column(name)
    if column.null_count:
        row = int(np.flatnonzero(pc.is_null(column).to_numpy(zero_copy_only=False))[0])
        raise MissingValueError(
            f"column {name!r} has {column.null_count} null value(s) in "
            f"{chunk.where()}, first at row {row} of the row group "
            f"(dataset row {chunk.offset + row}); expected no nulls",
            path=chunk.path,
            column=name,
            row_group=chunk.row_group,
            rows=(chunk.offset + row, chunk.offset + row + 1),
        )
    values = column.to_numpy().astype(np.float64, copy=False)
    finite = np.isfinite(values)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise NonFiniteValueError(
            f"column {name!r} has {int((~finite).sum())} non-finite value(s) in "
            f"{chunk.where()}, first {float(values[row])!r} at row {row} of the row group "
            f"(dataset row {chunk.offset + row}); expected finite numbers",
            path=chunk.path,
            column=name,
            row_group=chunk.row_group,
            rows=(chunk.offset + row, chunk.offset + row + 1),
        )
    return values


def _check_label(y: np.ndarray, name: str, chunk: ChunkSpec) -> None:
    bad = (y != 0.0) & (y != 1.0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise LabelValueError(
            f"label column {name!r} has {int(bad.sum())} value(s) outside {{0, 1}} in "
            f"{chunk.where()}, first {float(y[row])!r} at row {row} of the row group "
            f"(dataset row {chunk.offset + row}); expected 0 or 1",
            path=chunk.path,
            column=name,
            row_group=chunk.row_group,
            rows=(chunk.offset + row, chunk.offset + row + 1),
        )


def _check_weights(weights: np.ndarray, name: str, chunk: ChunkSpec) -> None:
    negative = weights < 0
    if negative.any():
        row = int(np.flatnonzero(negative)[0])
        raise WeightValueError(
            f"weight column {name!r} has {int(negative.sum())} negative value(s) in "
            f"{chunk.where()}, first {float(weights[row])!r} at row {row} of the row group "
            f"(dataset row {chunk.offset + row}); expected weights >= 0",
            path=chunk.path,
            column=name,
            row_group=chunk.row_group,
            rows=(chunk.offset + row, chunk.offset + row + 1),
        )


@dataclass(frozen=True)
class Dataset:
    """A planned Parquet dataset: files, columns and chunks in canonical order."""

    url: str
    filesystem: Any
    files: tuple[str, ...]
    label: str
    features: tuple[str, ...]
    partition_keys: tuple[str, ...]
    chunks: tuple[ChunkSpec, ...]
    weight: str | None = None

    @property
    def n_samples(self) -> int:
        return sum(chunk.n_rows for chunk in self.chunks)

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def reader(self) -> ChunkReader:
        return ChunkReader(self.filesystem, self.label, self.features, self.weight)

    def read_chunks(self) -> list[Chunk]:
        """Every chunk as numpy arrays, in canonical order (in this process)."""
        reader = self.reader
        return [reader(chunk) for chunk in self.chunks]

    def to_dask(self, workers: Sequence[str] | None = None) -> Chunk:
        """Dask arrays ``X, y, weights`` (weights None without a weight column),
        one block per chunk, sizes known up front.  Each chunk is read once.

        ``workers``: worker addresses to spread the chunks over, contiguous
        runs of about equal rows each (a scheduling hint: other workers may
        still run a read, e.g. after a failure).  Without it the scheduler
        places reads as it likes, which can leave one worker with most data.
        """
        import dask
        import dask.array as da

        reader = self.reader
        placement = _placement(self.chunks, workers)
        X_blocks, y_blocks, weight_blocks = [], [], []
        for chunk, worker in zip(self.chunks, placement):
            hint = {} if worker is None else {"workers": [worker], "allow_other_workers": True}
            with dask.annotate(**hint):
                read = dask.delayed(reader, pure=True)(chunk)
                n_rows = chunk.n_rows
                X_blocks.append(da.from_delayed(read[0], (n_rows, self.n_features), np.float64))
                y_blocks.append(da.from_delayed(read[1], (n_rows,), np.float64))
                if self.weight:
                    weight_blocks.append(da.from_delayed(read[2], (n_rows,), np.float64))
        return Chunk(
            da.concatenate(X_blocks, axis=0),
            da.concatenate(y_blocks, axis=0),
            da.concatenate(weight_blocks, axis=0) if self.weight else None,
        )


def _placement(chunks: Sequence[ChunkSpec], workers: Sequence[str] | None) -> list[str | None]:
    """Worker for each chunk: contiguous runs of about ``n_rows / len(workers)`` rows."""
    if not workers:
        return [None] * len(chunks)
    total = sum(chunk.n_rows for chunk in chunks) or 1
    placement = []
    for chunk in chunks:
        middle = chunk.offset + chunk.n_rows / 2  # the chunk goes where most of it falls
        placement.append(workers[min(int(middle * len(workers) / total), len(workers) - 1)])
    return placement


def open_dataset(
    url: str,
    label: str,
    features: list[str] | tuple[str, ...] | None = None,
    weight: str | None = None,
    storage_options: dict | None = None,
) -> Dataset:
    """Resolve ``url``, check its columns and plan its chunks from metadata."""
    if not label:
        raise ConfigError("a label column is required (found an empty name)")
    if weight == label:
        raise ConfigError(f"the label column {label!r} cannot also be the weight column")
    if features is not None:
        features = tuple(features)
        _check_feature_names(features, label)
        if weight in features:
            raise ConfigError(f"the weight column {weight!r} is also listed as a feature")
    try:
        filesystem, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    except (ValueError, ImportError) as exc:
        raise DatasetNotFoundError(f"cannot open dataset {url!r}: {exc}", path=url) from None
    files, base = _list_files(filesystem, root, url)
    partition_keys = _partition_keys(files, base)
    schemas, row_groups = {}, {}
    for path in files:
        metadata = _read_metadata(filesystem, path)
        schemas[path] = metadata.schema.to_arrow_schema()
        row_groups[path] = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    if features is None:
        features = _default_features(schemas[files[0]], (label, weight, *partition_keys))
        if not features:
            raise ColumnNotFoundError(
                f"no numeric feature columns besides label {label!r} in {files[0]}; "
                f"found columns {schemas[files[0]].names}",
                path=files[0],
            )
    for path in files:
        _check_schema(schemas[path], path, label, features, partition_keys, weight)
    chunks, offset = [], 0
    for path in files:
        for index, n_rows in enumerate(row_groups[path]):
            if n_rows:
                chunks.append(ChunkSpec(path, index, n_rows, offset))
                offset += n_rows
    if not chunks:
        raise EmptyDatasetError(
            f"dataset {url!r} has no rows ({len(files)} file(s), all empty)", path=url
        )
    return Dataset(
        url=url,
        filesystem=filesystem,
        files=tuple(files),
        label=label,
        features=features,
        partition_keys=partition_keys,
        chunks=tuple(chunks),
        weight=weight,
    )


def _check_feature_names(features: tuple[str, ...], label: str) -> None:
    if not features:
        raise ConfigError("the feature list is empty; name at least one feature column")
    seen = set()
    for name in features:
        if name in seen:
            raise ConfigError(f"feature {name!r} is listed more than once")
        seen.add(name)
    if label in seen:
        raise ConfigError(f"the label column {label!r} is also listed as a feature")


def _list_files(filesystem, root: str, url: str) -> tuple[list[str], str]:
    """Data files in canonical (sorted) order, and the base for partition keys."""
    if any(char in root for char in _GLOB_CHARS):
        matches = sorted(filesystem.glob(root))
        base = root[: min(root.find(c) for c in _GLOB_CHARS if c in root)]
        base = base.rsplit("/", 1)[0] if "/" in base else ""
        files = []
        for match in matches:
            if filesystem.isdir(match):
                files.extend(filesystem.find(match))
            else:
                files.append(match)
        if not files:
            raise DatasetNotFoundError(f"glob {url!r} matches no files", path=url)
    elif filesystem.isdir(root):
        base = root
        files = filesystem.find(root)
    elif filesystem.isfile(root):
        return [root], posixpath.dirname(root)
    else:
        raise DatasetNotFoundError(f"no file or directory at {url!r}", path=url)
    files = sorted(
        path for path in set(files) if not _is_ignored(posixpath.relpath(path, base or "/"))
    )
    if not files:
        raise DatasetNotFoundError(
            f"{url!r} contains no data files (hidden '.'/'_' files are ignored)", path=url
        )
    return files, base


def _is_ignored(relative: str) -> bool:
    return any(part.startswith(IGNORED_PREFIXES) for part in relative.split("/"))


def _partition_keys(files: list[str], base: str) -> tuple[str, ...]:
    keys: list[str] = []
    for path in files:
        relative = posixpath.relpath(posixpath.dirname(path), base or "/")
        for part in relative.split("/"):
            if "=" in part:
                key = part.split("=", 1)[0]
                if key not in keys:
                    keys.append(key)
    return tuple(keys)


def _read_metadata(filesystem, path: str) -> pq.FileMetaData:
    try:
        return pq.read_metadata(path, filesystem=filesystem)
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableFileError(
            f"{path} is not a readable Parquet file: {exc}", path=path
        ) from None


def _is_usable_type(dtype: pa.DataType) -> bool:
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype)


def _default_features(schema: pa.Schema, excluded: tuple[str | None, ...]) -> tuple[str, ...]:
    return tuple(
        field.name
        for field in schema
        if field.name not in excluded and _is_usable_type(field.type)
    )


def _check_schema(
    schema: pa.Schema,
    path: str,
    label: str,
    features: tuple[str, ...],
    partition_keys: tuple[str, ...],
    weight: str | None = None,
) -> None:
    roles = [("label", label)] + [("feature", name) for name in features]
    if weight:
        roles.append(("weight", weight))
    for role, name in roles:
        index = schema.get_field_index(name)
        if index < 0:
            hint = " (it is a hive partition key, not a column in the files)" if name in partition_keys else ""
            raise ColumnNotFoundError(
                f"{role} column {name!r} not found in {path}{hint}; "
                f"found columns {schema.names}",
                path=path,
                column=name,
            )
        dtype = schema.field(index).type
        if not _is_usable_type(dtype):
            raise ColumnTypeError(
                f"{role} column {name!r} in {path} has type {dtype}; "
                f"expected an integer, floating point or boolean column",
                path=path,
                column=name,
            )
