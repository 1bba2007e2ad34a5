"""Fuzzing the door: random small Parquet datasets (random schemas, types,
nulls, values, files and row groups), trained in-process and on a cluster.

Either both succeed with the same bits, or both fail with the same
:class:`PipelineError` subclass; never any other exception, never a hang.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import ClusterSpec, SolverOptions, TrainConfig, train
from pipeline.errors import PipelineError

pytestmark = [pytest.mark.cluster, pytest.mark.filterwarnings("ignore")]

#: Seconds one training may take before the test calls it a hang.
HANG_S = 120


@pytest.fixture(scope="module")
def cluster_address():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


NUMERIC = ("float64", "float32", "int8", "int64", "uint16", "bool")
#: What can be wrong with a dataset (None: nothing).
DEFECTS = (
    None,
    None,
    None,
    None,
    "nulls",
    "nan",
    "inf",
    "odd feature type",
    "wild label",
    "string label",
    "negative weight",
    "schema drift",
    "no rows",
)


def _values(kind: str, n: int, rng: np.random.Generator, binary: bool = False) -> pa.Array:
    """A clean column of ``kind`` (0/1 values with ``binary``)."""
    if kind in ("float64", "float32"):
        data = rng.integers(0, 2, n).astype(float) if binary else rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4)
        return pa.array(data.astype(kind))
    if kind in ("int8", "int64", "uint16"):
        return pa.array(rng.integers(0, 2 if binary else 5, n), type=getattr(pa, kind)())
    if kind == "bool":
        return pa.array(rng.random(n) < 0.5)
    if kind == "string":
        return pa.array([str(v) for v in rng.integers(0, 2, n)])
    if kind == "list":
        return pa.array([[float(v)] for v in rng.standard_normal(n)])
    if kind == "struct":
        return pa.array([{"a": float(v)} for v in rng.standard_normal(n)])
    if kind == "timestamp":
        return pa.array(rng.integers(0, 10**9, n), type=pa.timestamp("s"))
    return pa.nulls(n)


def _spoil(array: pa.Array, rng: np.random.Generator, value) -> pa.Array:
    """``array`` with a few entries replaced by ``value`` (None: null)."""
    if len(array) == 0:
        return array
    values = array.to_pylist()
    for index in rng.choice(len(values), size=max(1, len(values) // 10), replace=False):
        values[index] = value
    return pa.array(values, type=array.type)


@st.composite
def datasets(draw):
    """(files as (table, row group size) pairs, features or None, weight or None)."""
    seed = draw(st.integers(0, 2**32 - 1))
    defect = draw(st.sampled_from(DEFECTS))
    n_features = draw(st.integers(1, 4))
    kinds = [draw(st.sampled_from(NUMERIC)) for _ in range(n_features)]
    if defect == "odd feature type":
        kinds[draw(st.integers(0, n_features - 1))] = draw(
            st.sampled_from(("string", "list", "struct", "null", "timestamp"))
        )
    label_kind = draw(st.sampled_from(("int8", "int64", "float64", "bool", "float32", "uint16")))
    weight_kind = draw(st.sampled_from((None, None, "float64", "int64")))
    if defect == "negative weight" and weight_kind is None:
        weight_kind = "float64"
    n_files = draw(st.integers(1, 3))
    spoiled_file = draw(st.integers(0, n_files - 1))
    files = []
    for index in range(n_files):
        rows = 0 if defect == "no rows" else draw(st.integers(1 if index == 0 else 0, 60))
        rng = np.random.default_rng([seed, index])
        columns = {f"x{j}": _values(kind, rows, rng) for j, kind in enumerate(kinds)}
        columns["y"] = _values("string" if defect == "string label" else label_kind, rows, rng, binary=True)
        if weight_kind:
            columns["w"] = _values(weight_kind, rows, rng)
            if weight_kind == "float64":
                columns["w"] = pa.array(np.abs(columns["w"].to_numpy(zero_copy_only=False)) + 0.1)
        if index == spoiled_file:
            target = draw(st.sampled_from(sorted(columns)))
            if defect == "nulls":
                columns[target] = _spoil(columns[target], rng, None)
            elif defect in ("nan", "inf") and pa.types.is_floating(columns[target].type):
                columns[target] = _spoil(columns[target], rng, float(defect))
            elif defect == "wild label":
                columns["y"] = _spoil(columns["y"], rng, draw(st.sampled_from((2, 3))))
            elif defect == "negative weight" and pa.types.is_floating(columns["w"].type):
                columns["w"] = _spoil(columns["w"], rng, -1.0)
        table = pa.table(columns)
        if defect == "schema drift" and index == spoiled_file and index > 0:
            victim = draw(st.sampled_from(sorted(columns)))
            table = (
                table.drop_columns([victim])
                if draw(st.booleans())
                else table.set_column(table.schema.get_field_index(victim), victim, _values("string", rows, rng))
            )
        files.append((table, draw(st.integers(1, 25))))
    names = [f"x{j}" for j in range(n_features)]
    features = draw(st.sampled_from((None, tuple(names), tuple(names[: max(1, n_features // 2)]))))
    return files, features, "w" if weight_kind else None


def _outcome(config: TrainConfig):
    """("ok", coef bytes, intercept, digest) or ("error", class name); anything else fails the test."""
    found = []

    def run():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = train(config)
            found.append(("ok", np.array(model.coef).tobytes(), model.intercept, model.digest))
        except PipelineError as exc:
            found.append(("error", type(exc).__name__))
        except BaseException as exc:  # noqa: BLE001 - reported as the failure it is
            found.append(("unexpected", f"{type(exc).__name__}: {exc}"))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_S)
    assert not thread.is_alive(), f"training hung for {HANG_S} s"
    assert found[0][0] != "unexpected", found[0][1]
    return found[0]


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(case=datasets(), cache=st.sampled_from(("memory", "disk", "none")))
def test_random_parquet_trains_identically_or_fails_cleanly(tmp_path_factory, cluster_address, case, cache):
    files, features, weight = case
    root = tmp_path_factory.mktemp("fuzz")
    for index, (table, row_group_size) in enumerate(files):
        pq.write_table(table, root / f"part-{index}.parquet", row_group_size=row_group_size)
    common = dict(
        data=str(root), label="y", features=features, weight=weight, options=SolverOptions(max_iter=4), cache=cache
    )
    in_process = _outcome(TrainConfig(**common, cluster=None))
    on_cluster = _outcome(TrainConfig(**common, cluster=ClusterSpec(scheduler=cluster_address, stall_timeout_s=30)))
    assert in_process == on_cluster
