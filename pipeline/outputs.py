"""The output directory of a run: the one owner of its file names, its job
document and how each file is read and written.

A run writes into one directory (``--out`` / ``output.dir``):

=================  ==========================================================
``model.json``     the model (:class:`pipeline.model.Model`); replaced only by
                   a run that succeeds, never removed
``job.json``       the job document (:class:`JobDocument`): configuration,
                   versions, cluster, times, status, progress
``job.log``        timestamped notes, one per line
``history.csv``    one row per iteration (:data:`HISTORY_COLUMNS`)
``checkpoint.npz`` the optimizer state (:mod:`pipeline.checkpoint`)
``metrics.json``   the model on held-out rows (``pipeline evaluate``; a run
                   with a validation split writes it too)
``report.html``    ``pipeline report``
``cancel.request`` asks the job's coordinator to stop
``loss.png``       written by earlier versions; cleared with a job
``path/``          a regularization path's models (``path/NNN/model.json``)
                   and ``path/path.json`` (:mod:`pipeline.paths`)
=================  ==========================================================

Every file is written to a temporary name and renamed (:mod:`pipeline.atomic`).
Clearing a job's files (:meth:`OutputDir.clear_job_files`) covers all of
them but ``model.json``, which stays until a successful run replaces it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Literal, get_args

try:
    import fcntl
except ImportError:  # (not POSIX: no flock)
    fcntl = None  # type: ignore[assignment]

from .atomic import create_atomic, leftover_temporaries, temporaries_in, write_atomic
from .config import TrainConfig
from .data import chain_target, file_url_path, is_glob
from .errors import JobError, JobNotFoundError, OutputError
from .jobfile import config_from_mapping, overridden, stored_settings

__all__ = [
    "DirectoryLock",
    "CANCEL_FILE",
    "CHECKPOINT_FILE",
    "HISTORY_COLUMNS",
    "HISTORY_FILE",
    "JOB_FILE",
    "JOB_FILES",
    "LOG_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "PLOT_FILE",
    "REPORT_FILE",
    "TERMINAL",
    "JobDocument",
    "JobStatus",
    "OutputDir",
    "now",
    "PATH_DIR",
    "PATH_FILE",
]

MODEL_FILE = "model.json"
JOB_FILE = "job.json"
LOG_FILE = "job.log"
HISTORY_FILE = "history.csv"
CHECKPOINT_FILE = "checkpoint.npz"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
#: a regularization path's folder of models, and its summary inside it
PATH_DIR = "path"
PATH_FILE = "path.json"
CANCEL_FILE = "cancel.request"
#: written by earlier versions (the curves are in ``pipeline report`` now)
PLOT_FILE = "loss.png"
#: every file of a job but the model: what a new job in the directory clears
JOB_FILES = (JOB_FILE, LOG_FILE, HISTORY_FILE, CHECKPOINT_FILE, METRICS_FILE, REPORT_FILE, CANCEL_FILE, PLOT_FILE)
#: the job files that describe the model beside them: they go when the model does
#: (:meth:`OutputDir.clear_model_files`), not when another job starts
MODEL_BOUND_FILES = (METRICS_FILE, REPORT_FILE, PLOT_FILE)

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
QUEUED: JobStatus = "queued"
RUNNING: JobStatus = "running"
SUCCEEDED: JobStatus = "succeeded"
FAILED: JobStatus = "failed"
CANCELLED: JobStatus = "cancelled"
#: a job in one of these has ended (its coordinator is gone)
TERMINAL: tuple[JobStatus, ...] = (SUCCEEDED, FAILED, CANCELLED)
#: a job in one of these may have a live coordinator
ACTIVE: tuple[JobStatus, ...] = (QUEUED, RUNNING)

HISTORY_COLUMNS = ("iteration", "loss", "grad_norm", "step", "passes", "elapsed_s")
VALIDATION_COLUMN = "validation_loss"
#: the job-document fields the scheduler's index keeps (``pipeline list``)
SUMMARY_FIELDS = (
    "job_id",
    "name",
    "status",
    "out",
    "iteration",
    "loss",
    "n_passes",
    "elapsed_s",
    "started_at",
    "ended_at",
    "updated_at",
    "digest",
    "error",
)


def now() -> str:
    """The time stamp of the job files (UTC, ISO 8601, milliseconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class JobDocument:
    """``job.json``: what a job is and how far it got.  Every field may be
    missing (None) in a document written part-way or by another version."""

    job_id: str | None = None
    name: str | None = None
    status: JobStatus | None = None
    #: the output directory, absolute
    out: str | None = None
    #: the training configuration as flat job-file keys (:mod:`pipeline.jobfile`)
    config: dict[str, Any] | None = None
    #: the part of ``config`` that decides the model (a checkpoint must match it)
    model_options: dict[str, Any] | None = None
    versions: dict[str, Any] | None = None
    dataset: dict[str, Any] | None = None
    cluster: dict[str, Any] | None = None
    #: ``{"mode": "attached" | "detached", "host", "pid", "user"}``
    coordinator: dict[str, Any] | None = None
    submitted_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    updated_at: str | None = None
    error: str | None = None
    resumed_from: int | None = None
    iteration: int | None = None
    loss: float | None = None
    grad_norm: float | None = None
    n_passes: int | None = None
    elapsed_s: float | None = None
    digest: str | None = None
    converged: bool | None = None
    n_iter: int | None = None
    cache: str | None = None
    #: the kernel fingerprint the workers shared
    kernel: dict[str, Any] | None = None
    #: the job file the configuration came from: ``{"file", "keys"}`` (:func:`pipeline.jobfile.source_json`)
    source: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: Any) -> JobDocument:
        """The document from parsed JSON; ``ValueError`` saying what is wrong
        (keys of other versions are ignored)."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object (the job's state), found {_kind(data)}")
        known = {field.name: field for field in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known or value is None:
                continue
            expected = _JSON_TYPES[key]
            if not isinstance(value, expected) or (isinstance(value, bool) and bool not in _as_tuple(expected)):
                raise ValueError(f"expected {key} to be {_describe(expected)}, found {_kind(value)}")
            values[key] = value
        status = values.get("status")
        if status is not None and status not in get_args(JobStatus):
            raise ValueError(f"expected status to be one of {', '.join(get_args(JobStatus))}, found {status!r}")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """What the scheduler's index keeps of this job."""
        return {key: getattr(self, key) for key in SUMMARY_FIELDS}

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL


_KIND_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "true or false", int: "an integer"}
#: JSON types of the document's fields (numbers may be integers in JSON)
_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    **{name: str for name in ("job_id", "name", "status", "out", "error", "digest", "cache")},
    **{name: str for name in ("submitted_at", "started_at", "ended_at", "updated_at")},
    **{
        name: dict
        for name in ("config", "model_options", "versions", "dataset", "cluster", "coordinator", "kernel", "source")
    },
    **{name: int for name in ("resumed_from", "iteration", "n_passes", "n_iter")},
    **{name: (int, float) for name in ("loss", "grad_norm", "elapsed_s")},
    "converged": bool,
}


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _describe(types: type | tuple[type, ...]) -> str:
    return " or ".join(
        "a number" if kind is float else _KIND_NAMES.get(kind, kind.__name__) for kind in _as_tuple(types)
    )


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def data_root(data: str) -> str | None:
    """The local directory whose every file a dataset's reads take: ``data``
    itself, without a ``file://`` scheme; for a recursive glob its part before
    the first glob component (``data/**``: ``data``). None for another
    filesystem's URL, or a glob of one level (``data/*.parquet`` does not take
    ``data/scores/part-00000.parquet``)."""
    local = _local_form(data)
    globbed = is_glob(local) and not os.path.lexists(local)  # (one that exists is itself)
    return None if globbed and "**" not in local else data_prefix(data)


def data_prefix(data: str) -> str | None:
    """The local path a dataset's files all lie in: ``data`` (a ``file:``
    URL's path, :func:`pipeline.data.file_url_path`) up to its first glob
    component (``d/*.parquet``: ``d``); None for another filesystem's URL.
    A path that exists as it is is itself, glob characters or not
    (``data[1]``: the directory, as :func:`pipeline.data.open_dataset` reads it)."""
    data = _local_form(data)
    if "://" in data:
        return None
    if os.path.lexists(data):
        return data
    parts = Path(data).parts
    for k, part in enumerate(parts):
        if is_glob(part):
            return str(Path(*parts[:k])) if k else "."
    return data


def inside_data(path: str | os.PathLike, data: str) -> bool:
    """Whether local ``path`` is, or lies inside, the directory every read of
    dataset ``data`` takes (:func:`data_root`): a file written there is read
    as part of the data next time."""
    root = data_root(data)
    if root is not None:
        return Path(root).is_dir() and lies_within(path, root)
    pattern = _local_form(data)
    if "://" in pattern:
        return False
    # a glob of one level (d/*, d/region=*): every folder it matches is read whole, so a path
    # is inside the data where the glob matches it or a folder it lies in
    pattern = os.path.abspath(pattern)
    absolute = Path(os.path.abspath(path))
    return any(PurePosixPath(candidate.as_posix()).match(pattern) for candidate in (absolute, *absolute.parents))


def _local_form(data: str) -> str:
    """Dataset ``data`` as a local path where it is one: a ``file:`` URL's
    path, a chain's last filesystem's (:func:`pipeline.data.chain_target`);
    another URL as it is."""
    return file_url_path(chain_target(data))


def lies_within(path: str | os.PathLike, directory: str | os.PathLike) -> bool:
    """Whether local ``path`` is ``directory`` or lies inside it (symbolic
    links and ``..`` resolved); a URL (``s3://...``) lies within nothing here."""
    if "://" in str(path) or "://" in str(directory):
        return False
    return Path(path).resolve().is_relative_to(Path(directory).resolve())


class OutputDir:
    """A run's output directory and its files (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(file_url_path(os.fspath(path)))  # (a file: URL is its local path)

    def __repr__(self) -> str:
        return f"OutputDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def model(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def job(self) -> Path:
        return self.path / JOB_FILE

    @property
    def log_file(self) -> Path:
        return self.path / LOG_FILE

    @property
    def history(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def report(self) -> Path:
        return self.path / REPORT_FILE

    @property
    def cancel(self) -> Path:
        return self.path / CANCEL_FILE

    @property
    def path_summary(self) -> Path:
        """A regularization path's ``path/path.json``."""
        return self.path / PATH_DIR / PATH_FILE

    def path_point(self, index: int) -> Path:
        """The directory of a regularization path's model number ``index``."""
        return self.path / PATH_DIR / f"{index:03d}"

    def clear_path(self) -> None:
        """Remove a regularization path's models (of another run)."""
        shutil.rmtree(self.path / PATH_DIR, ignore_errors=True)

    # ------------------------------------------------------------------ job.json

    def read_job(self) -> JobDocument | None:
        """The job document; None without one; :class:`JobError` if it cannot be used."""
        try:
            text = self.job.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise JobError(f"{self.job} cannot be read: {exc}", path=str(self.path)) from None
        try:
            return JobDocument.from_json(json.loads(text))
        except ValueError as exc:
            raise JobError(f"{self.job} cannot be read: {exc}", path=str(self.path)) from None

    def training_config(self, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """The job's training configuration, read back from ``job.json`` (its
        flat keys, :mod:`pipeline.jobfile`) for this directory, with
        ``overrides`` as over a job file (:func:`pipeline.jobfile.overridden`):
        another kind of cluster replaces the job's and the settings only it
        had, and the job's timeouts (and TLS files, for a scheduler) stay.
        :class:`JobNotFoundError` without a job configuration."""
        document = self.read_job()
        if document is None or document.config is None:
            raise JobNotFoundError(f"{self.path} has no {JOB_FILE} with a job configuration", path=str(self.path))
        given = {key: value for key, value in (overrides or {}).items() if value is not None}
        mapping = overridden(stored_settings(document.config), given)
        mapping["output.dir"] = str(self.path.absolute())
        mapping.pop("output.overwrite", None)
        return config_from_mapping(mapping, str(self.job), overridden=given)

    def write_job(self, document: JobDocument) -> None:
        write_atomic(self.job, _job_bytes(document))

    def claim_job(self, **values: Any) -> JobDocument:
        """A new job's ``job.json`` with ``values``, written only if the
        directory holds no job document yet (:func:`create_atomic`): of two
        jobs started into one directory at once, the one that writes it first
        has the directory, and the other gets an :class:`OutputError` naming
        that job, having written nothing.  The document written."""
        document = _updated(JobDocument(), values)
        if create_atomic(self.job, _job_bytes(document)):
            return document
        holder = self.read_job() or JobDocument()
        raise OutputError(
            f"{self.path} was taken by job {holder.job_id} ({holder.name!r}, {holder.status}) after job "
            f"{document.job_id} checked it; expected an output directory no other job writes (job "
            f"{document.job_id} wrote nothing there)",
            path=str(self.path),
        )

    def update_job(self, **values: Any) -> JobDocument:
        """Set ``values`` (and ``updated_at``) in ``job.json``; the new document."""
        document = _updated(self.read_job() or JobDocument(), values)
        self.write_job(document)
        return document

    # ------------------------------------------------------------------ other files

    def log(self, message: str, when: str | None = None) -> None:
        """Append ``message`` to ``job.log`` stamped with ``when`` (default: now)."""
        with open(self.log_file, "a") as handle:
            handle.write(f"{when or now()} {message}\n")

    def write_history(self, rows: Iterable[Sequence[Any]], validation: bool) -> None:
        """``history.csv``: one row per record, :data:`HISTORY_COLUMNS` (and
        the validation loss when ``validation``); values written as given."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(HISTORY_COLUMNS + ((VALIDATION_COLUMN,) if validation else ()))
        writer.writerows(rows)
        write_atomic(self.history, buffer.getvalue().encode())

    def write_json(self, path: Path, document: Mapping[str, Any]) -> None:
        """A JSON file of this directory (``metrics.json``), atomically."""
        write_atomic(path, (json.dumps(document, indent=2) + "\n").encode())

    def cancel_requested(self) -> bool:
        return self.cancel.exists()

    def request_cancel(self, by: str) -> None:
        write_atomic(self.cancel, f"{now()} by {by}\n".encode())

    def withdraw_cancel(self) -> None:
        self.cancel.unlink(missing_ok=True)

    def clear_job_files(self, keep: Sequence[str] = ()) -> None:
        """Remove every file of another job (:data:`JOB_FILES`, but ``keep``);
        ``model.json`` stays until a successful run replaces it, and the files
        that describe it with it (:data:`MODEL_BOUND_FILES`; and a
        regularization path's ``path/`` with it, :meth:`clear_path`: a path's
        own run writes there while it runs)."""
        for name in JOB_FILES:
            if name in keep:
                continue
            if name not in MODEL_BOUND_FILES or not self.model.exists():
                (self.path / name).unlink(missing_ok=True)
            for temporary in leftover_temporaries(self.path / name):  # (a writer killed mid-write)
                temporary.unlink(missing_ok=True)

    def clear_leftover_temporaries(self) -> None:
        """Remove what writers of this job killed between a write and its
        rename left (:func:`pipeline.atomic.temporaries_in`), here and in
        ``path/`` (its points and folds): a resumed job's, which holds the
        directory (:meth:`exclusive`), so no live writer's."""
        # (not cancel.request's nor report.html's: `pipeline cancel` and `report` write those, holding nothing)
        others = (CANCEL_FILE, REPORT_FILE)
        for name in (MODEL_FILE, *(name for name in JOB_FILES if name not in others)):
            for temporary in leftover_temporaries(self.path / name):
                temporary.unlink(missing_ok=True)
        if (self.path / PATH_DIR).is_dir():  # (only the job writes there)
            for folder in [self.path / PATH_DIR, *(p for p in (self.path / PATH_DIR).rglob("*") if p.is_dir())]:
                for temporary in temporaries_in(folder):
                    temporary.unlink(missing_ok=True)

    def clear_model_files(self) -> None:
        """Remove what described the model a new one replaces (its metrics, report and plot)."""
        for name in MODEL_BOUND_FILES:
            (self.path / name).unlink(missing_ok=True)

    def check_apart_from(self, data: str) -> None:
        """Fail before training if this directory is, or lies inside, the
        local dataset ``data``: the run's files would become part of the data
        (the next read of it fails, or reads them); or if the data lie in
        what a run here replaces or clears (``path/``, the job's files): the
        run, with ``overwrite`` or a path's first write, would remove them."""
        if inside_data(self.path, data):
            raise OutputError(
                f"output directory {self.path} is or lies inside the dataset {data}; expected a directory outside "
                "the data (its files would be read as part of the dataset)",
                path=str(self.path),
            )
        where = data_prefix(data)
        for name in (PATH_DIR, MODEL_FILE, *JOB_FILES):
            if where is not None and lies_within(where, self.path / name):
                raise OutputError(
                    f"the dataset {data} lies in {self.path / name}, which a run in the output directory "
                    f"{self.path} replaces or removes; expected the data outside the run's files",
                    path=str(self.path),
                )

    def replaced_files(self) -> list[str]:
        """The names in this directory that a run clears or replaces (the
        job's files and a ``path`` folder that holds no path of ours,
        ``model.json`` apart): files of another run, or of the user's, that
        only ``overwrite`` may touch."""
        if not self.path.is_dir():
            return []
        found = [name for name in JOB_FILES if (self.path / name).exists()]
        # (a path of ours holds path.json: train() writes no job.json, and its rerun replaces it as before)
        if (self.path / PATH_DIR).exists() and not self.path_summary.exists():
            found.append(PATH_DIR + "/" if (self.path / PATH_DIR).is_dir() else PATH_DIR)
        return found

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """A run's writes to this directory: an ``OSError`` (the directory made
        read-only, removed or full while the run wrote it) is one
        :class:`OutputError` naming the directory, not a traceback."""
        try:
            yield
        except OSError as exc:
            if type(exc).__module__.partition(".")[0] == "distributed":
                raise  # (a lost connection to the scheduler, CommClosedError: the cluster's, not the directory's)
            raise OutputError(
                f"cannot write in the output directory {self.path}: {exc}; expected it writable while the run "
                "writes it (was it made read-only, removed or filled up?)",
                path=str(self.path),
            ) from None

    def exclusive(self) -> DirectoryLock:
        """This directory's :class:`DirectoryLock` (a context manager that takes it)."""
        return DirectoryLock(self)

    def check_writable(self, overwrite: bool) -> None:
        """Fail before training if the model could not be written here."""
        directory = self.path
        if self.model.exists() and not overwrite:
            raise OutputError(
                f"{self.model} already exists; expected a new output directory (pass --overwrite to replace it)",
                path=str(directory),
            )
        if directory.exists() and not directory.is_dir():
            raise OutputError(f"output {directory} exists and is not a directory", path=str(directory))
        replaced = self.replaced_files()
        if replaced and not overwrite:
            raise OutputError(
                f"{directory} holds {', '.join(replaced)}, which a run there replaces or removes; expected a new "
                "output directory (pass --overwrite to replace them)",
                path=str(directory),
            )
        existing = directory
        while not existing.exists():
            existing = existing.parent
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(f"output directory {directory} is not writable", path=str(directory))
        try:  # (a probe: permissions say yes on a read-only mount or /proc, creating says no)
            if directory.exists():
                with tempfile.TemporaryFile(dir=directory):
                    pass
            else:
                with tempfile.TemporaryDirectory(dir=existing):
                    pass
        except OSError as exc:
            raise OutputError(f"output directory {directory} is not writable: {exc}", path=str(directory)) from None


def _updated(document: JobDocument, values: Mapping[str, Any]) -> JobDocument:
    """``document`` with ``values`` set (each a field of it) and ``updated_at`` now."""
    for key, value in values.items():
        if not hasattr(document, key):
            raise TypeError(f"JobDocument has no field {key!r}")
        setattr(document, key, value)
    document.updated_at = now()
    return document


def _job_bytes(document: JobDocument) -> bytes:
    return (json.dumps(document.to_json(), indent=2) + "\n").encode()


class DirectoryLock:
    """Held while a job runs in an output directory: an exclusive ``flock``
    on the directory itself (no file of its own; the kernel drops it when
    the process ends, however it ends), so that a second process that would
    run a job there at the same time (two ``resume`` of one job, a
    ``resume`` and an ``--overwrite``) is refused with a :class:`JobError`
    before it reads or writes anything.

    :meth:`take` holds it if the directory exists (a new job takes it again
    once it has made the directory: its ``job.json`` is created exclusively
    meanwhile, :meth:`OutputDir.claim_job`), and is idempotent; a filesystem
    without locks leaves the ``job.json`` checks alone.  As a context
    manager: taken on entry, released on exit."""

    def __init__(self, outputs: OutputDir) -> None:
        self.outputs = outputs
        self.handle: int | None = None

    def take(self) -> None:
        if self.handle is not None or fcntl is None:  # (held already; or no flock on this platform)
            return
        try:  # (O_DIRECTORY: a path that is not a directory, a FIFO say, is not opened, so never waited on)
            handle = os.open(self.outputs.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            holder = self.outputs.read_job() if self.outputs.job.is_file() else None
            job = f"job {holder.job_id} " if holder is not None and holder.job_id else "a job "
            raise JobError(
                f"{job}in {self.outputs.path} is being run by another process (a second resume, train or submit "
                "of this directory); wait for it to end, or cancel it first"
            ) from None
        except OSError:  # (a filesystem without locks)
            os.close(handle)
            return
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            os.close(self.handle)
            self.handle = None

    def __enter__(self) -> DirectoryLock:
        self.take()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()
