"""Categorical columns: their levels, counted exactly and merged in any order.

A categorical feature is a string, large-string or dictionary column, or an
integer or boolean column named categorical.  One pass over the data counts
each column's distinct values (:func:`count_levels`, per chunk; the counts
add up in any order, :meth:`LevelCounts.merge`) and :func:`vocabulary` turns
the totals into the column's levels: the kept values sorted by value, then
``<null>`` when the column had nulls, then ``<other>`` when some values were
sent there (fewer than ``min_count`` rows, or beyond the ``max_levels`` most
frequent, ties broken by value).  The levels and their order depend on the
multiset of rows only, never on how the files are split or read.

A **hashed** column (``buckets`` > 0) needs no pass: a value's level is a
bucket, a fixed 64-bit hash (:func:`hash_buckets`: FNV-1a of the column
name, a 0 byte and the value's bytes -- UTF-8 text, or the little-endian
int64 -- finished by splitmix64) modulo the number of buckets, the same on
every machine; its levels are ``column=#0`` .. ``column=#(buckets-1)``, then
``column=<null>`` for nulls.

A row's level is its **code** (:meth:`Vocabulary.codes`): the index of its
value among the levels.  A value seen at training but sent to ``<other>``,
or one never seen (when scoring), takes the ``<other>`` level when there is
one; otherwise it takes the code ``size`` (one past the levels), which
contributes nothing to a margin.  A null without a ``<null>`` level does the
same.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ColumnTypeError, TooManyLevelsError, require_count

__all__ = [
    "MAX_LEVELS",
    "NULL_LEVEL",
    "OTHER_LEVEL",
    "LevelCounts",
    "LevelKind",
    "Vocabulary",
    "check_level_policy",
    "count_levels",
    "fnv1a",
    "hash_buckets",
    "is_categorical_type",
    "level_kind",
    "only_nulls",
    "merge_counts",
    "value_counts",
    "vocabulary",
]

#: The name of the level of null values, and of the level of rare or unseen ones.
NULL_LEVEL = "<null>"
OTHER_LEVEL = "<other>"
#: Distinct values a categorical column may have without a policy
#: (``min_count`` or ``max_levels``); more is refused (:class:`TooManyLevelsError`).
MAX_LEVELS = 65536
#: Most buckets of a hashed column (codes stay exact in float32).
MAX_BUCKETS = 2**24
#: The values of a categorical column: text, or integers (and booleans, as 0/1).
LevelKind = Literal["str", "int"]


def is_categorical_type(dtype: pa.DataType) -> bool:
    """String, large-string and dictionary (of strings or integers) columns are
    categorical by their type."""
    if pa.types.is_dictionary(dtype):
        return level_kind(dtype.value_type) is not None
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype)


def only_nulls(values) -> bool:
    """Whether an Arrow array holds nulls only (of the null type, or of any
    other: a text column pandas made float64 NaN): levels of any kind."""
    return pa.types.is_null(values.type) or (len(values) > 0 and values.null_count == len(values))


def level_kind(dtype: pa.DataType) -> LevelKind | None:
    """Whether a column of this type holds text or integer levels (None: neither,
    e.g. floating point, which cannot be categorical)."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "str"
    if pa.types.is_integer(dtype) or pa.types.is_boolean(dtype):
        return "int"
    return None


def _arrow_type(kind: LevelKind) -> pa.DataType:
    return pa.large_string() if kind == "str" else pa.int64()


def _as_kind(column, kind: LevelKind, name: str = "", where: str = ""):
    """A column's values as large_string or int64 (dictionaries decoded); a
    :class:`ColumnTypeError` for unsigned integers beyond int64's range, or
    text that is not UTF-8 (:func:`check_utf8`)."""
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    try:
        values = pc.cast(column, _arrow_type(kind))
    except pa.ArrowInvalid as exc:
        raise ColumnTypeError(
            f"categorical column {name!r}{where} of type {column.type} holds a value int64 cannot hold ({exc}); "
            "expected integers from -2**63 to 2**63-1, or text",
            column=name or None,
        ) from None
    if kind == "str":
        check_utf8(values, f"categorical column {name!r}{where}", name)
    return values


def check_utf8(values, what: str, column: str = "") -> None:
    """A :class:`ColumnTypeError` (``what`` names the column and its place)
    unless text ``values`` are valid UTF-8, as Parquet's string type is: a
    writer's Latin-1 bytes would otherwise be a value in one place and a
    decoding error in another."""
    try:
        values.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise ColumnTypeError(
            f"{what} holds text that is not valid UTF-8 ({exc}); expected UTF-8 text, as Parquet's string "
            "type is (re-encode the column where the file is written)",
            column=column or None,
        ) from None


@dataclass(frozen=True)
class LevelCounts:
    """Rows per distinct value of one column, and its nulls: exact counts that
    add up in any order."""

    counts: Mapping[Any, int] = field(default_factory=dict)
    nulls: int = 0

    def merge(self, other: LevelCounts) -> LevelCounts:
        total = Counter(self.counts)
        total.update(other.counts)
        return LevelCounts(dict(total), self.nulls + other.nulls)


def count_levels(column, kind: LevelKind, name: str = "", where: str = "") -> LevelCounts:
    """The :class:`LevelCounts` of an Arrow column (Array or ChunkedArray)
    ``name`` (``where``: its place, for an error)."""
    counted = value_counts(_as_kind(column, kind, name, where))
    if kind == "str":
        _refuse_reserved(counted.counts, name, where)
    return counted


def _refuse_reserved(counts: Mapping, column: str, where: str = "") -> None:
    """A text value that names a level of its own (``<null>``, ``<other>``) is refused."""
    for reserved in (NULL_LEVEL, OTHER_LEVEL):
        if reserved in counts:
            raise ColumnTypeError(
                f"categorical column {column!r}{where} holds the value {reserved!r}, which names a level of its "
                "own (nulls, or rare and unseen values); expected other text",
                column=column,
            )


def value_counts(values) -> LevelCounts:
    """The :class:`LevelCounts` of an Arrow column's values as they are."""
    counted = pc.value_counts(values)
    distinct = counted.field("values").to_pylist()
    numbers = counted.field("counts").to_pylist()
    counts = {value: int(number) for value, number in zip(distinct, numbers) if value is not None}
    return LevelCounts(counts, int(values.null_count))


@dataclass(frozen=True)
class Vocabulary:
    """One categorical column's levels: ``values`` (sorted), then ``<null>``
    (when ``null``), then ``<other>`` (when ``other``); ``counts``: the rows of
    each level in the training data (all of them: rows held out for validation
    count too, as they do in the standardization statistics)."""

    column: str
    kind: LevelKind
    values: tuple
    null: bool = False
    other: bool = False
    counts: tuple[int, ...] = ()
    #: a hashed column's buckets (0: not hashed; then ``values`` is empty,
    #: ``null`` is True and ``counts`` is empty: nothing was counted)
    buckets: int = 0

    @classmethod
    def hashed(cls, column: str, kind: LevelKind, buckets: int) -> Vocabulary:
        """The levels of a column hashed into ``buckets`` buckets (and ``<null>``)."""
        if buckets < 1:
            raise ValueError(f"a hashed column needs at least one bucket; found {buckets}")
        return cls(column, kind, (), True, False, (), buckets)

    @property
    def size(self) -> int:
        return self.buckets + len(self.values) + int(self.null) + int(self.other)

    @property
    def null_code(self) -> int | None:
        return self.buckets + len(self.values) if self.null else None

    @property
    def other_code(self) -> int | None:
        return self.size - 1 if self.other else None

    def level_names(self) -> list[str]:
        """The features of the levels: ``"column=value"``, ``"column=<null>"``, ``"column=<other>"``."""
        names = [f"{self.column}=#{bucket}" for bucket in range(self.buckets)]
        names += [f"{self.column}={value}" for value in self.values]
        names += [f"{self.column}={NULL_LEVEL}"] * int(self.null) + [f"{self.column}={OTHER_LEVEL}"] * int(self.other)
        return names

    def codes(self, column, where: str = "") -> np.ndarray:
        """Each row's level (int64): see the module's docstring for values not
        among the levels and for nulls."""
        nulls = only_nulls(column)
        if nulls:  # (as the null type, whatever the column's: any kind)
            column = pa.nulls(len(column))
        kind = self.kind if nulls else level_kind(column.type)
        if kind != self.kind:
            raise ColumnTypeError(
                f"categorical column {self.column!r}{where} has type {column.type}; expected "
                f"{'text (string or dictionary)' if self.kind == 'str' else 'integer or boolean'} "
                "values, as the column had when the model was trained",
                column=self.column,
            )
        values = _as_kind(column, self.kind, self.column, where)
        if self.buckets:
            codes = hash_buckets(values, self.column, self.buckets)
            if values.null_count:
                codes[_int64(pc.fill_null(pc.cast(pc.is_null(values), pa.int8()), 0)) != 0] = self.buckets
            return codes
        index = pc.index_in(values, value_set=pa.array(self.values, type=_arrow_type(self.kind)))
        codes = _int64(pc.fill_null(index, -1))
        unknown = codes < 0
        if unknown.any():
            missing = _int64(pc.fill_null(pc.cast(pc.is_null(values), pa.int8()), 0)) != 0
            fallback = self.size if self.other_code is None else self.other_code
            codes[unknown & ~missing] = fallback
            codes[missing] = self.null_code if self.null_code is not None else fallback
        return codes

    def to_json(self) -> dict:
        return {
            "column": self.column,
            "kind": self.kind,
            "values": list(self.values),
            "null": self.null,
            "other": self.other,
            "counts": list(self.counts),
            "buckets": self.buckets,
        }

    @classmethod
    def from_json(cls, document: dict) -> Vocabulary:
        """The vocabulary ``to_json`` wrote; ``ValueError`` saying what is wrong."""
        expected = {"column", "kind", "values", "null", "other", "counts", "buckets"}
        if not isinstance(document, dict) or set(document) != expected:
            found = sorted(document) if isinstance(document, dict) else type(document).__name__
            raise ValueError(f"a categorical column is an object with keys {sorted(expected)}; found {found}")
        kind = document["kind"]
        values = document["values"]
        if kind not in ("str", "int") or not isinstance(values, list):
            raise ValueError(f"kind must be 'str' or 'int' and values a list; found {kind!r}")
        wanted = str if kind == "str" else int
        if not all(isinstance(v, wanted) and not isinstance(v, bool) for v in values):
            raise ValueError(f"the values of a {kind!r} column must all be {wanted.__name__}")
        if values != sorted(set(values)):
            raise ValueError("the values must be distinct and sorted")
        if kind == "int" and not all(-(2**63) <= v < 2**63 for v in values):
            raise ValueError("integer values must fit int64")
        for flag in ("null", "other"):
            if not isinstance(document[flag], bool):
                raise ValueError(f"{flag} must be true or false; found {document[flag]!r}")
        buckets = document["buckets"]
        if not isinstance(buckets, int) or isinstance(buckets, bool) or not 0 <= buckets <= MAX_BUCKETS:
            raise ValueError(f"buckets must be an integer in 0 .. {MAX_BUCKETS}; found {buckets!r}")
        vocabulary = cls(
            str(document["column"]),
            kind,
            tuple(values),
            bool(document["null"]),
            bool(document["other"]),
            tuple(int(c) for c in document["counts"]),
            buckets,
        )
        if buckets and (values or vocabulary.other or not vocabulary.null or vocabulary.counts):
            raise ValueError("a hashed column has no values, no <other> level, a <null> level and no counts")
        if not buckets and len(vocabulary.counts) != vocabulary.size:
            raise ValueError(f"counts has {len(vocabulary.counts)} entries; expected {vocabulary.size} (one per level)")
        return vocabulary


#: FNV-1a (64-bit) and splitmix64's constants
_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)


def fnv1a(part, seed: np.uint64 = _FNV_OFFSET) -> np.ndarray:
    """FNV-1a of each value of a large_binary (or large_string) Arrow array,
    continued from ``seed``, vectorized over rows (one step per byte position
    of the longest value)."""
    offsets = np.frombuffer(part.buffers()[1], dtype=np.int64, count=len(part) + 1, offset=part.offset * 8)
    data = np.frombuffer(part.buffers()[2], dtype=np.uint8) if part.buffers()[2] is not None else np.empty(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    hashes = np.full(len(part), seed, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for position in range(int(lengths.max(initial=0))):
            rows = np.flatnonzero(lengths > position)
            hashes[rows] = (hashes[rows] ^ data[starts[rows] + position].astype(np.uint64)) * _FNV_PRIME
    return hashes


def _fnv1a_bytes(seed: np.uint64, data: bytes) -> np.uint64:
    value = int(seed)
    for byte in data:
        value = ((value ^ byte) * int(_FNV_PRIME)) & 0xFFFFFFFFFFFFFFFF
    return np.uint64(value)


def splitmix64(bits: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer of uint64 values (a bijection that mixes every bit)."""
    with np.errstate(over="ignore"):
        z = bits + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hash_buckets(values, column: str, buckets: int) -> np.ndarray:
    """Each value's bucket (int64 in ``0 .. buckets-1``; nulls hash as empty text
    or 0, and are given their own level by the caller): FNV-1a of the column
    name's UTF-8 bytes, a 0 byte and the value's bytes, splitmix64, modulo
    ``buckets``.  ``values``: large_string or int64 (Array or ChunkedArray)."""
    seed = _fnv1a_bytes(_FNV_OFFSET, column.encode() + b"\0")
    parts = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    hashes = []
    for part in parts:
        if pa.types.is_integer(part.type):
            raw = np.frombuffer(part.buffers()[1], dtype="<i8", count=len(part), offset=part.offset * 8)
            state = np.full(len(part), seed, dtype=np.uint64)
            as_bytes = raw.astype("<i8").view(np.uint8).reshape(-1, 8)
            with np.errstate(over="ignore"):
                for position in range(8):
                    state = (state ^ as_bytes[:, position].astype(np.uint64)) * _FNV_PRIME
            hashes.append(state)
        else:
            hashes.append(fnv1a(pc.cast(part, pa.large_binary()), seed))
    mixed = splitmix64(np.concatenate(hashes) if hashes else np.empty(0, np.uint64))
    return (mixed % np.uint64(buckets)).astype(np.int64)


def _int64(array) -> np.ndarray:
    """An int64-castable Arrow array or chunked array without nulls as numpy."""
    array = pc.cast(array, pa.int64())
    parts = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
    views = [np.frombuffer(p.buffers()[1], dtype=np.int64, count=len(p), offset=p.offset * 8) for p in parts if len(p)]
    return np.concatenate(views) if views else np.empty(0, dtype=np.int64)


def check_level_policy(min_count: object, max_levels: object) -> None:
    """``min_category_count`` (an integer >= 1) and ``max_categories`` (None
    or an integer >= 1), each refused by name (:func:`pipeline.errors.invalid`)."""
    require_count("min_category_count", min_count, 1)
    if max_levels is not None:
        require_count("max_categories", max_levels, 1)


def vocabulary(
    column: str,
    kind: LevelKind,
    counted: LevelCounts,
    min_count: int = 1,
    max_levels: int | None = None,
) -> Vocabulary:
    """The levels of a column from its total :class:`LevelCounts`: values with
    at least ``min_count`` rows, at most the ``max_levels`` most frequent (ties:
    the smaller value first), sorted; the rest go to ``<other>``.  Without a
    policy a column of more than :data:`MAX_LEVELS` distinct values is refused."""
    counts = counted.counts
    if kind == "str":
        _refuse_reserved(counts, column)
    if min_count <= 1 and max_levels is None and len(counts) > MAX_LEVELS:
        raise TooManyLevelsError(
            f"categorical column {column!r} has {len(counts)} distinct values; expected at most "
            f"{MAX_LEVELS} without a policy: keep the most frequent with --max-categories K, "
            "drop rare ones with --min-category-count N, or hash the values with --hash-buckets N",
            column=column,
        )
    kept = [value for value, count in counts.items() if count >= min_count]
    if max_levels is not None and len(kept) > max_levels:
        kept = sorted(kept, key=lambda value: (-counts[value], value))[:max_levels]
    kept.sort()
    rare = sum(counts.values()) - sum(counts[value] for value in kept)
    level_counts = [counts[value] for value in kept]
    level_counts += [counted.nulls] * int(counted.nulls > 0) + [rare] * int(rare > 0)
    return Vocabulary(column, kind, tuple(kept), counted.nulls > 0, rare > 0, tuple(level_counts))


def merge_counts(parts: Iterable[Mapping[str, LevelCounts]]) -> dict[str, LevelCounts]:
    """Per column, the merged counts of every part (any order)."""
    total: dict[str, LevelCounts] = {}
    for part in parts:
        for name, counted in part.items():
            total[name] = total[name].merge(counted) if name in total else counted
    return total
