"""Training jobs: runs with an identity, artifacts, checkpoints, resume and cancel.

A job is a :class:`~pipeline.config.TrainConfig` with an output directory and
a job id.  Its state lives in two places:

* **the output directory** (authoritative; on storage every participant can
  read): ``job.json`` (resolved configuration, versions, cluster, times,
  status, progress), ``job.log``, ``history.csv``, ``checkpoint.npz``,
  ``model.json`` and, with a validation split, ``metrics.json``
  (the final model on the held-out rows); a ``cancel.request`` file asks the
  coordinator to stop.  Every file is written to a temporary name and renamed.
* **the scheduler** (an index, when the job runs on a named scheduler): the
  metadata key ``("pipeline-jobs", JOB_ID)`` holds the job's output directory,
  name, status and progress, so ``pipeline status JOB_ID`` and ``pipeline
  list`` work from any client of that scheduler.

:func:`run_job` is the coordinator: in the submitting process (attached), or
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
import json
import os
import platform
import socket
import time
import uuid
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from .atomic import write_atomic
from .checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from .config import TrainConfig, check_output_root, output_roots
from .data import Split, open_dataset
from .errors import (
    CheckpointError,
    ClusterError,
    ConvergenceWarning,
    JobCancelled,
    JobError,
    JobNotFoundError,
    OutputError,
    PipelineError,
)
from .jobfile import config_from_mapping, config_to_mapping
from .kernel import KernelSpec
from .model import MODEL_FILE, Model
from .predict import METRICS_FILE, evaluate, write_metrics
from .reduce import connect, security
from .train import (
    FitState,
    _evaluator,
    _initial_coef,
    build_model,
    check_label_classes,
    check_output,
    fit,
    warn_if_underdetermined,
)

__all__ = [
    "CANCEL_FILE",
    "HISTORY_FILE",
    "JOB_FILE",
    "LOG_FILE",
    "PLOT_FILE",
    "TERMINAL",
    "find_job",
    "list_jobs",
    "new_job_id",
    "request_cancel",
    "run_job",
    "submit_detached",
]

JOB_FILE = "job.json"
LOG_FILE = "job.log"
HISTORY_FILE = "history.csv"
#: written by earlier versions (the curves are in ``pipeline report`` now); cleared with the job
PLOT_FILE = "loss.png"
CANCEL_FILE = "cancel.request"
#: Scheduler metadata: ``(METADATA_ROOT, job_id) -> summary``.
METADATA_ROOT = "pipeline-jobs"
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)
HISTORY_COLUMNS = ("iteration", "loss", "grad_norm", "step", "passes", "elapsed_s")
#: Keys of a configuration that do not change the model (where and how it runs).
_RUNTIME_KEYS = ("name", "data.url", "data.generate", "output.", "cluster.", "cache.")


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def model_options(config: TrainConfig, features) -> dict:
    """What decides the model besides the data: a checkpoint must match it."""
    mapping = config_to_mapping(config)
    mapping = {k: v for k, v in mapping.items() if not k.startswith(_RUNTIME_KEYS)}
    mapping["data.features"] = list(features)
    return mapping


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("pipeline", "numpy", "pyarrow", "dask", "distributed", "numba"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


class JobFiles:
    """A job's files in its output directory (the authoritative job state)."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)

    def read(self) -> dict | None:
        try:
            return json.loads((self.out / JOB_FILE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise JobError(f"{self.out / JOB_FILE} cannot be read: {exc}", path=str(self.out)) from None

    def update(self, **fields) -> dict:
        document = self.read() or {}
        document.update(fields, updated_at=_now())
        write_atomic(self.out / JOB_FILE, (json.dumps(document, indent=2) + "\n").encode())
        return document

    def log(self, message: str, when: str | None = None) -> None:
        """Append ``message`` stamped with ``when`` (default: now)."""
        with open(self.out / LOG_FILE, "a") as handle:
            handle.write(f"{when or _now()} {message}\n")

    def write_history(self, state: FitState) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        validation = list(state.validation_loss)
        writer.writerow(HISTORY_COLUMNS + (("validation_loss",) if validation else ()))
        for index, (record, seconds) in enumerate(zip(state.solver_state.history, state.elapsed_s)):
            writer.writerow(
                [
                    record.iteration,
                    repr(record.loss),
                    repr(record.grad_norm),
                    repr(record.step),
                    record.n_passes + state.stats_passes,
                    f"{seconds:.3f}",
                ]
                + ([repr(validation[index])] if validation else [])
            )
        write_atomic(self.out / HISTORY_FILE, buffer.getvalue().encode())

    def cancel_requested(self) -> bool:
        return (self.out / CANCEL_FILE).exists()


class _Cancellable:
    """An evaluator that checks for a cancel request before every pass."""

    def __init__(self, evaluator, files: JobFiles) -> None:
        self.evaluator = evaluator
        self.files = files
        self.n_features = evaluator.n_features

    def _check(self) -> None:
        if self.files.cancel_requested():
            raise JobCancelled(f"job cancelled on request ({self.files.out / CANCEL_FILE})", path=str(self.files.out))

    def partials(self, coef, spec=KernelSpec()):
        self._check()
        return self.evaluator.partials(coef, spec)

    def stats(self):
        self._check()
        return self.evaluator.stats()


def _publish(client, job_id: str, document: dict) -> None:
    """Best effort: the scheduler's index entry for this job."""
    if client is None:
        return
    summary = {
        key: document.get(key)
        for key in (
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
    }
    with contextlib.suppress(Exception):
        client.set_metadata([METADATA_ROOT, job_id], summary)


def check_job_output(config: TrainConfig, job_id: str | None) -> tuple[str, dict | None]:
    """Before anything is written: may this job use ``config.out``?

    Returns ``(job_id, previous job.json or None)``.  The directory may hold
    this job (same id, or the same name and not finished: a re-submission,
    which resumes it); anything else needs ``overwrite``.
    """
    if config.out is None:
        raise JobError(
            "a job needs an output directory: output.dir / --out, or a name "
            "(name / --name) under an output root (output.root / --output-root / "
            "$PIPELINE_OUTPUT_ROOT)"
        )
    out = Path(config.out)
    previous = JobFiles(out).read() if out.is_dir() else None
    if previous is not None and not config.overwrite:
        same_id = job_id is not None and previous.get("job_id") == job_id
        resubmitted = job_id is None and previous.get("name") == config.name and previous.get("status") != SUCCEEDED
        if same_id or resubmitted:
            check_output(str(out), overwrite=True)  # writable
            return previous["job_id"], previous
        raise OutputError(
            f"{out} holds job {previous.get('job_id')} ({previous.get('name')!r}, "
            f"{previous.get('status')}); expected a new output directory, the same job name to "
            "resume an unfinished job, or --overwrite to replace it",
            path=str(out),
        )
    check_output(str(out), config.overwrite)
    return job_id or new_job_id(), None


def refuse_if_running(previous: dict | None) -> None:
    """A job whose coordinator may still be alive is not started a second time."""
    if not previous or previous.get("status") not in (QUEUED, RUNNING):
        return
    job_id = previous.get("job_id")
    coordinator = previous.get("coordinator") or {}
    pid, host = coordinator.get("pid"), coordinator.get("host")
    if coordinator.get("mode") == "attached" and host == socket.gethostname() and pid and _alive(pid):
        raise JobError(
            f"job {job_id} is still running (coordinator pid {pid} on {host}); cancel it first, or wait for it to end"
        )
    config = previous.get("config") or {}
    scheduler = config.get("cluster.scheduler")
    if scheduler and (coordinator.get("mode") == "detached" or previous.get("status") == QUEUED):
        from distributed import Client

        tls = security(config.get("cluster.tls_ca_file"), config.get("cluster.tls_cert"), config.get("cluster.tls_key"))
        try:
            with Client(scheduler, timeout=5, set_as_default=False, security=tls) as client:
                state = client.run_on_scheduler(_task_state, f"pipeline-job-{job_id}")
        except (OSError, TimeoutError, TypeError, ValueError):
            return  # the scheduler is gone, and its tasks with it
        if state in ("waiting", "queued", "no-worker", "processing"):
            raise JobError(
                f"job {job_id} is still {state} on {scheduler} (its coordinator task "
                "is alive); cancel it first, or wait for it to end"
            )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _task_state(key, dask_scheduler=None) -> str | None:
    task = dask_scheduler.tasks.get(key)
    return None if task is None else task.state


def _clear_job_files(out: Path) -> None:
    """Remove another job's state from ``out`` (its model.json stays until replaced)."""
    for name in (JOB_FILE, CHECKPOINT_FILE, HISTORY_FILE, LOG_FILE, CANCEL_FILE, PLOT_FILE, METRICS_FILE):
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()


def _generate(config: TrainConfig) -> None:
    if config.generate and not Path(config.data).exists():
        from .synth import make_data

        # the job writes the dataset: under an output root, only inside it
        check_output_root(config.data, output_roots(config), "dataset to generate (data.generate)")

        make_data(config.data, **config.generate)


def run_job(
    config: TrainConfig,
    job_id: str | None = None,
    *,
    client=None,
    progress: Callable | None = None,
    notify: Callable[[str], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    coordinator: str = "attached",
) -> Model:
    """Run (or resume) the job; returns the model.  See the module docstring.

    Resumes from ``checkpoint.npz`` when the output directory holds one of
    this job (same id, same data fingerprint, same model options).
    ``progress`` gets each iteration's record, ``notify`` the job's notes
    (cache choice, start, resume), ``on_warning`` each warning line; all of
    them also go to ``job.log``.  Raises
    :class:`JobCancelled` when cancelled, any :class:`PipelineError` on bad
    input; ``job.json`` records the outcome either way.
    """
    if config.out is not None:  # (check_job_output says what a job without one needs)
        check_output_root(config.out, output_roots(config))  # here too: a worker checks its own root
    job_id, previous = check_job_output(config, job_id)
    if coordinator == "attached":
        refuse_if_running(previous)
    _generate(config)
    dataset = open_dataset(config.data, config.label, config.features, config.weight)
    check_label_classes(dataset)
    init = _initial_coef(config.init, dataset.features)
    options = model_options(config, dataset.features)
    out = Path(config.out)
    with contextlib.ExitStack() as stack:
        if client is None and config.cluster is not None:
            client = stack.enter_context(connect(config.cluster))
        on_scheduler = coordinator == "detached" or (config.cluster is not None and config.cluster.scheduler)
        publish_to = client if on_scheduler else None
        files = JobFiles(out)
        resume = _load_resume(out, job_id, dataset.fingerprint, options)
        workers = client.scheduler_info(n_workers=-1)["workers"] if client is not None else {}
        meta = {"job_id": job_id, "fingerprint": dataset.fingerprint, "model_options": options}
        # log lines (with the time they happened) until the directory is written (None after)
        pending: list[tuple[str, str]] | None = []

        def note(message: str) -> None:
            if pending is None:
                files.log(message)
            else:
                pending.append((_now(), message))
            if notify:
                notify(message)

        def begin() -> None:
            """Write the job's directory: at once for a known job, else after the
            first pass, so bad input leaves nothing behind."""
            nonlocal pending
            if pending is None:
                return
            out.mkdir(parents=True, exist_ok=True)
            if previous is None:  # a new job: nothing of another job may be resumed or shown
                _clear_job_files(out)
            if (previous or {}).get("status") != QUEUED:  # a queued job's cancel request stands
                with contextlib.suppress(FileNotFoundError):
                    (out / CANCEL_FILE).unlink()
            document = files.update(
                job_id=job_id,
                name=config.name,
                status=RUNNING,
                out=str(out.absolute()),
                config=config_to_mapping(config),
                model_options=options,
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
                },
                coordinator={"mode": coordinator, "host": socket.gethostname(), "pid": os.getpid(), "user": _user()},
                started_at=(previous or {}).get("started_at") or _now(),
                ended_at=None,
                error=None,
                resumed_from=None if resume is None else resume.solver_state.n_iter,
                submitted_at=(previous or {}).get("submitted_at") or _now(),
            )
            lines, pending = pending, None
            for when, line in lines:
                files.log(line, when)
            _publish(publish_to, job_id, document)

        if resume is None:
            note(
                f"job {job_id} started: {config.solver} on {dataset.url} "
                f"({dataset.n_samples} rows x {dataset.n_features} features)"
            )
        else:
            note(f"job {job_id} resumed at iteration {resume.solver_state.n_iter} from {out / CHECKPOINT_FILE}")
        if previous is not None or coordinator != "attached":
            begin()

        def on_state(state: FitState) -> None:
            begin()
            record = state.solver_state.history[-1]
            files.write_history(state)
            if state.solver_state.n_iter % config.checkpoint_every == 0:
                save_checkpoint(out / CHECKPOINT_FILE, state, meta)
            updated = files.update(
                iteration=record.iteration,
                loss=record.loss,
                grad_norm=record.grad_norm,
                n_passes=state.n_passes,
                elapsed_s=state.elapsed_s[-1],
            )
            files.log(
                f"iter {record.iteration} loss {record.loss!r} |grad|inf "
                f"{record.grad_norm:.3e} step {record.step:.3e} passes {state.n_passes}"
            )
            _publish(publish_to, job_id, updated)

        try:
            with (
                _evaluator(config, dataset, note, client) as (evaluator, validation, cache),
                warnings.catch_warnings(record=True) as caught,
            ):
                warnings.simplefilter("always")
                warn_if_underdetermined(dataset, config.penalty)
                result = fit(
                    _Cancellable(evaluator, files),
                    solver=config.solver,
                    options=config.options,
                    penalty=config.penalty,
                    standardize=config.standardize,
                    class_weight=config.class_weight,
                    init=init,
                    progress=progress,
                    features=dataset.features,
                    resume=resume,
                    on_state=on_state,
                    label=dataset.label,
                    validation=None if validation is None else _Cancellable(validation, files),
                    early_stopping=config.early_stopping,
                )
                # the model first, before the evaluators' clean-up (disk caches)
                model = build_model(
                    result,
                    dataset.features,
                    dataset.n_samples,
                    solver=config.solver,
                    penalty=config.penalty,
                    label=dataset.label,
                    weight=dataset.weight,
                    dataset=dataset.url,
                    cache=cache,
                )
                model.save(out)
                files.log(f"model written to {out / MODEL_FILE}")
            for warning in caught:
                kind = "ConvergenceWarning" if issubclass(warning.category, ConvergenceWarning) else "warning"
                files.log(f"{kind}: {warning.message}")
                if on_warning:
                    on_warning(f"{kind}: {warning.message}")
            check = getattr(evaluator, "workers_check", None)
            kernel = (
                None
                if check is None or check.reference is None
                else {"fingerprint": check.reference, "workers": sorted(check.fingerprints)}
            )
            if config.validation_fraction:
                _evaluate_validation(config, out, client, note)
        except JobCancelled as exc:
            if pending is None:
                _finish(files, publish_to, job_id, CANCELLED, str(exc))
            raise
        except BaseException as exc:
            message = (
                f"{type(exc).__name__}: {exc}"
                if isinstance(exc, PipelineError)
                else f"{type(exc).__name__}: {exc} (unexpected)"
            )
            if pending is None:  # else nothing was written, and nothing is now
                _finish(files, publish_to, job_id, FAILED, message)
            raise
        status = "converged" if model.converged else "NOT converged"
        files.log(
            f"{status} after {model.n_iter} iterations, {model.n_passes} passes "
            f"({model.message}); digest {model.digest}"
        )
        _finish(
            files,
            publish_to,
            job_id,
            SUCCEEDED,
            None,
            digest=model.digest,
            converged=model.converged,
            n_iter=model.n_iter,
            cache=cache,
            kernel=kernel,
        )
        return model


def _evaluate_validation(config: TrainConfig, out: Path, client, note: Callable[[str], None]) -> None:
    """The final model's metrics on the held-out rows -> ``metrics.json`` (one
    more pass over the data; what ``pipeline evaluate OUT DATA --split
    validation`` computes)."""
    split = Split(config.validation_fraction, config.validation_key, "validation")
    metrics = evaluate(str(out), config.data, client=client, split=split)
    write_metrics(out / METRICS_FILE, metrics)
    note(
        f"validation rows {metrics['n_samples']}: log-loss {metrics['log_loss']!r} accuracy "
        f"{metrics['accuracy']!r} ROC AUC {metrics['roc_auc']!r} -> {out / METRICS_FILE}"
    )


def _user() -> str | None:
    with contextlib.suppress(Exception):
        return getpass.getuser()
    return None


def _finish(files: JobFiles, client, job_id: str, status: str, error: str | None, **fields) -> None:
    with contextlib.suppress(OSError):
        document = files.update(status=status, error=error, ended_at=_now(), **fields)
        files.log(f"job {job_id} {status}" + (f": {error}" if error else ""))
        _publish(client, job_id, document)


def _load_resume(out: Path, job_id: str, fingerprint: str, options: dict) -> FitState | None:
    path = out / CHECKPOINT_FILE
    if not path.exists():
        return None
    state, meta = load_checkpoint(path)
    if meta.get("job_id") != job_id:
        return None  # another job's leftover (only with --overwrite): start afresh
    if meta.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"checkpoint {path} was written for another dataset (fingerprint "
            f"{str(meta.get('fingerprint'))[:16]}…; the data now has {fingerprint[:16]}…: files, "
            "sizes or row groups changed); resume with the original data, or start a new job",
            path=str(path),
        )
    if meta.get("model_options") != options:
        saved = meta.get("model_options") or {}
        changed = sorted(k for k in set(saved) | set(options) if saved.get(k) != options.get(k))
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {options.get(k)!r}" for k in changed)
        raise CheckpointError(
            f"checkpoint {path} was written with other options ({detail}); resume with the "
            "original options, or start a new job",
            path=str(path),
        )
    return state


# --------------------------------------------------------------------------- detached jobs


def coordinate(config: TrainConfig, job_id: str) -> str:
    """A detached job's coordinator, run as a task on a cluster worker."""
    from distributed import worker_client

    with worker_client() as client:
        try:
            model = run_job(config, job_id, client=client, coordinator="detached")
        except JobCancelled:
            return CANCELLED
    return model.digest


def submit_detached(config: TrainConfig, job_id: str | None = None) -> str:
    """Start the job's coordinator on the cluster and return its id at once.

    Everything that can be checked from here is checked before anything is
    written (output directory, dataset, scheduler); the coordinator task is
    fire-and-forget, so the job outlives this client.
    """
    from distributed import fire_and_forget

    if config.cluster is None or not config.cluster.scheduler:
        raise JobError("a detached job runs on a running cluster: give cluster.scheduler (or --scheduler ADDRESS)")
    job_id, previous = check_job_output(config, job_id)
    refuse_if_running(previous)
    _generate(config)
    check_label_classes(open_dataset(config.data, config.label, config.features, config.weight))
    with connect(config.cluster) as client:
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        files = JobFiles(out)
        if previous is None:
            _clear_job_files(out)
        document = files.update(
            job_id=job_id,
            name=config.name,
            status=QUEUED,
            out=str(out.absolute()),
            config=config_to_mapping(config),
            submitted_at=_now(),
            ended_at=None,
            error=None,
        )
        files.log(f"job {job_id} submitted (detached) to {config.cluster.scheduler}")
        _publish(client, job_id, document)
        future = client.submit(coordinate, config, job_id, key=f"pipeline-job-{job_id}", pure=False)
        fire_and_forget(future)
        # the scheduler must hold the task before this client goes away
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if client.run_on_scheduler(_task_known, future.key):
                break
            time.sleep(0.05)
    return job_id


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
        raise ClusterError(f"no Dask scheduler answered at {address!r}: {exc}") from None


def list_jobs(scheduler: str | None) -> list[dict]:
    """The scheduler's index of jobs (newest first)."""
    client = _scheduler_client(scheduler)
    if client is None:
        raise JobError("listing jobs needs a scheduler: --scheduler ADDRESS or DASK_SCHEDULER_ADDRESS")
    with client:
        jobs = client.get_metadata([METADATA_ROOT], default={}) or {}
    return sorted(jobs.values(), key=lambda job: job.get("updated_at") or "", reverse=True)


def find_job(job: str, scheduler: str | None = None) -> JobFiles:
    """A job by output directory, or by id through the scheduler's index."""
    if (Path(job) / JOB_FILE).exists():
        return JobFiles(job)
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
    files = JobFiles(entry["out"])
    if files.read() is None:
        raise JobNotFoundError(
            f"job {job} is indexed at {entry['out']}, but that directory has no "
            f"{JOB_FILE} here (is the output on shared storage?)"
        )
    return files


def request_cancel(files: JobFiles) -> None:
    write_atomic(files.out / CANCEL_FILE, f"{_now()} by {_user()}@{socket.gethostname()}\n".encode())


def config_of(files: JobFiles, overrides: dict) -> tuple[TrainConfig, str]:
    """The job's configuration from its ``job.json`` (for resume), with ``overrides``."""
    document = files.read()
    if document is None or "config" not in document:
        raise JobNotFoundError(f"{files.out} has no {JOB_FILE} with a job configuration")
    mapping = dict(document["config"])
    if any(key.startswith("cluster.") for key in overrides):
        mapping = {k: v for k, v in mapping.items() if not k.startswith("cluster.")}
    mapping.update({k: v for k, v in overrides.items() if v is not None})
    mapping["output.dir"] = str(files.out.absolute())
    mapping.pop("output.overwrite", None)
    return config_from_mapping(mapping, str(files.out / JOB_FILE)), document["job_id"]
