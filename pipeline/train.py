"""Training orchestration: dataset → evaluator → objective → solver → model."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .data import open_dataset
from .errors import OutputError
from .model import MODEL_FILE, Model
from .objective import Evaluator, LogisticObjective
from .reduce import DaskEvaluator, InProcessEvaluator, connect
from .solvers import GDOptions, IterationRecord, SolverResult, gradient_descent

__all__ = ["train", "train_arrays", "solve"]

Progress = Callable[[IterationRecord], None]


def train(config: TrainConfig, progress: Progress | None = None) -> Model:
    """Train on the Parquet dataset of ``config``; save ``model.json`` if ``config.out``."""
    if config.out is not None:
        check_output(config.out, config.overwrite)
    dataset = open_dataset(config.data, config.label, config.features)
    if config.cluster is None:
        evaluator = InProcessEvaluator(dataset.read_chunks(), dataset.n_features)
        result = solve(evaluator, dataset.n_features, config.gd, progress)
    else:
        with connect(config.cluster) as client:
            X, y = dataset.to_dask()
            evaluator = DaskEvaluator(client, X, y, persist=config.cache == "memory")
            result = solve(evaluator, dataset.n_features, config.gd, progress)
    model = build_model(result, dataset.features, dataset.n_samples, config.solver,
                        label=dataset.label, dataset=dataset.url)
    if config.out is not None:
        model.save(config.out)
    return model


def train_arrays(
    chunks: Sequence[tuple[np.ndarray, np.ndarray]],
    features: Sequence[str] | None = None,
    options: GDOptions = GDOptions(),
) -> Model:
    """The in-process path on in-memory ``(X, y)`` chunks (any split of the rows)."""
    n_features = chunks[0][0].shape[1]
    features = list(features) if features is not None else [f"x{j}" for j in range(n_features)]
    result = solve(InProcessEvaluator(chunks, n_features), n_features, options)
    n_samples = sum(X.shape[0] for X, _ in chunks)
    return build_model(result, features, n_samples, "gd", label="y", dataset="<arrays>")


def solve(
    evaluator: Evaluator,
    n_features: int,
    options: GDOptions,
    progress: Progress | None = None,
) -> SolverResult:
    objective = LogisticObjective(evaluator)
    result = gradient_descent(objective, np.zeros(n_features + 1), options, progress)
    assert result.n_passes == objective.n_passes
    return result


def build_model(
    result: SolverResult,
    features: Sequence[str],
    n_samples: int,
    solver: str,
    *,
    label: str,
    dataset: str,
) -> Model:
    return Model(
        features=list(features),
        coef=result.coef[:-1].tolist(),
        intercept=float(result.coef[-1]),
        solver=solver,
        n_iter=result.n_iter,
        n_passes=result.n_passes,
        converged=result.converged,
        message=result.message,
        loss_history=[record.loss for record in result.history],
        grad_norm_history=[record.grad_norm for record in result.history],
        step_history=[record.step for record in result.history],
        gradient=result.grad.tolist(),
        n_samples=n_samples,
        label=label,
        dataset=dataset,
    )


def check_output(out: str, overwrite: bool) -> None:
    """Fail before training if the model could not be written to ``out``."""
    directory = Path(out)
    if (directory / MODEL_FILE).exists() and not overwrite:
        raise OutputError(
            f"{directory / MODEL_FILE} already exists; expected a new output directory "
            "(pass --overwrite to replace it)",
            path=str(directory),
        )
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"output {directory} exists and is not a directory", path=str(directory))
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {directory} is not writable", path=str(directory))
    if directory.exists():
        try:
            with tempfile.TemporaryFile(dir=directory):
                pass
        except OSError as exc:
            raise OutputError(f"output directory {directory} is not writable: {exc}", path=str(directory)) from None
