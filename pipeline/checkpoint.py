"""Checkpoint files: a fit's full state, written atomically, read back exactly.

A checkpoint is one ``.npz`` file (numpy's zip of ``.npy`` arrays, read with
``allow_pickle=False``: loading one never executes anything) holding every
array of a :class:`~pipeline.fitting.FitState` as raw float64 and a JSON
document with the scalars (Python writes floats with ``repr``, which reads
back to the same bits) and the caller's metadata (dataset fingerprint,
options key, job id), and the sha256 of all of it: a truncated, damaged or
edited checkpoint is refused with a :class:`CheckpointError` rather than
resumed from.  It is written to a temporary name in the same
directory, flushed to disk and renamed over the previous one, so a crash
leaves either the old or the new checkpoint, never half of one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from .atomic import write_atomic
from .errors import CheckpointError
from .fitting import BestIterate, FitState
from .kernel import Categories
from .objective import Standardization
from .solvers import IterationRecord, SolverState

__all__ = ["FORMAT_VERSION", "load_checkpoint", "save_checkpoint"]
FORMAT_VERSION = 2  # 2: with the content's sha256
_HISTORY_FIELDS = ("iteration", "loss", "grad_norm", "step", "n_passes")


def save_checkpoint(path: str | os.PathLike, state, meta: dict) -> None:
    """Write ``state`` (a :class:`~pipeline.fitting.FitState`) and ``meta`` to ``path``."""
    solver_state = state.solver_state
    history = solver_state.history
    n = solver_state.coef.shape[0]
    arrays = {
        "coef": solver_state.coef,
        "grad": solver_state.grad,
        "elapsed_s": np.array(state.elapsed_s, dtype=np.float64),
        "validation_loss": np.array(state.validation_loss, dtype=np.float64),
        "memory_move": np.array([m for m, _, _ in solver_state.memory], dtype=np.float64).reshape(-1, n),
        "memory_change": np.array([c for _, c, _ in solver_state.memory], dtype=np.float64).reshape(-1, n),
        "memory_rho": np.array([r for _, _, r in solver_state.memory], dtype=np.float64),
        "history_iteration": np.array([r.iteration for r in history], dtype=np.int64),
        "history_n_passes": np.array([r.n_passes for r in history], dtype=np.int64),
    }
    for name in ("loss", "grad_norm", "step"):
        arrays[f"history_{name}"] = np.array([getattr(r, name) for r in history], dtype=np.float64)
    if solver_state.hess is not None:
        arrays["hess"] = solver_state.hess
    if state.standardization is not None:
        arrays["center"] = state.standardization.center
        arrays["scale"] = state.standardization.scale
    if state.fill is not None:
        arrays["fill"] = state.fill
    if state.n_missing is not None:
        arrays["n_missing"] = np.asarray(state.n_missing, dtype=np.int64)
    if state.level_share is not None:
        arrays["level_share"] = state.level_share
    if state.best is not None:
        arrays["best_coef"] = state.best.coef
        arrays["best_grad"] = state.best.grad
    document = {
        "format_version": FORMAT_VERSION,
        "solver": solver_state.solver,
        "loss": solver_state.loss,
        "previous_loss": solver_state.previous_loss,
        "n_iter": solver_state.n_iter,
        "n_passes": solver_state.n_passes,
        "step": solver_state.step,
        "class_weight": None if state.class_weight is None else list(state.class_weight),
        "class_totals": None if state.class_totals is None else list(state.class_totals),
        "stats_passes": state.stats_passes,
        "categories": None
        if state.categories is None
        else {"sizes": list(state.categories.sizes), "top": state.categories.top},
        "best": None
        if state.best is None
        else {
            "iteration": state.best.iteration,
            "validation_loss": state.best.validation_loss,
            "loss": state.best.loss,
        },
        "meta": meta,
    }
    arrays = {name: np.ascontiguousarray(value) for name, value in arrays.items()}
    # digest of the document as it will read back (JSON: lists, string keys)
    document["sha256"] = _content_digest(json.loads(json.dumps(document)), arrays)
    arrays["document"] = np.frombuffer(json.dumps(document).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def _content_digest(document: dict, arrays: dict) -> str:
    """sha256 of the document (less this digest) and every array's name, dtype,
    shape and bytes: a checkpoint changed after it was written is refused."""
    digest = hashlib.sha256()
    digest.update(json.dumps({k: v for k, v in document.items() if k != "sha256"}, sort_keys=True).encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def load_checkpoint(path: str | os.PathLike):
    """``(FitState, meta)`` from ``path``; :class:`CheckpointError` if it cannot be used."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        document = json.loads(arrays.pop("document").tobytes().decode())
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}", path=str(path)) from None
    except (OSError, EOFError, TypeError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        # (EOFError: an empty file; TypeError: a plain .npy array, which np.load returns as it is)
        # (numpy calls bytes that are neither an .npz nor an .npy archive "pickled data", and
        # advises allow_pickle: never for a checkpoint, which holds plain arrays only)
        pickled = isinstance(exc, ValueError) and "allow_pickle" in str(exc)
        reason = "bytes that are not an .npz archive of arrays" if pickled else str(exc)
        raise CheckpointError(f"checkpoint {path} is damaged or not a checkpoint: {reason}", path=str(path)) from None
    if not isinstance(document, dict) or document.get("format_version") != FORMAT_VERSION:
        found = document.get("format_version") if isinstance(document, dict) else document
        raise CheckpointError(f"checkpoint {path} has format {found!r}; expected {FORMAT_VERSION}", path=str(path))
    if document.get("sha256") != _content_digest(document, arrays):
        raise CheckpointError(
            f"checkpoint {path} fails its integrity check: its content changed after it was "
            "written (sha256 of the arrays and document differs); not resuming from it",
            path=str(path),
        )
    try:
        return _fit_state(document, arrays)
    except (KeyError, TypeError, ValueError, IndexError) as exc:  # a well-formed file, wrong content
        raise CheckpointError(
            f"checkpoint {path} is damaged or not a checkpoint: missing or malformed {exc}", path=str(path)
        ) from None


def _fit_state(document: dict, arrays: dict):

    history = tuple(
        IterationRecord(int(i), float(loss), float(norm), float(step), int(passes))
        for i, loss, norm, step, passes in zip(*(arrays[f"history_{f}"] for f in _HISTORY_FIELDS))
    )
    memory = tuple(
        (move.copy(), change.copy(), float(rho))
        for move, change, rho in zip(arrays["memory_move"], arrays["memory_change"], arrays["memory_rho"])
    )
    solver_state = SolverState(
        solver=document["solver"],
        coef=arrays["coef"],
        loss=document["loss"],
        grad=arrays["grad"],
        previous_loss=document["previous_loss"],
        n_iter=document["n_iter"],
        n_passes=document["n_passes"],
        history=history,
        step=document["step"],
        memory=memory,
        hess=arrays.get("hess"),
    )
    standardization = Standardization(center=arrays["center"], scale=arrays["scale"]) if "center" in arrays else None
    class_weight = None if document["class_weight"] is None else tuple(document["class_weight"])
    state = FitState(
        solver_state,
        standardization,
        class_weight,
        document["stats_passes"],
        tuple(float(t) for t in arrays["elapsed_s"]),
        tuple(float(v) for v in arrays.get("validation_loss", ())),
        arrays.get("fill"),
        arrays.get("n_missing"),
        _categories(document.get("categories")),
        arrays.get("level_share"),
        _class_totals(document.get("class_totals")),  # (absent from earlier checkpoints: not known)
        _best(document.get("best"), arrays),  # (absent from earlier checkpoints: not restoring)
    )
    return state, document["meta"]


def _class_totals(values) -> tuple[float, ...] | None:
    if values is None:
        return None
    return tuple(float(value) for value in values)


def _best(document, arrays: dict) -> BestIterate | None:
    if document is None:
        return None
    return BestIterate(
        int(document["iteration"]),
        float(document["validation_loss"]),
        arrays["best_coef"],
        float(document["loss"]),
        arrays["best_grad"],
    )


def _categories(document) -> Categories | None:
    if document is None:
        return None
    return Categories(tuple(int(size) for size in document["sizes"]), int(document["top"]))
