"""Exact, distributed, out-of-core logistic regression on Dask.

Public API::

    from pipeline import TrainConfig, ClusterSpec, SolverOptions, Penalty, train, fit, open_dataset, Model
    from pipeline import LogisticRegression, LogisticRegressionCV   # scikit-learn compatible estimators
"""

from .cluster import ClusterSpec
from .config import TrainConfig
from .data import Dataset, open_dataset
from .errors import PipelineError
from .fitting import fit, train_arrays
from .model import Model, coef_digest
from .objective import Penalty
from .solvers import SolverOptions
from .train import train

__all__ = [
    "ClusterSpec",
    "Dataset",
    "LogisticRegression",
    "LogisticRegressionCV",
    "Model",
    "Penalty",
    "PipelineError",
    "SolverOptions",
    "TrainConfig",
    "coef_digest",
    "fit",
    "open_dataset",
    "train",
    "train_arrays",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    # the estimator imports scikit-learn (a dependency of dask-ml): only when asked for
    if name in ("LogisticRegression", "LogisticRegressionCV"):
        from . import estimator

        return getattr(estimator, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
