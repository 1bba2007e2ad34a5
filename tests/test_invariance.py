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
from job_support import without_work_stealing

from pipeline import (
    ClusterSpec,
    Penalty,
    SolverOptions,
    TrainConfig,
    train,
    train_arrays,
)
from pipeline.synth import generate_rows

pytestmark = pytest.mark.filterwarnings("ignore::pipeline.errors.ConvergenceWarning")

N_ROWS, N_FEATURES, SEED = 300, 5, 11
OPTIONS = SolverOptions(max_iter=20, tol=1e-9, ftol=0.0)
#: Every solver, with the features that touch the path: standardization,
#: L2 / L1 penalties, sample weights and class weights.
FITS = {
    "lbfgs": dict(solver="lbfgs", penalty=Penalty(l2=1e-3), class_weight="balanced"),
    "owlqn": dict(solver="lbfgs", penalty=Penalty(l1=2e-3, l2=1e-3), weight="w"),
    "newton": dict(solver="newton", penalty=Penalty(l2=1e-2), weight="w"),
    "gd": dict(solver="gd", standardize=False),
    "prox": dict(solver="gd", penalty=Penalty(l1=5e-3), class_weight=(1.0, 2.5)),
}


@pytest.fixture(scope="module")
def dataset():
    X, y = generate_rows(SEED, N_FEATURES, 0, N_ROWS)
    # a wide spread of scales and offsets so that rounding would show any change of order
    X = X * np.array([1e-3, 1.0, 7.0, 1e2, 0.5]) + np.array([0.0, 3.0, -1.0, 50.0, 0.0])
    weights = np.random.default_rng(SEED).uniform(0.1, 3.0, N_ROWS).round(3)
    return X, y.astype(np.float64), weights


def fit_options(name: str) -> dict:
    options = dict(FITS[name])
    options.pop("weight", None)
    return dict(options, options=OPTIONS)


def reference_model(dataset, name: str):
    X, y, weights = dataset
    chunk = (X, y, weights) if FITS[name].get("weight") else (X, y)
    return train_arrays([chunk], [f"f{j}" for j in range(N_FEATURES)], **fit_options(name))


@pytest.fixture(scope="module")
def references(dataset):
    return {name: reference_model(dataset, name) for name in FITS}


def config(data: Path, name: str, **where) -> TrainConfig:
    return TrainConfig(
        data=str(data),
        label="y",
        features=tuple(f"f{j}" for j in range(N_FEATURES)),
        weight=FITS[name].get("weight"),
        **fit_options(name),
        **where,
    )


def write_layout(directory: Path, dataset, file_cuts, row_group_sizes) -> None:
    """Write the rows, in order, split into files at ``file_cuts``."""
    X, y, weights = dataset
    directory.mkdir(parents=True, exist_ok=True)
    bounds = [0, *file_cuts, len(y)]
    for index, (start, stop) in enumerate(zip(bounds, bounds[1:])):
        columns = {f"f{j}": X[start:stop, j] for j in range(X.shape[1])}
        columns["y"] = y[start:stop].astype(np.int64)
        columns["w"] = weights[start:stop]
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


@pytest.mark.parametrize("name", FITS)
def test_reference_did_real_work(references, name):
    reference = references[name]
    assert reference.n_iter >= 3
    assert reference.loss_history[-1] < reference.loss_history[0]
    if FITS[name].get("penalty", Penalty()).l1:
        assert 0.0 in reference.coef  # the L1 path reached an exact zero


@pytest.mark.parametrize("name", FITS)
def test_numpy_chunks_in_any_split_and_layout(dataset, references, name):
    X, y, weights = dataset
    rng = np.random.default_rng(0)
    for _ in range(2):
        cuts = np.sort(rng.choice(np.arange(1, N_ROWS), size=9, replace=False))
        chunks = []
        for i, (Xp, yp, wp) in enumerate(zip(*(np.split(a, cuts) for a in (X, y, weights)))):
            Xp = np.asfortranarray(Xp) if i % 2 else np.ascontiguousarray(Xp)
            chunks.append((Xp, yp, wp) if FITS[name].get("weight") else (Xp, yp))
        model = train_arrays(chunks, references[name].features, **fit_options(name))
        assert_identical(model, references[name])


layouts = st.tuples(
    st.lists(st.integers(0, N_ROWS), min_size=0, max_size=6).map(sorted),  # file cuts (may repeat: empty files)
    st.lists(st.sampled_from([1, 2, 7, 50, 133, 256, N_ROWS]), min_size=1, max_size=4),
)


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=layouts, name=st.sampled_from(sorted(FITS)))
def test_parquet_repartitioning_in_process(dataset, references, layout, name):
    file_cuts, row_group_sizes = layout
    root = Path(tempfile.mkdtemp(prefix="layout-"))
    try:
        write_layout(root / "data", dataset, file_cuts, row_group_sizes)
        model = train(config(root / "data", name, cluster=None))
    finally:
        shutil.rmtree(root)
    assert_identical(model, references[name])


@pytest.mark.cluster
@pytest.mark.parametrize(
    "n_workers, cache, file_cuts, row_group_sizes",
    [
        (1, "memory", [], [N_ROWS]),
        (2, "memory", [0, 1, 150, 150, 299], [1, 37, 256]),
        (2, "none", [100, 200], [64]),
    ],
)
def test_local_cluster_equals_in_process(tmp_path, dataset, references, n_workers, cache, file_cuts, row_group_sizes):
    """Every solver on one cluster: 1 worker, 2 workers, cached or re-reading,
    through the evaluators ``pipeline train`` uses for that cache mode."""
    import distributed

    from pipeline.cluster import connect
    from pipeline.data import open_dataset, spread
    from pipeline.fitting import build_model, fit
    from pipeline.reduce import DaskEvaluator, StreamingEvaluator

    write_layout(tmp_path / "data", dataset, file_cuts, row_group_sizes)
    with without_work_stealing(), connect(ClusterSpec(n_workers=n_workers)) as client:
        workers = sorted(client.scheduler_info()["workers"])
        for name in FITS:
            dataset_ = open_dataset(
                str(tmp_path / "data"), "y", [f"f{j}" for j in range(N_FEATURES)], FITS[name].get("weight")
            )
            if cache == "memory":
                evaluator = DaskEvaluator.from_dataset(client, dataset_, workers)
                evaluator.load()
                # chunks spread over the workers as planned, each on one worker only
                chunks = evaluator._futures()[0]
                holders = client.who_has(chunks)
                assert [sorted(holders[f.key]) for f in chunks] == [[w] for w in spread(evaluator.rows, workers)]
                task, planned = "sum_blocks", workers
            else:
                evaluator = StreamingEvaluator(client, dataset_, None, workers)
                task, planned = "units_sums", [worker for worker, _ in evaluator.tasks]
                assert sorted(set(planned)) == workers  # units spread over every worker
            # one task per worker (1 thread each) per pass, each where its blocks are
            with distributed.get_task_stream(client) as stream:
                evaluator.partials(np.zeros(N_FEATURES + 1))
            ran = [t["worker"] for t in stream.data if task in str(t["key"])]
            assert sorted(ran) == sorted(planned) == workers
            result = fit(evaluator, **fit_options(name))
            model = build_model(
                result,
                dataset_.features,
                dataset_.n_samples,
                solver=FITS[name]["solver"],
                penalty=FITS[name].get("penalty", Penalty()),
                label="y",
                weight=None,
                dataset="",
            )
            assert_identical(model, references[name])


@pytest.mark.cluster
def test_train_on_local_cluster_writes_the_reference_model(tmp_path, dataset, references):
    write_layout(tmp_path / "data", dataset, [77], [50])
    model = train(config(tmp_path / "data", "owlqn", cluster=ClusterSpec(n_workers=2), out=str(tmp_path / "out")))
    assert_identical(model, references["owlqn"])
