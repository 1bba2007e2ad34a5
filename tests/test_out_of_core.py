"""Training on data 3x larger than the cluster's memory, with bounded worker memory.

One dataset of ~3.5 GB decoded float64 against 2 worker processes limited to
550 MiB each (1.1 GiB in all; a worker's fixed overhead is ~230 MiB with numba
loaded and the kernel compiled).  ``--cache none`` and ``--cache disk`` must
finish with each worker's peak RSS (read from the worker processes) below
the point where distributed pauses a worker (80% of its limit), with no
worker restarted, and give the digest of ``--cache memory`` on a cluster big
enough to hold the data.

And categorical columns out of core: 8M rows of 4 numeric and 8 categorical
columns (one hashed into 2**20 buckets: a 24 MiB gradient state) decode to
793 MiB against one worker limited to 700 MiB; ``--cache none`` stays below
its pause point and gives the digest of the in-process run in memory.

And a 10-class label out of core: 11M rows of 8 float64 features decode to
755 MiB against one worker limited to 600 MiB; ``--cache none`` (the
classes pass, the statistics pass and the multinomial loss passes) stays
below its pause point and gives the in-process digest.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

from pipeline import ClusterSpec, SolverOptions, TrainConfig, open_dataset, train

pytestmark = [pytest.mark.cluster, pytest.mark.filterwarnings("ignore::pipeline.errors.ConvergenceWarning")]

MiB = 2**20
WORKER_LIMIT = 550 * MiB
N_WORKERS = 2
ROWS, FEATURES, ROW_GROUP = 13_600_000, 31, 32_768  # (31 + label) x 8 B x 13.6M = 3.48 GB
OPTIONS = SolverOptions(max_iter=1, ftol=0.0)  # 2 or more passes (no statistics pass below)
PAUSE_FRACTION = 0.8  # distributed.worker.memory.pause


def peak_rss(pid: int) -> int:
    """A process's peak resident set size (VmHWM), read from outside it."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def train_within(limit: int, n_workers: int, config_for) -> tuple:
    """``train(config_for(scheduler_address))`` on a local cluster of
    ``n_workers`` worker processes limited to ``limit`` bytes each: the model
    and each worker's peak RSS; no worker may have been killed or restarted."""
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            memory_limit=limit,
        ) as cluster,
        Client(cluster) as client,
    ):
        workers_before = set(client.scheduler_info()["workers"])
        pids = client.run(os.getpid)
        model = train(config_for(cluster.scheduler_address))
        peaks = {address: peak_rss(pid) for address, pid in pids.items()}
        assert set(client.scheduler_info()["workers"]) == workers_before  # none killed or restarted
    return model, peaks


@pytest.fixture(scope="module")
def big_dataset(tmp_path_factory):
    """Row groups of 32,768 rows cycled from a few seeded random blocks (fast to
    write; uncompressed so every pass really decodes the full size)."""
    root = tmp_path_factory.mktemp("larger-than-memory") / "data"
    root.mkdir()
    rng = np.random.default_rng(5)
    blocks = []
    for _ in range(7):
        X = rng.standard_normal((ROW_GROUP, FEATURES))
        y = (rng.random(ROW_GROUP) < 1 / (1 + np.exp(-X[:, 0] + X[:, 1]))).astype(np.int8)
        blocks.append(pa.table({**{f"f{j}": X[:, j] for j in range(FEATURES)}, "y": y}))
    n_groups = -(-ROWS // ROW_GROUP)
    per_file = -(-n_groups // 4)
    for index in range(4):
        # plain encoding: writing random floats dictionary-encoded first is 5x slower
        with pq.ParquetWriter(
            root / f"part-{index}.parquet", blocks[0].schema, compression="none", use_dictionary=False
        ) as writer:
            for group in range(index * per_file, min((index + 1) * per_file, n_groups)):
                rows = min(ROW_GROUP, ROWS - group * ROW_GROUP)
                writer.write_table(blocks[group % len(blocks)].slice(0, rows))
    dataset = open_dataset(str(root), "y")
    assert dataset.n_samples == ROWS
    assert dataset.decoded_bytes >= 3 * N_WORKERS * WORKER_LIMIT
    return str(root)


@pytest.fixture(scope="module")
def reference_digest(big_dataset):
    """``--cache memory`` on a cluster big enough to hold the data."""
    config = TrainConfig(
        data=big_dataset,
        label="y",
        options=OPTIONS,
        cache="memory",
        standardize=False,
        cluster=ClusterSpec(n_workers=N_WORKERS, memory_limit="6GiB"),
    )  # 4 GiB spills: 2x slower
    model = train(config)
    assert model.cache == "memory"
    return model.digest


@pytest.mark.parametrize("cache", ["none", "auto"])  # auto picks disk here
def test_larger_than_memory_with_bounded_worker_memory(big_dataset, reference_digest, cache):
    model, peaks = train_within(
        WORKER_LIMIT,
        N_WORKERS,
        lambda scheduler: TrainConfig(
            data=big_dataset,
            label="y",
            options=OPTIONS,
            cache=cache,
            standardize=False,
            cluster=ClusterSpec(scheduler=scheduler),
        ),
    )
    assert model.cache == ("disk" if cache == "auto" else cache)
    assert model.digest == reference_digest
    assert model.n_passes >= 2 and model.n_samples == ROWS
    for address, peak in peaks.items():
        assert peak < PAUSE_FRACTION * WORKER_LIMIT, (address, peak / MiB)
    print(cache, {address: peak // MiB for address, peak in peaks.items()})


# --------------------------------------------------------------------------- categorical columns

CAT_ROWS, CAT_GROUP = 8_000_000, 65_536
#: integer-coded categorical columns and their levels; "user" is hashed into 2**20 buckets
CAT_LEVELS = {"c10": 10, "c30": 30, "c100": 100, "c300": 300, "c1k": 1000, "c3k": 3000, "c10k": 10_000}
CAT_NUMERIC = 4
CAT_LIMIT = 700 * MiB  # (a 2**20-level state is 24 MiB; the worker holds a few at once)


@pytest.fixture(scope="module")
def categorical_dataset(tmp_path_factory):
    """4 float32 and 8 categorical columns (7 integer-coded of 10 to 10,000
    levels, one of 10**9 user ids hashed into 2**20 buckets): 12 float64
    columns decoded, 104 bytes a row, 0.83 GB (793 MiB) in all."""
    root = tmp_path_factory.mktemp("categorical-larger-than-memory") / "data"
    root.mkdir()
    rng = np.random.default_rng(8)
    blocks = []
    for _ in range(5):
        columns = {f"x{j}": rng.standard_normal(CAT_GROUP).astype(np.float32) for j in range(CAT_NUMERIC)}
        columns.update({name: rng.integers(0, k, CAT_GROUP).astype(np.int16) for name, k in CAT_LEVELS.items()})
        columns["user"] = rng.integers(0, 10**9, CAT_GROUP)
        margin = columns["x0"] - columns["x1"] + (columns["c10"] % 3) - 1.0
        columns["y"] = (rng.random(CAT_GROUP) < 1 / (1 + np.exp(-margin))).astype(np.int8)
        blocks.append(pa.table(columns))
    n_groups = -(-CAT_ROWS // CAT_GROUP)
    for index in range(2):
        with pq.ParquetWriter(root / f"part-{index}.parquet", blocks[0].schema, compression="none") as writer:
            for group in range(index * n_groups // 2, (index + 1) * n_groups // 2):
                rows = min(CAT_GROUP, CAT_ROWS - group * CAT_GROUP)
                writer.write_table(blocks[group % len(blocks)].slice(0, rows))
    return str(root)


def categorical_config(data: str, **where) -> TrainConfig:
    return TrainConfig(
        data=data,
        label="y",
        categorical=(*CAT_LEVELS, "user"),
        hash_buckets=2**20,
        hashed=("user",),
        options=SolverOptions(max_iter=1, ftol=0.0),
        **where,
    )


def test_categorical_columns_larger_than_memory_with_bounded_worker_memory(categorical_dataset):
    reference = train(categorical_config(categorical_dataset, cluster=None, cache="memory"))
    assert len(reference.features) == CAT_NUMERIC + sum(CAT_LEVELS.values()) + 2**20 + 1
    model, peaks = train_within(
        CAT_LIMIT,
        1,
        lambda scheduler: categorical_config(
            categorical_dataset, cache="none", cluster=ClusterSpec(scheduler=scheduler)
        ),
    )
    dataset = open_dataset(categorical_dataset, "y", categorical=(*CAT_LEVELS, "user"))
    assert dataset.n_samples * (12 * 8 + 8) > CAT_LIMIT  # the decoded data does not fit the worker
    assert model.digest == reference.digest and model.loss_history == reference.loss_history
    for address, peak in peaks.items():
        assert peak < PAUSE_FRACTION * CAT_LIMIT, (address, peak / MiB)
    print("categorical", {address: peak // MiB for address, peak in peaks.items()})


# --------------------------------------------------------------------------- a multinomial label

MULTI_ROWS, MULTI_GROUP, MULTI_FEATURES, MULTI_CLASSES = 11_000_000, 65_536, 8, 10
MULTI_LIMIT = 600 * MiB


@pytest.fixture(scope="module")
def multinomial_dataset(tmp_path_factory):
    """8 float64 features and a 10-class integer label: 72 bytes a row
    decoded, 792 MB (755 MiB) in all, against one worker of 600 MiB."""
    root = tmp_path_factory.mktemp("multinomial-larger-than-memory") / "data"
    root.mkdir()
    rng = np.random.default_rng(9)
    blocks = []
    weights = rng.standard_normal((MULTI_CLASSES, MULTI_FEATURES))
    for _ in range(5):
        X = rng.standard_normal((MULTI_GROUP, MULTI_FEATURES))
        margin = X @ weights.T
        proba = np.exp(margin - margin.max(axis=1, keepdims=True))
        proba /= proba.sum(axis=1, keepdims=True)
        y = (rng.random(MULTI_GROUP)[:, None] > np.cumsum(proba, axis=1)).sum(axis=1).clip(0, MULTI_CLASSES - 1)
        blocks.append(pa.table({**{f"x{j}": X[:, j] for j in range(MULTI_FEATURES)}, "y": y.astype(np.int8)}))
    n_groups = -(-MULTI_ROWS // MULTI_GROUP)
    for index in range(2):
        with pq.ParquetWriter(
            root / f"part-{index}.parquet", blocks[0].schema, compression="none", use_dictionary=False
        ) as writer:
            for group in range(index * n_groups // 2, (index + 1) * n_groups // 2):
                rows = min(MULTI_GROUP, MULTI_ROWS - group * MULTI_GROUP)
                writer.write_table(blocks[group % len(blocks)].slice(0, rows))
    return str(root)


def test_a_multinomial_label_larger_than_memory_with_bounded_worker_memory(multinomial_dataset):
    def config(**where) -> TrainConfig:
        return TrainConfig(data=multinomial_dataset, label="y", options=SolverOptions(max_iter=1, ftol=0.0), **where)

    reference = train(config(cluster=None, cache="memory"))
    assert reference.family == "multinomial" and reference.classes == list(range(MULTI_CLASSES))
    model, peaks = train_within(
        MULTI_LIMIT, 1, lambda scheduler: config(cache="none", cluster=ClusterSpec(scheduler=scheduler))
    )
    dataset = open_dataset(multinomial_dataset, "y")
    assert dataset.decoded_bytes > MULTI_LIMIT  # the decoded data does not fit the worker
    assert model.digest == reference.digest and model.loss_history == reference.loss_history
    for address, peak in peaks.items():
        assert peak < PAUSE_FRACTION * MULTI_LIMIT, (address, peak / MiB)
    print("multinomial", {address: peak // MiB for address, peak in peaks.items()})
