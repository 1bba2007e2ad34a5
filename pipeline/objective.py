"""The training objective as the solver sees it: ``coef -> (loss, grad)``.

Partial sums come back from an evaluator (in-process or on a cluster, see
:mod:`pipeline.reduce`); here they are finalized and divided by the number of
samples, once, on the coordinator:

    J(coef) = (1/m) sum_i [log(1 + exp(z_i)) - y_i z_i]
    grad J  = (1/m) sum_i (h_i - y_i) [x_i, 1]
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .errors import EmptyDatasetError
from .kernel import Partials

__all__ = ["Evaluator", "LogisticObjective"]


class Evaluator(Protocol):
    """Anything that turns ``coef`` into merged :class:`Partials` of a dataset."""

    def partials(self, coef: np.ndarray) -> Partials: ...


class LogisticObjective:
    """Mean logistic loss and gradient of a dataset; counts data passes."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self.n_passes = 0
        self.n_samples: int | None = None

    def __call__(self, coef: np.ndarray) -> tuple[float, np.ndarray]:
        partials = self.evaluator.partials(np.asarray(coef, dtype=np.float64))
        self.n_passes += 1
        if partials.n_samples == 0:
            raise EmptyDatasetError("the dataset has no rows to train on (found 0 rows)")
        self.n_samples = partials.n_samples
        loss_sum, grad_sum = partials.finalize()
        return loss_sum / partials.n_samples, grad_sum / partials.n_samples
