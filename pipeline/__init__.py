"""Exact, distributed, out-of-core logistic regression on Dask.

Public API::

    from pipeline import TrainConfig, ClusterSpec, GDOptions, train, open_dataset, Model
"""

from .config import TrainConfig
from .data import Dataset, open_dataset
from .errors import PipelineError
from .model import Model, coef_digest
from .reduce import ClusterSpec
from .solvers import GDOptions
from .train import train, train_arrays

__all__ = [
    "ClusterSpec",
    "Dataset",
    "GDOptions",
    "Model",
    "PipelineError",
    "TrainConfig",
    "coef_digest",
    "open_dataset",
    "train",
    "train_arrays",
]
__version__ = "0.1.0"
