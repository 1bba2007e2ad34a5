"""Evaluating partial sums over a dataset, in-process or on a Dask cluster.

This is the only module that runs passes on the cluster (where to run, and
the connection, are :mod:`pipeline.cluster`'s).  Every evaluator applies the
same kernel (:func:`pipeline.fused.chunk_partials_fast`: the compiled kernel
where numba is usable, else :func:`pipeline.kernel.chunk_partials`, with equal
results) to the same chunks; since
the partial sums are exact and merge in any order, they return identical
:class:`~pipeline.kernel.Partials` however the rows are chunked and however
many workers run them.

Policy apart from machinery: every decision a pass makes (where its tasks go,
which blocks a task gets, when the units are planned again, when a pass has
stalled, which workers to probe and whether their fingerprints agree) is a
small pure function of plain data (:func:`plan_tasks`, :func:`unheld_blocks`,
:func:`task_blocks`, :func:`plan_unit_tasks`, :func:`needs_replan`,
:func:`stall_verdict`, :func:`unseen_workers`, :func:`fingerprint_conflict`,
...); the evaluators, the watchdog and :class:`WorkerCheck` only gather the
facts from the cluster and act on the answer.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .cluster import STALL_TIMEOUT_S
from .data import Chunk, Dataset, placed_on, spread
from .errors import ClusterError
from .kernel import (
    WARM_UP_PARTS,
    Categories,
    FoldPartials,
    FoldStats,
    KernelSpec,
    Partials,
    Stats,
    WarmUpPart,
    accumulate,
    kernel_features,
    merge_partials,
)
from .stream import (
    BATCH_BYTES,
    UNIT_BYTES,
    DiskCache,
    batch_rows,
    chunk_partials_fast,
    fold_stats_kernel,
    loss_kernel,
    plan_units,
    stats_kernel,
    unit_sums,
    units_sums,
)

__all__ = [
    "DaskEvaluator",
    "InProcessEvaluator",
    "StreamingEvaluator",
    "WorkerCheck",
    "fingerprint_conflict",
    "gather",
    "holders_in_order",
    "in_key_order",
    "needs_replan",
    "plan_tasks",
    "plan_unit_tasks",
    "stall_message",
    "stall_verdict",
    "task_blocks",
    "unheld_blocks",
    "unit_size",
    "unseen_workers",
    "wait_for",
    "compile_ahead",
    "warm_up",
    "warm_up_placement",
]

#: Streaming passes plan at least this many units per worker thread (when
#: there are enough row groups), so work can move to workers that join.
UNITS_PER_THREAD = 2
#: Seconds between checks of the cluster while a pass runs.
WATCH_POLL_S = 1.0
#: Most seconds one such check waits for the scheduler's answer (a scheduler
#: that does not answer counts as a stall: :func:`stall_verdict`).
WATCH_ANSWER_S = 10.0
#: Least seconds the fingerprint probe of new workers is awaited (each runs
#: the loss kernel, loading it first: seconds on a cold worker), whatever a
#: shorter stall timeout says.
PROBE_ANSWER_S = 60.0
#: The worker status (``distributed.core.Status`` name) of a worker that runs tasks.
RUNNING = "running"


class InProcessEvaluator:
    """Kernels over in-memory chunks ``(X, y[, weights])``; no Dask involved."""

    def __init__(self, chunks: Sequence, n_features: int) -> None:
        # column-major once, so every pass reads the features in place
        # (narrow features stay narrow: the kernels widen them exactly)
        self.chunks = [Chunk(np.asfortranarray(kernel_features(chunk[0])), *chunk[1:]) for chunk in chunks]
        self.n_features = n_features

    def partials(self, coef: np.ndarray, spec: KernelSpec = KernelSpec()) -> Partials:
        total = Partials.empty(self.n_features, spec)
        for X, y, weights in self.chunks:
            total = total.merge(chunk_partials_fast(X, y, coef, weights, spec))
        return total

    def stats(self, categories: Categories | None = None) -> Stats:
        total = Stats.zeros(self.n_features)
        for chunk in self.chunks:
            total = total.merge(stats_kernel(chunk, categories))
        return total

    def fold_stats(self, n_folds: int, categories: Categories | None = None) -> FoldStats:
        """Each fold's statistics (labels coded with their folds, :class:`pipeline.data.Folds`)."""
        total = FoldStats.zeros(n_folds, self.n_features)
        for chunk in self.chunks:
            total = total.merge(fold_stats_kernel(chunk, n_folds, categories))
        return total


class DaskEvaluator:
    """Kernels over chunks kept in the workers' memory (the ``memory`` cache
    mode): decoded from a dataset (:meth:`from_dataset`, the CLI and jobs) or
    the blocks of persisted Dask arrays (the constructor, the scikit-learn
    estimator :class:`pipeline.estimator.LogisticRegression`).

    A pass is one task per worker thread: the blocks are grouped by the worker
    that holds them (one scheduler query per pass, :func:`plan_tasks`), each
    group is summed by one task pinned to that worker (allowed elsewhere, e.g.
    after a failure, when the blocks are recomputed from their lineage), and
    the few partial states are merged here.  Per-pass Dask cost is then a
    handful of tasks, not one per chunk plus a reduction tree.

    Tasks are pure: keyed by a hash of the coef, the kernel options and the
    blocks, so a recomputed task can never be counted twice.
    """

    #: the worker each chunk is read on (:meth:`from_dataset`)
    _placement: list[str | None]
    #: the futures of the blocks, one list per array (X, y[, weights]), in block order
    _ordered: list[list]

    def __init__(self, client, data: Chunk, stall_timeout_s: float = STALL_TIMEOUT_S) -> None:
        """``data``: Dask arrays ``X, y[, weights]`` with the same row chunks,
        persisted here (passes that re-read the data: :class:`StreamingEvaluator`)."""
        X: Any = data.X  # a Dask array (Chunk's fields are typed for numpy)
        y, weights = data.y, data.weights
        self.arrays = client.persist([X, y] if weights is None else [X, y, weights])
        self._setup(client, X.shape[1], X.chunks[0], "arrays", stall_timeout_s)

    def _setup(self, client, n_features: int, rows, layout: str, stall_timeout_s: float) -> None:
        self.client = client
        self.n_features = n_features
        self.rows = tuple(rows)
        #: ``"arrays"``: per-pass tasks get the blocks of X, y[, weights];
        #: ``"chunks"``: they get whole chunks (X, y, weights) [, weights]
        self.layout = layout
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
        evaluator._setup(client, dataset.n_features, rows, "chunks", stall_timeout_s)
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
                try:
                    future.result()  # raises the task's exception (a PipelineError for bad data)
                except Exception as exc:
                    killed = killed_error(exc)
                    if killed is None:
                        raise
                    raise killed from None

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
        coef_arg = shared(self.client, coef)
        return self._per_worker(Partials.empty(self.n_features, spec), loss_kernel, coef_arg, spec)

    def stats(self, categories: Categories | None = None) -> Stats:
        return self._per_worker(Stats.zeros(self.n_features), stats_kernel, categories)

    def fold_stats(self, n_folds: int, categories: Categories | None = None) -> FoldStats:
        """Each fold's statistics (labels coded with their folds, :class:`pipeline.data.Folds`)."""
        return self._per_worker(FoldStats.zeros(n_folds, self.n_features), fold_stats_kernel, n_folds, categories)

    def _futures(self) -> list[list]:
        """Per array, its blocks' futures in block order."""
        if not hasattr(self, "_ordered"):
            from dask.core import flatten
            from distributed import futures_of

            self._ordered = [in_key_order(futures_of(array), flatten(array.__dask_keys__())) for array in self.arrays]
        return self._ordered

    def _who_has(self, futures: list) -> dict:
        """``client.who_has(futures)``, awaited at most the stall timeout (:func:`answered`)."""
        client, keys = self.client, list({future.key for future in futures})
        return answered(
            client,
            lambda timeout: client.sync(client.scheduler.who_has, keys=keys, callback_timeout=timeout),
            self.stall_timeout_s,
        )

    def _per_worker(self, empty, kernel, *args):
        """One pass: gather who holds each block and the workers' threads, plan
        the tasks (:func:`plan_tasks`), run them, merge their states here."""
        columns = self._futures()
        keys = [future.key for future in columns[0]]
        holders = holders_in_order(self._who_has(columns[0]), keys)
        if unheld_blocks(holders):
            # still being computed (the first pass after persist) or lost with
            # a worker: wait until every block is held, so tasks go where the
            # blocks are rather than copying them (and keeping both copies)
            wait_for(self.client, [future for column in columns for future in column], self.stall_timeout_s)
            holders = holders_in_order(self._who_has(columns[0]), keys)
        threads = nthreads(self.client, self.stall_timeout_s)
        self.workers_check.check(self.client, threads, stall_timeout_s=self.stall_timeout_s)
        tasks = [
            self.client.submit(
                sum_blocks,
                kernel,
                args,
                self.layout,
                len(part),
                *task_blocks(columns, part),
                pure=True,
                **placed_on(worker),
            )
            for worker, part in plan_tasks(holders, self.rows, threads)
        ]
        return merge_states(self.client, tasks, empty, self.stall_timeout_s)


def in_key_order(futures: Iterable, keys: Iterable) -> list:
    """Policy only: ``futures`` (anything with a ``key``) in the order of ``keys``
    (a persisted array's block keys): its blocks' futures in block order."""
    by_key = {future.key: future for future in futures}
    return [by_key[key] for key in keys]


def holders_in_order(who_has: dict, keys: Sequence) -> list[list[str]]:
    """Policy only: the workers holding each block, in block order, from the
    scheduler's ``who_has`` (key -> addresses; a key missing or with no
    address: the block is held by nobody, ``[]``)."""
    return [list(who_has.get(key) or ()) for key in keys]


def unheld_blocks(holders: Sequence[Sequence[str]]) -> list[int]:
    """Policy only: the indices of the blocks no worker holds (still being
    computed, or lost with a worker).  While there are any, a pass waits for
    the blocks before planning its tasks, so they run where the blocks are."""
    return [index for index, where in enumerate(holders) if not where]


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


def task_blocks(columns: Sequence[Sequence], part: Sequence[int]) -> list:
    """Policy only: what a pass task over the blocks ``part`` gets, column by
    column (all its X blocks, then its y blocks, ...; or its chunks, then
    their weights): the order :func:`sum_blocks` reads them in."""
    return [column[index] for column in columns for index in part]


def warm_up_placement(parts: Sequence[str], workers: Sequence[str]) -> list[tuple[str, str]]:
    """Policy only: ``(part, worker)`` for each warm-up part, one part per
    worker in turn (all on one worker when there is one); none without workers."""
    if not workers:
        return []
    return [(part, workers[index % len(workers)]) for index, part in enumerate(parts)]


def warm_up(
    client,
    workers: Sequence[str],
    n_features: int,
    *,
    standardize: bool,
    weighted: bool,
    class_weighted: bool,
    hessian: bool,
    gradient: bool = True,
    dtype: str = "float64",
    passes: bool = True,
) -> list:
    """Compile the fit's kernels on the workers before any data is read:
    :func:`pipeline.fused.warm_up`'s parts spread over ``workers``
    (:func:`warm_up_placement`), submitted ahead of the reads so each
    worker runs its part first.  On a fresh installation the parts compile at
    the same time on different workers (each worker then loads the other part
    from numba's cache); otherwise they only load the cache, which the first
    pass would do anyway.  Every worker then runs its passes compiled
    (:attr:`pipeline.tiers.Tiers.eager`): call it for data large enough
    (:func:`pipeline.tiers.worth_compiling`).  ``passes=False``: the
    statistics pass only (a fit whose passes are categorical or
    multinomial compiles them at their first call).  Keep the returned
    futures until the first pass (a released future is cancelled).
    """
    kinds = dict(
        standardize=standardize,
        weighted=weighted,
        class_weighted=class_weighted,
        hessian=hessian,
        gradient=gradient,
        dtype=dtype,
    )
    parts = WARM_UP_PARTS if passes else tuple(part for part in WARM_UP_PARTS if part == "statistics")
    placed: list[tuple[Any, str]] = list(warm_up_placement(parts, workers))
    # the other workers only turn eager: they compile what they need at its first call
    placed += [(None, worker) for worker in workers if worker not in {w for _, w in placed}]
    return [
        client.submit(_warm_up, part, n_features, **kinds, pure=False, **placed_on(worker)) for part, worker in placed
    ]


def compile_ahead(client=None) -> None:
    """Large data without a warm-up (the estimator): every pass of this
    process, or of ``client``'s workers, runs compiled from its first call
    (:func:`pipeline.fused.compile_eagerly`)."""
    from .fused import compile_eagerly  # numba: where the passes run only

    if client is None:
        compile_eagerly()
    else:
        client.run(compile_eagerly)


def _warm_up(part: WarmUpPart | None, n_features: int, **kinds) -> None:
    from .fused import warm_up as compile_part  # numba: on the worker only

    compile_part(part, n_features, **kinds)


def sum_blocks(kernel, args: tuple, layout: str, n_blocks: int, *blocks):
    """Run on a worker: ``kernel`` over ``n_blocks`` chunks, merged into one
    partial state.  The blocks come column by column (:func:`task_blocks`):
    ``X…, y…[, weights…]`` (``layout="arrays"``) or ``chunk…[, weights…]``
    (``"chunks"``, the weights replacing the chunks' own)."""
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
        total = accumulate(total, kernel(chunk, *args))
    return total


def wait_for(client, futures: list, stall_timeout_s: float = STALL_TIMEOUT_S) -> None:
    """``distributed.wait(futures)`` (results stay on the workers), with the
    watchdog of :func:`gather`."""
    from distributed import wait

    _watched(client, futures, stall_timeout_s, lambda: wait(futures))


#: distributed's reason for the futures it cancels when the client loses its scheduler
SCHEDULER_LOST = "scheduler-connection-lost"


def gather(client, futures: list, stall_timeout_s: float = STALL_TIMEOUT_S) -> list:
    """``client.gather(futures)``, but never waiting forever on a stalled cluster.

    While the gather runs, a watchdog thread asks the scheduler every
    ``WATCH_POLL_S`` seconds for its workers' states.  Lost workers are not a
    problem (their tasks run again elsewhere, with the same result, also when
    a result is lost after its task finished), but when no worker is left,
    every worker is paused (memory above the pause threshold) or the scheduler
    does not answer, for ``stall_timeout_s`` seconds (:func:`stall_verdict`),
    the watchdog cancels the futures and the pass fails with a
    :class:`ClusterError` that says what to do.  Task errors are raised as they are.

    The futures are cancelled rather than the gather interrupted: an
    interrupted ``client.gather`` leaves distributed's own waiting tasks
    behind, which log "Task exception was never retrieved" later.
    """
    return _watched(client, futures, stall_timeout_s, lambda: client.gather(futures))


def _watched(client, futures: list, stall_timeout_s: float, action):
    """``action()`` while a watchdog thread cancels ``futures`` on a stall."""
    address = scheduler_address(client)  # (while connected: a closed client no longer says it)
    finished = threading.Event()
    stalled: list[str] = []

    def watch() -> None:
        stalled_since = None
        while not finished.wait(WATCH_POLL_S):
            try:
                # bounded: a scheduler that is stopped or frozen (its connection
                # still open) never answers, and the watchdog must still decide
                workers = client.run_on_scheduler(
                    _worker_states, callback_timeout=max(WATCH_POLL_S, min(WATCH_ANSWER_S, stall_timeout_s))
                )
            except Exception:  # noqa: BLE001 - an unreachable scheduler is a stall too
                workers = None
            stalled_since, message = stall_verdict(workers, stalled_since, time.monotonic(), stall_timeout_s)
            if message is not None:
                stalled.append(message)
                client.cancel(futures, reason="pipeline-stalled", msg=message)
                return

    watchdog = threading.Thread(target=watch, name="pipeline-pass-watchdog", daemon=True)
    watchdog.start()
    try:
        result = action()
    except BaseException as exc:
        if stalled:
            raise ClusterError(stalled[0]) from None
        killed = killed_error(exc)
        if killed is not None:
            raise killed from None
        if SCHEDULER_LOST in cancel_reasons(exc) or _closed(client, exc):
            raise scheduler_lost(client, address) from None
        raise
    finally:
        finished.set()
        watchdog.join(WATCH_ANSWER_S + WATCH_POLL_S)  # (at most one check in flight)
    if stalled:  # (distributed.wait returns once the futures are cancelled)
        raise ClusterError(stalled[0])
    return result


def scheduler_address(client) -> str | None:
    """The address of ``client``'s scheduler (None where it cannot say)."""
    return getattr(getattr(client, "scheduler", None), "address", None)


def scheduler_lost(client, address: str | None = None) -> ClusterError:
    """The error of a pass whose client lost its scheduler's connection
    (``address``: the scheduler's, read while connected; else asked now)."""
    address = address or scheduler_address(client) or "(its address unknown)"
    return ClusterError(
        f"the connection to the scheduler {address} was lost during a pass (it stopped or restarted); "
        "a job's checkpoint is kept: start the scheduler and workers again, and `pipeline resume "
        "OUT_DIR` continues it"
    )


def _closed(client, error: BaseException) -> bool:
    """Whether ``error`` says the client's connection to its scheduler is
    gone: distributed's ``CommClosedError``, or any ``OSError`` (a connection
    attempt that timed out) while the client is no longer connected.  (A
    task's own errors come back as what the task raised, with the client
    still running.)"""
    from distributed.comm.core import CommClosedError

    if isinstance(error, CommClosedError):
        return True
    return isinstance(error, OSError) and getattr(client, "status", "running") != "running"


def answered(client, request, stall_timeout_s: float):
    """``request(timeout)``: a request to the scheduler that takes distributed's
    ``callback_timeout``, whose answer is awaited at most ``stall_timeout_s``;
    a scheduler that does not answer (stopped, frozen, unreachable with its
    connection still open) is the stall :class:`ClusterError`, not a wait for
    ever; a connection that closed, :func:`scheduler_lost`'s."""
    address = scheduler_address(client)
    try:
        return request(stall_timeout_s)
    except TimeoutError:
        raise ClusterError(stall_message(None, stall_timeout_s)) from None
    except OSError:  # (a request to the scheduler: no task's error)
        raise scheduler_lost(client, address) from None


def killed_error(error: BaseException) -> ClusterError | None:
    """distributed's ``KilledWorker`` (a task whose workers kept dying while
    they ran it: most often out of memory) as a :class:`ClusterError` that
    says what to do; None for any other error."""
    from distributed.scheduler import KilledWorker

    if not isinstance(error, KilledWorker):
        return None
    last = getattr(getattr(error, "last_worker", None), "address", None)
    deaths = error.allowed_failures + 1
    workers = "1 worker that died" if deaths == 1 else f"{deaths} workers that died, one after the other"
    return ClusterError(
        f"the task {error.task!r} was running on {workers} (the last: {last}); a worker most often dies "
        "when its memory runs out: use --cache disk or none, smaller row groups, or larger workers; a job's "
        "checkpoint is kept (`pipeline resume OUT_DIR`)"
    )


def cancel_reasons(error: BaseException) -> set[str]:
    """Why distributed cancelled futures, from the error a wait or gather
    raised: a ``FutureCancelledError``'s reason, or each group's of a
    ``FuturesCancelledError`` (several futures at once, as a detached job's
    pass waits on them); empty for any other error."""
    reason = getattr(error, "reason", None)
    reasons = {reason} if isinstance(reason, str) else set()
    for group in getattr(error, "error_groups", None) or ():
        if isinstance(getattr(group, "reason", None), str):
            reasons.add(group.reason)
    return reasons


def stall_verdict(
    workers: dict | None, stalled_since: float | None, now: float, stall_timeout_s: float
) -> tuple[float | None, str | None]:
    """Policy only: one watchdog poll's decision, ``(stalled_since, message)``.

    ``workers`` maps address -> (status, memory limit), None when the
    scheduler did not answer; ``stalled_since`` is when the pass stopped
    making progress (None: it was making progress), ``now`` the time of this
    poll (same clock).  While some worker is running the pass makes
    progress: ``(None, None)``.  Otherwise it is stalled since
    ``stalled_since`` (or now); once that is ``stall_timeout_s`` ago the
    message is :func:`stall_message`'s (the pass must fail), else None.
    """
    if workers and any(status == RUNNING for status, _ in workers.values()):
        return None, None
    since = now if stalled_since is None else stalled_since
    if now - since >= stall_timeout_s:
        return since, stall_message(workers, stall_timeout_s)
    return since, None


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

    def check(self, client, addresses=None, *, stall_timeout_s: float = STALL_TIMEOUT_S) -> None:
        """Probe the workers not seen yet (all current ones by default)
        (:func:`unseen_workers`); raise :func:`fingerprint_conflict`'s error."""
        new = unseen_workers(nthreads(client, stall_timeout_s) if addresses is None else addresses, self.fingerprints)
        if not new:
            return
        found = answered(
            client,
            lambda timeout: client.run(_kernel_fingerprint, workers=new, on_error="ignore", callback_timeout=timeout),
            max(stall_timeout_s, PROBE_ANSWER_S),  # (the workers run the kernel: seconds on a cold one)
        )
        # a worker that failed to answer (lost meanwhile) is probed again when next seen
        self.fingerprints.update({a: f for a, f in found.items() if isinstance(f, dict)})
        conflict = fingerprint_conflict(self.fingerprints)
        if conflict is not None:
            raise ClusterError(conflict)


def unseen_workers(addresses: Iterable[str], seen: Iterable[str]) -> list[str]:
    """Policy only: the ``addresses`` (sorted) not in ``seen``, the workers whose
    fingerprint must still be probed."""
    seen = set(seen)
    return [address for address in sorted(addresses) if address not in seen]


def fingerprint_conflict(fingerprints: dict[str, dict]) -> str | None:
    """Policy only: the error to raise when the workers' fingerprints
    (address -> :func:`pipeline.probe.kernel_fingerprint`) do not all have the
    same digest, naming each group of workers that agree; None when they do."""
    groups: dict[str, list[str]] = {}
    for address, fingerprint in fingerprints.items():
        groups.setdefault(fingerprint["digest"], []).append(address)
    if len(groups) <= 1:
        return None
    described = "; ".join(
        f"{', '.join(members)}: fingerprint {digest} ({_describe(fingerprints[members[0]])})"
        for digest, members in groups.items()
    )
    return (
        "workers compute different floating-point results, which would break "
        f"the exactness guarantee; found {described}. Run every worker from the "
        "same environment (image, library versions; the CPU does not matter), "
        "or keep the job to workers that agree"
    )


def _kernel_fingerprint() -> dict:
    """Run on a worker: :func:`pipeline.probe.kernel_fingerprint`, imported
    there (the coordinator never imports numba for it)."""
    from .probe import kernel_fingerprint

    return kernel_fingerprint()


def _describe(fingerprint: dict) -> str:
    return (
        f"numpy {fingerprint['numpy']}, pyarrow {fingerprint['pyarrow']}, numba "
        f"{fingerprint['numba']}, python {fingerprint['python']}, pipeline {fingerprint.get('pipeline')}"
    )


def reschedule_loose(dask_scheduler=None) -> int:
    """Run on the scheduler: tasks left in ``no-worker`` although their worker
    restrictions are loose (``allow_other_workers``, as every placed task of
    the pipeline's is) go to a running worker; how many.  distributed leaves
    such a task waiting for the worker it named once that worker is gone:
    when every worker restarted at once (all over their memory limit), the
    pass's chunks, to be read again, waited for ever on the new workers
    (``bulk_schedule_unrunnable_after_adding_worker`` checks the
    restriction, not its looseness; placing them anew takes the loose path)."""
    if not dask_scheduler.running:
        return 0
    stuck = [
        ts.key
        for ts in list(dask_scheduler.unrunnable)
        # (placed on workers only: a task that needs a resource or a host waits for one)
        if ts.loose_restrictions
        and ts.worker_restrictions
        and not ts.resource_restrictions
        and not ts.host_restrictions
        and all(dependency.who_has for dependency in ts.dependencies)
    ]
    if stuck:
        dask_scheduler.transitions(
            {key: "processing" for key in stuck}, stimulus_id=f"pipeline-reschedule-loose-{time.time()}"
        )
    return len(stuck)


def _worker_states(dask_scheduler=None) -> dict:
    """Run on the scheduler: address -> (status name, memory limit) of each
    worker; in the same round trip, tasks stuck on gone workers are placed
    anew (:func:`reschedule_loose`: a help, never a verdict on the scheduler)."""
    with contextlib.suppress(Exception):
        reschedule_loose(dask_scheduler)
    return {address: (worker.status.name, worker.memory_limit) for address, worker in dask_scheduler.workers.items()}


def _size(limit) -> str:
    return "none" if not limit else f"{limit / 2**20:.0f} MiB"


def _split(items: list, parts: int) -> list[list]:
    """``items`` in at most ``parts`` contiguous, non-empty runs of about equal length."""
    parts = max(1, min(parts, len(items)))
    return [items[len(items) * k // parts : len(items) * (k + 1) // parts] for k in range(parts)]


def unit_size(unit_bytes: int, total_bytes: int, n_threads: int) -> int:
    """Policy only: the bytes per streaming unit, at most ``unit_bytes`` and
    small enough for ``UNITS_PER_THREAD`` units per thread of ``n_threads``
    over ``total_bytes`` of data (where the row groups allow), so work can
    move when workers join or leave."""
    return min(unit_bytes, max(1, total_bytes // (UNITS_PER_THREAD * max(1, n_threads))))


def plan_unit_tasks(units: Sequence, sizes: Sequence[int], threads: dict[str, int]) -> list[tuple[str | None, tuple]]:
    """Policy only: one streaming pass's tasks, ``(worker or None, units)``.

    The ``units`` (of ``sizes`` rows) are spread over ``threads``' workers
    (sorted) in contiguous, row-balanced runs (:func:`pipeline.data.spread`),
    each worker's run split into one task per thread; without workers each
    unit is a task of its own, with no placement.
    """
    placement = spread(sizes, sorted(threads))
    runs: dict[str | None, list] = {}
    for unit, worker in zip(units, placement):
        runs.setdefault(worker, []).append(unit)
    return [
        (worker, tuple(part))
        for worker, members in runs.items()
        for part in (_split(members, threads.get(worker, 1)) if worker else [[unit] for unit in members])
    ]


def needs_replan(placed: bool, threads: dict[str, int], planned_for: Sequence[str]) -> bool:
    """Policy only: plan the units again before a pass when they are placed on
    workers and the workers there now (``threads``; none: keep the plan until
    some come back) are not the ones they were ``planned_for``."""
    return bool(placed and threads and sorted(threads) != list(planned_for))


#: Pass states with at least this many categorical levels (``Partials.levels``:
#: 24 bytes a level) are merged on the workers, in a tree of :data:`TREE_FAN_IN`,
#: so that the coordinator receives one state whatever the number of tasks.
TREE_MERGE_LEVELS = 2**16
TREE_FAN_IN = 4


def nthreads(client, stall_timeout_s: float = STALL_TIMEOUT_S) -> dict:
    """``client.nthreads()``, the scheduler's answer awaited at most ``stall_timeout_s`` (:func:`answered`)."""
    return answered(client, lambda timeout: client.nthreads(callback_timeout=timeout), stall_timeout_s)


def shared(client, coef: np.ndarray):
    """``coef`` as the pass's tasks take it: itself, or -- a large model's
    (:data:`TREE_MERGE_LEVELS` coefficients or more) -- one task's result,
    keyed by its content, so the coordinator sends it once per pass and the
    workers fetch it from each other rather than in every task's arguments.
    A task, not a scatter: its holder lost, the scheduler computes it again."""
    if coef.shape[0] < TREE_MERGE_LEVELS:
        return coef
    return client.submit(np.array, coef, pure=True)


def state_levels(state) -> int:
    """The categorical levels a pass state holds sums of: its fit's
    (``Partials.levels``), or a cross-validation pass's fits' together."""
    parts = state.parts if isinstance(state, FoldPartials) else (state,)
    return sum(levels.n_levels for levels in (getattr(part, "levels", None) for part in parts) if levels is not None)


def merge_states(client, tasks: list, empty, stall_timeout_s: float = STALL_TIMEOUT_S):
    """The merge of ``empty`` and the states of ``tasks`` (futures): gathered
    here, or -- large categorical states (:data:`TREE_MERGE_LEVELS`) -- merged
    on the workers in a tree first (exact merges: the same result either way)."""
    if state_levels(empty) >= TREE_MERGE_LEVELS:
        while len(tasks) > 1:
            groups = [tasks[start : start + TREE_FAN_IN] for start in range(0, len(tasks), TREE_FAN_IN)]
            tasks = [
                group[0] if len(group) == 1 else client.submit(merge_partials, *group, pure=True) for group in groups
            ]
    return merge_partials(empty, *gather(client, tasks, stall_timeout_s))


class StreamingEvaluator:
    """Bounded-memory passes: units of row groups read (or mapped from the disk
    cache), computed and reduced to a small state; nothing else is kept between
    passes, except the optional disk cache on each worker.

    Units are placed on the workers in contiguous, row-balanced runs, so a
    worker finds its own cache files again; per pass each worker thread gets
    one task that streams its run of units (pinned there, allowed elsewhere
    after a failure), and the states are merged here.  When workers join or
    leave, the next pass spreads the units over the workers there then
    (:func:`needs_replan`, :func:`plan_unit_tasks`).  Without ``workers``
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
        total_bytes = dataset.n_samples * self.reader.row_bytes
        unit_bytes = unit_size(unit_bytes, total_bytes, sum(threads.values()))
        self.units = plan_units(dataset.chunks, self.reader.row_bytes, unit_bytes)
        self.placed = bool(workers)
        self._plan(threads)

    def _plan(self, threads: dict) -> None:
        """Spread the units over ``threads``' workers (sorted), one task per thread."""
        self.planned_for = sorted(threads)
        #: (worker or None, units) per pass task
        self.tasks = plan_unit_tasks(self.units, [sum(c.n_rows for c in unit) for unit in self.units], threads)

    def partials(self, coef: np.ndarray, spec: KernelSpec = KernelSpec()) -> Partials:
        coef = np.array(coef, dtype=np.float64)
        coef_arg = coef if self.client is None else shared(self.client, coef)
        return self._run(Partials.empty(self.n_features, spec), loss_kernel, coef_arg, spec)

    def stats(self, categories: Categories | None = None) -> Stats:
        return self._run(Stats.zeros(self.n_features), stats_kernel, categories)

    def fold_stats(self, n_folds: int, categories: Categories | None = None) -> FoldStats:
        """Each fold's statistics (labels coded with their folds, :class:`pipeline.data.Folds`)."""
        return self._run(FoldStats.zeros(n_folds, self.n_features), fold_stats_kernel, n_folds, categories)

    def _run(self, empty, kernel, *args):
        if self.client is None:
            return merge_partials(
                empty, *(unit_sums(self.reader, unit, self.rows, self.cache, kernel, *args) for unit in self.units)
            )
        threads = nthreads(self.client, self.stall_timeout_s)
        self.workers_check.check(self.client, threads, stall_timeout_s=self.stall_timeout_s)
        if needs_replan(self.placed, threads, self.planned_for):
            self._plan(threads)  # workers joined or left: spread the units over those there now
        tasks = [
            self.client.submit(
                units_sums, self.reader, units, self.rows, self.cache, kernel, *args, pure=True, **placed_on(worker)
            )
            for worker, units in self.tasks
        ]
        return merge_states(self.client, tasks, empty, self.stall_timeout_s)
