"""Seeded synthetic logistic datasets, written as Parquet in any layout.

Values depend only on ``(seed, n_features, row index)``: rows are generated in
fixed blocks of ``GENERATION_BLOCK`` rows, each from its own seeded stream, so
the same seed written with different file counts and row-group sizes stores
the very same values — a re-partitioning of one dataset.  At most one row
group (plus one generation block) is held in memory.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import ConfigError, OutputError
from .kernel import margins, sigmoid

__all__ = ["GENERATION_BLOCK", "make_data", "true_coef", "generate_rows"]

GENERATION_BLOCK = 4096
LABEL = "y"
_COEF_STREAM = 0xC0EF
_ROWS_STREAM = 1


def true_coef(seed: int, n_features: int) -> np.ndarray:
    """The generating coefficients, intercept last (margins have spread ~2)."""
    rng = np.random.default_rng([seed, _COEF_STREAM])
    coef = rng.normal(0.0, 2.0 / np.sqrt(max(n_features, 1)), size=n_features + 1)
    coef[-1] = 0.25
    return coef


def _generation_block(seed: int, n_features: int, block: int, coef: np.ndarray):
    rng = np.random.default_rng([seed, _ROWS_STREAM, block])
    X = rng.standard_normal((GENERATION_BLOCK, n_features))
    proba = sigmoid(margins(X, coef))
    y = (rng.random(GENERATION_BLOCK) < proba).astype(np.int8)
    return X, y


def generate_rows(seed: int, n_features: int, start: int, stop: int, _cache: dict | None = None):
    """Rows ``[start, stop)`` of the dataset for ``seed``: ``(X, y)``."""
    coef = true_coef(seed, n_features)
    cache = _cache if _cache is not None else {}
    X_parts, y_parts = [], []
    for block in range(start // GENERATION_BLOCK, (stop - 1) // GENERATION_BLOCK + 1 if stop > start else 0):
        if cache.get("block") != block:
            cache["block"] = block
            cache["data"] = _generation_block(seed, n_features, block, coef)
        X, y = cache["data"]
        lo = max(start - block * GENERATION_BLOCK, 0)
        hi = min(stop - block * GENERATION_BLOCK, GENERATION_BLOCK)
        X_parts.append(X[lo:hi])
        y_parts.append(y[lo:hi])
    if not X_parts:
        return np.empty((0, n_features)), np.empty(0, dtype=np.int8)
    return np.concatenate(X_parts), np.concatenate(y_parts)


def _table(X: np.ndarray, y: np.ndarray) -> pa.Table:
    columns = {f"f{j}": X[:, j] for j in range(X.shape[1])}
    columns[LABEL] = y
    return pa.table(columns)


#: the least value of each of :func:`make_data`'s parameters
LEAST = {"rows": 0, "features": 1, "files": 1, "row_group_size": 1, "seed": 0}


def check_parameters(**parameters: int) -> None:
    """:func:`make_data`'s parameters within their ranges, else a :class:`ConfigError`
    naming the first that is not (``column``: its name)."""
    for name, value in parameters.items():
        if value < LEAST[name]:
            raise ConfigError(
                f"make-data's {name} must be >= {LEAST[name]}; found {value}",
                column=name,
            )


def make_data(
    out: str,
    rows: int,
    features: int,
    files: int = 1,
    row_group_size: int = 65536,
    seed: int = 0,
) -> list[Path]:
    """Write the seeded dataset to directory ``out`` as ``files`` Parquet files.

    All or nothing: each file is written under a hidden name (which readers
    ignore, :data:`pipeline.data.IGNORED_PREFIXES`) and they all take their
    names once every one is complete, so a run killed on the way leaves no
    partial dataset to be taken for the whole one (a job's ``data.generate``
    writes it again, :func:`holds_data`).  An ``OSError`` (a path under a
    file, no permission, a full disk) is an :class:`OutputError`."""
    check_parameters(rows=rows, features=features, files=files, row_group_size=row_group_size, seed=seed)
    directory = Path(out)
    if holds_data(directory):
        raise OutputError(f"{directory} already exists and is not an empty directory", path=str(directory))
    schema = _table(np.empty((0, features)), np.empty(0, dtype=np.int8)).schema
    cache: dict = {}
    names = [f"part-{index:05d}.parquet" for index in range(files)]
    token = secrets.token_hex(4)
    partial = {name: directory / f".{name}.{token}.partial" for name in names}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for index, name in enumerate(names):
            start, stop = rows * index // files, rows * (index + 1) // files
            with pq.ParquetWriter(partial[name], schema) as writer:
                for lo in range(start, stop, row_group_size):
                    hi = min(lo + row_group_size, stop)
                    X, y = generate_rows(seed, features, lo, hi, cache)
                    writer.write_table(_table(X, y), row_group_size=row_group_size)
        for name in names:
            os.replace(partial[name], directory / name)
    except BaseException as exc:
        for path in partial.values():
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        if not isinstance(exc, OSError):
            raise
        raise OutputError(
            f"cannot write the dataset {directory}: {exc}; expected a directory that can be created and written",
            path=str(directory),
        ) from None
    return [directory / name for name in names]


#: what an interrupted :func:`make_data` leaves: hidden, and taken for nothing
_PARTIAL = re.compile(r"\.part-\d{5}\.parquet\.[0-9a-f]+\.partial")


def holds_data(path: Path) -> bool:
    """Whether ``path`` holds something :func:`make_data` must not write
    over: a file, or a directory with an entry other than the partial files
    of a run of it that was killed."""
    if not path.exists():
        return False
    return not path.is_dir() or any(not _PARTIAL.fullmatch(entry.name) for entry in path.iterdir())
