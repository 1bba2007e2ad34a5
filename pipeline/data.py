"""Parquet dataset → chunk plan → numpy chunks or Dask arrays.

:func:`open_dataset` resolves a directory (hive-style ``key=value/`` folders
allowed), a single file or a glob on any fsspec filesystem, reads only the
Parquet footers, checks the columns, and plans one chunk per non-empty row
group in canonical order: files sorted by path, row groups in file order.
Chunk sizes are therefore known before any data is read.

Reading a chunk (:class:`ChunkReader`) projects the label and feature
columns, casts the features to one dtype (float64, or the narrowest type
holding every feature's values exactly: :func:`feature_dtype`) and the label
and weights to float64, and validates every value: nulls, NaN/inf and
label values outside {0, 1} raise an error naming the file, column, row group
and row.  Rows are never dropped.

Missing values (:data:`MissingPolicy`): by default a null feature is an
error.  With ``mean`` or ``indicator`` the feature columns that may hold
nulls (:attr:`Dataset.missing`: the Parquet statistics count nulls in some
row group, or do not say) decode their nulls as NaN -- and, with
``nan_as_missing``, their NaN values too (every floating column may then
hold them) -- which the kernels replace by the column's exact mean from the
statistics pass (:class:`pipeline.kernel.KernelSpec`); ``indicator`` also
appends one 0/1 feature per such column, ``"name=<missing>"``, after the
columns (:attr:`Dataset.feature_names`).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import posixpath
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem, make_path_posix

from .errors import (
    ColumnNotFoundError,
    ColumnTypeError,
    ConfigError,
    DatasetNotFoundError,
    EmptyDatasetError,
    LabelValueError,
    MissingValueError,
    NonFiniteValueError,
    OutputError,
    UnreadableFileError,
    WeightValueError,
)
from .levels import (
    LevelCounts,
    LevelKind,
    Vocabulary,
    check_utf8,
    count_levels,
    fnv1a,
    is_categorical_type,
    level_kind,
)

__all__ = [
    "open_parquet",
    "Chunk",
    "ChunkReader",
    "ChunkSpec",
    "ClassCounter",
    "ClassKind",
    "Dataset",
    "FOLD_CODE",
    "Folds",
    "INDICATOR_SUFFIX",
    "MISSING_POLICIES",
    "MissingPolicy",
    "NARROW_FEATURE_DTYPES",
    "Split",
    "SplitPart",
    "class_codes",
    "class_kind",
    "class_values",
    "chain_target",
    "check_workers_can_read",
    "feature_dtype",
    "indicator_name",
    "is_chain",
    "key_bits",
    "open_dataset",
    "placed_on",
    "row_hash",
    "spread",
    "unreadable_error",
]

#: Path components starting with these are not data (``_SUCCESS``, ``.crc``).
IGNORED_PREFIXES = (".", "_")
_GLOB_CHARS = "*?["
#: Bytes a streamed read buffers per column (pyarrow's default, 0, reads a
#: row group's whole column chunk at once: a task would hold the row group).
STREAM_BUFFER_BYTES = 2**20
#: Decoded chunks of at least this many bytes get fresh plain pages (:func:`fresh_array`).
FRESH_PAGES_BYTES = 4 * 2**20
#: The map of :func:`fresh_array`: private and anonymous, its pages provided
#: when it is made where the system can (Linux); 0 where the system has no
#: such flags (e.g. Windows: a plain ``mmap(-1, n)``).
_FRESH_MAP_FLAGS = (
    mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0) if hasattr(mmap, "MAP_PRIVATE") else 0
)

#: The dtypes besides float64 that decoded features keep (in memory, in the
#: disk cache and into the kernels): each holds its Parquet column's values
#: exactly and widens exactly to float64, which the kernels do inside the
#: pass, so a float32 or small-integer dataset costs its own width, with the
#: bits of the same values stored as float64.
NARROW_FEATURE_DTYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(name) for name in ("bool", "uint8", "int8", "uint16", "int16", "int32", "float32")
)
#: The numpy type that carries each narrow Arrow type exactly (anything else:
#: float64, as Arrow casts it -- int64 and uint64 rounded to nearest).
_NARROW_CARRIERS: dict[pa.DataType, np.dtype] = {
    pa.bool_(): np.dtype("uint8"),  # Arrow's booleans are bits: bytes of 0/1
    pa.uint8(): np.dtype("uint8"),
    pa.int8(): np.dtype("int8"),
    pa.uint16(): np.dtype("uint16"),
    pa.int16(): np.dtype("int16"),
    pa.int32(): np.dtype("int32"),
    pa.float16(): np.dtype("float32"),
    pa.float32(): np.dtype("float32"),
}

#: The two parts of a :class:`Split`.
SplitPart = Literal["train", "validation"]
#: What a null feature value means: ``error`` (refused, the default), ``mean``
#: (the column's mean takes its place) or ``indicator`` (the mean, and a 0/1
#: "was missing" feature per column that may have nulls).
MissingPolicy = Literal["error", "mean", "indicator"]
MISSING_POLICIES: tuple[MissingPolicy, ...] = ("error", "mean", "indicator")
#: Suffix of a missing-value indicator's feature name (``"x1=<missing>"``).
INDICATOR_SUFFIX = "=<missing>"


def indicator_name(column: str) -> str:
    """The feature name of ``column``'s missing-value indicator."""
    return f"{column}{INDICATOR_SUFFIX}"


@dataclass(frozen=True)
class Split:
    """A deterministic train/validation split of the rows.

    A row is in the validation part when a 64-bit hash (splitmix64) of its
    ``key`` column value — or, without a key, of its canonical position in
    the dataset — falls below ``fraction`` of the hash range.  It depends on
    nothing but the row, so every partitioning gives the same split.  The
    part not selected gets weight 0, which the exact sums ignore.
    """

    fraction: float
    key: str | None = None
    part: SplitPart = "train"

    def mask(self, positions: np.ndarray, keys: np.ndarray | None) -> np.ndarray:
        """True for the rows of this part; ``keys``: the key column's values
        (numbers, or :func:`key_bits`' uint64), or None to use ``positions``."""
        z = row_hash(positions, keys)
        limit = np.uint64(min(int(self.fraction * 2.0**64), 2**64 - 1))
        validation = z < limit
        return validation if self.part == "validation" else ~validation


def row_hash(positions: np.ndarray, keys: np.ndarray | None) -> np.ndarray:
    """The 64-bit hash (splitmix64) of each row's ``key`` value (numbers, or
    :func:`key_bits`' uint64) or, with ``keys`` None, of its canonical
    position: what :class:`Split` and :class:`Folds` cut."""
    if keys is None:
        bits = positions.astype(np.uint64)
    elif keys.dtype.kind == "f":
        bits = np.ascontiguousarray(keys, dtype=np.float64).view(np.uint64)
    else:
        bits = keys.astype(np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        z = bits + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


#: A cross-validation pass's label of a row of fold ``f``: ``y + FOLD_CODE * f``
#: (the binary label stays recoverable exactly: ``y = code mod FOLD_CODE``).
FOLD_CODE = 2.0


@dataclass(frozen=True)
class Folds:
    """K folds of the rows for cross-validation, cut from the same row hash
    as :class:`Split` (of ``key``'s value, or of the canonical position): row
    ``i`` is in fold ``((hash_i >> 32) * K) >> 32`` (the hash's top 32 bits
    cut into K equal ranges), so the folds depend on nothing but the rows.
    A reader with folds gives each row's label as ``y + FOLD_CODE * fold``
    (:func:`pipeline.kernel.fold_partials` decodes it)."""

    n_folds: int
    key: str | None = None

    def of(self, positions: np.ndarray, keys: np.ndarray | None) -> np.ndarray:
        """Each row's fold (int64, 0 .. K-1)."""
        high = row_hash(positions, keys) >> np.uint64(32)
        return ((high * np.uint64(self.n_folds)) >> np.uint64(32)).astype(np.int64)


@dataclass(frozen=True)
class ChunkSpec:
    """One row group: where it is, how many rows, where it starts globally."""

    path: str
    row_group: int
    n_rows: int
    offset: int

    def where(self) -> str:
        return f"row group {self.row_group} of {self.path}"


#: Parsed footers kept per process (:func:`open_parquet`), the most recently
#: used: at most this many, and at most this many serialized bytes in all (a
#: parsed footer takes about three times its serialized size in memory, outside
#: the cache's accounting; one larger than this is not kept)
FOOTERS_KEPT = 32
FOOTER_BYTES_KEPT = 16 * 2**20
_FOOTERS: OrderedDict[tuple[str, str], pq.FileMetaData] = OrderedDict()
_FOOTERS_LOCK = threading.Lock()


def _file_version(filesystem, path: str) -> str | None:
    """A key that changes when the file at ``path`` is replaced: fsspec's
    ``ukey`` where it is the hash of the file's info (local files: size,
    mtime, inode; object stores: ETag, last modified), else None (HTTP's and
    archives' ``ukey`` name the URL, not a version: not cached)."""
    if type(filesystem).ukey is not fsspec.AbstractFileSystem.ukey:
        return None
    try:
        return str(filesystem.ukey(path))
    except Exception:  # noqa: BLE001 - (no version known: no cache; opening the file says what is wrong)
        return None


def open_parquet(filesystem, path: str, **options) -> pq.ParquetFile:
    """``pq.ParquetFile(path, filesystem=filesystem, **options)``, its footer
    parsed once per process and file version (:func:`_file_version`: a file
    replaced since is parsed afresh; bounded by :data:`FOOTERS_KEPT` and
    :data:`FOOTER_BYTES_KEPT`).  Each row group's read opened its file
    and parsed the whole footer again, whose size grows with the row groups:
    a file of many small row groups took time quadratic in their number
    (1,000 row groups of 25 rows: about 10 s a pass)."""
    version = _file_version(filesystem, path)
    if version is None:
        return pq.ParquetFile(path, filesystem=filesystem, **options)
    key = (path, version)
    with _FOOTERS_LOCK:
        metadata = _FOOTERS.get(key)
        if metadata is not None:
            _FOOTERS.move_to_end(key)
    if metadata is not None:
        return pq.ParquetFile(path, filesystem=filesystem, metadata=metadata, **options)
    parquet = pq.ParquetFile(path, filesystem=filesystem, **options)
    if parquet.metadata.serialized_size > FOOTER_BYTES_KEPT:
        return parquet
    with _FOOTERS_LOCK:
        _FOOTERS[key] = parquet.metadata
        while len(_FOOTERS) > FOOTERS_KEPT or sum(m.serialized_size for m in _FOOTERS.values()) > FOOTER_BYTES_KEPT:
            _FOOTERS.popitem(last=False)
    return parquet


class Chunk(NamedTuple):
    """One chunk's data: ``X`` (n, d) Fortran-ordered, ``y`` (n,) in {0, 1}
    or None when the reader reads no label (data to score), ``weights`` (n,)
    >= 0 or None when the dataset has no weight column."""

    X: np.ndarray
    y: np.ndarray | None
    weights: np.ndarray | None = None


@dataclass(frozen=True)
class ChunkReader:
    """Reads and validates one chunk as numpy arrays: features in ``dtype``
    (float64 or one of :data:`NARROW_FEATURE_DTYPES`), label and weights float64.

    Small and picklable: this, not the whole dataset, travels with each task.
    """

    filesystem: Any
    label: str | None  # None: data to score, no label read (Chunk.y is None)
    features: tuple[str, ...]
    weight: str | None = None
    split: Split | None = None
    #: numpy dtype name of the decoded features (:func:`feature_dtype`)
    dtype: str = "float64"
    #: feature columns whose nulls decode as NaN (missing values; a null elsewhere is an error)
    missing: tuple[str, ...] = ()
    #: NaN values of the ``missing`` columns are missing values too (else an error)
    nan_as_missing: bool = False
    #: columns of ``missing`` whose 0/1 indicator follows the features, in this order
    indicators: tuple[str, ...] = ()
    #: categorical columns, whose level codes follow the indicators, in this order
    vocabularies: tuple[Vocabulary, ...] = ()
    #: the label's classes (sorted values, :class:`ClassCounter`): ``y`` is each
    #: row's class code 0..K-1; empty: ``y`` is the label itself, 0 or 1
    classes: tuple[Any, ...] = ()
    #: the kind of the label's values when ``classes`` are given (:func:`class_kind`)
    class_kind: ClassKind = "int"
    #: cross-validation folds: each label comes as ``y + FOLD_CODE * fold`` (None: the label)
    folds: Folds | None = None

    @property
    def has_weights(self) -> bool:
        return bool(self.weight) or self.split is not None

    @property
    def width(self) -> int:
        """Columns of the decoded ``X``: the features, the indicators, the level codes."""
        return len(self.features) + len(self.indicators) + len(self.vocabularies)

    @property
    def row_bytes(self) -> int:
        """Decoded bytes per row: features, label (or none), weights (when read)."""
        label = 8 if self.label else 0
        return np.dtype(self.dtype).itemsize * self.width + label + (8 if self.has_weights else 0)

    @property
    def columns(self) -> list[str]:
        keys = [self.split.key if self.split else None, self.folds.key if self.folds else None]
        extra = [key for key in dict.fromkeys(keys) if key and key not in (*self.features, self.label, self.weight)]
        categorical = [vocabulary.column for vocabulary in self.vocabularies]
        return (
            [*self.features, *categorical]
            + ([self.label] if self.label else [])
            + ([self.weight] if self.weight else [])
            + extra
        )

    def __call__(self, chunk: ChunkSpec) -> Chunk:
        """The whole row group, decoded and checked."""
        try:
            parquet = open_parquet(self.filesystem, chunk.path)
            table = parquet.read_row_group(chunk.row_group, columns=self.columns)
        except (pa.ArrowException, OSError) as exc:
            raise unreadable_error(chunk, exc) from None
        if table.num_rows != chunk.n_rows:
            raise _row_count_mismatch(chunk, table.num_rows)
        # a whole row group is kept (cached in memory): fresh pages, see fresh_array
        return self._decode(table, chunk, 0, fresh=True)

    def weights_of(self, chunk: ChunkSpec) -> np.ndarray:
        """Only the row weights of ``chunk`` (weight column x split mask): reads
        just the weight and split-key columns, or nothing."""
        columns = [c for c in (self.weight, self.split.key if self.split else None) if c]
        table: Any = None  # a pyarrow.Table, read when a weight or key column is asked for
        if columns:
            try:
                table = open_parquet(self.filesystem, chunk.path).read_row_group(
                    chunk.row_group, columns=list(dict.fromkeys(columns))
                )
            except (pa.ArrowException, OSError) as exc:
                raise unreadable_error(chunk, exc) from None
        if table is not None:
            _check_read_columns(table, columns, chunk)
        weights = np.ones(chunk.n_rows)
        if self.weight:
            weights = _column_values(table, self.weight, chunk, 0)
        if self.split is not None:
            keys = key_bits(table.column(self.split.key), self.split.key, chunk, 0) if self.split.key else None
            positions = chunk.offset + np.arange(chunk.n_rows, dtype=np.int64)
            weights = weights * self.split.mask(positions, keys)
        return weights

    def iter_batches(self, chunk: ChunkSpec, batch_rows: int) -> Iterator[Chunk]:
        """The row group in slices of at most ``batch_rows`` rows, in order.

        Memory stays bounded by one batch however large the row group is.
        """
        seen = 0
        try:
            # no pre-buffering of the whole row group, no decode threads: the
            # reader's memory stays near one batch
            parquet = open_parquet(self.filesystem, chunk.path, pre_buffer=False, buffer_size=STREAM_BUFFER_BYTES)
            batches = parquet.iter_batches(
                batch_size=batch_rows,
                row_groups=[chunk.row_group],
                columns=self.columns,
                use_threads=False,
            )
        except (pa.ArrowException, OSError) as exc:
            raise unreadable_error(chunk, exc) from None
        while True:
            # only the reading is "cannot read": the decoding's errors are its
            # own, as for a whole row group (__call__)
            try:
                batch = next(batches)
            except StopIteration:
                break
            except (pa.ArrowException, OSError) as exc:
                raise unreadable_error(chunk, exc) from None
            decoded = self._decode(batch, chunk, seen)
            seen += batch.num_rows
            yield decoded
        if seen != chunk.n_rows:
            raise _row_count_mismatch(chunk, seen)

    def _decode(self, table, chunk: ChunkSpec, first_row: int, fresh: bool = False) -> Chunk:
        _check_read_columns(table, self.columns, chunk)
        shape = (table.num_rows, self.width)
        # (streamed batches reuse the allocator's warm memory batch after batch)
        X = fresh_array(shape, self.dtype) if fresh else np.empty(shape, dtype=self.dtype, order="F")
        missing = set(self.missing)
        for j, name in enumerate(self.features):
            if name in missing:
                X[:, j] = _values_with_missing(table, name, chunk, first_row, self.nan_as_missing, X.dtype)
            else:
                X[:, j] = _column_values(
                    table, name, chunk, first_row, check_finite=False, dtype=X.dtype, null_hint=_NULL_HINT
                )
        # One vectorized check for every feature: a sum over the column is
        # finite only if all its values are (NaN and inf propagate); only a
        # column whose sum is not (a bad value, or an overflowing sum) is
        # searched for the first bad row.  (Integers are always finite.)
        # A column's missing values are NaN by now: only its infinities are bad.
        width = len(self.features)
        with np.errstate(over="ignore", invalid="ignore"):
            column_sums = X[:, :width].sum(axis=0) if X.dtype.kind == "f" else np.zeros(width)
        for bad in np.flatnonzero(~np.isfinite(column_sums)):
            name = self.features[bad]
            column = X[:, bad]
            _check(
                column,
                ~np.isinf(column) if name in missing else np.isfinite(column),
                NonFiniteValueError,
                f"column {name!r}",
                "infinite" if name in missing else "non-finite",
                "finite numbers" if name in missing else _finite_hint(name, self.nan_as_missing),
                chunk,
                first_row,
                name,
            )
        for k, name in enumerate(self.indicators):
            X[:, width + k] = np.isnan(X[:, self.features.index(name)])
        first = width + len(self.indicators)
        for k, vocabulary in enumerate(self.vocabularies):
            X[:, first + k] = vocabulary.codes(table.column(vocabulary.column), f" in {chunk.where()}")
        y = None
        if self.label and self.classes:
            hint = (
                "; the classes come from the training part of the split: a class that only validation rows "
                "hold is unknown, and every class needs training rows (change the validation fraction or key: "
                "--validation-fraction, --validation-key; data.validation_fraction, data.validation_key in a job file)"
                if self.split is not None
                else ""
            )
            label = table.column(self.label)
            y = class_codes(label, self.label, self.classes, self.class_kind, chunk, first_row, hint)
        elif self.label:
            y = _column_values(table, self.label, chunk, first_row)
            _check(
                y,
                (y == 0.0) | (y == 1.0),
                LabelValueError,
                f"label column {self.label!r}",
                "outside {0, 1}",
                "0 or 1",
                chunk,
                first_row,
                self.label,
            )
        weights = None
        if self.weight:
            weights = _column_values(table, self.weight, chunk, first_row)
            _check(
                weights,
                weights >= 0,
                WeightValueError,
                f"weight column {self.weight!r}",
                "negative",
                "weights >= 0",
                chunk,
                first_row,
                self.weight,
            )
        if self.split is not None:
            keys = None
            if self.split.key:
                keys = key_bits(table.column(self.split.key), self.split.key, chunk, first_row)
            positions = chunk.offset + first_row + np.arange(table.num_rows, dtype=np.int64)
            mask = self.split.mask(positions, keys).astype(np.float64)
            weights = mask if weights is None else weights * mask
        if self.folds is not None and y is not None:
            keys = None
            if self.folds.key:
                keys = key_bits(table.column(self.folds.key), self.folds.key, chunk, first_row)
            positions = chunk.offset + first_row + np.arange(table.num_rows, dtype=np.int64)
            fold = self.folds.of(positions, keys)
            # the rows grouped by fold (stable): each fit of a cross-validation
            # pass then reads its rows' slices only (kernel.fold_partials);
            # exact sums do not depend on the rows' order
            order = np.argsort(fold, kind="stable")
            for j in range(X.shape[1]):  # (a column at a time: X keeps its memory)
                X[:, j] = X[order, j]
            y = (y + FOLD_CODE * fold)[order]
            weights = None if weights is None else weights[order]
        return Chunk(X, y, weights)


#: The values of a label column taken as classes: text, integers (booleans as
#: 0/1) or floating point.
ClassKind = Literal["str", "int", "float"]


def class_kind(dtype: pa.DataType) -> ClassKind | None:
    """The kind of a label column's classes (None: a type that cannot be a label)."""
    kind = level_kind(dtype)
    if kind is not None:
        return kind
    if pa.types.is_floating(dtype) or (pa.types.is_dictionary(dtype) and pa.types.is_floating(dtype.value_type)):
        return "float"
    return None


def _class_type(kind: ClassKind) -> pa.DataType:
    return {"str": pa.large_string(), "int": pa.int64(), "float": pa.float64()}[kind]


def class_values(column, kind: ClassKind, name: str = "", where: str = ""):
    """A label column's values as large_string, int64 or float64 (dictionaries
    decoded); text must be UTF-8 (:func:`pipeline.levels.check_utf8`; ``name``
    and ``where``: the column and its place, for the error)."""
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    values = pc.cast(column, _class_type(kind))
    if kind == "str":
        check_utf8(values, f"label column {name!r}{where}", name)
    return pc.add(values, 0.0) if kind == "float" else values  # (-0.0 + 0.0 = +0.0: one class)


def class_codes(
    column, name: str, classes: tuple[Any, ...], kind: ClassKind, chunk: ChunkSpec, first_row: int, hint: str = ""
):
    """Each row's class code (float64: 0..K-1) of the label ``column``; a null,
    NaN or a value not among ``classes`` is a clear error naming the row
    (``hint``: what else to say of it)."""
    if column.null_count:
        valid = _numpy_values(pc.is_valid(column)) != 0.0
        _check(None, valid, MissingValueError, f"label column {name!r}", "null", "no nulls", chunk, first_row, name)
    try:
        values = class_values(column, kind, name, f" in {chunk.where()}")
        known = pa.array(list(classes), type=_class_type(kind))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        raise ColumnTypeError(
            f"label column {name!r} in {chunk.where()} has type {column.type}; expected labels of the "
            f"classes' kind ({', '.join(repr(c) for c in classes[:5])})",
            path=chunk.path,
            column=name,
        ) from None
    codes = pc.index_in(values, value_set=known)
    if codes.null_count:
        known = _numpy_values(pc.is_valid(codes)) != 0.0
        value = values[int(np.flatnonzero(~known)[0])].as_py()
        shown = ", ".join(repr(c) for c in classes[:10]) + (", ..." if len(classes) > 10 else "")
        _check(
            None,
            known,
            LabelValueError,
            f"label column {name!r}",
            f"unknown class (first {value!r})",
            f"one of the {len(classes)} classes of the training data ({shown}){hint}",
            chunk,
            first_row,
            name,
        )
    return _numpy_values(codes)


@dataclass(frozen=True)
class ClassCounter:
    """Reads a chunk's label values of the training part for the classes pass
    (:func:`pipeline.train.class_counts` counts them): the label, the split's
    key and the weight column, nothing else."""

    filesystem: Any
    label: str
    kind: ClassKind
    split: Split | None = None
    #: the weight column, whose values :meth:`read` returns too (None: none)
    weight: str | None = None

    def read(self, chunk: ChunkSpec):
        """The label values (large_string, int64 or float64) of the chunk's
        training rows, and their weights (float64; None without a weight column)."""
        key = self.split.key if self.split is not None and self.split.key else None
        columns = [self.label] + ([key] if key and key != self.label else [])
        if self.weight:
            columns.append(self.weight)
        try:
            table = open_parquet(self.filesystem, chunk.path).read_row_group(chunk.row_group, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise unreadable_error(chunk, exc) from None
        if table.num_rows != chunk.n_rows:
            raise _row_count_mismatch(chunk, table.num_rows)
        column = table.column(self.label)
        try:
            values = class_values(column, self.kind, self.label, f" in {chunk.where()}")
        except pa.ArrowInvalid as exc:
            raise ColumnTypeError(
                f"label column {self.label!r} in {chunk.where()} has type {column.type} that does not hold "
                f"{self.kind} classes like the other files ({exc})",
                path=chunk.path,
                column=self.label,
            ) from None
        if self.kind == "float":
            finite = pc.fill_null(pc.is_finite(values), True).to_numpy(zero_copy_only=False)
            subject = f"label column {self.label!r}"
            _check(None, finite, NonFiniteValueError, subject, "non-finite", "finite classes", chunk, 0, self.label)
        weights = _column_values(table, self.weight, chunk, 0) if self.weight else None
        mask = None
        if self.split is not None:
            keys = key_bits(table.column(key), key, chunk, 0) if key else None
            positions = chunk.offset + np.arange(table.num_rows, dtype=np.int64)
            mask = self.split.mask(positions, keys)
        if values.null_count:  # (a training row's null, named where it is; a held-out row's does not count)
            held = _numpy_values(pc.is_valid(values)) != 0.0
            subject = f"label column {self.label!r}"
            ok = held if mask is None else held | ~mask
            _check(None, ok, MissingValueError, subject, "null", "a class in every training row", chunk, 0, self.label)
        if mask is not None:
            values = values.filter(pa.array(mask))
            weights = None if weights is None else weights[mask]
        return values, weights


@dataclass(frozen=True)
class LevelCounter:
    """Counts the levels of a chunk's categorical columns (the vocabulary pass):
    reads just those columns.  Small and picklable, like :class:`ChunkReader`."""

    filesystem: Any
    columns: tuple[tuple[str, LevelKind], ...]

    def __call__(self, chunk: ChunkSpec) -> dict[str, LevelCounts]:
        try:
            table = open_parquet(self.filesystem, chunk.path).read_row_group(
                chunk.row_group, columns=[name for name, _ in self.columns]
            )
        except (pa.ArrowException, OSError) as exc:
            raise unreadable_error(chunk, exc) from None
        if table.num_rows != chunk.n_rows:
            raise _row_count_mismatch(chunk, table.num_rows)
        where = f" in {chunk.where()}"
        return {name: count_levels(table.column(name), kind, name, where) for name, kind in self.columns}


@dataclass(frozen=True)
class MissingCounter:
    """Counts the missing values (nulls, and NaN with ``nan_as_missing``) of a
    chunk's columns ``columns``, reading just those: the pass that settles
    which columns get a missing-value indicator when the footers do not say."""

    filesystem: Any
    columns: tuple[str, ...]
    nan_as_missing: bool

    def __call__(self, chunk: ChunkSpec) -> dict[str, int]:
        try:
            table = open_parquet(self.filesystem, chunk.path).read_row_group(
                chunk.row_group, columns=list(self.columns)
            )
        except (pa.ArrowException, OSError) as exc:
            raise unreadable_error(chunk, exc) from None
        counts = {}
        for name in self.columns:
            column = table.column(name)
            count = column.null_count
            if self.nan_as_missing and pa.types.is_floating(column.type):
                count += int(pc.sum(pc.cast(pc.fill_null(pc.is_nan(column), False), pa.int64())).as_py() or 0)
            counts[name] = count
        return counts


def fresh_array(shape: tuple[int, int], dtype) -> np.ndarray:
    """An uninitialized F-ordered array for a decoded chunk, in fresh 4 KiB
    pages when it is large (:data:`FRESH_PAGES_BYTES`).

    numpy asks the kernel for transparent huge pages on every allocation of
    4 MiB or more (``madvise``); where the kernel compacts memory to serve
    them at the first touch (``defrag`` = ``madvise``, a common default) that
    makes decoding a gigabyte cost 1.5-2 s more than with plain pages
    (measured on the benchmark VM: 1.98 s against 0.42 s for 1 GiB), and the
    passes over the data are no faster with huge pages.  An anonymous memory
    map is not advised, so it gets plain pages; the array keeps the map
    alive and unmaps it when it is freed.

    The map is private (``MAP_PRIVATE``): ``mmap(-1, n)`` alone makes a shared
    anonymous map, which Linux backs with shared memory (shmem), whose page
    faults cost more: on the benchmark VM writing 1 GiB into fresh pages took
    0.38-0.51 s private against 0.71-0.84 s shared, and a 2-worker load of
    8M x 32 1.8 -> 1.5 s.  Its pages are provided when it is made
    (``MAP_POPULATE``): alone that changed little (0-0.2 s of the 2-worker
    end-to-end load of 8M x 32, three alternating pairs), and every page is
    written right after anyway.  A private map gets huge pages only where the
    kernel gives them to every anonymous map (``enabled`` = ``always``),
    without compacting memory for them under the default ``defrag``.
    """
    dtype = np.dtype(dtype)
    n_bytes = shape[0] * shape[1] * dtype.itemsize
    if n_bytes < FRESH_PAGES_BYTES:
        return np.empty(shape, dtype=dtype, order="F")
    pages = mmap.mmap(-1, n_bytes, flags=_FRESH_MAP_FLAGS) if _FRESH_MAP_FLAGS else mmap.mmap(-1, n_bytes)
    return np.frombuffer(pages, dtype=dtype).reshape(shape, order="F")


def _check_read_columns(table, columns: Sequence[str], chunk: ChunkSpec) -> None:
    """pyarrow reads a row group without a requested column that the file
    lacks, silently: a file replaced since the dataset was opened (whose
    plan checked every file's columns) is named here instead."""
    names = table.schema.names
    absent = [name for name in columns if name not in names]
    if absent:
        raise ColumnNotFoundError(
            f"{chunk.where()} has no column(s) {absent} (found {names}); expected the columns it had when the "
            "dataset was opened: was the file replaced while the run read it?",
            path=chunk.path,
            column=absent[0],
        )


def unreadable_error(chunk: ChunkSpec, exc: Exception) -> UnreadableFileError:
    return UnreadableFileError(f"cannot read {chunk.where()}: {exc}", path=chunk.path, row_group=chunk.row_group)


def _row_count_mismatch(chunk: ChunkSpec, found: int) -> UnreadableFileError:
    return UnreadableFileError(
        f"{chunk.where()}: metadata promised {chunk.n_rows} rows, reading found {found}",
        path=chunk.path,
        row_group=chunk.row_group,
    )


def _column_values(
    table,
    name: str,
    chunk: ChunkSpec,
    first_row: int,
    check_finite: bool = True,
    dtype: np.dtype = np.dtype(np.float64),
    null_hint: str = "no nulls",
) -> np.ndarray:
    """Column ``name`` of a table or record batch as ``dtype`` (float64 or
    the column's exact carrier, :func:`feature_dtype`), checked for nulls
    (and, with ``check_finite``, NaN/inf)."""
    column = table.column(name)
    if column.null_count:
        valid = _numpy_values(pc.is_valid(column)) != 0.0
        _check(None, valid, MissingValueError, f"column {name!r}", "null", null_hint, chunk, first_row, name)
    values = _numpy_values(column, dtype, f"column {name!r} in {chunk.where()}", chunk, name)
    if check_finite:
        _check(
            values,
            np.isfinite(values),
            NonFiniteValueError,
            f"column {name!r}",
            "non-finite",
            "finite numbers",
            chunk,
            first_row,
            name,
        )
    return values


#: What a null feature value is expected to be (and how to accept one).
_NULL_HINT = (
    "no nulls (or impute them: train with --missing mean|indicator, the estimator's missing='mean'|'indicator')"
)


def _finite_hint(name: str, nan_as_missing: bool) -> str:
    return (
        "finite numbers"
        if nan_as_missing
        else "finite numbers (or impute NaN: train with --missing and --nan-as-missing, the estimator's "
        "missing='mean'|'indicator')"
    )


def _values_with_missing(
    table, name: str, chunk: ChunkSpec, first_row: int, nan_as_missing: bool, dtype: np.dtype
) -> np.ndarray:
    """A feature column whose nulls (and, with ``nan_as_missing``, NaN values)
    are missing values: as ``dtype`` (floating) with NaN in their place.
    Without ``nan_as_missing`` a NaN value is still an error."""
    column = table.column(name)
    if not nan_as_missing and pa.types.is_floating(column.type):
        is_nan = pc.fill_null(pc.is_nan(column), False)
        if pc.any(is_nan).as_py():
            values = _numpy_values(pc.fill_null(column, 0.0), dtype)
            _check(
                values,
                ~np.isnan(values),
                NonFiniteValueError,
                f"column {name!r}",
                "NaN",
                "numbers or nulls (or train with --nan-as-missing to make NaN a missing value)",
                chunk,
                first_row,
                name,
            )
    if column.null_count:
        if pa.types.is_decimal(column.type):
            column = decimal_as_float64(column)
        column = pc.fill_null(pc.cast(column, pa.from_numpy_dtype(dtype), safe=False), float("nan"))
    return _numpy_values(column, dtype, f"column {name!r} in {chunk.where()}", chunk, name)


def key_bits(column, name: str, chunk: ChunkSpec, first_row: int) -> np.ndarray:
    """A split-key column's values as 64 bits each (uint64), for
    :meth:`Split.mask`: the float64 bits of a floating column, the int64 value
    of an integer, boolean, date or timestamp column, FNV-1a of a string or
    binary value's bytes.  Nulls and other types are refused by name."""
    if column.null_count:
        valid = _numpy_values(pc.is_valid(column)) != 0.0
        _check(
            None,
            valid,
            MissingValueError,
            f"validation key column {name!r}",
            "null",
            "no nulls",
            chunk,
            first_row,
            name,
        )
    kind = column.type
    if pa.types.is_dictionary(kind):  # split by the values, whatever each file's dictionary
        column = pc.cast(column, kind.value_type)
        kind = column.type
    if pa.types.is_floating(kind):
        return _numpy_values(column).view(np.uint64)
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_temporal(kind):
        # (uint64 beyond 2**63 too: the same 64 bits, which is all a key's hash needs)
        if pa.types.is_temporal(kind):  # (date32 and time32 cast to int32 only)
            column = column.cast(pa.int32() if kind.bit_width == 32 else pa.int64())
        values = pc.cast(column, pa.int64(), safe=False)
        parts = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
        views = [
            np.frombuffer(part.buffers()[1], dtype=np.int64, count=len(part), offset=part.offset * 8)
            for part in parts
            if len(part)
        ]
        return (np.concatenate(views) if views else np.empty(0, np.int64)).view(np.uint64)
    if (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    ):
        values = pc.cast(column, pa.large_binary())
        parts = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
        return np.concatenate([fnv1a(part) for part in parts]) if parts else np.empty(0, np.uint64)
    raise ColumnTypeError(
        f"validation key column {name!r} in {chunk.where()} has type {kind}; expected an integer, "
        "floating, boolean, date/time, string or binary column",
        path=chunk.path,
        column=name,
    )


def split_key_kind(dtype: pa.DataType) -> str:
    """What a split key's values hash as (:func:`key_bits`): ``"float"``
    (their float64 bits), ``"integer"`` (int64 values: integers and
    booleans), ``"text"`` (bytes), or a temporal type's name (its unit counts);
    a dictionary column as its values."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_floating(dtype):
        return "float"
    if pa.types.is_integer(dtype) or pa.types.is_boolean(dtype):
        return "integer"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "text"
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return "text"
    return str(dtype)


def split_key_kinds(filesystem, files: Sequence[str], key: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``(kinds, lacking)``: each file holding column ``key`` with its
    :func:`split_key_kind`, and each file without it with its columns (from
    the footers)."""
    kinds: dict[str, str] = {}
    lacking: dict[str, list[str]] = {}
    for path in files:
        metadata = _read_metadata(filesystem, path)
        if not metadata.num_rows:
            continue  # (a file without rows decides nothing: open_dataset skips it)
        schema = metadata.schema.to_arrow_schema()
        if key in schema.names:
            check_distinct(schema, path, (key,))
            kinds[path] = split_key_kind(schema.field(key).type)
        else:
            lacking[path] = schema.names
    return kinds, lacking


def dataset_files(url: str, storage_options: dict | None = None) -> tuple[Any, list[str]]:
    """``(filesystem, files)`` of dataset ``url``, as :func:`open_dataset` lists them."""
    filesystem, files, _ = _resolve(url, storage_options)
    return filesystem, files


def file_url_path(value: str) -> str:
    """A ``file:`` URL's local path (percent-decoded; ``file:///d``,
    ``file://localhost/d`` and ``file:/d`` are ``/d``, ``file://../d`` is
    ``../d``, relative, as fsspec reads it); anything else as it is."""
    if not value.startswith("file:"):
        return value
    rest = value[len("file:") :]  # (by hand: a path's '#' or '?' is no fragment or query)
    if rest.startswith("//"):
        host, slash, path = rest[2:].partition("/")
        rest = slash + path if host in ("", "localhost") else rest[2:]
    return urllib.parse.unquote(rest)


def is_chain(url: str) -> bool:
    """Whether ``url`` is fsspec's chain of filesystems (``simplecache::s3://b/d``,
    ``blockcache::/local/d``): what comes before its first ``::`` is a known
    protocol.  A local path with ``::`` in a name (``exp::v2/data``) is none."""
    head, chained, _ = url.partition("::")
    return bool(chained) and "/" not in head and head in fsspec.available_protocols()


def chain_target(url: str) -> str:
    """The last filesystem's URL of a chain (``blockcache::/local/d``: ``/local/d``);
    any other URL as it is."""
    return url.rpartition("::")[2] if is_chain(url) else url


def check_workers_can_read(url: str) -> None:
    """A :class:`ConfigError` for data that only this process can read
    (fsspec's ``memory://``, the process's own memory), before a cluster's
    workers are given them (they found nothing there and named a bare path)."""
    if str(url).startswith("memory://"):
        raise ConfigError(
            f"dataset {url!r} is in this process's memory (fsspec's memory://), which a cluster's workers "
            "cannot read; run in-process (--in-process; cluster.in_process = true), or write the data where "
            "the workers can read them"
        )


def is_glob(text: str) -> bool:
    """Whether ``text`` (a dataset or one path component) holds a glob character."""
    return any(char in text for char in _GLOB_CHARS)


def local_path(value: str | os.PathLike, what: str) -> str:
    """Where output ``value`` goes on this machine: the path itself, or a
    ``file:`` URL's (:func:`file_url_path`).  Outputs are written, renamed
    into place and locked on the local filesystem, so another filesystem's
    URL (``s3://``, ``memory://``) is an :class:`OutputError`: it would
    otherwise become a local directory named after its scheme; so is an
    empty path (``file:``: not the current directory)."""
    path = file_url_path(os.fspath(value))
    if "://" in path:
        raise OutputError(
            f"{what} {os.fspath(value)} is a URL; expected a local path (outputs are written to this "
            "machine's filesystem; a file: URL is one)",
            path=os.fspath(value),
        )
    if not path:
        raise OutputError(f"{what} {os.fspath(value)!r} is empty; expected a path", path=os.fspath(value))
    return path


def _resolve(url: str, storage_options: dict | None) -> tuple[Any, list[str], str]:
    """``(filesystem, files, base)`` of dataset ``url`` (:func:`_list_files`;
    a ``file:`` URL is its local path, :func:`file_url_path`)."""
    target = file_url_path(url)
    try:
        if "::" in target and not is_chain(target):
            # a local path with '::' in a name: not fsspec's chain of filesystems, which would cut it there
            filesystem = fsspec.filesystem("file")
            root = make_path_posix(target)
        else:
            filesystem, root = fsspec.core.url_to_fs(target, **(storage_options or {}))
    except (ValueError, ImportError) as exc:
        raise DatasetNotFoundError(f"cannot open dataset {url!r}: {exc}", path=url) from None
    files, base = _list_files(filesystem, root, url)
    return filesystem, files, base


def decimal_as_float64(column):
    """A decimal column as float64, each value the nearest float64 to the
    decimal: through its text, which Arrow parses correctly rounded (its
    direct decimal-to-double cast divides by the scale after rounding, so
    ``Decimal("0.1")`` of scale 20 became 0.09999999999999999, and one value
    decoded differently by scale)."""
    return pc.cast(pc.cast(column, pa.string()), pa.float64())


def _numpy_values(
    column,
    dtype: np.dtype = np.dtype(np.float64),
    where: str = "a column",
    chunk: ChunkSpec | None = None,
    name: str | None = None,
) -> np.ndarray:
    """A null-free int, float or bool Arrow column (ChunkedArray or Array) as
    float64 (or ``dtype``, a type holding every value exactly) numpy, straight
    from Arrow's buffers: casting is Arrow's (ints round to nearest, as
    numpy's ``astype`` does; bools give 0/1), and pyarrow's ``to_numpy`` is
    avoided because it imports pandas (about a second in every process that
    decodes a chunk).  Read-only when zero-copy."""

    def replaced(found: str, expected: str) -> ColumnTypeError:
        """The column is not what the plan read: a file replaced since."""
        return ColumnTypeError(
            f"{where} {found}; expected {expected} when the dataset was opened (was a file replaced since?)",
            path=None if chunk is None else chunk.path,
            row_group=None if chunk is None else chunk.row_group,
            column=name,
        )

    kind = column.type
    if pa.types.is_decimal(kind):
        column = decimal_as_float64(column)
    elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        # planned as numbers: Arrow would parse text or fail on a timestamp
        raise replaced(f"has type {kind}", "the numeric type it had")
    # A narrow carrier holds the planned column's values exactly: a safe cast
    # says so (a file replaced since the plan, with other values, is refused
    # instead of truncated); float64 takes every number, int64 rounded.
    narrow = dtype != np.float64
    try:
        column = pc.cast(column, pa.from_numpy_dtype(dtype), safe=narrow)
    except pa.ArrowInvalid as exc:
        raise replaced(f"holds values its planned type {dtype} cannot hold ({exc})", "the files as they were") from None
    parts = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    views = [
        np.frombuffer(part.buffers()[1], dtype=dtype, count=len(part), offset=part.offset * dtype.itemsize)
        for part in parts
        if len(part)
    ]
    if len(views) == 1:
        return views[0]
    return np.concatenate(views) if views else np.empty(0, dtype=dtype)


def _check(
    values,
    ok: np.ndarray,
    error,
    subject: str,
    problem: str,
    expected: str,
    chunk: ChunkSpec,
    first_row: int,
    column: str,
) -> None:
    """Raise ``error`` naming the file, column, row group and first bad row."""
    if ok.all():
        return
    bad = ~ok
    index = int(np.flatnonzero(bad)[0])
    row = first_row + index  # within the row group
    found = "" if values is None else f"{float(values[index])!r} "
    raise error(
        f"{subject} has {int(bad.sum())} {problem} value(s) in {chunk.where()}, first "
        f"{found}at row {row} of the row group (dataset row {chunk.offset + row}); "
        f"expected {expected}",
        path=chunk.path,
        column=column,
        row_group=chunk.row_group,
        rows=(chunk.offset + row, chunk.offset + row + 1),
    )


@dataclass(frozen=True)
class Dataset:
    """A planned Parquet dataset: files, columns and chunks in canonical order."""

    url: str
    filesystem: Any
    files: tuple[str, ...]
    label: str | None  # None: data to score, no label column
    features: tuple[str, ...]
    partition_keys: tuple[str, ...]
    chunks: tuple[ChunkSpec, ...]
    weight: str | None = None
    file_sizes: tuple[int, ...] = ()
    #: (min, max) of the label from the row groups' Parquet statistics, None
    #: when a non-empty row group has none (the data still gets checked in full)
    label_range: tuple[float, float] | None = None
    split: Split | None = None
    #: numpy dtype name of the decoded features (:func:`feature_dtype` of the
    #: feature columns' types in every file)
    feature_dtype: str = "float64"
    #: what a null feature means (:data:`MissingPolicy`)
    missing_policy: MissingPolicy = "error"
    #: NaN is a missing value too (``missing_policy`` other than ``error``)
    nan_as_missing: bool = False
    #: the feature columns that may hold missing values (decoded as NaN)
    missing: tuple[str, ...] = ()
    #: the columns whose missing-value indicator follows the features
    indicators: tuple[str, ...] = ()
    #: the categorical feature columns (their codes follow the indicators) and
    #: the kind of their values
    categorical: tuple[str, ...] = ()
    level_kinds: tuple[LevelKind, ...] = ()
    #: their levels (:meth:`with_vocabularies`; None until the vocabulary pass ran)
    vocabularies: tuple[Vocabulary, ...] | None = None
    #: numpy dtype name of the dense features alone (None: there are none)
    dense_dtype: str | None = "float64"
    #: the ``missing`` columns whose missing values the Parquet footers do not
    #: count (NaN values, or no statistics): :class:`MissingCounter` counts them
    uncertain_missing: tuple[str, ...] = ()
    #: the label's classes (:meth:`with_classes`; empty: a 0/1 label, read as it is)
    classes: tuple[Any, ...] = ()
    #: the kind of the label's values in every file (text, or numbers: :func:`class_kind`)
    class_kind: ClassKind = "int"
    #: cross-validation folds (:meth:`with_folds`; None: the label as it is)
    folds: Folds | None = None
    #: sha256 of the used columns' Parquet statistics in every row group
    #: (:func:`statistics_digest`): values rewritten in place, at the same
    #: size and layout, change it
    statistics: str = ""

    @property
    def fingerprint(self) -> str:
        """sha256 of what the data is: files, sizes, row groups, columns, their
        Parquet statistics (min, max, null and value counts; and split)."""
        identity: tuple[Any, ...] = (
            self.url,
            self.label,
            self.features,
            self.weight,
            self.files,
            self.file_sizes,
            [(c.path, c.row_group, c.n_rows) for c in self.chunks],
            self.statistics,
        )
        if self.split is not None:
            identity = (*identity, self.split)
        if self.missing:
            identity = (*identity, self.missing, self.nan_as_missing, self.indicators)
        if self.categorical:
            identity = (*identity, self.categorical, self.vocabularies)
        if self.classes:
            identity = (*identity, self.classes)
        if self.folds is not None:
            identity = (*identity, self.folds)
        return hashlib.sha256(repr(identity).encode()).hexdigest()

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The model's features: the dense columns, the missing-value indicators,
        then each categorical column's levels (its name while they are unknown)."""
        levels: list[str] = list(self.categorical)
        if self.vocabularies is not None:
            levels = [name for vocabulary in self.vocabularies for name in vocabulary.level_names()]
        return self.features + tuple(indicator_name(name) for name in self.indicators) + tuple(levels)

    @property
    def missing_counter(self) -> MissingCounter:
        return MissingCounter(self.filesystem, self.uncertain_missing, self.nan_as_missing)

    def with_missing(self, counts: dict[str, int]) -> Dataset:
        """The dataset with its uncertain ``missing`` columns settled by their
        exact counts (``counts``: column -> missing values over every row):
        a column without any is read as any other (and gets no indicator), so
        the features depend on the data only, never on its Parquet statistics."""
        idle = {name for name in self.uncertain_missing if not counts.get(name)}
        return replace(
            self,
            missing=tuple(name for name in self.missing if name not in idle),
            indicators=tuple(name for name in self.indicators if name not in idle),
            uncertain_missing=(),
        )

    @property
    def class_counter(self) -> ClassCounter:
        """The classes pass's task (over the rows of :attr:`split`)."""
        assert self.label is not None
        return ClassCounter(self.filesystem, self.label, self.class_kind, self.split, self.weight)

    def with_classes(self, classes: Sequence[Any]) -> Dataset:
        """The dataset whose label is read as class codes of ``classes`` (sorted)."""
        return replace(self, classes=tuple(classes))

    @property
    def level_counter(self) -> LevelCounter:
        return LevelCounter(self.filesystem, tuple(zip(self.categorical, self.level_kinds)))

    def with_vocabularies(self, vocabularies: Sequence[Vocabulary]) -> Dataset:
        """The dataset with its categorical columns' levels known (the codes
        widen the features' dtype where they need it: :func:`code_dtype`)."""
        vocabularies = tuple(vocabularies)
        names = tuple(vocabulary.column for vocabulary in vocabularies)
        if names != self.categorical:
            raise ValueError(f"vocabularies of {names}; expected the categorical columns {self.categorical}")
        dtype: np.dtype | None = code_dtype(max(v.size for v in vocabularies)) if vocabularies else None
        if self.dense_dtype is not None:
            dense = np.dtype(self.dense_dtype)
            dtype = dense if dtype is None else _promoted(dense, dtype)
        return replace(self, vocabularies=vocabularies, feature_dtype=(dtype or np.dtype(np.float64)).name)

    @property
    def decoded_bytes(self) -> int:
        """Size of the decoded features (:attr:`feature_dtype`), label and weights (float64)."""
        return self.n_samples * self.reader.row_bytes

    @property
    def n_samples(self) -> int:
        return sum(chunk.n_rows for chunk in self.chunks)

    @property
    def n_features(self) -> int:
        """Columns of the decoded ``X`` (the features, the indicators, the level codes)."""
        return len(self.features) + len(self.indicators) + len(self.categorical)

    @property
    def reader(self) -> ChunkReader:
        if self.categorical and self.vocabularies is None:
            raise ValueError("the categorical columns' levels are not known yet (with_vocabularies)")
        return ChunkReader(
            self.filesystem,
            self.label,
            self.features,
            self.weight,
            self.split,
            self.feature_dtype,
            self.missing,
            self.nan_as_missing,
            self.indicators,
            self.vocabularies or (),
            self.classes,
            self.class_kind,
            self.folds,
        )

    def with_split(self, split: Split | None) -> Dataset:
        """The same data seen through ``split`` (None: all rows)."""
        return replace(self, split=split)

    def with_folds(self, folds: Folds | None) -> Dataset:
        """The same data with each label coded with its row's fold (:class:`Folds`)."""
        return replace(self, folds=folds)

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
        placement = spread([chunk.n_rows for chunk in self.chunks], workers)
        X_blocks, y_blocks, weight_blocks = [], [], []
        for chunk, worker in zip(self.chunks, placement):
            with dask.annotate(**placed_on(worker)):
                read = dask.delayed(reader, pure=True)(chunk)
                n_rows = chunk.n_rows
                X_blocks.append(da.from_delayed(read[0], (n_rows, self.n_features), np.dtype(self.feature_dtype)))
                y_blocks.append(da.from_delayed(read[1], (n_rows,), np.float64))
                if reader.has_weights:
                    weight_blocks.append(da.from_delayed(read[2], (n_rows,), np.float64))
        return Chunk(
            da.concatenate(X_blocks, axis=0),
            da.concatenate(y_blocks, axis=0),
            da.concatenate(weight_blocks, axis=0) if reader.has_weights else None,
        )


def statistics_digest(metadatas: Sequence[pq.FileMetaData], columns: Sequence[str | None]) -> str:
    """sha256 of what the footers say of ``columns``' values in each row group:
    min, max, null count and value count where the writer kept statistics (a
    column without them adds only that). Read from the footers already
    planned: no data is read."""
    wanted = {name for name in columns if name}
    digest = hashlib.sha256()
    for metadata in metadatas:
        if not metadata.num_row_groups:
            continue
        first = metadata.row_group(0)  # (the same columns in every row group: indexed once per file)
        indices = [j for j in range(first.num_columns) if first.column(j).path_in_schema in wanted]
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for j in indices:
                column = row_group.column(j)
                stats = column.statistics
                seen: tuple[Any, ...] = (group, column.path_in_schema)
                if stats is not None:
                    seen += (stats.null_count if stats.has_null_count else None, stats.num_values)
                    if stats.has_min_max:
                        try:
                            seen += (stats.min, stats.max)
                        except UnicodeDecodeError:  # (text that is not UTF-8: its bytes; the reads refuse it)
                            seen += (stats.min_raw, stats.max_raw)
                digest.update(repr(seen).encode())
    return digest.hexdigest()


def placed_on(worker: str | None) -> dict:
    """Dask submit options that place a task on ``worker`` (a hint: another
    worker may still run it, e.g. after a failure); none for ``None``."""
    return {} if worker is None else {"workers": [worker], "allow_other_workers": True}


def spread(sizes: Sequence[int], workers: Sequence[str] | None) -> list[str | None]:
    """A worker for each item, in order: contiguous runs of about equal total size."""
    if not workers:
        return [None] * len(sizes)
    total = sum(sizes) or 1
    placement: list[str | None] = []
    start = 0
    for size in sizes:
        middle = start + size / 2  # the item goes where most of it falls
        placement.append(workers[min(int(middle * len(workers) / total), len(workers) - 1)])
        start += size
    return placement


def open_dataset(
    url: str,
    label: str | None,
    features: list[str] | tuple[str, ...] | None = None,
    weight: str | None = None,
    storage_options: dict | None = None,
    missing: MissingPolicy = "error",
    nan_as_missing: bool = False,
    indicators: Sequence[str] | None = None,
    categorical: Sequence[str] = (),
    vocabularies: Sequence[Vocabulary] | None = None,
    exclude: Sequence[str] = (),
) -> Dataset:
    """Resolve ``url``, check its columns and plan its chunks from metadata.

    ``label=None``: data to score, without a label column.  ``missing``,
    ``nan_as_missing``: see :data:`MissingPolicy`; with ``indicator`` the
    indicated columns are those that may hold missing values, unless
    ``indicators`` names them (a model's, to score data with).

    Text and dictionary feature columns are categorical, and so are the
    integer or boolean columns named in ``categorical``; ``vocabularies``
    gives their levels (a model's, to score data with; else they come from
    the vocabulary pass, :meth:`Dataset.with_vocabularies`).  ``exclude``:
    columns the default feature list leaves out (a validation key column).
    """
    if missing not in MISSING_POLICIES:
        raise ConfigError(f"missing must be one of {', '.join(MISSING_POLICIES)}; found {missing!r}", column="missing")
    if nan_as_missing and missing == "error":
        raise ConfigError(
            "nan_as_missing needs a missing-value policy (`missing` = mean or indicator)", column="nan_as_missing"
        )
    if label is not None and not label:
        raise ConfigError("a label column is required (found an empty name)")
    if weight is not None and weight == label:
        raise ConfigError(f"the label column {label!r} cannot also be the weight column", column="weight")
    if features is not None:
        features = tuple(features)
        _check_feature_names(features, label)
        if weight in features:
            raise ConfigError(f"the weight column {weight!r} is also listed as a feature", column="weight")
    filesystem, files, base = _resolve(url, storage_options)
    partition_keys = _partition_keys(files, base)
    schemas: dict[str, pa.Schema] = {}
    row_groups: dict[str, list[int]] = {}
    label_ranges: list[Any] = []  # (min, max) per non-empty row group, None where unknown
    metadatas: dict[str, pq.FileMetaData] = {}
    for path in files:
        metadata = metadatas[path] = _read_metadata(filesystem, path)
        schemas[path] = metadata.schema.to_arrow_schema()
        row_groups[path] = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    listed = len(files)
    # a file without rows holds nothing to check or read, and decides nothing:
    # its schema may be a writer's placeholder (pandas writes an empty frame's
    # columns as type null, Spark an empty partition's file with any columns)
    files = [path for path in files if sum(row_groups[path])]
    if not files:
        raise EmptyDatasetError(f"dataset {url!r} has no rows ({listed} file(s), all empty)", path=url)
    for path in files:
        label_ranges.extend(_column_ranges(metadatas[path], label) if label else [None])
    if features is None:
        # (a hive key is not a column: a file column of its name is one like any other, as --features reads it)
        features = _features_of_every_file(schemas, files, (label, weight, *exclude), partition_keys)
        if not features:
            raise ColumnNotFoundError(
                f"no numeric feature columns besides label {label!r} in {files[0]}; "
                f"found columns {schemas[files[0]].names}",
                path=files[0],
            )
    for path in files:
        check_distinct(schemas[path], path, (label, weight, *features))
    named = tuple(categorical) + tuple(vocabulary.column for vocabulary in vocabularies or ())
    for name in named:
        if name not in features:
            raise ConfigError(
                f"categorical column {name!r} is not among the features {list(features)}", column="categorical"
            )
    categorical_columns = tuple(
        name
        for name in features
        if name in named
        or any(name in schemas[path].names and is_categorical_type(schemas[path].field(name).type) for path in files)
    )
    for path in files:
        _check_schema(
            schemas[path], path, label, features, partition_keys, weight, categorical_columns, missing != "error"
        )
    label_kind = _label_kind_in(schemas, files, label) if label else "int"
    kinds = tuple(_level_kind_in(schemas, files, name) for name in categorical_columns)
    for vocabulary in vocabularies or ():
        kind = kinds[categorical_columns.index(vocabulary.column)]
        if kind != vocabulary.kind:
            where = next(  # (the first file that says so: every one that is not all nulls does)
                (
                    path
                    for path in files
                    if not pa.types.is_null(dtype := schemas[path].field(vocabulary.column).type)
                    and level_kind(dtype) == kind
                ),
                url,
            )
            raise ColumnTypeError(
                f"column {vocabulary.column!r} holds {_KIND_WORDS[kind]} in {where}; the model treats it as "
                f"a categorical column of {_KIND_WORDS[vocabulary.kind]}",
                path=where,
                column=vocabulary.column,
            )
    features = tuple(name for name in features if name not in categorical_columns)
    types = [schemas[path].field(name).type for path in files for name in features]
    imputed: tuple[str, ...] = ()
    if missing != "error":
        imputed = tuple(
            name
            for name in features
            if any(_may_have_nulls(metadatas[path], name) for path in files)
            or (nan_as_missing and any(pa.types.is_floating(schemas[path].field(name).type) for path in files))
        )
        if indicators is not None:  # a model's indicators: those columns may be missing, whatever the data says
            imputed = tuple(name for name in features if name in imputed or name in indicators)
    # the columns whose missing values the footers do not count: NaN (with
    # nan_as_missing), or statistics that do not say (:meth:`Dataset.with_missing`)
    uncertain = tuple(
        name
        for name in imputed
        if (nan_as_missing and any(pa.types.is_floating(schemas[path].field(name).type) for path in files))
        or not any(_null_counts_known(metadatas[path], name) for path in files)
        and any(_null_counts_known(metadatas[path], name) is None for path in files)
    )
    # missing values are NaN: the features need a floating type
    dtype = feature_dtype(types + [pa.float32()] if imputed else types)
    if missing == "indicator":
        indicated = tuple(indicators) if indicators is not None else imputed
    else:
        indicated = ()
    chunks, offset = [], 0
    for path in files:
        for index, n_rows in enumerate(row_groups[path]):
            if n_rows:
                chunks.append(ChunkSpec(path, index, n_rows, offset))
                offset += n_rows
    dataset = Dataset(
        url=url,
        filesystem=filesystem,
        files=tuple(files),
        class_kind=label_kind,
        label=label,
        features=features,
        partition_keys=partition_keys,
        chunks=tuple(chunks),
        weight=weight,
        file_sizes=tuple(_file_size(filesystem, path) for path in files),
        label_range=(
            None
            if not label_ranges or None in label_ranges
            else (min(low for low, _ in label_ranges), max(high for _, high in label_ranges))
        ),
        feature_dtype=dtype.name,
        missing_policy=missing,
        nan_as_missing=nan_as_missing,
        missing=imputed,
        indicators=indicated,
        categorical=categorical_columns,
        level_kinds=kinds,
        dense_dtype=dtype.name if features else None,
        uncertain_missing=uncertain if indicators is None else (),
        statistics=statistics_digest(
            [metadatas[path] for path in files], (label, weight, *features, *categorical_columns)
        ),
    )
    if vocabularies is not None:
        by_column = {vocabulary.column: vocabulary for vocabulary in vocabularies}
        for name in categorical_columns:
            if name not in by_column:
                where = next((path for path in files if is_categorical_type(schemas[path].field(name).type)), url)
                raise ColumnTypeError(
                    f"column {name!r} holds text in {where}; the model treats it as a numeric column",
                    path=where,
                    column=name,
                )
        dataset = dataset.with_vocabularies([by_column[name] for name in categorical_columns])
    return dataset


_KIND_WORDS = {"str": "text", "int": "integers"}


def _label_kind_in(schemas: dict[str, pa.Schema], files: list[str], name: str) -> ClassKind:
    """The kind of the label's values in every file: text, or numbers
    (``float`` as soon as one file holds floating point, else ``int``)."""
    kinds = {path: class_kind(schemas[path].field(name).type) for path in files}
    text = [path for path, kind in kinds.items() if kind == "str"]
    numbers = [path for path, kind in kinds.items() if kind != "str"]
    if text and numbers:
        raise ColumnTypeError(
            f"label column {name!r} holds text ({schemas[text[0]].field(name).type}) in {text[0]} but "
            f"{schemas[numbers[0]].field(name).type} in {numbers[0]}; expected one kind in every file",
            path=text[0],
            column=name,
        )
    if text:
        return "str"
    return "float" if "float" in kinds.values() else "int"


def _level_kind_in(schemas: dict[str, pa.Schema], files: list[str], name: str) -> LevelKind:
    """The kind of a categorical column's values, the same in every file."""
    seen: dict[LevelKind, str] = {}
    unusable: dict[str, pa.DataType] = {}
    for path in files:
        dtype = schemas[path].field(name).type
        if pa.types.is_null(dtype):
            continue  # nulls only: any kind
        kind = level_kind(dtype)
        if kind is None:
            unusable.setdefault(path, dtype)
        else:
            seen.setdefault(kind, path)
    if unusable:
        path, dtype = next(iter(unusable.items()))
        if "str" in seen:  # text here, numbers there
            other = seen["str"]
            raise ColumnTypeError(
                f"feature column {name!r} holds text ({schemas[other].field(name).type}) in {other} but "
                f"{dtype} in {path}; expected one kind in every file (a text column is categorical)",
                path=other,
                column=name,
            )
        raise ColumnTypeError(
            f"categorical column {name!r} in {path} has type {dtype}; expected text (string or dictionary) or integers",
            path=path,
            column=name,
        )
    if len(seen) > 1:
        (first_kind, first), (other_kind, other) = seen.items()
        raise ColumnTypeError(
            f"categorical column {name!r} holds {_KIND_WORDS[first_kind]} in {first} but "
            f"{_KIND_WORDS[other_kind]} in {other}; expected one kind in every file",
            path=other,
            column=name,
        )
    return next(iter(seen), "str")  # (nulls only in every file: text)


def code_dtype(largest: int) -> np.dtype:
    """The narrowest type of :data:`NARROW_FEATURE_DTYPES` holding level codes
    ``0 .. largest`` (``largest``: a column's size, the code of an unseen value)."""
    for name in ("uint8", "uint16", "int32"):
        if largest <= np.iinfo(name).max:
            return np.dtype(name)
    raise ValueError(f"{largest} levels do not fit int32 codes")


def _promoted(dense: np.dtype, codes: np.dtype) -> np.dtype:
    """One dtype for dense features and level codes: exact for both, else float64."""
    promoted = np.result_type(dense, codes)
    return promoted if promoted in NARROW_FEATURE_DTYPES else np.dtype(np.float64)


def _may_have_nulls(metadata: pq.FileMetaData, name: str) -> bool:
    """Whether column ``name`` may hold a null in some non-empty row group:
    its statistics count one, or do not say."""
    return _null_counts_known(metadata, name) is not False


def _null_counts_known(metadata: pq.FileMetaData, name: str) -> bool | None:
    """True when the statistics count a null in some non-empty row group,
    False when they count none in every one, None when some do not say."""
    paths = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
    if name not in paths:
        return False  # reported by the schema check
    index = paths.index(name)
    unknown = False
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        if not row_group.num_rows:
            continue
        statistics = row_group.column(index).statistics
        if statistics is None or not statistics.has_null_count:
            unknown = True
        elif statistics.null_count > 0:
            return True
    return None if unknown else False


def feature_dtype(types: Iterable[pa.DataType]) -> np.dtype:
    """The one dtype of a dataset's decoded features, given the Arrow types
    of its feature columns (in every file): numpy's promotion of each type's
    exact carrier -- the narrowest of :data:`NARROW_FEATURE_DTYPES` that holds
    every value exactly (float32 with int8: float32; with int32: float64) --
    and float64 when any column needs it."""
    carriers: list[np.dtype] = [_NARROW_CARRIERS.get(dtype, np.dtype(np.float64)) for dtype in types]
    if not carriers:
        return np.dtype(np.float64)
    promoted = np.result_type(*carriers)
    return promoted if promoted in NARROW_FEATURE_DTYPES else np.dtype(np.float64)


def _column_ranges(metadata: pq.FileMetaData, name: str) -> list:
    """(min, max) of column ``name`` per non-empty row group, None where unknown."""
    paths = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
    if name not in paths:
        return []  # reported by the schema check
    index = paths.index(name)
    ranges = []
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        if not row_group.num_rows:
            continue
        statistics = row_group.column(index).statistics
        try:
            known = statistics is not None and statistics.has_min_max
            ranges.append((float(statistics.min), float(statistics.max)) if known else None)
        except (TypeError, ValueError):  # not numeric: the type check reports it
            ranges.append(None)
    return ranges


def _check_feature_names(features: tuple[str, ...], label: str | None) -> None:
    if not features:
        raise ConfigError("the feature list is empty; name at least one feature column", column="features")
    seen = set()
    for name in features:
        if name in seen:
            raise ConfigError(f"feature {name!r} is listed more than once", column="features")
        seen.add(name)
    if label in seen:
        raise ConfigError(f"the label column {label!r} is also listed as a feature", column="features")


def _list_files(filesystem, root: str, url: str) -> tuple[list[str], str]:
    """Data files in canonical (sorted) order, and the base for partition keys.
    A path with glob characters is a glob unless it exists as it is
    (``data[1]/``, ``scores[v2].parquet``: that file or directory)."""
    if is_glob(root) and not filesystem.exists(root):
        try:
            matches = sorted(filesystem.glob(root))
        except ValueError as exc:  # ('**' within a name: "can only be an entire path component")
            raise DatasetNotFoundError(f"cannot read the glob {url!r}: {exc}", path=url) from None
        base = root[: min(root.find(c) for c in _GLOB_CHARS if c in root)]
        base = base.rsplit("/", 1)[0] if "/" in base else ""
        files = []
        for match in matches:
            if filesystem.isdir(match):
                if _may_enter(filesystem, match, base):
                    files.extend(_find(filesystem, match, base))
            else:
                files.append(match)
        if not files:
            raise DatasetNotFoundError(f"glob {url!r} matches no files", path=url)
    elif filesystem.isdir(root):
        base = root
        files = _find(filesystem, root, base)
    elif filesystem.isfile(root):
        return [root], posixpath.dirname(root)
    else:
        raise DatasetNotFoundError(f"no file or directory at {url!r}", path=url)
    files = _once_each(filesystem, (path for path in files if not _ignored_in(path, base)))
    if not files:
        raise DatasetNotFoundError(f"{url!r} contains no data files (hidden '.'/'_' files are ignored)", path=url)
    return files, base


def _find(filesystem, root: str, base: str) -> list[str]:
    """Every file under directory ``root`` (of a dataset whose files are
    named relative to ``base``), through symbolic links to directories too
    (fsspec's local ``find`` lists such a link as an entry of its own and
    does not enter it) where :func:`_may_enter` allows, each linked
    directory once along a path; :func:`_once_each` drops a file's second
    names."""
    if not isinstance(filesystem, LocalFileSystem):  # (links are the local filesystem's)
        return list(filesystem.find(root))

    def walk(directory: str, enclosing: frozenset[str]) -> Iterator[str]:
        inside = enclosing | {os.path.realpath(directory)}
        for path, info in filesystem.find(directory, detail=True).items():
            if info.get("islink") and info.get("type") == "other" and filesystem.isdir(path):
                if os.path.realpath(path) not in inside and _may_enter(filesystem, path, base):
                    yield from walk(path, inside)
            else:
                yield path

    return list(walk(root, frozenset()))


def _may_enter(filesystem, directory: str, base: str) -> bool:
    """Whether a dataset's listing (its files named relative to ``base``)
    enters ``directory``: not where its name is ignored (:func:`_is_ignored`),
    nor through a local link to a directory that holds ``base`` (a link to a
    parent, or to ``/``, would read what lies beside the data)."""
    if _ignored_in(directory, base):
        return False
    if isinstance(filesystem, LocalFileSystem) and os.path.islink(directory):
        target = os.path.realpath(directory)
        return os.path.commonpath([os.path.realpath(base or "/"), target]) != target
    return True


def _once_each(filesystem, files: Iterable[str]) -> list[str]:
    """``files`` sorted, a local file reached by several names (through
    symbolic links) once, under the first of them."""
    if not isinstance(filesystem, LocalFileSystem):
        return sorted(set(files))
    real: dict[str, str] = {}
    for path in sorted(set(files)):
        real.setdefault(os.path.realpath(path), path)
    return sorted(real.values())


def _ignored_in(path: str, base: str) -> bool:
    """Whether ``path`` of a dataset whose files are named relative to ``base`` is ignored."""
    return _is_ignored(posixpath.relpath(path, base or "/"))


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


def _file_size(filesystem, path: str) -> int:
    try:
        return int(filesystem.size(path))
    except (OSError, TypeError, ValueError):
        return -1


def _read_metadata(filesystem, path: str) -> pq.FileMetaData:
    try:
        return pq.read_metadata(path, filesystem=filesystem)
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableFileError(f"{path} is not a readable Parquet file: {exc}", path=path) from None


def _is_usable_type(dtype: pa.DataType, decimal: bool = True) -> bool:
    """A type whose values decode to numbers: integers, floating point,
    booleans, and (for features and weights, not labels) decimals, which
    Arrow's cast rounds to the nearest float64 (Spark's numeric type for
    money; its VectorAssembler takes them as doubles)."""
    return (
        pa.types.is_integer(dtype)
        or pa.types.is_floating(dtype)
        or pa.types.is_boolean(dtype)
        or (decimal and pa.types.is_decimal(dtype))
    )


def check_distinct(schema: pa.Schema, path: str, names: Sequence[str | None]) -> None:
    """A column to read must be one column of the file: pyarrow's schema
    allows a name twice, and which one to read is then anybody's guess."""
    for name in names:
        if name is not None and schema.get_all_field_indices(name)[1:]:
            raise ColumnTypeError(
                f"{path} has {len(schema.get_all_field_indices(name))} columns named {name!r}; expected one "
                "(the column to read is ambiguous: rename the others)",
                path=path,
                column=name,
            )


def _features_of_every_file(
    schemas: dict[str, pa.Schema],
    files: list[str],
    excluded: tuple[str | None, ...],
    partition_keys: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """The default features (:func:`_default_features`) of the first file,
    which every other file must have as well; a column that would be a
    feature in another file but is absent from the first is a
    :class:`ColumnNotFoundError` (it was left out without a word, so the
    features depended on the order of the files).  One absent from another
    file is the schema check's (:func:`_check_schema`).  A column named like
    a hive key is a feature where every file has it (some writers keep the
    partition column in the files), else left to the folders' key."""
    partial = tuple(key for key in partition_keys if not all(key in schemas[path].names for path in files))
    # pandas' (and Dask's) stored index: a row label, not data (pandas reads it back as the index)
    index = tuple(dict.fromkeys(name for path in files for name in pandas_index_columns(schemas[path])))
    excluded = (*excluded, *partial, *index)
    first = files[0]
    others = {path: _default_features(schemas[path], excluded) for path in files[1:]}
    # a column of type null in the first file (all null there: pandas' type for a column of None)
    # is a feature where another file gives it a type, as it is when another file comes first
    typed_elsewhere = {name for names in others.values() for name in names}
    features = _default_features(schemas[first], excluded, typed_elsewhere)
    for path, names in others.items():
        extra = [name for name in names if name not in features]
        if extra:
            name = extra[0]
            there = (
                f"has type {schemas[first].field(name).type} in {first}"
                if name in schemas[first].names
                else f"is not in {first}"
            )
            raise ColumnNotFoundError(
                f"column {name!r} of {path} {there}; expected the same feature columns in every "
                f"file (the default features are every numeric, boolean, decimal, text and dictionary column), "
                "or name the features to train on (--features / data.features)",
                path=first,
                column=name,
            )
    return features


def pandas_index_columns(schema: pa.Schema) -> tuple[str, ...]:
    """The columns that hold a pandas DataFrame's index (``__index_level_0__``,
    Dask's ``__null_dask_index__``, a named index), as the file's ``pandas``
    metadata lists them; none without it (or where it cannot be read)."""
    try:
        metadata = schema.pandas_metadata or {}
    except (ValueError, TypeError):  # (metadata that is not pandas' JSON: no index known)
        return ()
    listed = metadata.get("index_columns", []) if isinstance(metadata, dict) else []
    return tuple(name for name in listed if isinstance(name, str)) if isinstance(listed, list) else ()


def _default_features(
    schema: pa.Schema, excluded: tuple[str | None, ...], null_typed: Collection[str] = ()
) -> tuple[str, ...]:
    """``schema``'s columns that are features by default, in its order; one
    of type null too where it is among ``null_typed``."""
    return tuple(
        field.name
        for field in schema
        if field.name not in excluded
        and (
            _is_usable_type(field.type)
            or is_categorical_type(field.type)
            or (pa.types.is_null(field.type) and field.name in null_typed)
        )
    )


def _check_schema(
    schema: pa.Schema,
    path: str,
    label: str | None,
    features: tuple[str, ...],
    partition_keys: tuple[str, ...],
    weight: str | None = None,
    categorical: tuple[str, ...] = (),
    missing_allowed: bool = False,
) -> None:
    """Each named column is in the file and of a usable type; with
    ``missing_allowed`` (a missing-value policy) a feature may be of type null
    in a file: all its values missing there (pandas writes an all-None column so)."""
    roles = ([("label", label)] if label else []) + [("feature", name) for name in features]
    if weight:
        roles.append(("weight", weight))
    for role, name in roles:
        index = schema.get_field_index(name)
        if index < 0:
            hint = " (it is a hive partition key, not a column in the files)" if name in partition_keys else ""
            raise ColumnNotFoundError(
                f"{role} column {name!r} not found in {path}{hint}; found columns {schema.names}",
                path=path,
                column=name,
            )
        dtype = schema.field(index).type
        if role == "feature" and name in categorical:
            continue  # its kind is checked across files (_level_kind_in)
        if role == "label" and class_kind(dtype) is not None:
            continue  # numbers are read as 0/1 or as classes; text and dictionaries as classes
        if role == "feature" and missing_allowed and pa.types.is_null(dtype):
            continue  # every value missing in this file
        if not _is_usable_type(dtype, decimal=role != "label"):
            expected = (
                "an integer, floating point, boolean, text or dictionary column"
                if role == "label"
                else "an integer, floating point, decimal or boolean column"
                + (" (or text or dictionary: a categorical column)" if role == "feature" else "")
            )
            if role == "feature" and pa.types.is_null(dtype):
                expected += " (type null: every value missing in this file; --missing mean or indicator takes that)"
            raise ColumnTypeError(
                f"{role} column {name!r} in {path} has type {dtype}; expected {expected}",
                path=path,
                column=name,
            )
