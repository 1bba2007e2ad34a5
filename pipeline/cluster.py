"""Where passes run: the cluster settings (:class:`ClusterSpec`) and the
connection to a Dask scheduler or an embedded ``LocalCluster``.

The decisions are small pure functions (:func:`local_cluster_options`,
:func:`memory_total`); :func:`connect` and :func:`cluster_memory` only talk
to Dask and act on their answers.  Running passes is :mod:`pipeline.reduce`'s
job, not this module's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from .errors import ClusterError, ConfigError, require_count, require_number

__all__ = [
    "CONNECT_TIMEOUT_S",
    "STALL_TIMEOUT_S",
    "ClusterSpec",
    "cluster_memory",
    "connect",
    "default_worker_count",
    "embedded_worker_count",
    "leave_ctrl_c_to_the_command",
    "process_memory",
    "local_cluster_options",
    "memory_total",
    "security",
]

#: Seconds to wait for a scheduler to answer.
CONNECT_TIMEOUT_S = 10.0
#: Seconds a pass may make no progress (no worker left, or every worker
#: paused) before it fails with a :class:`ClusterError`.
STALL_TIMEOUT_S = 60.0
#: The least memory an embedded worker is given when the number of workers
#: is left to the machine (one per core, fewer where memory is short).
MIN_WORKER_MEMORY = 2**30
#: The smallest per-worker memory limit taken: a worker process with the
#: compiled kernels loaded takes about 230 MiB before it holds any data, and
#: distributed pauses a worker at 80% of its limit and restarts it at 95%
#: (at 256 MiB, which was the least, the workers restarted in a loop once
#: they loaded the kernels, and the pass never ended).
MIN_MEMORY_LIMIT = 512 * 2**20
#: what a memory limit may be (Dask's forms, and no less than ``MIN_MEMORY_LIMIT``)
MEMORY_LIMIT_RULE = (
    f"must be a byte size of at least {MIN_MEMORY_LIMIT // 2**20}MiB ('2GiB'), 'auto', 0 (no limit) "
    "or a fraction in (0, 1]"
)
#: The interface an embedded cluster listens on (never reachable from elsewhere).
LOCAL_HOST = "127.0.0.1"
#: the TLS files of a ``tls://`` scheduler
TLS_FIELDS = ("tls_ca_file", "tls_cert", "tls_key")


@dataclass(frozen=True)
class ClusterSpec:
    """Where to run: a scheduler address, or an embedded LocalCluster."""

    scheduler: str | None = None
    #: embedded worker processes; None: one per usable core, fewer where the
    #: memory would give each less than ``MIN_WORKER_MEMORY``
    #: (:func:`embedded_worker_count`)
    n_workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str | None = None
    #: fail a pass that makes no progress for this long (see :func:`pipeline.reduce.gather`)
    stall_timeout_s: float = STALL_TIMEOUT_S
    #: wait this long for the scheduler at ``scheduler`` to answer
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    #: TLS (PEM files) for a ``tls://`` scheduler; without them Dask's
    #: configuration (``distributed.comm.tls.*``) applies
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    def __post_init__(self) -> None:
        """The values' rules; messages start with the field's name and quote
        other fields as `name` (the CLI and job files show their option or key)."""
        if self.n_workers is not None:
            require_count("n_workers", self.n_workers, 1)
        require_count("threads_per_worker", self.threads_per_worker, 1)
        if self.memory_limit is not None:
            worker_memory(self.memory_limit)  # refused here, not by the workers as they start
        for name in ("stall_timeout_s", "connect_timeout_s"):
            require_number(name, getattr(self, name), positive=True)
        embedded = {"n_workers": None, "threads_per_worker": 1, "memory_limit": None}
        given = [name for name, default in embedded.items() if getattr(self, name) != default]
        if self.scheduler and given:
            raise ConfigError(
                f"{given[0]} sets up the workers of an embedded cluster; found it with `scheduler` "
                "(whose workers are set up where they are started: "
                "`dask worker --nthreads N --memory-limit SIZE`)",
                column=given[0],
            )
        tls = [name for name in TLS_FIELDS if getattr(self, name)]
        if tls and not self.scheduler:
            raise ConfigError(
                f"{tls[0]} is for a tls:// scheduler: give `scheduler` too (an embedded cluster needs no TLS)",
                column=tls[0],
            )
        if tls and not (self.tls_ca_file and self.tls_cert):
            missing = "tls_ca_file" if not self.tls_ca_file else "tls_cert"
            raise ConfigError(
                f"{missing} is missing: TLS needs `tls_ca_file` and `tls_cert` "
                "(`tls_key` too unless the key is in the certificate file)",
                column=missing,
            )
        for name in tls:
            if not os.path.isfile(getattr(self, name)):
                raise ConfigError(f"{name}: no file {getattr(self, name)}", column=name)

    def security(self):
        """A ``distributed.Security`` for the TLS files, or None (Dask's configuration)."""
        return security(self.tls_ca_file, self.tls_cert, self.tls_key)


def security(ca_file: str | None, cert: str | None, key: str | None = None):
    """``distributed.Security`` requiring encryption, from PEM files; None when
    none is given, so that a ``Client`` takes Dask's configuration."""
    if not (ca_file or cert or key):
        return None
    from distributed.security import Security

    return Security(tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key, require_encryption=True)


def default_worker_count(
    cpus: int, memory_bytes: int | None, threads_per_worker: int = 1, worker_memory: int | None = None
) -> int:
    """Policy only: embedded worker processes for ``cpus`` usable cores and
    ``memory_bytes`` of memory (None: unknown): one per ``threads_per_worker``
    cores (each pass is one compiled, single-threaded task per chunk), and no
    more than the memory holds at ``worker_memory`` bytes each (the given
    limit; without one at least ``MIN_WORKER_MEMORY``); at least one."""
    count = max(int(cpus) // max(int(threads_per_worker), 1), 1)
    if memory_bytes:
        count = min(count, max(int(memory_bytes) // max(worker_memory or MIN_WORKER_MEMORY, 1), 1))
    return count


def embedded_worker_count(spec: ClusterSpec) -> int:
    """The worker processes an embedded cluster for ``spec`` starts: its
    ``n_workers``, else :func:`default_worker_count` for this machine (cores
    and memory as Dask counts them: CPU affinity and cgroup limits included)
    and ``spec``'s threads per worker and memory limit."""
    if spec.n_workers is not None:
        return spec.n_workers
    from dask.system import CPU_COUNT
    from distributed.system import MEMORY_LIMIT

    limit = worker_memory(spec.memory_limit) if spec.memory_limit else None
    return default_worker_count(CPU_COUNT, MEMORY_LIMIT, spec.threads_per_worker, limit)


def worker_memory(memory_limit) -> int | None:
    """Bytes per worker for a ``memory_limit`` as Dask takes it: a byte size
    (``"2GiB"``, ``4e9``) or None for ``"auto"`` or a fraction of the machine's
    memory (Dask divides it itself); a :class:`ConfigError` for anything else."""
    from dask.utils import parse_bytes

    if isinstance(memory_limit, str) and memory_limit.strip().lower() == "auto":
        return None
    try:
        number = float(memory_limit)
    except (TypeError, ValueError):
        number = None
    if number is not None and 0 <= number <= 1:  # 0: no limit (Dask's word)
        from distributed.system import MEMORY_LIMIT

        if number and number * MEMORY_LIMIT < MIN_MEMORY_LIMIT:  # (Dask resolves it against this machine)
            raise ConfigError(
                f"memory_limit {MEMORY_LIMIT_RULE}; found {memory_limit!r}, {number * MEMORY_LIMIT / 2**20:.0f} MiB "
                "of this machine's memory",
                column="memory_limit",
            )
        return None
    try:
        value = parse_bytes(memory_limit)
    except (TypeError, ValueError):
        value = -1
    if not value >= MIN_MEMORY_LIMIT:
        raise ConfigError(
            f"memory_limit {MEMORY_LIMIT_RULE}; found {memory_limit!r}",
            column="memory_limit",
        )
    return int(value)


def memory_total(workers: dict[str, dict]) -> tuple[list[str], int | None]:
    """Policy only: worker addresses (sorted) and their total memory limit from
    the scheduler's ``workers`` table (address -> info); None when there is no
    worker or any worker has no limit (its memory is then unknown)."""
    limits = [info.get("memory_limit") or 0 for info in workers.values()]
    return sorted(workers), (sum(limits) if limits and all(limits) else None)


def process_memory() -> int:
    """The memory this process may use: the machine's, or less where a
    control group (a container's limit) caps it (as
    ``distributed.system.MEMORY_LIMIT`` counts a worker's)."""
    limit = psutil.virtual_memory().total
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):  # (absent, or "max": no limit)
            found = int(Path(path).read_text())
            if found > 0:  # (as distributed counts it: 0 or less is no limit)
                limit = min(limit, found)
    return limit


def cluster_memory(client) -> tuple[list[str], int | None]:
    """Worker addresses (sorted) and their total memory limit (None if any is unlimited)."""
    return memory_total(client.scheduler_info(n_workers=-1)["workers"])


def local_cluster_options(spec: ClusterSpec) -> dict:
    """Policy only: the ``LocalCluster`` options for an embedded ``spec``: worker
    processes on this host's loopback, no dashboard, the memory limit only when
    one is given (else Dask's default)."""
    import dask

    options = dict(
        n_workers=embedded_worker_count(spec),
        threads_per_worker=spec.threads_per_worker,
        processes=True,
        host=LOCAL_HOST,
        dashboard_address=None,
        # the scheduler's HTTP routes (health, metrics) on a free loopback
        # port: its default, 8787, makes a second embedded cluster on this
        # host warn "Port 8787 is already in use"
        scheduler_kwargs={"dashboard_address": f"{LOCAL_HOST}:0"},
        # Errors in tasks come back to the client as exceptions; the workers'
        # own "Compute Failed" logs would only repeat them with a traceback.
        silence_logs=logging.CRITICAL,
        # each worker leaves a terminal's Ctrl-C to the command (:func:`dask_setup`), after the preloads
        # configured for Dask's workers (a preload given here replaces them)
        **_with_preload(
            dask.config.get("distributed.worker.preload", default=None),
            dask.config.get("distributed.worker.preload-argv", default=None),
            __name__,
        ),
    )
    if spec.memory_limit is not None:
        options["memory_limit"] = spec.memory_limit
    return options


@contextlib.contextmanager
def connect(spec: ClusterSpec) -> Iterator:
    """A ``distributed.Client`` for ``spec``; an embedded cluster is closed on exit."""
    from distributed import Client, LocalCluster

    if spec.scheduler:
        try:
            client = Client(spec.scheduler, timeout=spec.connect_timeout_s, security=spec.security())
        except (OSError, TimeoutError, TypeError, ValueError) as exc:
            # TypeError/ValueError: distributed's word for a TLS setting that does not fit
            # the address (e.g. tls:// with no certificates, or tcp:// with encryption required)
            raise ClusterError(
                f"no Dask scheduler answered at {spec.scheduler!r} within {spec.connect_timeout_s:g} s: {exc}",
                path=spec.scheduler,
            ) from None
        with client:
            try:
                # (a cluster with no worker makes no progress: the stall timeout's wait, not a fixed one)
                client.wait_for_workers(1, timeout=spec.stall_timeout_s)
            except TimeoutError:
                raise ClusterError(
                    f"the scheduler at {spec.scheduler!r} has no workers after {spec.stall_timeout_s:g} s (the "
                    "stall timeout: --stall-timeout of train and submit); expected at least one (start one with "
                    f"`dask worker {spec.scheduler}`, then run the command again)",
                    path=spec.scheduler,
                ) from None
            yield client
        return
    with contextlib.ExitStack() as stack:
        with interrupts_held():  # (a Ctrl-C meanwhile: raised once the cluster is up, so that it is closed)
            cluster = stack.enter_context(LocalCluster(**local_cluster_options(spec)))
            client = stack.enter_context(Client(cluster))
        yield client


def _with_preload(configured, argv, module: str) -> dict:
    """Policy only: the ``preload`` and ``preload_argv`` of Dask's workers
    with ``module`` added last, read as distributed reads them (one name or
    a list; one argv for every preload, or one per preload, or none)."""
    names = [configured] if isinstance(configured, str) else list(configured or [])
    if argv and isinstance(argv[0], str):
        argvs = [list(argv)] * len(names)
    else:
        argvs = [list(each) for each in argv or []] or [[] for _ in names]
    return {"preload": [*names, module], "preload_argv": [*argvs, []]}


def dask_setup(worker) -> None:
    """An embedded cluster's worker (this module is its preload) leaves
    Ctrl-C to the command (:func:`leave_ctrl_c_to_the_command`)."""
    leave_ctrl_c_to_the_command()


def leave_ctrl_c_to_the_command() -> None:
    """A process the command started (an embedded cluster's worker) ignores
    SIGINT: a terminal's Ctrl-C reaches the whole process group, and the
    command handles it (it cancels the job and stops the cluster); each
    worker printed a ``KeyboardInterrupt`` traceback of its own.  Only in
    the process's main thread (signals are set there)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """While an embedded cluster starts, a SIGINT (Ctrl-C) or SIGTERM that
    arrives is handled once it is up, so that it is closed in order (raised
    in the middle of its start, it left a half-started cluster whose
    clean-up at exit failed with a traceback).  Only in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[tuple] = []
    previous = {
        signum: signal.signal(signum, lambda number, frame: held.append((number, frame)))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if held:
            signum, frame = held[0]
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)
