"""The cluster pass: where its tasks go (pure policy, plain fakes) and the
persisted-memory evaluator built straight from a dataset (real LocalCluster)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.data import Split, open_dataset, spread
from pipeline.kernel import KernelSpec
from pipeline.reduce import (
    ClusterSpec,
    DaskEvaluator,
    InProcessEvaluator,
    connect,
    plan_tasks,
    wait_for,
    warm_up,
)

A, B, C = "tcp://a:1", "tcp://b:1", "tcp://c:1"


def test_blocks_held_by_one_worker_run_there_split_by_threads():
    tasks = plan_tasks([[A], [A], [B], [A], [B]], [10] * 5, {A: 2, B: 1})
    assert tasks == [(A, [0]), (A, [1, 3]), (B, [2, 4])]


def test_copied_blocks_go_to_the_least_loaded_holder():
    # block 2 and 3 are on both workers (copied after a failure): they balance the rows
    tasks = plan_tasks([[A], [A], [A, B], [B, A], [B]], [100, 100, 50, 50, 10], {A: 1, B: 1})
    assert tasks == [(A, [0, 1]), (B, [2, 3, 4])]
    tasks = plan_tasks([[A, B], [A, B], [A, B], [A, B]], [10] * 4, {A: 1, B: 1})
    assert tasks == [(A, [0, 2]), (B, [1, 3])]


def test_blocks_held_by_nobody_get_a_task_without_placement():
    tasks = plan_tasks([[A], [], [C], []], [1] * 4, {A: 1})
    assert tasks == [(A, [0]), (C, [2]), (None, [1, 3])]
    assert plan_tasks([], [], {A: 1}) == []


def test_every_block_is_in_exactly_one_task():
    rng = np.random.default_rng(5)
    workers = [A, B, C]
    for _ in range(200):
        n = int(rng.integers(0, 30))
        holders = [sorted(set(rng.choice(workers, int(rng.integers(0, 4))).tolist())) for _ in range(n)]
        threads = {w: int(rng.integers(1, 4)) for w in workers}
        tasks = plan_tasks(holders, rng.integers(1, 100, n).tolist(), threads)
        covered = sorted(i for _, part in tasks for i in part)
        assert covered == list(range(n))
        for worker, part in tasks:
            assert part and all(worker is None and not holders[i] or worker in holders[i] for i in part)


def _write(path, n_rows, n_features, row_group_size, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, n_features))
    y = (rng.random(n_rows) < 0.4).astype(np.int8)
    table = pa.table({**{f"f{j}": X[:, j] for j in range(n_features)}, "y": y})
    path.mkdir()
    pq.write_table(table, path / "part-0.parquet", row_group_size=row_group_size)


@pytest.mark.cluster
def test_memory_evaluator_from_a_dataset_keeps_each_chunk_where_it_was_read(tmp_path):
    import distributed

    _write(tmp_path / "data", 3000, 5, 250)
    dataset = open_dataset(str(tmp_path / "data"), "y")
    reference = InProcessEvaluator(dataset.read_chunks(), dataset.n_features)
    coef = np.linspace(-0.5, 0.5, dataset.n_features + 1)
    split = Split(0.3)
    training, validation = dataset.with_split(split), dataset.with_split(Split(0.3, None, "validation"))
    with connect(ClusterSpec(n_workers=2)) as client:
        workers = sorted(client.scheduler_info()["workers"])
        evaluator = DaskEvaluator.from_dataset(client, training, workers)
        held_out = evaluator.with_weights(validation)
        # the first pass waits for the reads, then runs one task per worker, where the chunks are
        with distributed.get_task_stream(client) as stream:
            got = evaluator.partials(coef)
        ran = sorted(t["worker"] for t in stream.data if "sum_blocks" in str(t["key"]))
        assert ran == workers
        chunks, weights = evaluator._futures()[0], held_out._futures()[1]
        wait_for(client, weights)
        planned = spread(evaluator.rows, workers)
        for futures in (chunks, weights):
            holders = client.who_has(futures)
            assert [sorted(holders[f.key]) for f in futures] == [[w] for w in planned]
        # passes neither copy chunks nor leave them on a second worker
        held = held_out.partials(coef)
        evaluator.stats()
        holders = client.who_has(chunks)
        assert [sorted(holders[f.key]) for f in chunks] == [[w] for w in planned]
    assert got == InProcessEvaluator(
        [(X, y, training.reader.weights_of(c)) for (X, y, _), c in zip(dataset.read_chunks(), dataset.chunks)],
        dataset.n_features,
    ).partials(coef)
    assert held == InProcessEvaluator(
        [(X, y, validation.reader.weights_of(c)) for (X, y, _), c in zip(dataset.read_chunks(), dataset.chunks)],
        dataset.n_features,
    ).partials(coef)
    assert held != got and got != reference.partials(coef)


@pytest.mark.cluster
def test_memory_evaluator_equals_in_process_on_every_pass_kind(tmp_path):
    _write(tmp_path / "data", 2000, 4, 300)
    dataset = open_dataset(str(tmp_path / "data"), "y")
    reference = InProcessEvaluator(dataset.read_chunks(), dataset.n_features)
    coef = np.array([0.3, -0.2, 0.1, 0.05, -0.4])
    spec = KernelSpec(center=np.full(4, 0.1), scale=np.full(4, 1.3), class_weight=(1.0, 2.0))
    with connect(ClusterSpec(n_workers=2)) as client:
        workers = sorted(client.scheduler_info()["workers"])
        # the kernels' two halves compile on different workers, ahead of the reads
        compiling = warm_up(client, workers, 4, standardize=True, weighted=False, class_weighted=True, hessian=True)
        evaluator = DaskEvaluator.from_dataset(client, dataset, workers)
        assert client.gather(compiling) == [None, None]
        assert sorted(w for held in client.who_has(compiling).values() for w in held) == workers
        assert evaluator.stats() == reference.stats()
        assert evaluator.partials(coef, spec) == reference.partials(coef, spec)
        assert evaluator.partials(coef, spec.with_hessian(True)) == reference.partials(coef, spec.with_hessian(True))
