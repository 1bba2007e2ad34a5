"""Evaluating partial sums over a dataset, in-process or on a Dask cluster.

This is the only module that talks to the cluster.  Every evaluator applies the
same kernel (:func:`pipeline.fused.chunk_partials_fast`: the compiled kernel
where numba is usable, else :func:`pipeline.kernel.chunk_partials`, with equal
results) to the same chunks; since
the partial sums are exact and merge in any order, they return identical
:class:`~pipeline.kernel.Partials` however the rows are chunked and however
many workers run them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .data import Chunk, Dataset, placed_on, spread
from .errors import ClusterError
from .kernel import WARM_UP_PARTS, KernelSpec, Partials, Stats, merge_partials
from .stream import (
    BATCH_BYTES,
    UNIT_BYTES,
    DiskCache,
    batch_rows,
    chunk_partials_fast,
    chunk_stats_fast,
    loss_kernel,
    plan_units,
    row_bytes,
    stats_kernel,
    unit_sums,
    units_sums,
)

__all__ = [
    "ClusterSpec",
    "DaskEvaluator",
    "InProcessEvaluator",
    "REDUCE_FAN_IN",
    "StreamingEvaluator",
    "WorkerCheck",
    "cluster_memory",
    "connect",
    "gather",
    "plan_tasks",
    "wait_for",
    "warm_up",
]

#: Partial states merged per task of the reduction tree.
REDUCE_FAN_IN = 8
#: Seconds to wait for a scheduler to answer.
CONNECT_TIMEOUT_S = 10.0
#: Seconds to wait for the first worker of a remote cluster.
WORKER_WAIT_S = 120
#: Seconds a pass may make no progress (no worker left, or every worker
#: paused) before it fails with a :class:`ClusterError`.
STALL_TIMEOUT_S = 60.0
#: Streaming passes plan at least this many units per worker thread (when
#: there are enough row groups), so work can move to workers that join.
UNITS_PER_THREAD = 2
#: Seconds between checks of the cluster while a pass runs.
WATCH_POLL_S = 1.0


class InProcessEvaluator:
    """Kernels over in-memory chunks ``(X, y[, weights])``; no Dask involved."""

    def __init__(self, chunks: Sequence, n_features: int) -> None:
        # column-major once, so every pass reads the features in place
        self.chunks = [Chunk(np.asfortranarray(chunk[0], dtype=np.float64), *chunk[1:]) for chunk in chunks]
        self.n_features = n_features

    def partials(self, coef: np.ndarray, spec: KernelSpec = KernelSpec()) -> Partials:
        total = Partials.zeros(self.n_features + 1, spec.hessian)
        for X, y, weights in self.chunks:
            total = total.merge(chunk_partials_fast(X, y, coef, weights, spec))
        return total

    def stats(self) -> Stats:
        total = Stats.zeros(self.n_features)
        for X, y, weights in self.chunks:
            total = total.merge(chunk_stats_fast(X, y, weights))
        return total


class DaskEvaluator:
    """Kernels over Dask arrays whose blocks are the chunks.

    Persisted (``persist=True``, the ``memory`` cache mode), a pass is one
    task per worker thread: the blocks are grouped by the worker that holds
    them (one scheduler query per pass), each group is summed by one task
    pinned to that worker (allowed elsewhere, e.g. after a failure, when the
    blocks are recomputed from their lineage), and the few partial states are
    merged here.  Per-pass Dask cost is then a handful of tasks, not one per
    chunk plus a reduction tree.  Not persisted, each block is a task of a
    graph that reads its chunk, tree-reduced ``REDUCE_FAN_IN`` states at a time.

    Tasks are pure: keyed by a hash of the coef, the kernel options and the
    blocks, so a recomputed task can never be counted twice.
    """

    def __init__(self, client, data: Chunk, persist: bool = True, stall_timeout_s: float = STALL_TIMEOUT_S) -> None:
        X, y, weights = data
        arrays = [X, y] if weights is None else [X, y, weights]
        if persist:
            arrays = client.persist(arrays)
        self._setup(client, X.shape[1], X.chunks[0], "arrays", persist, stall_timeout_s)
        self.arrays = arrays

    def _setup(self, client, n_features: int, rows, layout: str, persisted: bool, stall_timeout_s: float) -> None:
        self.client = client
        self.n_features = n_features
        self.rows = tuple(rows)
        #: ``"arrays"``: per-pass tasks get the blocks of X, y[, weights];
        #: ``"chunks"``: they get whole chunks (X, y, weights) [, weights]
        self.layout = layout
        self.persisted = persisted
        self.stall_timeout_s = stall_timeout_s
        self.workers_check = WorkerCheck()

    @classmethod
    def from_dataset(
        cls, client, dataset: Dataset, workers: Sequence[str] | None = None, stall_timeout_s: float = STALL_TIMEOUT_S
    ) -> DaskEvaluator:
        """``dataset``'s chunks decoded once and kept on the workers (the
        ``memory`` cache mode), without building Dask arrays.

        Each chunk is one task (``ChunkReader(chunk)``, pure: a lost chunk is
        read again) placed on ``workers`` in contiguous, row-balanced runs
        (:func:`pipeline.data.spread`); its X, y and weights stay together, so
        a pass never moves data between workers.
        """
        evaluator = cls.__new__(cls)
        rows = [chunk.n_rows for chunk in dataset.chunks]
        evaluator._setup(client, dataset.n_features, rows, "chunks", True, stall_timeout_s)
        evaluator.arrays = None
        evaluator._placement = spread(rows, workers)
        reader = dataset.reader
        evaluator._ordered = [
            [
                client.submit(reader, chunk, pure=True, **placed_on(worker))
                for chunk, worker in zip(dataset.chunks, evaluator._placement)
            ]
        ]
        return evaluator

    def load(self) -> None:
        """Wait until every chunk is decoded on the workers (watched for stalls);
        a chunk that failed raises its error, the first in canonical order."""
        futures = [future for column in self._futures() for future in column]
        wait_for(self.client, futures, self.stall_timeout_s)
        for future in futures:
            if future.status == "error":
                future.result()  # raises the task's exception (a PipelineError for bad data)

    def with_weights(self, dataset: Dataset) -> DaskEvaluator:
        """The same decoded chunks with the row weights of ``dataset`` (the same
        data through another split): only the weights are read, next to each
        chunk; X and y are shared, not copied (``from_dataset`` evaluators)."""
        if self.layout != "chunks":
            raise TypeError("with_weights needs an evaluator made by DaskEvaluator.from_dataset")
        reader = dataset.reader
        weights = [
            self.client.submit(reader.weights_of, chunk, pure=True, **placed_on(worker))
            for chunk, worker in zip(dataset.chunks, self._placement)
        ]
        evaluator = DaskEvaluator.__new__(DaskEvaluator)
        evaluator.__dict__.update(self.__dict__)
        evaluator.workers_check = WorkerCheck()
        evaluator._ordered = [self._ordered[0], weights]
        return evaluator

    def partials(self, coef: np.ndarray, spec: KernelSpec = KernelSpec()) -> Partials:
        coef = np.array(coef, dtype=np.float64)
        empty = Partials.zeros(self.n_features + 1, spec.hessian)
        if self.persisted:
            return self._per_worker(empty, loss_kernel, coef, spec)
        self.workers_check.check(self.client)
        import dask

        coef_key = dask.delayed(coef, pure=True)
        spec_key = dask.delayed(spec, pure=True)
        level = [
            dask.delayed(chunk_partials_fast, pure=True)(X, y, coef_key, weights, spec_key)
            for X, y, weights in self._blocks()
        ]
        return _tree_reduce(self.client, level, empty, self.stall_timeout_s)

    def stats(self) -> Stats:
        empty = Stats.zeros(self.n_features)
        if self.persisted:
            return self._per_worker(empty, stats_kernel)
        self.workers_check.check(self.client)
        import dask

        level = [dask.delayed(chunk_stats_fast, pure=True)(X, y, weights) for X, y, weights in self._blocks()]
        return _tree_reduce(self.client, level, empty, self.stall_timeout_s)

    def _blocks(self):
        blocks = [array.to_delayed().ravel() for array in self.arrays]
        if len(blocks) == 2:
            blocks.append([None] * len(blocks[0]))
        return list(zip(*blocks))

    def _futures(self) -> list[list]:
        """Per array, its blocks' futures in block order."""
        if not hasattr(self, "_ordered"):
            from dask.core import flatten
            from distributed import futures_of

            self._ordered = []
            for array in self.arrays:
                by_key = {future.key: future for future in futures_of(array)}
                self._ordered.append([by_key[key] for key in flatten(array.__dask_keys__())])
        return self._ordered

    def _per_worker(self, empty, kernel, *args):
        columns = self._futures()
        keys = [future.key for future in columns[0]]
        holders = self.client.who_has(columns[0])
        if not all(holders.get(key) for key in keys):
            # still being computed (the first pass after persist) or lost with
            # a worker: wait until every block is held, so tasks go where the
            # blocks are rather than copying them (and keeping both copies)
            wait_for(self.client, [future for column in columns for future in column], self.stall_timeout_s)
            holders = self.client.who_has(columns[0])
        threads = self.client.nthreads()
        self.workers_check.check(self.client, threads)
        tasks = []
        for worker, part in plan_tasks([holders.get(key, ()) for key in keys], self.rows, threads):
            blocks = [column[i] for column in columns for i in part]
            tasks.append(
                self.client.submit(
                    sum_blocks, kernel, args, self.layout, len(part), *blocks, pure=True, **placed_on(worker)
                )
            )
        return merge_partials(empty, *gather(self.client, tasks, self.stall_timeout_s))


def plan_tasks(
    holders: Sequence[Sequence[str]], rows: Sequence[int], threads: dict[str, int]
) -> list[tuple[str | None, list[int]]]:
    """One pass's tasks: ``(worker, block indices)``, each to run where its blocks are.

    Policy only (no cluster): ``holders[i]`` are the workers holding block
    ``i`` (of ``rows[i]`` rows), ``threads`` each worker's thread count.  A
    block held by one worker goes to it; a block held by several (copied
    after a failure or by work stealing) to the holder with the fewest rows
    so far, so the work stays balanced; a block held by none (lost, being
    recomputed) to a task with no placement.  Each worker's blocks are split
    into as many contiguous runs as it has threads.  Which task sums which
    block never changes the result (exact sums), only the time.
    """
    assigned: dict[str | None, list[int]] = {}
    load: dict[str, int] = {}
    shared = []
    for index, where in enumerate(holders):
        if len(where) == 1:
            assigned.setdefault(where[0], []).append(index)
            load[where[0]] = load.get(where[0], 0) + rows[index]
        elif not where:
            assigned.setdefault(None, []).append(index)
        else:
            shared.append(index)
    for index in shared:
        worker = min(sorted(holders[index]), key=lambda w: load.get(w, 0))
        assigned.setdefault(worker, []).append(index)
        load[worker] = load.get(worker, 0) + rows[index]
    return [
        (worker, part)
        for worker, indices in sorted(assigned.items(), key=lambda item: (item[0] is None, str(item[0])))
        for part in _split(sorted(indices), threads.get(worker, 1) if worker else 1)
    ]


def warm_up(client, workers: Sequence[str], n_features: int, **kinds) -> list:
    """Compile the fit's kernels on the workers before any data is read:
    :func:`pipeline.fused.warm_up`'s parts spread over ``workers`` (one each,
    all on one worker when there is one), submitted ahead of the reads so each
    worker runs its part first.  On a fresh installation the parts compile at
    the same time on different workers (each worker then loads the other part
    from numba's cache); otherwise they only load the cache, which the first
    pass would do anyway.  ``kinds``: ``standardize``, ``weighted``,
    ``class_weighted``, ``hessian``.  Keep the returned futures until the
    first pass (a released future is cancelled).
    """
    if not workers:
        return []
    return [
        client.submit(_warm_up, part, n_features, **kinds, pure=False, **placed_on(workers[index % len(workers)]))
        for index, part in enumerate(WARM_UP_PARTS)
    ]


def _warm_up(part: str, n_features: int, **kinds) -> None:
    from .fused import warm_up as compile_part  # numba: on the worker only

    compile_part(part, n_features, **kinds)


def sum_blocks(kernel, args: tuple, layout: str, n_blocks: int, *blocks):
    """Run on a worker: ``kernel`` over ``n_blocks`` chunks, merged into one
    partial state.  The blocks come column by column: ``X…, y…[, weights…]``
    (``layout="arrays"``) or ``chunk…[, weights…]`` (``"chunks"``, the
    weights replacing the chunks' own)."""
    columns = [blocks[i : i + n_blocks] for i in range(0, len(blocks), n_blocks)]
    if layout == "chunks":
        chunks = (
            columns[0] if len(columns) == 1 else [Chunk(chunk.X, chunk.y, weights) for chunk, weights in zip(*columns)]
        )
    else:
        if len(columns) == 2:
            columns.append((None,) * n_blocks)
        chunks = [Chunk(*blocks) for blocks in zip(*columns)]
    total = None
    for chunk in chunks:
        part = kernel(chunk, *args)
        total = part if total is None else total.merge(part)
    return total


def wait_for(client, futures: list, stall_timeout_s: float = STALL_TIMEOUT_S) -> None:
    """``distributed.wait(futures)`` (results stay on the workers), with the
    watchdog of :func:`gather`."""
    from distributed import wait

    _watched(client, futures, stall_timeout_s, lambda: wait(futures))


def gather(client, futures: list, stall_timeout_s: float = STALL_TIMEOUT_S) -> list:
    """``client.gather(futures)``, but never waiting forever on a stalled cluster.

    While the gather runs, a watchdog thread asks the scheduler every
    ``WATCH_POLL_S`` seconds for its workers' states.  Lost workers are not a
    problem (their tasks run again elsewhere, with the same result, also when
    a result is lost after its task finished), but when no worker is left,
    every worker is paused (memory above the pause threshold) or the scheduler
    does not answer, for ``stall_timeout_s`` seconds, the watchdog cancels the
    futures and the pass fails with a :class:`ClusterError` that says what to
    do.  Task errors are raised as they are.

    The futures are cancelled rather than the gather interrupted: an
    interrupted ``client.gather`` leaves distributed's own waiting tasks
    behind, which log "Task exception was never retrieved" later.
    """
    return _watched(client, futures, stall_timeout_s, lambda: client.gather(futures))


def _watched(client, futures: list, stall_timeout_s: float, action):
    """``action()`` while a watchdog thread cancels ``futures`` on a stall."""
    import threading

    finished = threading.Event()
    stalled: list[str] = []

    def watch() -> None:
        stalled_since = None
        while not finished.wait(WATCH_POLL_S):
            try:
                workers = client.run_on_scheduler(_worker_states)
            except Exception:  # noqa: BLE001 - an unreachable scheduler is a stall too
                workers = None
            if workers and any(status == "running" for status, _ in workers.values()):
                stalled_since = None
                continue
            now = time.monotonic()
            stalled_since = stalled_since or now
            if now - stalled_since >= stall_timeout_s:
                stalled.append(stall_message(workers, stall_timeout_s))
                client.cancel(futures, reason="pipeline-stalled", msg=stalled[0])
                return

    watchdog = threading.Thread(target=watch, name="pipeline-pass-watchdog", daemon=True)
    watchdog.start()
    try:
        result = action()
    except BaseException:
        if stalled:
            raise ClusterError(stalled[0]) from None
        raise
    finally:
        finished.set()
        watchdog.join()
    if stalled:  # (distributed.wait returns once the futures are cancelled)
        raise ClusterError(stalled[0])
    return result


def stall_message(workers: dict | None, stall_timeout_s: float) -> str:
    """What to tell the user when a pass made no progress for ``stall_timeout_s``:
    ``workers`` maps address -> (status, memory limit), None when the scheduler
    did not answer."""
    if workers is None:
        return (
            f"the scheduler has not answered for {stall_timeout_s:g} s; the pass cannot "
            "finish. Check the scheduler, then resume the job from its last checkpoint "
            "(pipeline resume OUTPUT_DIR)"
        )
    if not workers:
        return (
            f"no worker has been connected to the scheduler for {stall_timeout_s:g} s "
            "(all workers lost); the pass cannot finish. Start workers again and resume "
            "the job from its last checkpoint (pipeline resume OUTPUT_DIR)"
        )
    limits = sorted({limit for _, limit in workers.values()})
    return (
        f"every worker ({', '.join(sorted(workers))}) has been paused for "
        f"{stall_timeout_s:g} s, their memory above the pause threshold (memory limit "
        f"{', '.join(_size(limit) for limit in limits)}); the data does not fit: use "
        "--cache disk or none, smaller row groups, or more or larger workers"
    )


class WorkerCheck:
    """Workers must compute the same bits: their kernel fingerprints
    (:func:`pipeline.probe.kernel_fingerprint`) are compared once per worker,
    when it is first seen, also for workers that join during a run."""

    def __init__(self) -> None:
        self.fingerprints: dict[str, dict] = {}

    @property
    def reference(self) -> dict | None:
        return next(iter(self.fingerprints.values()), None)

    def check(self, client, addresses=None) -> None:
        """Probe the workers not seen yet (all current ones by default)."""
        addresses = sorted(client.nthreads() if addresses is None else addresses)
        new = [address for address in addresses if address not in self.fingerprints]
        if not new:
            return
        found = client.run(_kernel_fingerprint, workers=new, on_error="ignore")
        self.fingerprints.update({a: f for a, f in found.items() if isinstance(f, dict)})
        groups: dict[str, list[str]] = {}
        for address, fingerprint in self.fingerprints.items():
            groups.setdefault(fingerprint["digest"], []).append(address)
        if len(groups) > 1:
            described = "; ".join(
                f"{', '.join(members)}: fingerprint {digest} ({_describe(self.fingerprints[members[0]])})"
                for digest, members in groups.items()
            )
            raise ClusterError(
                "workers compute different floating-point results, which would break "
                f"the exactness guarantee; found {described}. Run every worker from the "
                "same environment (image, library versions) on CPUs with the same numpy "
                "SIMD targets, or keep the job to workers that agree"
            )


def _kernel_fingerprint() -> dict:
    """Run on a worker: :func:`pipeline.probe.kernel_fingerprint`, imported
    there (the coordinator never imports numba for it)."""
    from .probe import kernel_fingerprint

    return kernel_fingerprint()


def _describe(fingerprint: dict) -> str:
    return (
        f"numpy {fingerprint['numpy']}, pyarrow {fingerprint['pyarrow']}, numba "
        f"{fingerprint['numba']}, python {fingerprint['python']}, SIMD "
        f"{'+'.join(fingerprint['cpu_dispatch']) or 'baseline only'}"
    )


def _worker_states(dask_scheduler=None) -> dict:
    return {address: (worker.status.name, worker.memory_limit) for address, worker in dask_scheduler.workers.items()}


def _size(limit) -> str:
    return "none" if not limit else f"{limit / 2**20:.0f} MiB"


def _split(items: list, parts: int) -> list[list]:
    """``items`` in at most ``parts`` contiguous, non-empty runs of about equal length."""
    parts = max(1, min(parts, len(items)))
    return [items[len(items) * k // parts : len(items) * (k + 1) // parts] for k in range(parts)]


def _tree_reduce(client, level: list, empty, stall_timeout_s: float = STALL_TIMEOUT_S):
    """Merge delayed partial states ``REDUCE_FAN_IN`` at a time; compute the root."""
    import dask

    if not level:
        return empty
    while len(level) > 1:
        level = [
            dask.delayed(merge_partials, pure=True)(*level[i : i + REDUCE_FAN_IN])
            for i in range(0, len(level), REDUCE_FAN_IN)
        ]
    return gather(client, [client.compute(level[0])], stall_timeout_s)[0]


class StreamingEvaluator:
    """Bounded-memory passes: units of row groups read (or mapped from the disk
    cache), computed and reduced to a small state; nothing else is kept between
    passes, except the optional disk cache on each worker.

    Units are placed on the workers in contiguous, row-balanced runs, so a
    worker finds its own cache files again; per pass each worker thread gets
    one task that streams its run of units (pinned there, allowed elsewhere
    after a failure), and the states are merged here.  When workers join or
    leave, the next pass spreads the units over the workers there then.  Without ``workers``
    each unit is a task of its own.  With ``client=None`` the same work runs
    in this process, one unit after another.
    """

    def __init__(
        self,
        client,
        dataset: Dataset,
        cache: DiskCache | None,
        workers: Sequence[str] | None = None,
        unit_bytes: int = UNIT_BYTES,
        batch_bytes: int = BATCH_BYTES,
        stall_timeout_s: float = STALL_TIMEOUT_S,
    ) -> None:
        self.client = client
        self.stall_timeout_s = stall_timeout_s
        self.workers_check = WorkerCheck()
        self.reader = dataset.reader
        self.n_features = dataset.n_features
        self.cache = cache
        self.rows = batch_rows(self.reader, batch_bytes)
        threads = client.nthreads() if client is not None and workers else {worker: 1 for worker in workers or ()}
        # at least UNITS_PER_THREAD units per thread where the row groups allow,
        # so work can move when workers join or leave
        total = dataset.n_samples * row_bytes(self.reader)
        unit_bytes = min(unit_bytes, max(1, total // (UNITS_PER_THREAD * max(1, sum(threads.values())))))
        self.units = plan_units(dataset.chunks, row_bytes(self.reader), unit_bytes)
        self.placed = bool(workers)
        self._plan(threads)

    def _plan(self, threads: dict) -> None:
        """Spread the units over ``threads``' workers (sorted), one task per thread."""
        self.planned_for = sorted(threads)
        placement = spread([sum(c.n_rows for c in unit) for unit in self.units], self.planned_for)
        runs: dict[str | None, list] = {}
        for unit, worker in zip(self.units, placement):
            runs.setdefault(worker, []).append(unit)
        #: (worker or None, units) per pass task
        self.tasks = [
            (worker, tuple(part))
            for worker, units in runs.items()
            for part in (_split(units, threads.get(worker, 1)) if worker else [[u] for u in units])
        ]

    def partials(self, coef: np.ndarray, spec: KernelSpec = KernelSpec()) -> Partials:
        coef = np.array(coef, dtype=np.float64)
        return self._run(Partials.zeros(self.n_features + 1, spec.hessian), loss_kernel, coef, spec)

    def stats(self) -> Stats:
        return self._run(Stats.zeros(self.n_features), stats_kernel)

    def _run(self, empty, kernel, *args):
        if self.client is None:
            return merge_partials(
                empty, *(unit_sums(self.reader, unit, self.rows, self.cache, kernel, *args) for unit in self.units)
            )
        threads = self.client.nthreads()
        self.workers_check.check(self.client, threads)
        if self.placed and threads and sorted(threads) != self.planned_for:
            self._plan(threads)  # workers joined or left: spread the units over those there now
        tasks = []
        for worker, units in self.tasks:
            tasks.append(
                self.client.submit(
                    units_sums, self.reader, units, self.rows, self.cache, kernel, *args, pure=True, **placed_on(worker)
                )
            )
        return merge_partials(empty, *gather(self.client, tasks, self.stall_timeout_s))


@dataclass(frozen=True)
class ClusterSpec:
    """Where to run: a scheduler address, or an embedded LocalCluster."""

    scheduler: str | None = None
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str | None = None
    #: fail a pass that makes no progress for this long (see :func:`gather`)
    stall_timeout_s: float = STALL_TIMEOUT_S
    #: wait this long for the scheduler at ``scheduler`` to answer
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    #: TLS (PEM files) for a ``tls://`` scheduler; without them Dask's
    #: configuration (``distributed.comm.tls.*``) applies
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

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


def cluster_memory(client) -> tuple[list[str], int | None]:
    """Worker addresses (sorted) and their total memory limit (None if any is unlimited)."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    limits = [info.get("memory_limit") or 0 for info in workers.values()]
    return sorted(workers), (sum(limits) if limits and all(limits) else None)


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
                client.wait_for_workers(1, timeout=WORKER_WAIT_S)
            except TimeoutError:
                raise ClusterError(
                    f"the scheduler at {spec.scheduler!r} has no workers after {WORKER_WAIT_S} s",
                    path=spec.scheduler,
                ) from None
            yield client
        return
    if spec.n_workers < 1:
        raise ClusterError(f"an embedded cluster needs at least 1 worker, got {spec.n_workers}")
    cluster_options = dict(
        n_workers=spec.n_workers,
        threads_per_worker=spec.threads_per_worker,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        # Errors in tasks come back to the client as exceptions; the workers'
        # own "Compute Failed" logs would only repeat them with a traceback.
        silence_logs=logging.CRITICAL,
    )
    if spec.memory_limit:
        cluster_options["memory_limit"] = spec.memory_limit
    with LocalCluster(**cluster_options) as cluster, Client(cluster) as client:
        yield client
