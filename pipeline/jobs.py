"""Training jobs: runs with an identity, artifacts, checkpoints, resume and cancel.

A job is a :class:`~pipeline.config.TrainConfig` with an output directory and
a job id.  Its state lives in two places:

* **the output directory** (authoritative; on storage every participant can
  read; :mod:`pipeline.outputs` owns its files): ``job.json`` (the
  :class:`~pipeline.outputs.JobDocument`: resolved configuration, versions,
  cluster, times, status, progress), ``job.log``, ``history.csv``,
  ``checkpoint.npz``, ``model.json`` and, with a validation split,
  ``metrics.json``; a ``cancel.request`` file asks the coordinator to stop.
* **the scheduler** (an index, when the job runs on a named scheduler): the
  metadata key ``("pipeline-jobs", JOB_ID)`` holds the job's output directory,
  name, status and progress, so ``pipeline status JOB_ID`` and ``pipeline
  list`` work from any client of that scheduler.

:func:`run_job` is the coordinator: :func:`pipeline.train.run` (the one fit
path) with a :class:`JobRecorder`, in the submitting process (attached), or
inside a task on a cluster worker (:func:`submit_detached`, which survives the
client going away; if that worker dies the scheduler runs the task again and
it resumes from the checkpoint).  A resumed job ends with the model that the
uninterrupted run would have written, bit for bit.
"""

from __future__ import annotations

import contextlib
import csv
import getpass
import io
import os
import platform
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from .atomic import write_atomic
from .checkpoint import load_checkpoint, save_checkpoint
from .cluster import connect, memory_total, security
from .config import TrainConfig, check_output_root, output_roots
from .data import Dataset, Split
from .errors import (
    CheckpointError,
    ClusterError,
    ConfigError,
    ConvergenceWarning,
    JobCancelled,
    JobError,
    JobNotFoundError,
    OutputError,
    PipelineError,
)
from .fitting import FitState, Progress
from .jobfile import JobSource, config_to_mapping, in_file_words, source_json, stored_settings
from .model import Model
from .outputs import (
    ACTIVE,
    CANCELLED,
    FAILED,
    HISTORY_FILE,
    JOB_FILE,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    DirectoryLock,
    JobDocument,
    JobStatus,
    OutputDir,
    now,
)
from .predict import evaluate
from .synth import LABEL as SYNTH_LABEL
from .synth import holds_data, make_data
from .train import Recorder, check_label_classes, open_configured, run

__all__ = [
    "JobRecorder",
    "check_job_output",
    "config_of",
    "coordinator_gone",
    "find_job",
    "list_jobs",
    "new_job_id",
    "request_cancel",
    "cancel_orphaned",
    "gone_coordinator",
    "run_job",
    "submit_detached",
]

#: Scheduler metadata: ``(METADATA_ROOT, job_id) -> summary``.
METADATA_ROOT = "pipeline-jobs"
#: Keys of a configuration that do not change the model (where and how it runs).
_RUNTIME_KEYS = ("name", "data.url", "data.generate", "output.", "cluster.", "cache.")
#: Libraries whose versions job.json records.
VERSIONED = ("pipeline", "numpy", "pyarrow", "dask", "distributed", "numba")
#: Seconds submit_detached waits for the scheduler to hold the coordinator task.
SUBMIT_WAIT_S = 10.0
SUBMIT_POLL_S = 0.05
#: Task states of a coordinator that is alive (or about to be).
LIVE_TASK_STATES = ("waiting", "queued", "no-worker", "processing")
Coordinator = Literal["attached", "detached"]


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


def model_options(config: TrainConfig, features) -> dict:
    """What decides the model besides the data: a checkpoint must match it."""
    mapping = config_to_mapping(config)
    mapping = {k: v for k, v in mapping.items() if not k.startswith(_RUNTIME_KEYS)}
    mapping["data.features"] = list(features)
    return mapping


def _versions() -> dict:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _user() -> str | None:
    with contextlib.suppress(Exception):
        return getpass.getuser()
    return None


def _publish(client, job_id: str, document: JobDocument) -> None:
    """Best effort: the scheduler's index entry for this job."""
    if client is None:
        return
    with contextlib.suppress(Exception):
        client.set_metadata([METADATA_ROOT, job_id], document.summary())


def _history_rows(state: FitState) -> Iterator[list]:
    """``history.csv``'s rows of ``state`` (:data:`pipeline.outputs.HISTORY_COLUMNS`)."""
    validation = list(state.validation_loss)
    for index, (record, seconds) in enumerate(zip(state.solver_state.history, state.elapsed_s)):
        yield [
            record.iteration,
            repr(record.loss),
            repr(record.grad_norm),
            repr(record.step),
            record.n_passes + state.stats_passes,
            f"{seconds:.3f}",
        ] + ([repr(validation[index])] if validation else [])


class JobRecorder(Recorder):
    """A job's side of :func:`pipeline.train.run`: job.json, job.log,
    history.csv, checkpoints, the scheduler's index and cancel requests.

    A new attached job writes its directory only after the first pass, so bad
    input leaves nothing behind; its notes wait (with their times) until then.
    """

    def __init__(
        self,
        config: TrainConfig,
        job_id: str,
        previous: JobDocument | None,
        coordinator: Coordinator = "attached",
        progress: Progress | None = None,
        notify: Callable[[str], None] | None = None,
        on_warning: Callable[[str], None] | None = None,
        source: JobSource | None = None,
        directory_lock: DirectoryLock | None = None,
    ) -> None:
        super().__init__(progress, notify)
        assert config.out is not None  # check_job_output
        self.config = config
        #: the job file the configuration came from (its settings' errors are recorded in its words)
        self.source = source
        self.job_id = job_id
        self.previous = previous
        self.coordinator = coordinator
        self.on_warning = on_warning
        self.outputs = OutputDir(config.out)
        self.client: Any = None
        self.publish_to: Any = None
        #: log lines (with the time they happened) until the directory is written (None after)
        self.pending: list[tuple[str, str]] | None = []
        self.caught: list[warnings.WarningMessage] = []
        self._directory_lock = threading.Lock()
        #: the run's hold on its output directory (:func:`run_job`), taken here once the directory exists
        self.directory_lock = directory_lock
        #: model.json is written (what an interruption then leaves is the job's last steps)
        self.model_written = False
        #: the fit's last state, and whether the checkpoint holds it (a cancel saves it: :meth:`fail`)
        self.last_state: FitState | None = None
        self.last_saved = False

    @property
    def again(self) -> bool:
        """Whether the directory holds this very job from an earlier run (a
        resume, a resubmission, a detached coordinator run again)."""
        return self.previous is not None and self.previous.job_id == self.job_id

    @property
    def may_resume(self) -> bool:  # type: ignore[override]
        return self.again and self.outputs.checkpoint.exists()

    # ------------------------------------------------------------------ hooks

    def begin(self, dataset: Dataset, client: Any) -> FitState | None:
        config = self.config
        on_scheduler = self.coordinator == "detached" or (config.cluster is not None and config.cluster.scheduler)
        self.client, self.publish_to = client, client if on_scheduler else None
        self.dataset = dataset
        self.options = model_options(config, dataset.feature_names)
        self.meta = {"job_id": self.job_id, "fingerprint": dataset.fingerprint, "model_options": self.options}
        # a new job resumes nothing, and an old job's checkpoint (damaged or of
        # another format, too) is replaced, not read; nor does an old job's
        # cancel request stop it
        self.resume = None
        if self.previous is not None:
            self.resume = _load_resume(self.outputs, self.job_id, dataset.fingerprint, self.options)
        if self.resume is None:
            self.note(
                f"job {self.job_id} started: {config.solver} on {dataset.url} "
                f"({dataset.n_samples} rows x {dataset.n_features} features)"
            )
            reached = self.previous.iteration if self.previous is not None else None
            if reached:  # a job that got somewhere, with no checkpoint of its own left
                self.note(
                    f"job {self.job_id} had reached iteration {reached} but {self.outputs.checkpoint} holds no "
                    "checkpoint of it (removed, or the run stopped before writing one): it starts again from "
                    "iteration 0 (to the same model)"
                )
        else:
            self.note(
                f"job {self.job_id} resumed at iteration {self.resume.solver_state.n_iter} "
                f"from {self.outputs.checkpoint}"
            )
        if self.previous is not None or self.coordinator != "attached":
            with self.outputs.writing():
                self._write_directory()
        return self.resume

    def note(self, message: str) -> None:
        if self.pending is None:
            with self.outputs.writing():
                self.outputs.log(message)
        else:
            self.pending.append((now(), message))
        super().note(message)

    def check_cancel(self) -> None:
        if self.previous is None and self.pending is not None:
            # a new job that has not written its directory yet: a cancel request
            # there is another job's (one before it, or one started at the same time)
            return
        if self.outputs.cancel_requested():
            raise JobCancelled(f"job cancelled on request ({self.outputs.cancel})", path=str(self.outputs.path))

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:  # (a failed run's warnings too: they may say why it failed)
                self.caught = caught

    def on_state(self, state: FitState) -> None:
        with self.outputs.writing():
            self._on_state(state)

    def _on_state(self, state: FitState) -> None:
        self._write_directory()
        record = state.solver_state.history[-1]
        self.outputs.write_history(_history_rows(state), validation=bool(state.validation_loss))
        self.last_state, self.last_saved = state, False
        if state.solver_state.n_iter % self.config.checkpoint_every == 0:
            save_checkpoint(self.outputs.checkpoint, state, self.meta)
            self.last_saved = True
        updated = self.outputs.update_job(
            iteration=record.iteration,
            loss=record.loss,
            grad_norm=record.grad_norm,
            n_passes=state.n_passes,
            elapsed_s=state.elapsed_s[-1],
        )
        self.outputs.log(
            f"iter {record.iteration} loss {record.loss!r} |grad|inf "
            f"{record.grad_norm:.3e} step {record.step:.3e} passes {state.n_passes}"
        )
        _publish(self.publish_to, self.job_id, updated)

    def claim(self) -> None:
        with self.outputs.writing():
            self._write_directory()

    def _write_directory(self) -> None:
        """The job's directory, once: job.json, then the notes so far (one
        thread at a time: a cross-validation's fits call it from theirs)."""
        with self._directory_lock:
            self._write_directory_once()

    def on_model(self, model: Model) -> None:
        self.model_written = True
        with self.outputs.writing():
            self.outputs.log(f"model written to {self.outputs.model}")

    def on_point(self, point: Path) -> None:
        """The point's history beside its model (history.csv is its fit on every row's now)."""
        with self.outputs.writing():
            if self.outputs.history.exists():
                write_atomic(point / HISTORY_FILE, self.outputs.history.read_bytes())

    def on_chosen(self, model: Model, point: Path | None) -> None:
        """history.csv and job.json's progress: the chosen point's model's
        (they were the last point's, beside the chosen one's digest)."""
        with self.outputs.writing():
            kept = None if point is None else point / HISTORY_FILE
            elapsed = {}
            if kept is not None and kept.exists():
                history = kept.read_bytes()
                write_atomic(self.outputs.history, history)
                rows = list(csv.DictReader(io.StringIO(history.decode())))
                elapsed = {"elapsed_s": float(rows[-1]["elapsed_s"])} if rows else {}
            updated = self.outputs.update_job(
                iteration=model.n_iter, loss=model.loss, grad_norm=model.grad_norm, n_passes=model.n_passes, **elapsed
            )
        _publish(self.publish_to, self.job_id, updated)

    def _tell_warnings(self) -> None:
        """The warnings caught while the job ran: to job.log (once written) and ``on_warning``."""
        for warning in self.caught:
            kind = "ConvergenceWarning" if issubclass(warning.category, ConvergenceWarning) else "warning"
            if self.pending is None:
                self.outputs.log(f"{kind}: {warning.message}")
            if self.on_warning:
                self.on_warning(f"{kind}: {warning.message}")
        self.caught = []

    def finish(self, model: Model, kernel: dict | None) -> None:
        with self.outputs.writing():
            self._finish(model, kernel)

    def _finish(self, model: Model, kernel: dict | None) -> None:
        self._tell_warnings()
        if self.config.validation_fraction:
            self._evaluate_validation()
        status = "converged" if model.converged else "NOT converged"
        self.outputs.log(
            f"{status} after {model.n_iter} iterations, {model.n_passes} passes "
            f"({model.message}); digest {model.digest}"
        )
        self._end(
            SUCCEEDED,
            None,
            digest=model.digest,
            converged=model.converged,
            n_iter=model.n_iter,
            cache=model.cache,
            kernel=kernel,
        )

    def fail(self, error: BaseException) -> None:
        with contextlib.suppress(OSError):
            self._tell_warnings()
        if self.pending is not None and not self.again:
            return  # a new job wrote nothing, and writes nothing now
        # (the job's own directory, from an earlier run: a resume, a detached
        # job's coordinator run again, failing before it wrote anything, says so)
        if isinstance(error, (JobCancelled, KeyboardInterrupt)):
            self._end(CANCELLED, self._stopped(error))
            self._checkpoint_last_state()  # (after its status: a second Ctrl-C may stop this)
        elif isinstance(error, PipelineError):
            error = in_file_words(error, self.source)
            self._end(FAILED, f"{type(error).__name__}: {error}")
        else:
            self._end(FAILED, f"{type(error).__name__}: {error} (unexpected)")

    def _stopped(self, error: JobCancelled | KeyboardInterrupt) -> str:
        """Why a cancelled job stopped: the cancel's reason, or the interruption
        (Ctrl-C of an attached job, or SIGTERM: stopped, not broken)."""
        if isinstance(error, JobCancelled):
            return str(error)
        how = str(error) or "Ctrl-C"
        if self.model_written:  # (the job's last steps after it: metrics, its end)
            return (
                f"interrupted ({how}) after model.json was written; `pipeline resume {self.outputs.path}` "
                "completes the job"
            )
        return f"interrupted ({how}); `pipeline resume {self.outputs.path}` continues it"

    def _checkpoint_last_state(self) -> None:
        """A cancelled or interrupted job's last iteration saved as its
        checkpoint, where the ``checkpoint_every`` rule had not saved it: the
        resume continues from there, not from the last multiple (any state of
        a fit ends where the fit would have: the same model).  Not for a path
        or cross-validation, whose fits resume from their own states."""
        if self.last_state is None or self.last_saved or self.config.path or self.config.cv:
            return
        with contextlib.suppress(OSError, PipelineError):
            save_checkpoint(self.outputs.checkpoint, self.last_state, self.meta)
            self.last_saved = True

    # ------------------------------------------------------------------ files

    def _write_directory_once(self) -> None:
        if self.pending is None:
            return
        config, dataset, client, previous = self.config, self.dataset, self.client, self.previous
        try:
            self.outputs.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # (checked before training; a race or a mount that changed since)
            raise OutputError(
                f"cannot create the output directory {self.outputs.path}: {exc}", path=str(self.outputs.path)
            ) from None
        if self.directory_lock is not None:  # (a directory made just now: held from here on)
            self.directory_lock.take()
        # a new job's job.json is written first, and only if no other job took
        # the directory since it was checked (two jobs started at once)
        claim = previous is None and not config.overwrite
        if previous is None and not claim:  # replacing another job: nothing of it may be resumed or shown
            self.outputs.clear_job_files()
        workers = client.scheduler_info(n_workers=-1)["workers"] if client is not None else {}
        document = (self.outputs.claim_job if claim else self.outputs.update_job)(
            job_id=self.job_id,
            name=config.name,
            status=RUNNING,
            out=str(self.outputs.path.absolute()),
            config=config_to_mapping(config),
            source=source_json(self.source),
            model_options=self.options,
            versions=_versions(),
            dataset={
                "url": dataset.url,
                "fingerprint": dataset.fingerprint,
                "n_samples": dataset.n_samples,
                "n_features": dataset.n_features,
                "files": len(dataset.files),
                "chunks": len(dataset.chunks),
            },
            cluster={
                "scheduler": getattr(client, "scheduler", None) and client.scheduler.address,
                "n_workers": len(workers),
                "threads": sum(w.get("nthreads", 0) for w in workers.values()),
                # bytes, all workers together; None: no workers, or one without a limit
                "memory_limit": memory_total(workers)[1],
            },
            coordinator={
                "mode": self.coordinator,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "user": _user(),
            },
            started_at=(previous and previous.started_at) or now(),
            ended_at=None,
            error=None,
            resumed_from=None if self.resume is None else self.resume.solver_state.n_iter,
            submitted_at=(previous and previous.submitted_at) or now(),
        )
        if previous is not None:  # (the job's own directory: what a killed run of it left half-written goes)
            self.outputs.clear_leftover_temporaries()
        if claim:
            self.outputs.clear_job_files(keep=(JOB_FILE,))
        # a queued job's cancel request stands, and so does a running detached
        # job's when the scheduler runs its coordinator again (its worker died):
        # it was made for this very run; any other is an earlier run's
        rerun = self.coordinator == "detached" and self.again and previous is not None and previous.status == RUNNING
        if previous is None or not (previous.status == QUEUED or rerun):
            self.outputs.withdraw_cancel()
        lines, self.pending = self.pending, None
        for when, line in lines:
            self.outputs.log(line, when)
        _publish(self.publish_to, self.job_id, document)

    def _evaluate_validation(self) -> None:
        """The final model's metrics on the held-out rows -> ``metrics.json`` (one
        more pass over the data; what ``pipeline evaluate OUT DATA --split
        validation`` computes)."""
        config = self.config
        split = Split(config.validation_fraction, config.validation_key, "validation")
        metrics = evaluate(str(self.outputs.path), config.data, client=self.client, split=split)
        self.outputs.write_json(self.outputs.metrics, metrics)
        # (a multinomial model's metrics have a one-vs-rest macro AUC, no binary one)
        auc = metrics["roc_auc_ovr_macro"] if "per_class" in metrics else metrics["roc_auc"]
        self.note(
            f"validation rows {metrics['n_samples']}: log-loss {metrics['log_loss']!r} accuracy "
            f"{metrics['accuracy']!r} ROC AUC {auc!r} -> {self.outputs.metrics}"
        )

    def _end(self, status: JobStatus, error: str | None, **fields) -> None:
        # (best effort: a directory gone or unreadable must not hide the run's own error)
        with contextlib.suppress(OSError, JobError):
            document = self.outputs.update_job(status=status, error=error, ended_at=now(), **fields)
            self.outputs.log(f"job {self.job_id} {status}" + (f": {error}" if error else ""))
            _publish(self.publish_to, self.job_id, document)


def check_job_output(config: TrainConfig, job_id: str | None) -> tuple[str, JobDocument | None]:
    """Before anything is written: may this job use ``config.out``?

    Returns ``(job_id, previous job document or None)``.  The directory may
    hold this job (same id, or the same name and not finished: a
    re-submission, which resumes it); anything else needs ``overwrite``.
    """
    if config.out is None:
        raise JobError(
            "a job needs an output directory: output.dir / --out, or a name "
            "(name / --name) under an output root (output.root / --output-root / "
            "$PIPELINE_OUTPUT_ROOT)"
        )
    outputs = OutputDir(config.out)
    outputs.check_apart_from(config.data)
    previous = outputs.read_job() if outputs.path.is_dir() else None
    if previous is not None and job_id is not None and previous.job_id == job_id:
        # this very job (a detached job's coordinator, a resume by id): its own
        # files, whatever --overwrite says (it replaced another job's at submission)
        outputs.check_writable(overwrite=True)
        return job_id, previous
    if previous is not None and config.overwrite:
        refuse_if_running(previous)  # (--overwrite replaces a job's files, not a job that still writes them)
    if previous is not None and not config.overwrite:
        resubmitted = job_id is None and previous.name == config.name and previous.status != SUCCEEDED
        if resubmitted and previous.job_id:
            outputs.check_writable(overwrite=True)
            return previous.job_id, previous
        held = (
            f"job {previous.job_id} ("
            + (f"{previous.name!r}, " if previous.name else "unnamed, ")
            + f"{previous.status})"
            if previous.job_id
            else f"a {outputs.job.name} without a job id (not one of a job that ran)"
        )
        raise OutputError(
            f"{outputs.path} holds {held}; expected a new output directory, the same job name to "
            "resume an unfinished job, or --overwrite to replace it",
            path=str(outputs.path),
        )
    outputs.check_writable(config.overwrite)
    return job_id or new_job_id(), None


def refuse_if_running(previous: JobDocument | None) -> None:
    """A job whose coordinator may still be alive is not started a second time."""
    if previous is None or previous.status not in ACTIVE:
        return
    job_id = previous.job_id
    coordinator = previous.coordinator or {}
    pid, host = _pid_of(coordinator), coordinator.get("host")
    if coordinator.get("mode") == "attached" and host == socket.gethostname() and pid and _alive(pid):
        raise JobError(
            f"job {job_id} is still running (coordinator pid {pid} on {host}); cancel it first, or wait for it to end"
        )
    config = previous.config or {}
    scheduler = config.get("cluster.scheduler")
    if scheduler and (coordinator.get("mode") == "detached" or previous.status == QUEUED):
        state = coordinator_task_state(previous)
        if state is UNANSWERED:
            return  # the scheduler is gone, and its tasks with it
        if state in LIVE_TASK_STATES:
            raise JobError(
                f"job {job_id} is still {state} on {scheduler} (its coordinator task "
                "is alive); cancel it first, or wait for it to end"
            )


#: the largest process id any system gives (a job.json's pid beyond it, or not a positive int, says nothing)
MAX_PID = 2**31 - 1


def _pid_of(coordinator: dict) -> int | None:
    """The coordinator's process id, if ``job.json`` holds a usable one."""
    pid = coordinator.get("pid")
    return pid if type(pid) is int and 0 < pid <= MAX_PID else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: :func:`coordinator_task_state` of a scheduler that does not answer
UNANSWERED = "(no answer)"


def coordinator_task_state(document: JobDocument) -> str | None:
    """The state of the job's coordinator task on the scheduler of its
    configuration (None: the scheduler has no such task; :data:`UNANSWERED`:
    no scheduler answered within a few seconds)."""
    config = document.config or {}
    scheduler = config.get("cluster.scheduler")
    if not scheduler:
        return UNANSWERED
    from distributed import Client

    tls = security(config.get("cluster.tls_ca_file"), config.get("cluster.tls_cert"), config.get("cluster.tls_key"))
    try:
        with Client(scheduler, timeout=SCHEDULER_ASK_S, set_as_default=False, security=tls) as client:
            return client.run_on_scheduler(_task_state, _task_key(document.job_id))
    except (OSError, TimeoutError, TypeError, ValueError):
        return UNANSWERED


#: seconds to wait for a job's scheduler to answer whether its coordinator task lives
SCHEDULER_ASK_S = 2


def _task_key(job_id: str | None) -> str:
    return f"pipeline-job-{job_id}"


def _task_state(key, dask_scheduler=None) -> str | None:
    task = dask_scheduler.tasks.get(key)
    return None if task is None else task.state


def _generate(config: TrainConfig) -> None:
    if config.generate and not holds_data(Path(config.data)):
        # the job writes the dataset: under an output root, only inside it
        check_output_root(config.data, output_roots(config), "dataset to generate (data.generate)")
        _check_generated_columns(config)
        make_data(config.data, **config.generate)


def _check_generated_columns(config: TrainConfig) -> None:
    """The columns the job names are the generated dataset's (``f0 .. f{d-1}``
    and the label ``y``), or a ConfigError before anything is written (the
    dataset was written, then the label was not found in it)."""
    count = config.generate.get("features") if config.generate else None
    if not isinstance(count, int) or isinstance(count, bool):
        return  # (make_data's own check names a bad parameter)
    features = [f"f{j}" for j in range(count)]
    for key, names in (("data.categorical", config.categorical), ("data.hashed", config.hashed)):
        if names:  # (every generated feature is float64: none can be categorical, nor hashed)
            raise ConfigError(
                f"{key}: {', '.join(map(repr, names))}: the dataset data.generate writes has float64 features "
                "only, none categorical; nothing was generated",
                column=key,
            )
    named = {
        "data.label": [config.label],
        "data.weight": [config.weight] if config.weight else [],
        "data.features": list(config.features or ()),
        "data.validation_key": [config.validation_key] if config.validation_key else [],
    }
    for key, columns in named.items():
        absent = [column for column in columns if column not in (*features, SYNTH_LABEL)]
        if absent:
            raise ConfigError(
                f"{key}: {', '.join(map(repr, absent))} is not a column of the dataset data.generate writes "
                f"(features f0 .. f{count - 1} and the label {SYNTH_LABEL!r}); nothing was generated",
                column=key,
            )


def run_job(
    config: TrainConfig,
    job_id: str | None = None,
    *,
    client=None,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    coordinator: Coordinator = "attached",
    source: JobSource | None = None,
) -> Model:
    """Run (or resume) the job; returns the model.  See the module docstring.

    Resumes from ``checkpoint.npz`` when the output directory holds one of
    this job (same id, same data fingerprint, same model options).
    ``progress`` gets each iteration's record, ``notify`` the job's notes
    (cache choice, start, resume), ``on_warning`` each warning line; all of
    them also go to ``job.log``.  Raises
    :class:`JobCancelled` when cancelled, any :class:`PipelineError` on bad
    input; ``job.json`` records the outcome either way (a setting's error in
    the words of ``source``, the job file it came from: :func:`pipeline.jobfile.in_file_words`).
    """
    if config.out is not None:  # (check_job_output says what a job without one needs)
        check_output_root(config.out, output_roots(config))  # here too: a worker checks its own root
    # (held from the checks to the end: another process running a job in the directory meanwhile is refused)
    with OutputDir(config.out).exclusive() if config.out is not None else contextlib.nullcontext() as lock:
        job_id, previous = check_job_output(config, job_id)
        if coordinator == "attached":
            refuse_if_running(previous)
        _generate(config)
        # (a new directory is taken once the recorder has made it)
        recorder = JobRecorder(config, job_id, previous, coordinator, progress, notify, on_warning, source, lock)
        return run(config, recorder, client=client)


#: model options added after jobs were first recorded, with what their absence
#: from an earlier job's options means
_ADDED_OPTIONS = {"train.restore_best": False}


def _comparable(options: dict) -> dict:
    """Model options as a checkpoint's are compared: an option added since
    (:data:`_ADDED_OPTIONS`) as its value then; explicit class weights
    (a list, or a table by class: ``0:1,1:5`` and ``1,5`` are the same
    weights) only once the classes resolve them (:func:`pipeline.train.check_resumed_class_weight`)."""
    options = {**_ADDED_OPTIONS, **stored_settings(options)}
    if isinstance(options.get("train.class_weight"), (list, dict)):
        return {**options, "train.class_weight": "explicit"}
    return options


def _load_resume(outputs: OutputDir, job_id: str, fingerprint: str, options: dict) -> FitState | None:
    path = outputs.checkpoint
    if not path.exists():
        return None
    state, meta = load_checkpoint(path)
    if meta.get("job_id") != job_id:
        return None  # another job's leftover (only with --overwrite): start afresh
    if meta.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"checkpoint {path} was written for another dataset (fingerprint "
            f"{str(meta.get('fingerprint'))[:16]}…; the data now has {fingerprint[:16]}…: files, "
            "sizes, row groups or the columns' Parquet statistics changed); resume with the original data, "
            "or start a new job (--overwrite replaces this one; or another output directory)",
            path=str(path),
        )
    if _comparable(meta.get("model_options") or {}) != _comparable(options):
        saved = meta.get("model_options") or {}
        changed = sorted(k for k in set(saved) | set(options) if saved.get(k) != options.get(k))
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {options.get(k)!r}" for k in changed)
        raise CheckpointError(
            f"checkpoint {path} was written with other options ({detail}); resume with the "
            "original options, or start a new job (--overwrite replaces this one; or another output directory)",
            path=str(path),
        )
    return state


# --------------------------------------------------------------------------- detached jobs


def coordinate(config: TrainConfig, job_id: str, source: JobSource | None = None) -> str:
    """A detached job's coordinator, run as a task on a cluster worker
    (``source``: the job file its configuration came from)."""
    from distributed import worker_client

    with worker_client() as client:
        try:
            model = run_job(config, job_id, client=client, coordinator="detached", source=source)
        except JobCancelled:
            return CANCELLED
        except BaseException as exc:
            _fail_queued(config, job_id, in_file_words(exc, source), client)
            raise
    return model.digest


def _fail_queued(config: TrainConfig, job_id: str, error: BaseException, client: Any) -> None:
    """A detached job that failed before it started running (its data, its
    checkpoint, its output checked again where it runs): ``job.json`` says
    so, instead of ``queued`` for ever (a running job's recorder has said it already)."""
    if config.out is None:
        return
    outputs = OutputDir(config.out)
    with contextlib.suppress(OSError, PipelineError):
        document = outputs.read_job()
        if document is None or document.job_id != job_id or document.status != QUEUED:
            return
        kind = type(error).__name__
        message = f"{kind}: {error}" + ("" if isinstance(error, PipelineError) else " (unexpected)")
        document = outputs.update_job(status=FAILED, error=message, ended_at=now())
        outputs.log(f"job {job_id} {FAILED}: {message}")
        _publish(client, job_id, document)


def submit_detached(config: TrainConfig, job_id: str | None = None, source: JobSource | None = None) -> str:
    """Start the job's coordinator on the cluster and return its id at once
    (``source``: the job file the configuration came from, for its errors' words).

    Everything that can be checked from here is checked before anything is
    written (output directory, dataset, scheduler); the coordinator task is
    fire-and-forget, so the job outlives this client.
    """
    if config.cluster is None or not config.cluster.scheduler:
        raise JobError("a detached job runs on a running cluster: give cluster.scheduler (or --scheduler ADDRESS)")
    # held while the job is checked and queued (another process running a job in the directory is refused),
    # released as its coordinator, which takes it, is submitted
    lock = None if config.out is None else OutputDir(config.out).exclusive()
    try:
        if lock is not None:
            lock.take()
        return _submit(config, job_id, source, lock)
    finally:
        if lock is not None:
            lock.release()


def _submit(config: TrainConfig, job_id: str | None, source: JobSource | None, lock: DirectoryLock | None) -> str:
    """:func:`submit_detached`'s checks and submission, ``lock`` held until the coordinator is submitted."""
    from distributed import fire_and_forget

    job_id, previous = check_job_output(config, job_id)
    assert config.out is not None  # check_job_output refuses a job without one
    assert config.cluster is not None  # (submit_detached refuses a job without a scheduler)
    refuse_if_running(previous)
    _generate(config)
    dataset = open_configured(config)
    check_label_classes(dataset)
    resume = None
    if previous is not None:  # a resumed job: its checkpoint must fit these data and options
        options = model_options(config, dataset.feature_names)
        resume = _load_resume(OutputDir(config.out), job_id, dataset.fingerprint, options)
    if config.init is not None and resume is None:  # (from a checkpoint the init model is not read)
        Model.load(config.init)
    with connect(config.cluster) as client:
        outputs = OutputDir(config.out)
        outputs.path.mkdir(parents=True, exist_ok=True)
        if lock is not None:  # (a directory made just now: held from here on)
            lock.take()
        claim = previous is None and not config.overwrite  # (see JobRecorder._write_directory)
        if previous is None and not claim:
            outputs.clear_job_files()
        document = (outputs.claim_job if claim else outputs.update_job)(
            job_id=job_id,
            name=config.name,
            status=QUEUED,
            out=str(outputs.path.absolute()),
            config=config_to_mapping(config),
            source=source_json(source),
            submitted_at=now(),
            ended_at=None,
            error=None,
        )
        if claim:
            outputs.clear_job_files(keep=(JOB_FILE,))
        else:  # a resumed job: an old cancel request (it stopped the job) is not for this run
            outputs.withdraw_cancel()
        outputs.log(f"job {job_id} submitted (detached) to {config.cluster.scheduler}")
        _publish(client, job_id, document)
        if lock is not None:
            lock.release()  # (the coordinator takes it)
        future = client.submit(coordinate, config, job_id, source, key=_task_key(job_id), pure=False)
        fire_and_forget(future)
        # the scheduler must hold the task before this client goes away
        if not _held(client, future.key):
            client.cancel([future], force=True)  # (fire-and-forget wants it too; not run: the job failed here)
            error = ClusterError(
                f"the scheduler {config.cluster.scheduler} did not take the job's coordinator within "
                f"{SUBMIT_WAIT_S:g} s, so the job was not started; check the scheduler, then submit it again "
                f"(or `pipeline resume {outputs.path} --detach`)"
            )
            _fail_queued(config, job_id, error, client)
            raise error
    return job_id


def _held(client, key: str) -> bool:
    """Whether the scheduler holds task ``key`` within :data:`SUBMIT_WAIT_S`
    (each question bounded: a scheduler that does not answer is a no)."""
    deadline = time.monotonic() + SUBMIT_WAIT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, TimeoutError):
            if client.run_on_scheduler(_task_known, key, callback_timeout=max(deadline - time.monotonic(), 0.1)):
                return True
        time.sleep(SUBMIT_POLL_S)
    return False


def _task_known(key, dask_scheduler=None) -> bool:
    return key in dask_scheduler.tasks


# --------------------------------------------------------------------------- finding jobs


def _scheduler_client(scheduler: str | None):
    from distributed import Client

    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if not address:
        return None
    try:
        return Client(address, timeout=10, set_as_default=False)  # TLS: Dask's configuration
    except (OSError, TimeoutError, TypeError, ValueError) as exc:
        _close_half_built(exc, Client)
        raise ClusterError(f"no Dask scheduler answered at {address!r}: {exc}") from None


def _close_half_built(exc: BaseException, client_type: Any) -> None:
    """Close the client whose constructor raised ``exc`` (found in its
    frames): left to the garbage collector, a client that is not the
    default one closes at the interpreter's exit, when its event loop is
    gone, and waits 20 s for it before printing a traceback."""
    frame = exc.__traceback__
    while frame is not None:
        client = frame.tb_frame.f_locals.get("self")
        if isinstance(client, client_type):
            with contextlib.suppress(Exception):
                client.close(timeout=2)
            return
        frame = frame.tb_next


def coordinator_gone(
    document: JobDocument,
    host: str | None = None,
    alive: Callable[[int], bool] | None = None,
    task_state: Callable[[JobDocument], str | None] | None = None,
) -> bool:
    """Whether ``document`` says "running" while its coordinator is known to
    be gone.  An attached one: it ran on this ``host`` (default: this
    machine's name) and its pid is not ``alive`` (default: a signal-0
    probe); a job killed with its process (``kill -9``, a lost machine)
    leaves job.json saying "running", and on another host nothing is known.
    A detached one: its scheduler answers that it has no live coordinator
    task (``task_state``, default :func:`coordinator_task_state`) -- the
    scheduler was restarted, or lost the task; a task whose worker died is
    run again elsewhere, and a scheduler that does not answer says nothing."""
    coordinator = document.coordinator or {}
    if document.status == RUNNING and coordinator.get("mode") == "detached":
        state = (coordinator_task_state if task_state is None else task_state)(document)
        return state is not UNANSWERED and state not in LIVE_TASK_STATES
    pid = _pid_of(coordinator)
    if document.status != RUNNING or coordinator.get("mode") != "attached" or pid is None:
        return False
    if coordinator.get("host") != (socket.gethostname() if host is None else host):
        return False
    return not (_alive if alive is None else alive)(pid)


def gone_coordinator(document: JobDocument) -> str:
    """Which coordinator :func:`coordinator_gone` found gone, and how, in words."""
    coordinator = document.coordinator or {}
    if coordinator.get("mode") == "detached":
        scheduler = (document.config or {}).get("cluster.scheduler")
        return f"its coordinator task is no longer on the scheduler at {scheduler} (restarted, or the task lost)"
    return f"its coordinator (pid {coordinator.get('pid')} on {coordinator.get('host')}) is no longer running"


def cancel_orphaned(outputs: OutputDir, document: JobDocument) -> bool:
    """Mark a job cancelled whose coordinator is gone (:func:`coordinator_gone`):
    no one would read a cancel request, and one left behind would stop the
    job's next run; ``pipeline resume`` continues it from its checkpoint."""
    reason = f"cancelled because {gone_coordinator(document)}; `pipeline resume` continues it from its last checkpoint"
    now_written = outputs.read_job()  # (whether it ended meanwhile: then it said so, and stays as it said)
    if now_written is None or (now_written.job_id, now_written.status) != (document.job_id, RUNNING):
        return False
    outputs.update_job(status=CANCELLED, ended_at=now(), error=reason)
    outputs.log(f"job {document.job_id} {reason}")
    return True


def list_jobs(scheduler: str | None) -> list[JobDocument]:
    """The scheduler's index of jobs (newest first)."""
    client = _scheduler_client(scheduler)
    if client is None:
        raise JobError("listing jobs needs a scheduler: --scheduler ADDRESS or DASK_SCHEDULER_ADDRESS")
    with client:
        jobs = client.get_metadata([METADATA_ROOT], default={}) or {}
    documents = []
    for job_id, summary in jobs.items():
        try:
            indexed = JobDocument.from_json(summary)
        except ValueError as exc:
            raise JobError(f"the scheduler's index entry of job {job_id} cannot be read: {exc}") from None
        documents.append(_source_of_truth(indexed))
    return sorted(documents, key=lambda job: job.updated_at or "", reverse=True)


def _source_of_truth(indexed: JobDocument) -> JobDocument:
    """The job's own job.json where this machine can read it and it is still
    that job's (the index is only updated by a coordinator that reaches the
    scheduler: an in-process resume or a killed coordinator leaves it behind)."""
    if not indexed.out:
        return indexed
    try:
        document = OutputDir(indexed.out).read_job()
    except (JobError, OSError):
        return indexed
    return document if document is not None and document.job_id == indexed.job_id else indexed


def find_job(job: str, scheduler: str | None = None) -> OutputDir:
    """A job by output directory, or by id through the scheduler's index."""
    if OutputDir(job).job.exists():
        return OutputDir(job)
    client = _scheduler_client(scheduler)
    if client is None:
        raise JobNotFoundError(
            f"{job!r} is not an output directory with a {JOB_FILE}, and no scheduler was given "
            "to look the id up (--scheduler ADDRESS or DASK_SCHEDULER_ADDRESS)"
        )
    with client:
        entry = client.get_metadata([METADATA_ROOT, job], default=None)
    if not entry:
        raise JobNotFoundError(f"no job {job!r} on the scheduler, and no output directory {job!r}")
    outputs = OutputDir(entry["out"])
    if outputs.read_job() is None:
        raise JobNotFoundError(
            f"job {job} is indexed at {entry['out']}, but that directory has no "
            f"{JOB_FILE} here (is the output on shared storage?)"
        )
    return outputs


def request_cancel(outputs: OutputDir) -> None:
    outputs.request_cancel(by=f"{_user()}@{socket.gethostname()}")


def config_of(outputs: OutputDir, overrides: dict) -> tuple[TrainConfig, str]:
    """The job's configuration and id from its ``job.json`` (for resume), with ``overrides``."""
    config = outputs.training_config(overrides)
    document = outputs.read_job()
    if document is None or document.job_id is None:
        raise JobNotFoundError(f"{outputs.path} has no {JOB_FILE} with a job id")
    return config, document.job_id
