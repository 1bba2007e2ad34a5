"""The trained model artifact: ``model.json``, its digest, and prediction."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .atomic import write_atomic
from .errors import OutputError

__all__ = ["Model", "coef_digest", "MODEL_FILE"]

MODEL_FILE = "model.json"
FORMAT_VERSION = 1


def coef_digest(coef: np.ndarray, intercept: float) -> str:
    """sha256 hex of the little-endian float64 bytes of coef, then intercept."""
    values = np.concatenate([np.asarray(coef, dtype="<f8"), np.asarray([intercept], dtype="<f8")])
    return hashlib.sha256(values.tobytes()).hexdigest()


@dataclass(frozen=True)
class Model:
    features: list[str]
    coef: list[float]
    intercept: float
    solver: str
    n_iter: int
    n_passes: int
    converged: bool
    message: str
    loss_history: list[float]
    grad_norm_history: list[float]
    step_history: list[float]
    passes_history: list[int]
    gradient: list[float]
    n_samples: int
    label: str
    dataset: str
    weight: str | None = None
    class_weight: list[float] | None = None
    l2: float = 0.0
    l1: float = 0.0
    standardize: bool = False
    center: list[float] | None = None
    scale: list[float] | None = None
    cache: str = "memory"
    #: mean validation loss per iteration (None without a validation set)
    validation_loss_history: list[float] | None = None
    digest: str = field(default="")
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", coef_digest(np.array(self.coef), self.intercept))

    @property
    def coef_array(self) -> np.ndarray:
        return np.array(self.coef, dtype=np.float64)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        from .kernel import margins

        return margins(np.asarray(X, dtype=np.float64), np.append(self.coef_array, self.intercept))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of label 1 for each row of ``X``."""
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-self.decision_function(X)))

    def to_json(self) -> str:
        # json writes floats with repr(), which round-trips float64 exactly.
        return json.dumps(asdict(self), indent=2, allow_nan=True) + "\n"

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``directory/model.json`` atomically (temp file + rename)."""
        directory = Path(directory)
        target = directory / MODEL_FILE
        try:
            directory.mkdir(parents=True, exist_ok=True)
            write_atomic(target, self.to_json().encode())
        except OSError as exc:
            raise OutputError(f"cannot write the model to {directory}: {exc}", path=str(directory)) from None
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Model:
        data = json.loads((Path(directory) / MODEL_FILE).read_text())
        stored = data.pop("digest")
        model = cls(**data)
        if model.digest != stored:
            raise OutputError(f"{directory}/{MODEL_FILE}: digest does not match its coefficients")
        return model
