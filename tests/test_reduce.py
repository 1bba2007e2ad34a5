"""The cluster pass: its decisions as pure functions over plain data (no
cluster: where its tasks go, which blocks each gets, when a pass has stalled,
when units are planned again, which workers are probed and when their
fingerprints disagree, the cluster settings), and the memory evaluators on a
real LocalCluster."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from job_support import without_work_stealing

from pipeline.cluster import (
    MIN_WORKER_MEMORY,
    ClusterSpec,
    connect,
    default_worker_count,
    embedded_worker_count,
    local_cluster_options,
    memory_total,
)
from pipeline.data import Chunk, Split, open_dataset, spread
from pipeline.errors import ClusterError, ConfigError
from pipeline.kernel import KernelSpec
from pipeline.reduce import (
    DaskEvaluator,
    InProcessEvaluator,
    WorkerCheck,
    cancel_reasons,
    fingerprint_conflict,
    holders_in_order,
    in_key_order,
    needs_replan,
    plan_tasks,
    plan_unit_tasks,
    stall_message,
    stall_verdict,
    sum_blocks,
    task_blocks,
    unheld_blocks,
    unit_size,
    unseen_workers,
    wait_for,
    warm_up,
    warm_up_placement,
)

A, B, C = "tcp://a:1", "tcp://b:1", "tcp://c:1"


# -- where a pass's tasks go ---------------------------------------------------------------


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


def test_holders_come_in_block_order_and_missing_blocks_are_held_by_nobody():
    who_has = {"k2": (B, A), "k0": [A], "k1": []}
    holders = holders_in_order(who_has, ["k0", "k1", "k2", "k3"])
    assert holders == [[A], [], [B, A], []]
    assert unheld_blocks(holders) == [1, 3]  # the pass waits for these before planning
    assert unheld_blocks(holders_in_order(who_has, ["k0", "k2"])) == []
    assert unheld_blocks([]) == []


def test_futures_are_put_in_block_order():
    futures = [SimpleNamespace(key=key) for key in ("b", "c", "a")]
    assert [f.key for f in in_key_order(futures, iter(["a", "b", "c"]))] == ["a", "b", "c"]
    with pytest.raises(KeyError):
        in_key_order(futures, ["d"])  # a block with no future is an error, not skipped


class _Merged:
    """A fake partial state: the chunks it summed, in order."""

    def __init__(self, chunks):
        self.chunks = list(chunks)

    def merge(self, other):
        return _Merged(self.chunks + other.chunks)


def _kernel(chunk, tag):
    return _Merged([(tag, *chunk)])


def test_a_task_gets_its_blocks_column_by_column_as_sum_blocks_reads_them():
    X, y, w = ["x0", "x1", "x2", "x3"], ["y0", "y1", "y2", "y3"], ["w0", "w1", "w2", "w3"]
    assert task_blocks([X, y], [1, 3]) == ["x1", "x3", "y1", "y3"]
    assert task_blocks([X, y, w], [2]) == ["x2", "y2", "w2"]
    assert task_blocks([X, y], []) == []
    # arrays: X and y (no weights), or X, y and weights
    got = sum_blocks(_kernel, ("t",), "arrays", 2, *task_blocks([X, y], [0, 2]))
    assert got.chunks == [("t", "x0", "y0", None), ("t", "x2", "y2", None)]
    got = sum_blocks(_kernel, ("t",), "arrays", 2, *task_blocks([X, y, w], [1, 2]))
    assert got.chunks == [("t", "x1", "y1", "w1"), ("t", "x2", "y2", "w2")]
    # chunks: whole chunks, or chunks whose weights are replaced
    chunks = [Chunk(f"x{i}", f"y{i}", f"own{i}") for i in range(4)]
    got = sum_blocks(_kernel, ("t",), "chunks", 2, *task_blocks([chunks], [0, 3]))
    assert got.chunks == [("t", "x0", "y0", "own0"), ("t", "x3", "y3", "own3")]
    got = sum_blocks(_kernel, ("t",), "chunks", 2, *task_blocks([chunks, w], [0, 3]))
    assert got.chunks == [("t", "x0", "y0", "w0"), ("t", "x3", "y3", "w3")]


def test_warm_up_parts_go_one_per_worker_in_turn():
    parts = ("statistics", "passes")
    assert warm_up_placement(parts, [A, B]) == [("statistics", A), ("passes", B)]
    assert warm_up_placement(parts, [A, B, C]) == [("statistics", A), ("passes", B)]
    assert warm_up_placement(parts, [A]) == [("statistics", A), ("passes", A)]
    assert warm_up_placement(parts, []) == []


def test_warm_up_without_workers_submits_nothing_and_refuses_unknown_kinds():
    assert warm_up(None, [], 3, standardize=True, weighted=False, class_weighted=False, hessian=True) == []
    with pytest.raises(TypeError):
        warm_up(None, [], 3, standardize=True, weighted=False, class_weighted=False, hesian=True)


# -- when a pass has stalled -----------------------------------------------------------------


def test_a_pass_with_a_running_worker_makes_progress():
    running = {A: ("running", 2**30), B: ("paused", 2**30)}
    assert stall_verdict(running, None, 100.0, 5.0) == (None, None)
    assert stall_verdict(running, 90.0, 100.0, 5.0) == (None, None)  # progress again: the clock restarts


@pytest.mark.parametrize(
    "workers",
    [None, {}, {A: ("paused", 2**29), B: ("paused", 2**30)}, {A: ("closing_gracefully", None)}],
    ids=["no-scheduler", "no-worker", "all-paused", "none-running"],
)
def test_a_pass_without_progress_fails_once_the_timeout_has_passed(workers):
    since, message = stall_verdict(workers, None, 100.0, 5.0)
    assert (since, message) == (100.0, None)  # stalled from now on, not yet for long
    assert stall_verdict(workers, since, 104.9, 5.0) == (100.0, None)
    assert stall_verdict(workers, since, 105.0, 5.0) == (100.0, stall_message(workers, 5.0))
    assert stall_verdict(workers, 0.0, 5.0, 5.0) == (0.0, stall_message(workers, 5.0))  # 0 is a time too


def test_a_lost_scheduler_is_told_from_one_cancelled_future_or_from_a_group():
    """A detached job waits on many futures: distributed raises the plural
    FuturesCancelledError, with its reasons in groups (the job recorded that
    error's 25 raw lines instead of the ClusterError)."""
    from distributed.client import CancelledFuturesGroup, FutureCancelledError, FuturesCancelledError

    one = FutureCancelledError("k", "scheduler-connection-lost")
    assert cancel_reasons(one) == {"scheduler-connection-lost"}
    many = FuturesCancelledError(
        [
            CancelledFuturesGroup([FutureCancelledError(f"k{j}", "scheduler-connection-lost") for j in range(3)],
                                  "scheduler-connection-lost"),
            CancelledFuturesGroup([FutureCancelledError("x", "pipeline-stalled")], "pipeline-stalled"),
        ]
    )  # fmt: skip
    assert cancel_reasons(many) == {"scheduler-connection-lost", "pipeline-stalled"}
    assert cancel_reasons(ValueError("other")) == set()


def test_the_stall_clock_follows_the_polls():
    paused = {A: ("paused", 2**30)}
    since = None
    verdicts = []
    for now, workers in [(1, paused), (2, paused), (3, {A: ("running", 2**30)}), (4, paused), (6, paused), (7, None)]:
        since, message = stall_verdict(workers, since, now, 3)
        verdicts.append((since, message is not None))
    assert verdicts == [(1, False), (1, False), (None, False), (4, False), (4, False), (4, True)]


def test_a_pass_whose_scheduler_went_away_is_a_cluster_error_that_says_what_to_do():
    """distributed cancels a client's futures when its scheduler is gone:
    the pass fails with a ClusterError naming the scheduler and the way
    back, not distributed's FutureCancelledError (a job reported it as an
    unexpected failure)."""
    from distributed.client import FutureCancelledError

    from pipeline.errors import ClusterError
    from pipeline.reduce import gather

    class Gone:
        scheduler = SimpleNamespace(address="tcp://127.0.0.1:8786")

        def gather(self, futures):
            raise FutureCancelledError("sum_blocks-1", "scheduler-connection-lost")

        def run_on_scheduler(self, function):
            raise OSError("no scheduler")

    lost = r"scheduler tcp://127.0.0.1:8786 was lost during a pass .* `pipeline resume"
    with pytest.raises(ClusterError, match=lost):
        gather(Gone(), [])

    class Closing(Gone):
        """A client whose connection closed as the pass failed: its
        scheduler no longer says where it was (the message said "None")."""

        def gather(self, futures):
            self.scheduler = SimpleNamespace(address=None)
            raise FutureCancelledError("sum_blocks-1", "scheduler-connection-lost")

    with pytest.raises(ClusterError, match=lost):
        gather(Closing(), [])

    class Other(Gone):
        def gather(self, futures):
            raise FutureCancelledError("sum_blocks-1", "user")

    with pytest.raises(FutureCancelledError):  # (another reason: raised as it is)
        gather(Other(), [])


def _die(value):
    import os

    os._exit(1)


@pytest.mark.cluster
def test_a_task_whose_workers_keep_dying_is_a_cluster_error_that_says_what_to_do():
    """distributed gives up on a task that every worker running it died in
    (``KilledWorker``, after ``allowed-failures`` deaths: most often a worker
    out of memory); the pass fails with a ClusterError, not a traceback."""
    import dask
    from distributed import Client, LocalCluster

    from pipeline.reduce import gather, killed_error

    assert killed_error(ValueError("other")) is None
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster:
            with Client(cluster) as client:
                future = client.submit(_die, 1, key="pipeline-test-dies", pure=False)
                with pytest.raises(ClusterError) as raised:
                    gather(client, [future], 30)
    message = str(raised.value)
    assert "'pipeline-test-dies' was running on 1 worker that died (the last: tcp://127.0.0.1:" in message
    assert "--cache disk or none" in message and "pipeline resume" in message


def test_stall_messages_name_the_workers_and_their_limits():
    paused = stall_message({B: ("paused", 2**30), A: ("paused", 0)}, 3)  # 0: no limit
    assert paused.startswith(f"every worker ({A}, {B}) has been paused for 3 s")
    assert "memory limit none, 1024 MiB" in paused


# -- which workers are probed, and when they disagree ---------------------------------------------


def _fingerprint(digest: str) -> dict:
    return {
        "digest": digest,
        "numpy": "2.0",
        "pyarrow": "17",
        "numba": "0.60",
        "python": "3.11",
        "pipeline": "0.2.0",
        "cpu_dispatch": [],
    }


def test_only_workers_not_seen_yet_are_probed():
    assert unseen_workers({B: 1, A: 2, C: 1}, {A: {}}) == [B, C]
    assert unseen_workers([C, A], []) == [A, C]
    assert unseen_workers([A], [A]) == []


def test_fingerprints_that_disagree_name_each_group():
    assert fingerprint_conflict({}) is None
    assert fingerprint_conflict({A: _fingerprint("d1"), B: _fingerprint("d1")}) is None
    message = fingerprint_conflict({A: _fingerprint("d1"), C: _fingerprint("d2"), B: _fingerprint("d1")})
    assert f"found {A}, {B}: fingerprint d1 (numpy 2.0, pyarrow 17" in message
    assert f"; {C}: fingerprint d2 (" in message and "pipeline 0.2.0" in message


class _FakeClient:
    """The facts a WorkerCheck gathers: the workers, and their fingerprints."""

    def __init__(self, fingerprints: dict) -> None:
        self.answers = fingerprints
        self.probed: list[list[str]] = []

    def nthreads(self, callback_timeout) -> dict:
        assert callback_timeout > 0  # (each request to the scheduler is bounded)
        return {address: 1 for address in self.answers}

    def run(self, function, workers, on_error, callback_timeout):
        assert callback_timeout > 0
        self.probed.append(list(workers))
        return {address: self.answers[address] for address in workers}


def test_worker_check_probes_each_worker_once_and_raises_on_a_conflict():
    client = _FakeClient({A: _fingerprint("d1"), B: OSError("lost while probed")})
    check = WorkerCheck()
    check.check(client)
    check.check(client, {A: 2})
    assert client.probed == [[A, B]] and check.reference == _fingerprint("d1")
    client.answers.update({B: _fingerprint("d1"), C: _fingerprint("d2")})
    with pytest.raises(ClusterError, match="workers compute different floating-point results"):
        check.check(client)
    assert client.probed[-1] == [B, C]  # B failed to answer before: probed again


# -- streaming units ---------------------------------------------------------------------------


def test_units_are_small_enough_for_two_per_thread():
    assert unit_size(1000, 10_000, 2) == 1000  # already small enough
    assert unit_size(1000, 1000, 2) == 250
    assert unit_size(1000, 1000, 0) == 500  # no threads known: as for one
    assert unit_size(1000, 3, 8) == 1  # never empty


def test_units_are_spread_in_contiguous_runs_one_task_per_thread():
    units = ["u0", "u1", "u2", "u3", "u4", "u5"]
    sizes = [10] * 6
    assert spread(sizes, [A, B]) == [A, A, A, B, B, B]
    assert plan_unit_tasks(units, sizes, {B: 1, A: 2}) == [
        (A, ("u0",)),
        (A, ("u1", "u2")),
        (B, ("u3", "u4", "u5")),
    ]
    # more threads than units: one unit each
    assert plan_unit_tasks(units[:2], sizes[:2], {A: 4}) == [(A, ("u0",)), (A, ("u1",))]
    # no workers: one task per unit, no placement
    assert plan_unit_tasks(units[:3], sizes[:3], {}) == [(None, ("u0",)), (None, ("u1",)), (None, ("u2",))]
    assert plan_unit_tasks([], [], {A: 1}) == []


def test_units_are_planned_again_only_when_the_workers_changed():
    assert not needs_replan(True, {A: 1, B: 1}, [A, B])
    assert not needs_replan(True, {B: 3, A: 1}, [A, B])  # the same workers (thread counts are read per pass)
    assert needs_replan(True, {A: 1}, [A, B])  # one left
    assert needs_replan(True, {A: 1, B: 1, C: 1}, [A, B])  # one joined
    assert not needs_replan(True, {}, [A, B])  # none there: keep the plan until some come back
    assert not needs_replan(False, {A: 1, C: 1}, [])  # not placed: one task per unit, wherever


# -- cluster settings ------------------------------------------------------------------------


def test_total_memory_is_known_only_when_every_worker_has_a_limit():
    assert memory_total({B: {"memory_limit": 2**30}, A: {"memory_limit": 2**29}}) == ([A, B], 3 * 2**29)
    assert memory_total({A: {"memory_limit": 2**30}, B: {"memory_limit": 0}}) == ([A, B], None)
    assert memory_total({A: {"memory_limit": 2**30}, B: {}}) == ([A, B], None)
    assert memory_total({}) == ([], None)


def test_embedded_cluster_options():
    options = local_cluster_options(ClusterSpec(n_workers=3, threads_per_worker=2))
    assert options["n_workers"] == 3 and options["threads_per_worker"] == 2
    assert options["processes"] is True and options["host"] == "127.0.0.1" and options["dashboard_address"] is None
    assert "memory_limit" not in options  # Dask's default
    # the scheduler's HTTP routes on a free loopback port, not on 8787
    assert options["scheduler_kwargs"] == {"dashboard_address": "127.0.0.1:0"}
    assert local_cluster_options(ClusterSpec(memory_limit="1GiB"))["memory_limit"] == "1GiB"
    # the pipeline's preload (its workers leave Ctrl-C to the command) after the ones configured for Dask's
    assert options["preload"] == ["pipeline.cluster"]
    import dask

    assert options["preload_argv"] == [[]]
    # read as distributed reads them: one name or a list; one argv for every preload, one per preload, or none
    for preload, argv, expected in [
        (["mine"], None, [[], []]),
        ("mine", None, [[], []]),
        (["mine", "other"], ["--x", "7"], [["--x", "7"], ["--x", "7"], []]),
        (["mine"], [["--x", "7"]], [["--x", "7"], []]),
    ]:
        settings = {"distributed.worker.preload": preload, "distributed.worker.preload-argv": argv}
        with dask.config.set(settings):
            options = local_cluster_options(ClusterSpec())
        names = [preload] if isinstance(preload, str) else preload
        assert options["preload"] == [*names, "pipeline.cluster"] and options["preload_argv"] == expected
    with pytest.raises(ConfigError, match="n_workers must be an integer >= 1; found 0"):
        ClusterSpec(n_workers=0)  # refused where the value is set, before any cluster


def test_the_default_embedded_cluster_has_a_worker_per_core_within_memory():
    """Policy: one single-threaded worker per usable core, none with less than
    MIN_WORKER_MEMORY, at least one; a count that is given is kept."""
    assert default_worker_count(16, 64 * MIN_WORKER_MEMORY) == 16
    assert default_worker_count(16, 6 * MIN_WORKER_MEMORY + 1) == 6  # memory-bound
    assert default_worker_count(16, MIN_WORKER_MEMORY // 2) == 1
    assert default_worker_count(2, None) == 2  # memory unknown: cores decide
    assert default_worker_count(0, None) == 1
    assert default_worker_count(16, 64 * MIN_WORKER_MEMORY, threads_per_worker=4) == 4  # 16 threads in all
    assert default_worker_count(16, 32 * MIN_WORKER_MEMORY, worker_memory=8 * MIN_WORKER_MEMORY) == 4  # the given limit
    assert default_worker_count(3, None, threads_per_worker=4) == 1
    from dask.system import CPU_COUNT
    from distributed.system import MEMORY_LIMIT

    machine = default_worker_count(CPU_COUNT, MEMORY_LIMIT)
    assert ClusterSpec().n_workers is None and embedded_worker_count(ClusterSpec()) == machine
    assert local_cluster_options(ClusterSpec())["n_workers"] == machine
    assert embedded_worker_count(ClusterSpec(n_workers=5)) == 5
    for taken in ("auto", "AUTO", 0, "0", 0.5, "0.5", "2GiB", 4e9):  # Dask's forms; 0: no limit
        assert ClusterSpec(memory_limit=taken).memory_limit == taken
    for small in ("100MiB", "300MiB", 1e-6):  # (the kernels alone take 230 MiB: a worker below restarts in a loop)
        with pytest.raises(ConfigError, match="memory_limit must be a byte size of at least 512MiB"):
            ClusterSpec(memory_limit=small)  # too small for a worker: refused before any starts
    spec = ClusterSpec(threads_per_worker=2, memory_limit="3GiB")
    assert embedded_worker_count(spec) == default_worker_count(CPU_COUNT, MEMORY_LIMIT, 2, 3 * 2**30)


# -- on a real cluster -----------------------------------------------------------------------


@pytest.mark.cluster
def test_two_embedded_clusters_at_once_listen_on_loopback_without_a_port_warning():
    """Two ``pipeline train`` runs on one host: neither one's scheduler takes
    a fixed port (the second used to warn "Port 8787 is already in use")."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a port warning fails the test
        spec = ClusterSpec(n_workers=1)
        with connect(spec) as first, connect(spec) as second:
            for client in (first, second):
                info = client.scheduler_info()
                assert info["address"].startswith("tcp://127.0.0.1:")
                http = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.http_server.port)
                assert http != 8787
                sockets = client.run_on_scheduler(
                    lambda dask_scheduler: [s.getsockname()[0] for s in dask_scheduler.http_server._sockets.values()]
                )
                assert set(sockets) == {"127.0.0.1"}


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
    with without_work_stealing(), connect(ClusterSpec(n_workers=2)) as client:
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
    import dask.array as da
    import distributed

    _write(tmp_path / "data", 2000, 4, 300)
    dataset = open_dataset(str(tmp_path / "data"), "y")
    chunks = dataset.read_chunks()
    reference = InProcessEvaluator(chunks, dataset.n_features)
    coef = np.array([0.3, -0.2, 0.1, 0.05, -0.4])
    spec = KernelSpec(center=np.full(4, 0.1), scale=np.full(4, 1.3), class_weight=(1.0, 2.0))
    rows = tuple(len(chunk.y) for chunk in chunks)
    weights = np.random.default_rng(1).uniform(0.5, 2.0, sum(rows))
    with without_work_stealing(), connect(ClusterSpec(n_workers=2)) as client:
        workers = sorted(client.scheduler_info()["workers"])
        # the kernels' two halves compile on different workers, ahead of the reads
        compiling = warm_up(client, workers, 4, standardize=True, weighted=False, class_weighted=True, hessian=True)
        evaluator = DaskEvaluator.from_dataset(client, dataset, workers)
        assert client.gather(compiling) == [None, None]
        assert sorted(w for held in client.who_has(compiling).values() for w in held) == workers
        # the estimator's layout: persisted Dask arrays, one block per chunk, with sample weights
        X = da.from_array(np.concatenate([chunk.X for chunk in chunks]), chunks=(rows, -1))
        y = da.from_array(np.concatenate([chunk.y for chunk in chunks]), chunks=(rows,))
        arrays = DaskEvaluator(client, Chunk(X, y, da.from_array(weights, chunks=(rows,))))
        assert evaluator.stats() == reference.stats()
        assert evaluator.partials(coef, spec) == reference.partials(coef, spec)
        assert evaluator.partials(coef, spec.with_hessian(True)) == reference.partials(coef, spec.with_hessian(True))
        with distributed.get_task_stream(client) as stream:
            got = arrays.partials(coef, spec)
        holders = client.who_has(arrays._futures()[0]).values()
        ran = [t["worker"] for t in stream.data if "sum_blocks" in str(t["key"])]
        assert sorted(ran) == sorted(set().union(*holders))  # one task per worker that holds blocks
    weighted = [Chunk(chunk.X, chunk.y, part) for chunk, part in zip(chunks, np.split(weights, np.cumsum(rows)[:-1]))]
    assert got == InProcessEvaluator(weighted, dataset.n_features).partials(coef, spec)
