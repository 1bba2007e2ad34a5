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
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .data import local_path
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
LEAST = {"rows": 1, "features": 1, "files": 1, "row_group_size": 1, "seed": 0}


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

    All or nothing.  A new directory is written beside its place under a
    hidden name and renamed to its own once every file is complete; into an
    existing empty directory (``.``, a link to one) each file goes under a
    hidden name (which readers ignore, :data:`pipeline.data.IGNORED_PREFIXES`)
    and is then linked to its own, which must still be free: another run's
    files are never replaced, and a run stopped on the way takes back what it
    wrote.  So no partial dataset is left to be taken for the whole one (a
    job's ``data.generate`` writes it again, :func:`holds_data`) -- short of
    a ``kill -9`` in the microseconds of the links.  An ``OSError`` (a path
    under a file, no permission, a full disk) is an :class:`OutputError`."""
    check_parameters(rows=rows, features=features, files=files, row_group_size=row_group_size, seed=seed)
    directory = Path(local_path(out, "dataset directory"))
    if holds_data(directory):
        raise _taken(directory)
    names = [f"part-{index:05d}.parquet" for index in range(files)]
    token = secrets.token_hex(4)
    whole = not directory.exists() and not directory.is_symlink()
    staging = directory.parent / f".{directory.name}.{token}.partial" if whole else directory
    partial = {name: staging / (name if whole else f".{name}.{token}.partial") for name in names}
    linked: list[Path] = []
    try:
        staging.mkdir(parents=True, exist_ok=not whole)
        _write_parts(list(partial.values()), rows, features, row_group_size, seed)
        if whole:
            os.rename(staging, directory)  # (over an empty directory made meanwhile too; not over files)
        else:
            for name in names:
                os.link(partial[name], directory / name)  # (FileExistsError: another run's file)
                linked.append(directory / name)
                os.unlink(partial[name])
    except BaseException as exc:
        if whole:
            shutil.rmtree(staging, ignore_errors=True)
        for path in [*linked, *partial.values()]:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        if not isinstance(exc, OSError):
            raise
        if holds_data(directory):  # (written by another run since)
            raise _taken(directory) from None
        raise OutputError(
            f"cannot write the dataset {directory}: {exc}; expected a directory that can be created and written",
            path=str(directory),
        ) from None
    return [directory / name for name in names]


def _write_parts(paths: list[Path], rows: int, features: int, row_group_size: int, seed: int) -> None:
    """The seeded rows, in order, into ``paths`` (one file each)."""
    schema = _table(np.empty((0, features)), np.empty(0, dtype=np.int8)).schema
    cache: dict = {}
    for index, path in enumerate(paths):
        start, stop = rows * index // len(paths), rows * (index + 1) // len(paths)
        with pq.ParquetWriter(path, schema) as writer:
            for lo in range(start, stop, row_group_size):
                hi = min(lo + row_group_size, stop)
                X, y = generate_rows(seed, features, lo, hi, cache)
                writer.write_table(_table(X, y), row_group_size=row_group_size)


def _taken(directory: Path) -> OutputError:
    return OutputError(f"{directory} already exists and is not an empty directory", path=str(directory))


#: what an interrupted :func:`make_data` leaves in an existing directory: hidden, and taken for nothing
_PARTIAL = re.compile(r"\.part-\d+\.parquet\.[0-9a-f]+\.partial")


def holds_data(path: Path) -> bool:
    """Whether ``path`` holds something :func:`make_data` must not write
    over: a file, or a directory with an entry other than the partial files
    of a run of it that was killed."""
    if not path.exists():
        return False
    return not path.is_dir() or any(not _PARTIAL.fullmatch(entry.name) for entry in path.iterdir())
