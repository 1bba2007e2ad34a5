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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ClusterError
from .data import Chunk, Dataset, spread
from .fused import chunk_partials_fast
from .kernel import KernelSpec, Partials, Stats, chunk_stats, merge_partials
from .stream import (
    BATCH_BYTES,
    UNIT_BYTES,
    DiskCache,
    batch_rows,
    loss_kernel,
    plan_units,
    row_bytes,
    stats_kernel,
    unit_sums,
)

__all__ = [
    "ClusterSpec",
    "DaskEvaluator",
    "InProcessEvaluator",
    "REDUCE_FAN_IN",
    "StreamingEvaluator",
    "cluster_memory",
    "connect",
]

#: Partial states merged per task of the reduction tree.
REDUCE_FAN_IN = 8
#: Seconds to wait for a scheduler to answer.
CONNECT_TIMEOUT_S = 10
#: Seconds to wait for the first worker of a remote cluster.
WORKER_WAIT_S = 120


class InProcessEvaluator:
    """Kernels over in-memory chunks ``(X, y[, weights])``; no Dask involved."""

    def __init__(self, chunks: Sequence, n_features: int) -> None:
        # column-major once, so every pass reads the features in place
        self.chunks = [Chunk(np.asfortranarray(chunk[0], dtype=np.float64), *chunk[1:])
                       for chunk in chunks]
        self.n_features = n_features

    def partials(self, coef: np.ndarray, spec: KernelSpec = KernelSpec()) -> Partials:
        total = Partials.zeros(self.n_features + 1, spec.hessian)
        for X, y, weights in self.chunks:
            total = total.merge(chunk_partials_fast(X, y, coef, weights, spec))
        return total

    def stats(self) -> Stats:
        total = Stats.zeros(self.n_features)
        for X, y, weights in self.chunks:
            total = total.merge(chunk_stats(X, y, weights))
        return total


class DaskEvaluator:
    """Kernels over Dask arrays, one task per block, tree-reduced on the cluster.

    Per evaluation, ``coef`` and the :class:`~pipeline.kernel.KernelSpec`
    enter the graph once, each as its own key; each block becomes a small
    partial state, and only those travel, merged ``REDUCE_FAN_IN`` at a time.
    """

    def __init__(self, client, data: Chunk, persist: bool = True) -> None:
        X, y, weights = data
        arrays = [X, y] if weights is None else [X, y, weights]
        if persist:
            arrays = client.persist(arrays)
        self.client = client
        self.arrays = arrays
        self.n_features = X.shape[1]

    def _blocks(self):
        blocks = [array.to_delayed().ravel() for array in self.arrays]
        if len(blocks) == 2:
            blocks.append([None] * len(blocks[0]))
        return list(zip(*blocks))

    def partials(self, coef: np.ndarray, spec: KernelSpec = KernelSpec()) -> Partials:
        import dask

        coef_key = dask.delayed(np.array(coef, dtype=np.float64), pure=True)
        spec_key = dask.delayed(spec, pure=True)
        level = [
            dask.delayed(chunk_partials_fast, pure=True)(X, y, coef_key, weights, spec_key)
            for X, y, weights in self._blocks()
        ]
        return _tree_reduce(self.client, level, Partials.zeros(self.n_features + 1, spec.hessian))

    def stats(self) -> Stats:
        import dask

        level = [
            dask.delayed(chunk_stats, pure=True)(X, y, weights)
            for X, y, weights in self._blocks()
        ]
        return _tree_reduce(self.client, level, Stats.zeros(self.n_features))


def _tree_reduce(client, level: list, empty):
    """Merge delayed partial states ``REDUCE_FAN_IN`` at a time; compute the root."""
    import dask

    if not level:
        return empty
    while len(level) > 1:
        level = [
            dask.delayed(merge_partials, pure=True)(*level[i : i + REDUCE_FAN_IN])
            for i in range(0, len(level), REDUCE_FAN_IN)
        ]
    return client.compute(level[0]).result()


class StreamingEvaluator:
    """Bounded-memory passes: per pass, one task per unit of row groups that
    reads (or maps from the disk cache), computes and returns a small state.

    Nothing but partial states is kept between passes, except the optional
    disk cache on each worker.  Units are placed on the workers in contiguous,
    row-balanced runs (a hint), so a worker finds its own cache files again.
    With ``client=None`` the same tasks run in this process, one after another.
    """

    def __init__(self, client, dataset: Dataset, cache: DiskCache | None,
                 workers: Sequence[str] | None = None,
                 unit_bytes: int = UNIT_BYTES, batch_bytes: int = BATCH_BYTES) -> None:
        self.client = client
        self.reader = dataset.reader
        self.n_features = dataset.n_features
        self.cache = cache
        self.rows = batch_rows(self.reader, batch_bytes)
        self.units = plan_units(dataset.chunks, row_bytes(self.reader), unit_bytes)
        self.placement = spread([sum(c.n_rows for c in unit) for unit in self.units], workers)

    def partials(self, coef: np.ndarray, spec: KernelSpec = KernelSpec()) -> Partials:
        coef = np.array(coef, dtype=np.float64)
        return self._run(Partials.zeros(self.n_features + 1, spec.hessian), loss_kernel, coef, spec)

    def stats(self) -> Stats:
        return self._run(Stats.zeros(self.n_features), stats_kernel)

    def _run(self, empty, kernel, *args):
        if self.client is None:
            return merge_partials(empty, *(
                unit_sums(self.reader, unit, self.rows, self.cache, kernel, *args)
                for unit in self.units
            ))
        import dask

        shared = [dask.delayed(value, pure=True) for value in (self.reader, *args)]
        level = []
        for unit, worker in zip(self.units, self.placement):
            hint = {} if worker is None else {"workers": [worker], "allow_other_workers": True}
            with dask.annotate(**hint):
                level.append(dask.delayed(unit_sums, pure=True)(
                    shared[0], unit, self.rows, self.cache, kernel, *shared[1:]))
        return _tree_reduce(self.client, level, empty)


@dataclass(frozen=True)
class ClusterSpec:
    """Where to run: a scheduler address, or an embedded LocalCluster."""

    scheduler: str | None = None
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str | None = None


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
            client = Client(spec.scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"no Dask scheduler answered at {spec.scheduler!r} within "
                f"{CONNECT_TIMEOUT_S} s: {exc}"
            ) from None
        with client:
            try:
                client.wait_for_workers(1, timeout=WORKER_WAIT_S)
            except TimeoutError:
                raise ClusterError(
                    f"the scheduler at {spec.scheduler!r} has no workers after {WORKER_WAIT_S} s"
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
