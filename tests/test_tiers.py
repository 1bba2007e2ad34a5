"""Compiled or reference passes (pipeline.tiers): the decisions, a process's
state and markers, the kernels' entry points, and whole fits that change
tiers without changing a bit.

The rest of the suite runs every pass compiled (``PIPELINE_KERNELS=compiled``,
set in conftest); these tests set ``auto`` where the choice is under test.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import fair_frame, write_frame

from pipeline import fused, tiers
from pipeline.cluster import ClusterSpec
from pipeline.config import TrainConfig
from pipeline.errors import ConfigError
from pipeline.kernel import KernelSpec, chunk_partials, chunk_stats, margins
from pipeline.model import Model
from pipeline.objective import Penalty
from pipeline.tiers import (
    COMPILE_MIN_VALUES,
    FAMILIES,
    MODE_VARIABLE,
    Tiers,
    kernels_mode,
    use_compiled,
    worth_compiling,
)
from pipeline.train import train

requires_numba = pytest.mark.skipif(not fused.AVAILABLE, reason="numba not installed")


@pytest.fixture
def auto(monkeypatch, tmp_path):
    """``auto`` tiers in this process, with a fresh state and markers in tmp_path."""
    monkeypatch.setenv(MODE_VARIABLE, "auto")
    state = Tiers("test identity", str(tmp_path / "markers"))
    (tmp_path / "markers").mkdir()
    monkeypatch.setattr(fused, "_TIERS", state)
    return state


def test_large_data_compile_ahead_small_data_do_not():
    assert worth_compiling(COMPILE_MIN_VALUES) and worth_compiling(8_000_000 * 32)
    assert not worth_compiling(COMPILE_MIN_VALUES - 1)
    assert not worth_compiling(100_000 * 8)  # the demo's data


def test_a_variant_runs_compiled_when_ready_or_once_its_reference_cost_what_compiling_would():
    assert not use_compiled(ready=False, cached=False, reference_seconds=0.0)
    assert use_compiled(ready=True, cached=False, reference_seconds=0.0)
    # rent or buy: the reference until it has cost what compiling (or loading) would
    assert not use_compiled(ready=False, cached=False, reference_seconds=1.9, budget_s=2.0)
    assert use_compiled(ready=False, cached=False, reference_seconds=2.0, budget_s=2.0)
    assert not use_compiled(ready=False, cached=True, reference_seconds=0.29, cached_budget_s=0.3)
    assert use_compiled(ready=False, cached=True, reference_seconds=0.3, cached_budget_s=0.3)
    assert use_compiled(ready=False, cached=False, reference_seconds=0.0, mode="compiled")
    assert not use_compiled(ready=True, cached=True, reference_seconds=99.0, mode="reference")


def test_the_mode_comes_from_the_environment_and_a_bad_one_is_named():
    assert kernels_mode({}) == "auto"
    assert kernels_mode({MODE_VARIABLE: ""}) == "auto"
    assert kernels_mode({MODE_VARIABLE: " Compiled "}) == "compiled"
    assert kernels_mode({MODE_VARIABLE: "reference"}) == "reference"
    with pytest.raises(ConfigError, match=r"PIPELINE_KERNELS must be auto or compiled or reference; found 'fast'"):
        kernels_mode({MODE_VARIABLE: "fast"})


def test_tiers_rent_the_reference_then_buy_the_compiled_variant_and_mark_it(monkeypatch, tmp_path):
    monkeypatch.setenv(MODE_VARIABLE, "auto")
    state = Tiers("identity A", tmp_path)
    assert [state.compiled(f"{family}:<f8:F:-:-") for family in FAMILIES] == [False] * len(FAMILIES)
    assert state.compiled("loss:<f8:F:-:-", COMPILE_MIN_VALUES)  # a large call runs compiled
    assert state.reference("loss", lambda: 42) == 42
    assert 0.0 < state.spent["loss"] < tiers.REFERENCE_BUDGET_S and not state.compiled("loss")
    monkeypatch.setattr(tiers, "REFERENCE_BUDGET_S", state.spent["loss"])
    assert state.compiled("loss") and not state.compiled("stats")  # per variant
    state.ran_compiled("loss")
    assert state.marker("loss").exists() and not state.marker("stats").exists()
    # a later process of the same identity pays the (smaller) cost of loading
    # before it loads; another identity pays the cost of compiling
    monkeypatch.setattr(tiers, "REFERENCE_BUDGET_S", 2.0)
    later, other = Tiers("identity A", tmp_path), Tiers("identity B", tmp_path)
    later.reference("loss", lambda: time.sleep(0.05))
    other.reference("loss", lambda: time.sleep(0.05))
    monkeypatch.setattr(tiers, "CACHED_BUDGET_S", 0.05)
    assert later.compiled("loss") and not other.compiled("loss")
    assert not Tiers("identity A", tmp_path).compiled("loss")  # nothing spent yet
    # an eager process (large data) compiles every variant
    eager = Tiers("identity B", tmp_path)
    eager.eager = True
    assert all(eager.compiled(family) for family in FAMILIES)
    # the mode overrides everything; a bad one is a ConfigError at the first pass
    monkeypatch.setenv(MODE_VARIABLE, "reference")
    assert not state.compiled("loss") and not eager.compiled("loss", COMPILE_MIN_VALUES)
    assert not eager.wants_compiled()
    monkeypatch.setenv(MODE_VARIABLE, "compiled")
    assert Tiers("identity C", tmp_path).compiled("hessian")
    monkeypatch.setenv(MODE_VARIABLE, "quick")
    with pytest.raises(ConfigError, match="PIPELINE_KERNELS"):
        state.compiled("loss")


def test_a_marker_that_cannot_be_written_costs_nothing_but_time(monkeypatch, tmp_path):
    monkeypatch.setenv(MODE_VARIABLE, "auto")
    state = Tiers("identity", tmp_path / "missing" / "directory")
    state.ran_compiled("stats")  # no error
    assert state.compiled("stats")  # this process keeps it compiled
    assert not Tiers("identity", tmp_path / "missing" / "directory").compiled("stats")


def test_variants_name_what_picks_the_compiled_signatures():
    X = np.zeros((4, 3))
    assert fused.variant_of("loss", np.asfortranarray(X)) == "loss:<f8:F:-:-"
    assert fused.variant_of("stats", np.zeros((4, 3), np.float32), weighted=True) == "stats:<f4:C:w:-"
    assert fused.variant_of("hessian", X[:, ::2], standardized=True) == "hessian:<f8:A:-:s"
    spec = KernelSpec(center=np.zeros(3), scale=np.ones(3), class_weight=(1.0, 2.0))
    assert fused._spec_variant(np.asfortranarray(X), None, spec.with_hessian(True)) == "hessian:<f8:F:w:s"
    wide = np.zeros((4, fused._STREAM_FEATURES), order="F")  # the loss pass streams: other code
    assert fused._spec_variant(wide, None, spec) == "loss:<f8:F:w:s:stream"
    assert fused._spec_variant(wide, None, spec.with_hessian(True)) == "hessian:<f8:F:w:s"
    assert fused._spec_variant(np.ascontiguousarray(wide), None, spec) == "loss:<f8:C:w:s"
    assert fused._spec_variant(wide[:, 1:], None, spec) == "loss:<f8:F:w:s"


def _problem(n=3000, d=5, seed=3):
    rng = np.random.default_rng(seed)
    X = np.asfortranarray(rng.standard_normal((n, d)) * 2.0 + 0.3)
    y = (rng.random(n) < 0.4).astype(np.float64)
    coef = rng.normal(0.0, 0.5, d + 1)
    return X, y, coef


def _families(variants) -> set[str]:
    return {variant.split(":")[0] for variant in variants}


@requires_numba
def test_the_entry_points_follow_the_tiers_with_the_same_bits(auto, monkeypatch):
    X, y, coef = _problem()
    weights = np.random.default_rng(4).uniform(0.5, 2.0, len(y))
    spec = KernelSpec(center=np.full(5, 0.3), scale=np.full(5, 2.0), class_weight=(1.0, 1.5))
    compiled, reference = [], []
    fused_partials, fused_stats = fused.fused_partials, fused.fused_stats
    monkeypatch.setattr(fused, "fused_partials", lambda *a: compiled.append("partials") or fused_partials(*a))
    monkeypatch.setattr(fused, "fused_stats", lambda *a: compiled.append("stats") or fused_stats(*a))
    monkeypatch.setattr(fused, "chunk_partials", lambda *a: reference.append("partials") or chunk_partials(*a))
    monkeypatch.setattr(fused, "chunk_stats", lambda *a: reference.append("stats") or chunk_stats(*a))
    monkeypatch.setattr(fused, "margins", lambda *a: reference.append("margins") or margins(*a))

    def run_all():
        return (
            fused.chunk_partials_fast(X, y, coef, weights, spec),
            fused.chunk_partials_fast(X, y, coef, weights, spec.with_hessian(True)),
            fused.chunk_stats_fast(X, y, weights),
            fused.margins_fast(X, coef).tobytes(),
        )

    # a fresh process on small data: every pass on the reference, timed per variant
    on_reference = run_all()
    assert reference == ["partials", "partials", "stats", "margins"] and compiled == []
    assert _families(auto.spent) == {"loss", "hessian", "stats", "margins"}
    assert list(Path(auto.directory).iterdir()) == []  # nothing compiled, nothing marked
    # past the budget every variant compiles, gives the same bits, and is marked
    monkeypatch.setattr(tiers, "REFERENCE_BUDGET_S", 0.0)
    reference.clear()
    assert run_all() == on_reference
    assert compiled == ["partials", "partials", "stats"] and reference == []  # margins: compiled in place
    assert _families(auto.ready) == {"loss", "hessian", "stats", "margins"} and len(auto.ready) == 4
    assert sorted(p.name for p in Path(auto.directory).iterdir()) == sorted(auto.marker(v).name for v in auto.ready)
    # a single large call runs compiled in a fresh process (a big numpy input)
    monkeypatch.setattr(fused, "_TIERS", Tiers("another", auto.directory))
    monkeypatch.setattr(tiers, "REFERENCE_BUDGET_S", 2.0)
    monkeypatch.setattr(tiers, "COMPILE_MIN_VALUES", X.size)
    compiled.clear()
    assert fused.chunk_stats_fast(X, y, weights) == on_reference[2] and compiled == ["stats"]


@requires_numba
def test_warm_up_makes_the_process_eager(auto):
    assert not auto.compiled("levels:<f8:F:-:-")
    fused.warm_up(None, 3, standardize=True, weighted=False, class_weighted=False, hessian=False)
    assert auto.eager and auto.compiled("levels:<f8:F:-:-") and auto.ready == set()
    fused.warm_up("statistics", 3, standardize=True, weighted=False, class_weighted=False, hessian=False)
    assert auto.ready == {"stats:<f8:F:-:-"} and auto.marker("stats:<f8:F:-:-").exists()
    fused.warm_up("passes", 3, standardize=True, weighted=True, class_weighted=False, hessian=True)
    assert auto.ready == {"stats:<f8:F:-:-", "loss:<f8:F:w:s", "hessian:<f8:F:w:s"}


def test_under_the_reference_mode_warm_up_compiles_nothing(auto, monkeypatch):
    monkeypatch.setenv(MODE_VARIABLE, "reference")
    fused.warm_up("passes", 3, standardize=True, weighted=False, class_weighted=False, hessian=True)
    assert not auto.eager and auto.ready == set()


def _fair_config(data: str, out: Path) -> TrainConfig:
    return TrainConfig(data=data, label="y", out=str(out), cluster=None, solver="newton", penalty=Penalty(l2=1e-3))


def _no_compiled_pass(*args):
    raise AssertionError("a compiled pass ran")


@requires_numba
def test_an_in_process_fit_starts_on_the_reference_below_the_threshold_and_compiles_above(auto, monkeypatch, tmp_path):
    data = write_frame(tmp_path / "fair", fair_frame(), row_group=1000)
    with monkeypatch.context() as patched:  # 6,366 x 8 values: the reference throughout
        patched.setattr(fused, "fused_partials", _no_compiled_pass)
        patched.setattr(fused, "fused_stats", _no_compiled_pass)
        small = train(_fair_config(data, tmp_path / "small"))
    assert auto.ready == set() and not auto.eager
    monkeypatch.setattr(tiers, "COMPILE_MIN_VALUES", 1)  # the same data taken as large
    large = train(_fair_config(data, tmp_path / "large"))
    assert auto.eager and {"stats", "loss", "hessian"} <= _families(auto.ready)
    assert np.array(large.coef).tobytes() == np.array(small.coef).tobytes()
    assert large.loss_history == small.loss_history and large.gradient == small.gradient
    assert large.digest == small.digest


def _train_cli(data: str, out: Path, **env: str) -> Model:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "train", data, "--label", "y", "--out", str(out), "--l2", "1e-3"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, **env),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return Model.load(out)


@pytest.mark.cluster
@requires_numba
def test_a_cluster_fit_on_the_reference_equals_the_compiled_one(tmp_path):
    """The CLI on a 2-worker embedded cluster, real data: ``auto`` runs small
    data on the reference in every process (an empty numba cache stays empty:
    nothing compiled, nothing marked), ``compiled`` compiles them, and the
    models are the same bits."""
    data = write_frame(tmp_path / "fair", fair_frame(), row_group=1000, files=3)
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    on_reference = _train_cli(data, tmp_path / "auto", **{MODE_VARIABLE: "auto", "NUMBA_CACHE_DIR": str(cache)})
    assert [path for path in cache.rglob("*") if path.is_file()] == []
    on_compiled = _train_cli(data, tmp_path / "compiled", **{MODE_VARIABLE: "compiled"})
    assert np.array(on_compiled.coef).tobytes() == np.array(on_reference.coef).tobytes()
    assert on_compiled.loss_history == on_reference.loss_history
    assert on_compiled.gradient == on_reference.gradient and on_compiled.digest == on_reference.digest


@pytest.mark.cluster
@requires_numba
def test_large_data_on_a_cluster_warm_up_every_worker(monkeypatch, tmp_path):
    """Data taken as large: the warm-up's parts go to two workers, the third
    only turns eager; every worker runs compiled, to the in-process bits."""
    from distributed import Client, LocalCluster

    from pipeline.train import Recorder, run

    monkeypatch.setenv(MODE_VARIABLE, "auto")  # inherited by the worker processes
    monkeypatch.setattr(tiers, "COMPILE_MIN_VALUES", 1)  # decided here, on the coordinator
    data = write_frame(tmp_path / "fair", fair_frame(), row_group=1000, files=3)
    options = dict(n_workers=3, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None)
    with LocalCluster(**options) as cluster, Client(cluster) as client:
        assert set(client.run(_eager).values()) == {False}
        config = dataclasses.replace(_fair_config(data, tmp_path / "cluster"), cluster=ClusterSpec())
        on_cluster = run(config, Recorder(None, None), client=client)
        assert set(client.run(_eager).values()) == {True}
        ready = client.run(_ready)
    # the warm-up's two parts ran compiled on two workers; which workers then
    # hold data (and run passes) is the scheduler's call: a worker busy
    # compiling on a fresh machine may see its reads run elsewhere
    assert {"stats", "loss", "hessian"} <= _families(set().union(*ready.values())), ready
    assert sum(bool(variants) for variants in ready.values()) >= 2, ready
    in_process = train(_fair_config(data, tmp_path / "in-process"))
    assert on_cluster.digest == in_process.digest
    assert np.array(on_cluster.coef).tobytes() == np.array(in_process.coef).tobytes()


def _ready() -> set[str]:
    return set(fused.tiers().ready)


def test_the_cli_names_a_bad_kernels_mode_before_anything_runs(tmp_path):
    data = write_frame(tmp_path / "fair", fair_frame(), row_group=1000)
    env = dict(os.environ, **{MODE_VARIABLE: "fastest"})
    for command in (["train", data, "--label", "y", "--in-process", "--out", str(tmp_path / "o")], ["demo"]):
        result = subprocess.run(
            [sys.executable, "-m", "pipeline", *command], capture_output=True, text=True, timeout=120, env=env
        )
        assert result.returncode == 1
        assert "PIPELINE_KERNELS must be auto or compiled or reference; found 'fastest'" in result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "o").exists()


def _eager() -> bool:
    return fused.tiers().eager


@requires_numba
def test_the_estimator_compiles_ahead_on_large_input_only(auto, monkeypatch):
    from pipeline import LogisticRegression

    X, y, _ = _problem(400, 3)
    y = y.astype(int)
    small = LogisticRegression(l2=0.1).fit(X, y)
    assert not auto.eager and auto.ready == set()
    monkeypatch.setattr(tiers, "COMPILE_MIN_VALUES", X.size)
    large = LogisticRegression(l2=0.1).fit(X, y)
    assert auto.eager and {"stats", "loss"} <= _families(auto.ready)
    assert large.coef_.tobytes() == small.coef_.tobytes() and large.intercept_.tobytes() == small.intercept_.tobytes()


@pytest.mark.cluster
@requires_numba
def test_compile_ahead_turns_every_worker_eager(monkeypatch, tmp_path):
    from distributed import Client, LocalCluster

    from pipeline.reduce import compile_ahead

    monkeypatch.setenv(MODE_VARIABLE, "auto")  # inherited by the worker processes
    options = dict(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None)
    with LocalCluster(**options) as cluster, Client(cluster) as client:
        assert set(client.run(_eager).values()) == {False}
        compile_ahead(client)
        assert set(client.run(_eager).values()) == {True}
