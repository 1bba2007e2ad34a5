"""Bitwise invariance: any partitioning, any number of workers, in-process or not."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import ClusterSpec, GDOptions, TrainConfig, train, train_arrays
from pipeline.synth import generate_rows

N_ROWS, N_FEATURES, SEED = 300, 5, 11
OPTIONS = GDOptions(max_iter=20, tol=1e-9)


@pytest.fixture(scope="module")
def dataset():
    X, y = generate_rows(SEED, N_FEATURES, 0, N_ROWS)
    # a wide spread of scales so that rounding would show any change of order
    X = X * np.array([1e-3, 1.0, 7.0, 1e2, 0.5])
    return X, y.astype(np.float64)


@pytest.fixture(scope="module")
def reference(dataset):
    X, y = dataset
    return train_arrays([(X, y)], [f"f{j}" for j in range(N_FEATURES)], OPTIONS)


def write_layout(directory: Path, X, y, file_cuts, row_group_sizes) -> None:
    """Write the rows, in order, split into files at ``file_cuts``."""
    directory.mkdir(parents=True, exist_ok=True)
    bounds = [0, *file_cuts, len(y)]
    for index, (start, stop) in enumerate(zip(bounds, bounds[1:])):
        columns = {f"f{j}": X[start:stop, j] for j in range(X.shape[1])}
        columns["y"] = y[start:stop].astype(np.int64)
        table = pa.table(columns)
        size = row_group_sizes[index % len(row_group_sizes)]
        pq.write_table(table, directory / f"part-{index:04d}.parquet", row_group_size=size)


def assert_identical(model, reference) -> None:
    assert np.array(model.coef).tobytes() == np.array(reference.coef).tobytes()
    assert np.float64(model.intercept).tobytes() == np.float64(reference.intercept).tobytes()
    assert model.loss_history == reference.loss_history
    assert np.array(model.gradient).tobytes() == np.array(reference.gradient).tobytes()
    assert model.digest == reference.digest
    assert model.n_passes == reference.n_passes and model.n_samples == reference.n_samples


def test_reference_did_real_work(reference):
    assert reference.n_iter == OPTIONS.max_iter
    assert reference.loss_history[-1] < reference.loss_history[0]


def test_numpy_chunks_in_any_split_and_layout(dataset, reference):
    X, y = dataset
    rng = np.random.default_rng(0)
    for _ in range(3):
        cuts = np.sort(rng.choice(np.arange(1, N_ROWS), size=9, replace=False))
        chunks = [
            (np.asfortranarray(Xp) if i % 2 else Xp, yp)
            for i, (Xp, yp) in enumerate(zip(np.split(X, cuts), np.split(y, cuts)))
        ]
        assert_identical(train_arrays(chunks, reference.features, OPTIONS), reference)


layouts = st.tuples(
    st.lists(st.integers(0, N_ROWS), min_size=0, max_size=6).map(sorted),  # file cuts (may repeat: empty files)
    st.lists(st.sampled_from([1, 2, 7, 50, 133, 256, N_ROWS]), min_size=1, max_size=4),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=layouts)
def test_parquet_repartitioning_in_process(dataset, reference, layout):
    file_cuts, row_group_sizes = layout
    X, y = dataset
    root = Path(tempfile.mkdtemp(prefix="layout-"))
    try:
        write_layout(root / "data", X, y, file_cuts, row_group_sizes)
        model = train(TrainConfig(data=str(root / "data"), label="y", gd=OPTIONS, cluster=None))
    finally:
        shutil.rmtree(root)
    assert_identical(model, reference)


@pytest.mark.cluster
@pytest.mark.parametrize(
    "n_workers, cache, file_cuts, row_group_sizes",
    [
        (1, "memory", [], [N_ROWS]),
        (2, "memory", [0, 1, 150, 150, 299], [1, 37, 256]),
        (2, "none", [100, 200], [64]),
    ],
)
def test_local_cluster_equals_in_process(tmp_path, dataset, reference, n_workers, cache,
                                         file_cuts, row_group_sizes):
    X, y = dataset
    write_layout(tmp_path / "data", X, y, file_cuts, row_group_sizes)
    config = TrainConfig(
        data=str(tmp_path / "data"), label="y", gd=OPTIONS, cache=cache,
        cluster=ClusterSpec(n_workers=n_workers), out=str(tmp_path / "out"),
    )
    assert_identical(train(config), reference)
