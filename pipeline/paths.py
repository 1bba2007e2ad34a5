"""Regularization paths: one penalty's strengths on a log grid, each fit
warm-started from the one before, every model kept.

The penalty's *mix* comes from the configured one (``alpha = l1 / (l1 +
l2)``: ``--l1`` alone is 1, ``--l2`` alone 0, ``--reg --alpha`` its alpha);
the path walks its *strength* ``lambda`` (``l2 = lambda (1 - alpha)``, ``l1
= lambda alpha``) over :func:`strengths`: ``n`` values from ``lambda_max``
down to ``ratio * lambda_max``, evenly spaced in log.

``lambda_max`` (:func:`lambda_max`): with an L1 part, the smallest strength
whose optimum has every weight 0 -- by the optimality conditions ``|g_j| <=
lambda alpha`` for every weight at the intercept-only optimum, so
``max_j |g_j| / alpha`` with ``g`` the mean loss's gradient there in
original units (:func:`null_intercepts` gives that optimum from the
gradient at zero); with L2 alone no strength zeroes the weights, and the
configured ``l2`` is the stated maximum.

The decisions here are pure (:func:`choose`, :func:`strengths`); the passes
and fits are the caller's (:func:`pipeline.train.run`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .elementary import log_positive
from .errors import ConfigError, LabelValueError
from .objective import Penalty

__all__ = [
    "CV_RULES",
    "DEFAULT_RATIO",
    "PathPoint",
    "choose",
    "chosen_digest",
    "lambda_max",
    "mixing",
    "null_intercepts",
    "path_document",
    "penalties",
    "strengths",
]

#: the smallest strength's share of the largest unless asked otherwise (glmnet's, for n > p)
DEFAULT_RATIO = 1e-4
#: most strengths a path may have (each keeps a model on disk)
MAX_POINTS = 1000
#: the L1 share below which lambda_max is taken at this share (glmnet's floor:
#: a nearly pure ridge mix would put the path's start out of sight)
MIN_ALPHA = 1e-3


@dataclass(frozen=True)
class PathPoint:
    """One fit of the path, as ``path.json`` lists it."""

    index: int
    strength: float
    l2: float
    l1: float
    #: the training objective (penalty included) at the end of the fit
    loss: float
    #: the unpenalized mean loss on the validation rows (None without a split)
    validation_loss: float | None
    #: weights (intercepts excluded) that are not 0
    n_nonzero: int
    n_iter: int
    n_passes: int
    converged: bool
    digest: str
    #: with cross-validation: each fold's held-out loss, their mean and sample
    #: standard deviation (:func:`pipeline.crossval.fold_summary`)
    cv_losses: list[float] | None = None
    cv_loss: float | None = None
    cv_std: float | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, document: dict) -> PathPoint:
        return cls(**document)


def mixing(penalty: Penalty, asked_by: str = "path") -> float:
    """The L1 share ``alpha`` of ``penalty`` (a ConfigError without one, on
    ``asked_by``: the option that needs it, ``path`` or ``cv``)."""
    total = penalty.l1 + penalty.l2
    if not total > 0:
        what = "cross-validation" if asked_by == "cv" else "a regularization path"
        raise ConfigError(
            f"{what} needs a penalty whose strength it chooses: l1 > 0 or l2 > 0, whose ratio sets the mix "
            f"(on the command line --l1, --l2, or --reg with --alpha); found l1={penalty.l1!r}, l2={penalty.l2!r}",
            column=asked_by,
        )
    return penalty.l1 / total


#: ``lambda_max`` is raised by this much (relative): at the bound itself the
#: largest weight's optimality condition holds with equality, and the rounding
#: between the solver's standardized units and the original ones could leave
#: it a few ulps outside, so that the first point's weight came out 3e-17,
#: not 0 (an unstandardized column of ages, found in a trial)
LAMBDA_MAX_MARGIN = 2.0**-40


def lambda_max(penalty: Penalty, null_gradient: np.ndarray | None, n_blocks: int = 1) -> float:
    """The path's largest strength: with an L1 part ``max_j |g_j| / alpha``
    (``alpha`` at least :data:`MIN_ALPHA`; raised by :data:`LAMBDA_MAX_MARGIN`)
    over the weights of ``null_gradient`` (the mean loss's gradient at the
    intercept-only optimum, original units, each of ``n_blocks`` blocks
    ``[w_k, b_k]``); with L2 alone the configured ``l2``."""
    alpha = mixing(penalty)
    if alpha == 0.0:
        return penalty.l2
    if null_gradient is None:
        raise ValueError("an L1 path's largest strength needs the gradient at the intercept-only optimum")
    alpha = max(alpha, MIN_ALPHA)
    weights = null_gradient.reshape(n_blocks, -1)[:, :-1]
    largest = float(np.abs(weights).max()) if weights.size else 0.0
    if not largest > 0:
        raise ConfigError(
            "the regularization path's largest strength is 0: at the intercept-only optimum every "
            "feature's gradient is 0, so every strength gives all-zero weights",
            column="path",
        )
    return largest / alpha * (1.0 + LAMBDA_MAX_MARGIN)


def strengths(largest: float, n: int, ratio: float) -> list[float]:
    """``n`` strengths from ``largest`` down to ``ratio * largest``, evenly in log."""
    if not 2 <= n <= MAX_POINTS:
        raise ConfigError(f"path needs 2 to {MAX_POINTS} strengths; found {n}", column="path")
    if not (0.0 < ratio < 1.0):
        raise ConfigError(f"path_ratio must be in (0, 1); found {ratio!r}", column="path_ratio")
    return [largest * ratio ** (k / (n - 1)) for k in range(n)]


def penalties(penalty: Penalty, grid: Sequence[float]) -> list[Penalty]:
    """The penalty of each strength of ``grid``, with ``penalty``'s mix."""
    alpha = mixing(penalty)
    return [Penalty(l2=strength * (1.0 - alpha), l1=strength * alpha) for strength in grid]


def null_intercepts(zero_gradient: np.ndarray, n_classes: int) -> np.ndarray:
    """The intercept-only optimum's intercepts, from the mean loss's gradient
    at zero, whose intercept entries are ``1/2 - p`` (binary: ``p`` the
    weighted share of label 1) or ``1/K - p_k`` (each class's share): the
    log-odds ``log(p / (1 - p))``, or the classes' ``log p_k`` centered (the
    logarithms the pipeline's own, :func:`pipeline.elementary.log_positive`:
    the path's start, so its every model, has the same bits on every CPU)."""
    shares = (
        [0.5 - float(zero_gradient[-1])]
        if not n_classes
        else [1.0 / n_classes - float(g) for g in zero_gradient.reshape(n_classes, -1)[:, -1]]
    )
    if not all(0.0 < share < 1.0 for share in shares):
        raise LabelValueError(
            f"a class holds {min(shares)!r} of the weight (its share rounds to 0 at float64's precision); "
            "expected every class with a share of the weight that float64 resolves: the path's largest "
            "strength comes from the intercept-only optimum, which is then at infinity"
        )
    if not n_classes:
        return np.array([log_positive(shares[0]) - log_positive(1.0 - shares[0])])
    logs = np.array([log_positive(share) for share in shares])
    return logs - math.fsum(logs.tolist()) / n_classes


#: how cross-validation chooses: the smallest mean loss, or the largest
#: strength within one standard error of it (glmnet's ``lambda.1se``)
CV_RULES = ("min", "1se")


def chosen_digest(document: Any) -> str | None:
    """The digest of the model a ``path.json`` document chose (None where it
    names none): the run's ``model.json`` when the path is that run's."""
    try:
        chosen = document["chosen"]
        points = document["points"]
        if isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen < len(points):
            return None
        digest = points[chosen].get("digest")
    except (KeyError, TypeError, AttributeError):
        return None
    return digest if isinstance(digest, str) else None


def choose(points: Sequence[PathPoint], rule: str = "min") -> int:
    """The index of the path's model.  Cross-validated points: the smallest
    mean held-out loss (``min``), or (``1se``) the largest strength whose
    mean is within one standard error (``std / sqrt(K)``) of that minimum.
    Else the smallest validation loss, or without a validation split the
    last; ties go to the larger strength (the earlier point)."""
    if points and all(point.cv_loss is not None for point in points):
        best = min(range(len(points)), key=lambda k: (_ordered(points[k].cv_loss), k))
        if rule == "min":
            return best
        losses = points[best].cv_losses or []
        error = (points[best].cv_std or 0.0) / math.sqrt(max(len(losses), 1))
        bound = (points[best].cv_loss or 0.0) + error
        if not math.isfinite(bound):  # (no finite loss at all)
            return best
        return min(k for k, point in enumerate(points) if point.cv_loss is not None and point.cv_loss <= bound)
    if points and all(point.validation_loss is not None for point in points):
        return min(range(len(points)), key=lambda k: (_ordered(points[k].validation_loss), k))
    return len(points) - 1


def _ordered(loss: float | None) -> float:
    """A loss to compare: NaN (a diverged fit) after every number."""
    return math.inf if loss is None or math.isnan(loss) else loss


def path_document(points: Sequence[PathPoint], chosen: int, alpha: float, ratio: float, rule: str = "min") -> str:
    """``path/path.json``: the grid, each point, and the model chosen."""
    if points and points[0].cv_loss is not None:
        described = {"min": "smallest mean cross-validation loss", "1se": "one standard error"}[rule]
    else:
        described = "smallest validation loss" if points and points[0].validation_loss is not None else "last"
    document = {
        "alpha": alpha,
        "ratio": ratio,
        "chosen": chosen,
        "rule": described,
        "points": [point.to_json() for point in points],
    }
    return json.dumps(document, indent=2) + "\n"
