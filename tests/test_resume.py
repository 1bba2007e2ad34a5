"""Solver states and checkpoints: a resumed run equals the uninterrupted run, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.checkpoint import load_checkpoint, save_checkpoint
from pipeline.errors import CheckpointError, ConvergenceWarning
from pipeline.fitting import FitState, fit
from pipeline.objective import LogisticObjective, Penalty, Standardization
from pipeline.reduce import InProcessEvaluator
from pipeline.solvers import SolverOptions, gradient_descent, lbfgs, newton


def _data(seed=0, n=600, d=5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * np.linspace(0.5, 4.0, d) + 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ np.linspace(-1, 1, d) - 0.5)))).astype(float)
    return [(X[:250], y[:250]), (X[250:], y[250:])], d


def _run(solver, objective, n_features, **kwargs):
    coef0 = np.zeros(n_features + 1)
    options = SolverOptions(tol=1e-10, ftol=0.0, max_iter=60)
    if solver == "lbfgs":
        return lbfgs(objective, coef0, options, None, objective.l1_weights, **kwargs)
    if solver == "gd":
        return gradient_descent(objective, coef0, options, None, objective.l1_weights, **kwargs)
    return newton(objective.with_hessian, coef0, options, **kwargs)


def _same(a, b):
    assert a.coef.tobytes() == b.coef.tobytes()
    assert a.grad.tobytes() == b.grad.tobytes()
    assert a.loss == b.loss and a.n_iter == b.n_iter and a.n_passes == b.n_passes
    assert (a.converged, a.message) == (b.converged, b.message)
    assert a.history == b.history


@pytest.mark.parametrize(
    "solver, penalty",
    [
        ("lbfgs", Penalty(l2=1e-3)),
        ("lbfgs", Penalty(l1=2e-3)),  # L-BFGS and OWL-QN
        ("gd", Penalty()),
        ("gd", Penalty(l1=2e-3)),
        ("newton", Penalty(l2=1e-2)),
    ],
)
def test_every_saved_state_resumes_to_the_same_result(solver, penalty):
    chunks, d = _data()
    standardization = Standardization(center=np.full(d, 1.0), scale=np.linspace(0.5, 4.0, d))

    def objective():
        return LogisticObjective(InProcessEvaluator(chunks, d), penalty, standardization)

    states = []
    full = _run(solver, objective(), d, checkpoint=states.append)
    assert len(states) == full.n_iter + 1 and full.n_iter >= 3  # the start and every iteration
    assert [s.n_iter for s in states] == list(range(full.n_iter + 1))
    for state in states[:: max(1, len(states) // 6)] + [states[-1]]:
        evaluations = objective()
        resumed = _run(solver, evaluations, d, resume=state)
        _same(resumed, full)
        assert evaluations.n_passes == full.n_passes - state.n_passes  # nothing recomputed


def test_a_state_of_another_solver_is_refused():
    chunks, d = _data()
    states = []
    _run("gd", LogisticObjective(InProcessEvaluator(chunks, d)), d, checkpoint=states.append)
    with pytest.raises(ValueError, match="cannot resume lbfgs from a gd state"):
        _run("lbfgs", LogisticObjective(InProcessEvaluator(chunks, d)), d, resume=states[1])


@pytest.mark.parametrize("solver", ["lbfgs", "newton", "gd"])
def test_a_fit_resumes_from_a_checkpoint_file_bit_for_bit(tmp_path, solver):
    """Through fit() and the checkpoint file: statistics, class weights and
    standardization come back from the file, not from a new pass."""
    chunks, d = _data(seed=4)
    options = dict(
        solver=solver, options=SolverOptions(tol=1e-9, max_iter=40), class_weight="balanced", penalty=Penalty(l2=1e-3)
    )
    saved = []
    full = fit(InProcessEvaluator(chunks, d), on_state=saved.append, **options)
    assert len(saved) == full.result.n_iter + 1
    path = tmp_path / "checkpoint.npz"
    for state in (saved[0], saved[len(saved) // 2], saved[-1]):
        save_checkpoint(path, state, {"fingerprint": "abc", "job_id": "j1"})
        loaded, meta = load_checkpoint(path)
        assert meta["fingerprint"] == "abc"
        resumed = fit(InProcessEvaluator(chunks, d), resume=loaded, **options)
        assert resumed.coef.tobytes() == full.coef.tobytes()
        assert resumed.gradient.tobytes() == full.gradient.tobytes()
        assert resumed.n_passes == full.n_passes
        assert resumed.result.history == full.result.history
        assert resumed.class_weight == full.class_weight


def test_a_resumed_separated_fit_reaches_the_same_verdict(tmp_path):
    """The intercept-only loss needs the statistics pass's class totals: the
    checkpoint keeps them, so a resumed fit warns and is marked separated as
    the uninterrupted one is (and its model file is the same)."""
    from pipeline.errors import SeparationWarning

    x = np.linspace(-1, 1, 200)
    chunks = [(np.asfortranarray(np.column_stack([x, np.cos(5 * x)])), (x > 0).astype(float), None)]
    saved = []
    with pytest.warns(SeparationWarning):
        full = fit(InProcessEvaluator(chunks, 2), on_state=saved.append, solver="lbfgs")
    assert full.separated
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, saved[len(saved) // 2], {"fingerprint": "abc", "job_id": "j1"})
    loaded, _ = load_checkpoint(path)
    assert loaded.class_totals == (100.0, 100.0)
    with pytest.warns(SeparationWarning):
        resumed = fit(InProcessEvaluator(chunks, 2), resume=loaded, solver="lbfgs")
    assert resumed.separated and resumed.coef.tobytes() == full.coef.tobytes()


def test_a_damaged_checkpoint_is_refused_with_the_file_named(tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="checkpoint.npz"):
        load_checkpoint(path)
    # bytes of no archive at all: numpy calls them pickled data and advises allow_pickle; not us
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bytes that are not an .npz archive of arrays") as raised:
        load_checkpoint(path)
    assert "allow_pickle" not in str(raised.value)
    # an empty file (a disk that filled up), and one array saved as .npy under the name
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="checkpoint.npz is damaged or not a checkpoint"):
        load_checkpoint(path)
    with open(path, "wb") as handle:
        np.save(handle, np.zeros(3))
    with pytest.raises(CheckpointError, match="checkpoint.npz is damaged or not a checkpoint"):
        load_checkpoint(path)


def _saved_checkpoint(tmp_path):
    chunks, d = _data(seed=6)
    saved = []
    fit(InProcessEvaluator(chunks, d), options=SolverOptions(max_iter=4), on_state=saved.append)
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, saved[-1], {"job_id": "j"})
    load_checkpoint(path)  # a good one loads
    return path


def _rewrite(path, change):
    """Load the archive's arrays, ``change`` them, write a valid .npz (fresh zip CRCs) again."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    change(arrays)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


@pytest.mark.filterwarnings("ignore::pipeline.errors.ConvergenceWarning")
def test_truncated_and_tampered_checkpoints_are_refused(tmp_path):
    import json

    path = _saved_checkpoint(tmp_path)
    good = path.read_bytes()
    # truncated
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="damaged or not a checkpoint"):
        load_checkpoint(path)
    # a coefficient edited, the zip itself consistent again
    path.write_bytes(good)
    _rewrite(path, lambda arrays: arrays["coef"].__setitem__(0, arrays["coef"][0] + 1.0))
    with pytest.raises(CheckpointError, match="fails its integrity check"):
        load_checkpoint(path)
    # the document edited (the solver's iteration count)
    path.write_bytes(good)

    def edit_document(arrays):
        document = json.loads(arrays["document"].tobytes())
        document["n_iter"] += 1
        arrays["document"] = np.frombuffer(json.dumps(document).encode(), dtype=np.uint8)

    _rewrite(path, edit_document)
    with pytest.raises(CheckpointError, match="fails its integrity check"):
        load_checkpoint(path)
    # an array that only pickle can read is refused without being unpickled
    path.write_bytes(good)
    _rewrite(path, lambda arrays: arrays.__setitem__("coef", np.array([object()], dtype=object)))
    with pytest.raises(CheckpointError, match="damaged or not a checkpoint"):
        load_checkpoint(path)


def test_fit_state_elapsed_matches_history():
    chunks, d = _data()
    saved: list[FitState] = []
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        fit(InProcessEvaluator(chunks, d), on_state=saved.append, options=SolverOptions(max_iter=3))
    for state in saved:
        assert len(state.elapsed_s) == len(state.solver_state.history)
        assert list(state.elapsed_s) == sorted(state.elapsed_s)
