"""Compiled or reference passes (pipeline.tiers): the decisions, a process's
state and markers, the kernels' entry points, and whole fits that change
tiers without changing a bit.

The rest of the suite runs every pass compiled (``PIPELINE_KERNELS=compiled``,
set in conftest); these tests set ``auto`` where the choice is under test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import fair_frame, write_frame

from pipeline import fused, tiers
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


def test_a_family_runs_compiled_when_ready_or_past_its_budget_unless_the_mode_decides():
    assert not use_compiled(ready=False, reference_seconds=0.0)
    assert use_compiled(ready=True, reference_seconds=0.0)
    assert not use_compiled(ready=False, reference_seconds=1.9, budget_s=2.0)
    assert use_compiled(ready=False, reference_seconds=2.0, budget_s=2.0)
    assert use_compiled(ready=False, reference_seconds=0.0, mode="compiled")
    assert not use_compiled(ready=True, reference_seconds=99.0, mode="reference")


def test_the_mode_comes_from_the_environment_and_a_bad_one_is_named():
    assert kernels_mode({}) == "auto"
    assert kernels_mode({MODE_VARIABLE: ""}) == "auto"
    assert kernels_mode({MODE_VARIABLE: " Compiled "}) == "compiled"
    assert kernels_mode({MODE_VARIABLE: "reference"}) == "reference"
    with pytest.raises(ConfigError, match=r"PIPELINE_KERNELS must be auto or compiled or reference; found 'fast'"):
        kernels_mode({MODE_VARIABLE: "fast"})


def test_tiers_start_on_the_reference_then_compile_past_the_budget_and_mark_the_machine(monkeypatch, tmp_path):
    monkeypatch.setenv(MODE_VARIABLE, "auto")
    state = Tiers("identity A", str(tmp_path))
    assert [state.compiled(family) for family in FAMILIES] == [False] * len(FAMILIES)
    assert state.reference("loss", lambda: 42) == 42
    assert 0.0 < state.spent["loss"] < tiers.REFERENCE_BUDGET_S and not state.compiled("loss")
    monkeypatch.setattr(tiers, "REFERENCE_BUDGET_S", state.spent["loss"])
    assert state.compiled("loss") and not state.compiled("stats")  # per family
    state.ran_compiled("loss")
    assert state.marker("loss").exists() and not state.marker("stats").exists()
    # a later process of the same identity starts compiled; another identity does not
    monkeypatch.setattr(tiers, "REFERENCE_BUDGET_S", 2.0)
    assert Tiers("identity A", str(tmp_path)).compiled("loss")
    assert not Tiers("identity B", str(tmp_path)).compiled("loss")
    assert not Tiers("identity A", str(tmp_path)).compiled("stats")
    # an eager process (large data) compiles every family
    eager = Tiers("identity B", str(tmp_path))
    eager.eager = True
    assert all(eager.compiled(family) for family in FAMILIES)
    # the mode overrides everything; a bad one is a ConfigError at the first pass
    monkeypatch.setenv(MODE_VARIABLE, "reference")
    assert not state.compiled("loss") and not eager.wants_compiled()
    monkeypatch.setenv(MODE_VARIABLE, "compiled")
    assert Tiers("identity C", str(tmp_path)).compiled("hessian")
    monkeypatch.setenv(MODE_VARIABLE, "quick")
    with pytest.raises(ConfigError, match="PIPELINE_KERNELS"):
        state.compiled("loss")


def test_a_marker_that_cannot_be_written_costs_nothing_but_time(monkeypatch, tmp_path):
    monkeypatch.setenv(MODE_VARIABLE, "auto")
    state = Tiers("identity", str(tmp_path / "missing" / "directory"))
    state.ran_compiled("stats")  # no error
    assert state.compiled("stats")  # this process keeps it compiled
    assert not Tiers("identity", str(tmp_path / "missing" / "directory")).compiled("stats")


def _problem(n=3000, d=5, seed=3):
    rng = np.random.default_rng(seed)
    X = np.asfortranarray(rng.standard_normal((n, d)) * 2.0 + 0.3)
    y = (rng.random(n) < 0.4).astype(np.float64)
    coef = rng.normal(0.0, 0.5, d + 1)
    return X, y, coef


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

    # a fresh process on small data: every pass on the reference, timed per family
    on_reference = run_all()
    assert reference == ["partials", "partials", "stats", "margins"] and compiled == []
    assert set(auto.spent) == {"loss", "hessian", "stats", "margins"}
    assert list(Path(auto.directory).iterdir()) == []  # nothing compiled, nothing marked
    # past the budget every family compiles, gives the same bits, and marks the machine
    monkeypatch.setattr(tiers, "REFERENCE_BUDGET_S", 0.0)
    reference.clear()
    assert run_all() == on_reference
    assert compiled == ["partials", "partials", "stats"] and reference == []  # margins: compiled in place
    assert auto.ready == {"loss", "hessian", "stats", "margins"}
    assert sorted(p.name for p in Path(auto.directory).iterdir()) == sorted(
        auto.marker(family).name for family in ("loss", "hessian", "stats", "margins")
    )


@requires_numba
def test_warm_up_makes_the_process_eager(auto):
    assert not auto.compiled("levels")
    fused.warm_up(None, 3, standardize=True, weighted=False, class_weighted=False, hessian=False)
    assert auto.eager and auto.compiled("levels") and auto.ready == set()
    fused.warm_up("statistics", 3, standardize=True, weighted=False, class_weighted=False, hessian=False)
    assert auto.ready == {"stats"} and auto.marker("stats").exists()


def test_under_the_reference_mode_warm_up_compiles_nothing(auto, monkeypatch):
    monkeypatch.setenv(MODE_VARIABLE, "reference")
    fused.warm_up("passes", 3, standardize=True, weighted=False, class_weighted=False, hessian=True)
    assert not auto.eager and auto.ready == set()


def _fair_config(data: str, out: Path) -> TrainConfig:
    return TrainConfig(data=data, label="y", out=str(out), cluster=None, solver="newton", penalty=Penalty(l2=1e-3))


@requires_numba
def test_an_in_process_fit_starts_on_the_reference_below_the_threshold_and_compiles_above(auto, monkeypatch, tmp_path):
    data = write_frame(tmp_path / "fair", fair_frame(), row_group=1000)
    small = train(_fair_config(data, tmp_path / "small"))
    assert auto.ready == set() and not auto.eager  # 6,366 x 8 values: the reference throughout
    monkeypatch.setattr(tiers, "COMPILE_MIN_VALUES", 1)  # the same data taken as large
    large = train(_fair_config(data, tmp_path / "large"))
    assert auto.eager and {"stats", "loss", "hessian"} <= auto.ready
    assert np.array(large.coef).tobytes() == np.array(small.coef).tobytes()
    assert large.loss_history == small.loss_history and large.gradient == small.gradient
    assert large.digest == small.digest


def _train_cli(data: str, out: Path, mode: str, temp: Path) -> Model:
    env = dict(os.environ, **{MODE_VARIABLE: mode, "TMPDIR": str(temp)})
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "train", data, "--label", "y", "--out", str(out), "--l2", "1e-3"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return Model.load(out)


@pytest.mark.cluster
@requires_numba
def test_a_cluster_fit_on_the_reference_equals_the_compiled_one(tmp_path):
    """The CLI on a 2-worker embedded cluster, real data: ``auto`` runs small
    data on the reference in every process (no family marked), ``compiled``
    compiles them (marked), and the models are the same bits."""
    data = write_frame(tmp_path / "fair", fair_frame(), row_group=1000, files=3)
    temp = tmp_path / "temp"
    temp.mkdir()
    on_reference = _train_cli(data, tmp_path / "auto", "auto", temp)
    assert list(temp.glob("pipeline-numba-*.compiled")) == []
    on_compiled = _train_cli(data, tmp_path / "compiled", "compiled", temp)
    assert len(list(temp.glob("pipeline-numba-*.compiled"))) >= 2  # statistics and passes, at least
    assert np.array(on_compiled.coef).tobytes() == np.array(on_reference.coef).tobytes()
    assert on_compiled.loss_history == on_reference.loss_history
    assert on_compiled.gradient == on_reference.gradient and on_compiled.digest == on_reference.digest


def test_the_cli_names_a_bad_kernels_mode(tmp_path):
    data = write_frame(tmp_path / "fair", fair_frame(), row_group=1000)
    env = dict(os.environ, **{MODE_VARIABLE: "fastest"})
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "train", data, "--label", "y", "--in-process", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode != 0
    assert "PIPELINE_KERNELS must be auto or compiled or reference; found 'fastest'" in result.stderr
    assert "Traceback" not in result.stderr


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
    assert auto.eager and {"stats", "loss"} <= auto.ready
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
