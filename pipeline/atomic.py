"""Writing files so that a crash never leaves half of one.

Every file the pipeline writes (``model.json``, ``checkpoint.npz``,
``job.json``, ``history.csv``, ``metrics.json``, ``report.html``) goes through
:func:`write_atomic`: the bytes go to a temporary file in the same directory,
are flushed to disk, and the file is renamed over the target.  A failure at
any point leaves the previous file untouched and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["create_atomic", "leftover_temporaries", "write_atomic"]

#: the name of a temporary file beside ``NAME`` is ``.NAME.<uuid hex>.tmp``
_TEMPORARY_SUFFIX = re.compile(r"\.[0-9a-f]{32}\.tmp")
#: characters of that suffix (``.<32 hex digits>.tmp``)
_SUFFIX_LENGTH = 1 + 32 + 4


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and a rename."""
    path = Path(path)
    with _synced_copy(path, data) as temporary:
        os.replace(temporary, path)


def create_atomic(path: str | os.PathLike, data: bytes) -> bool:
    """Write ``data`` to ``path`` only if no file is there, as one step: the
    bytes go to a temporary file, are flushed, and are hard-linked to
    ``path``, which fails if ``path`` exists (two writers: exactly one
    wins).  False, and nothing changed, if ``path`` existed.  Where the file
    system has no hard links, ``path`` is created exclusively and then
    written (still one winner)."""
    path = Path(path)
    with _synced_copy(path, data) as temporary:
        try:
            os.link(temporary, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # (no hard links here)
            pass
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "wb") as handle:
        _write_synced(handle, data)
    return True


@contextlib.contextmanager
def _synced_copy(path: Path, data: bytes) -> Iterator[Path]:
    """A temporary file beside ``path`` holding ``data``, on disk; removed
    on the way out unless renamed away."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # (see leftover_temporaries)
    try:
        with open(temporary, "wb") as handle:
            _write_synced(handle, data)
        yield temporary
    finally:
        if temporary.exists():
            temporary.unlink()


def leftover_temporaries(path: str | os.PathLike) -> list[Path]:
    """The temporary files beside ``path`` that writers of it killed between
    their write and their rename left behind (none is left otherwise)."""
    path = Path(path)
    prefix = f".{path.name}"
    return [
        found
        for found in path.parent.glob(f"{glob.escape(prefix)}.*.tmp")
        if _TEMPORARY_SUFFIX.fullmatch(found.name[len(prefix) :])
    ]


def temporaries_in(directory: str | os.PathLike) -> list[Path]:
    """The temporary files in ``directory`` that writers of any of its files
    killed between their write and their rename left behind."""
    return [
        found
        for found in Path(directory).glob(".*.tmp")
        if len(found.name) > 1 + _SUFFIX_LENGTH and _TEMPORARY_SUFFIX.fullmatch(found.name[-_SUFFIX_LENGTH:])
    ]


def _write_synced(handle, data: bytes) -> None:
    handle.write(data)
    handle.flush()
    os.fsync(handle.fileno())
