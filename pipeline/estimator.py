"""A scikit-learn compatible estimator around the exact trainer.

``LogisticRegression`` follows scikit-learn's conventions (``fit``,
``predict``, ``predict_proba`` of shape (n, 2), ``decision_function``,
``score``, ``coef_`` of shape (1, d), ``intercept_``, ``classes_``,
``n_iter_``, ``get_params``/``set_params``), so it works in
``sklearn.pipeline.Pipeline`` and ``GridSearchCV``.  Any two class labels
are accepted (``classes_[1]`` is the positive class).  Numpy input trains
in this process; a dask array trains on the cluster of the current
``distributed`` client, one task per worker thread, to the same bits.

The objective is the one of the CLI (:mod:`pipeline.objective`): penalties
are ``l2`` and ``l1`` strengths on the mean loss (scikit-learn's
``C = 1 / (l2 * n_samples)`` for pure L2 without weights).
"""

from __future__ import annotations

import numbers

import numpy as np

from .objective import Penalty
from .solvers import SolverOptions

__all__ = ["LogisticRegression"]

# scikit-learn comes with dask-ml (a core dependency); imported only with this module
from sklearn.base import BaseEstimator, ClassifierMixin


class LogisticRegression(ClassifierMixin, BaseEstimator):
    """Exact, reproducible binary logistic regression.

    Parameters mirror ``pipeline train`` options: ``solver`` (``lbfgs``,
    ``newton``, ``gd``), ``l2``, ``l1``, ``standardize``, ``class_weight``
    (None, ``"balanced"`` or ``{label: weight}`` for both labels),
    ``max_iter``, ``tol``, ``ftol``, ``history_size``.
    """

    def __init__(self, *, solver: str = "lbfgs", l2: float = 0.0, l1: float = 0.0,
                 standardize: bool = True, class_weight=None, max_iter: int = 1000,
                 tol: float = 1e-7, ftol: float = 1e-12, history_size: int = 10) -> None:
        self.solver = solver
        self.l2 = l2
        self.l1 = l1
        self.standardize = standardize
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol
        self.ftol = ftol
        self.history_size = history_size

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    # ------------------------------------------------------------------ fit

    def fit(self, X, y, sample_weight=None):
        from sklearn.utils.multiclass import (
            check_classification_targets,
            type_of_target,
        )
        from sklearn.utils.validation import _check_sample_weight, validate_data

        if _is_dask(X):
            return self._fit_dask(X, y, sample_weight)
        X, y = validate_data(self, X, y, dtype=np.float64, order="F", y_numeric=False)
        check_classification_targets(y)
        target = type_of_target(y, input_name="y", raise_unknown=True)
        if target != "binary":
            raise ValueError(f"Only binary classification is supported. The type of the target is {target}.")
        y01 = self._encode(y)
        weights = None
        if sample_weight is not None:
            weights = _check_sample_weight(sample_weight, X, dtype=np.float64, copy=True)
        from .reduce import InProcessEvaluator

        chunk = (X, y01) if weights is None else (X, y01, weights)
        return self._fit_evaluator(InProcessEvaluator([chunk], X.shape[1]))

    def _fit_dask(self, X, y, sample_weight):
        import dask.array as da
        from distributed import get_client

        from .data import Chunk
        from .reduce import DaskEvaluator

        X = X.astype(np.float64)
        y = np.asarray(y) if not _is_dask(y) else y
        classes = np.unique(np.asarray(y.compute() if _is_dask(y) else y))
        self._set_classes(classes)
        y01 = (y == self.classes_[1]).astype(np.float64)
        if not _is_dask(y01):
            y01 = da.from_array(y01, chunks=(X.chunks[0],))
        weights = None
        if sample_weight is not None:
            weights = sample_weight if _is_dask(sample_weight) else da.from_array(
                np.asarray(sample_weight, dtype=np.float64), chunks=(X.chunks[0],))
            weights = weights.astype(np.float64)
        X = X.rechunk({1: -1})
        self.n_features_in_ = X.shape[1]
        evaluator = DaskEvaluator(get_client(), Chunk(X, y01, weights), persist=True)
        return self._fit_evaluator(evaluator)

    def _encode(self, y) -> np.ndarray:
        self._set_classes(np.unique(y))
        return (y == self.classes_[1]).astype(np.float64)

    def _set_classes(self, classes) -> None:
        if len(classes) != 2:
            raise ValueError(
                f"LogisticRegression needs samples of 2 classes; found {len(classes)} class"
                f"{'es' if len(classes) != 1 else ''}: {list(classes)[:10]}")
        self.classes_ = classes

    def _class_weight(self):
        weight = self.class_weight
        if weight is None or weight == "balanced":
            return weight
        if isinstance(weight, dict):
            missing = [label for label in self.classes_ if label not in weight]
            if missing:
                raise ValueError(f"class_weight has no weight for class(es) {missing}")
            return (float(weight[self.classes_[0]]), float(weight[self.classes_[1]]))
        raise ValueError(f"class_weight must be None, 'balanced' or a dict; got {weight!r}")

    def _fit_evaluator(self, evaluator):
        from .errors import PipelineError
        from .train import fit

        if not isinstance(self.max_iter, numbers.Integral) or self.max_iter < 0:
            raise ValueError(f"max_iter must be an integer >= 0; got {self.max_iter!r}")
        try:
            result = fit(
                evaluator, solver=self.solver,
                options=SolverOptions(max_iter=self.max_iter, tol=self.tol, ftol=self.ftol,
                                      history_size=self.history_size),
                penalty=Penalty(l2=float(self.l2), l1=float(self.l1)),
                standardize=self.standardize, class_weight=self._class_weight(),
            )
        except PipelineError as exc:  # scikit-learn callers expect ValueError
            raise ValueError(str(exc)) from exc
        self.coef_ = result.coef[:-1].reshape(1, -1).copy()
        self.intercept_ = np.array([result.coef[-1]])
        self.n_iter_ = np.array([result.result.n_iter], dtype=np.int32)
        self.n_passes_ = result.n_passes
        self.converged_ = result.result.converged
        self.loss_history_ = [record.loss for record in result.result.history]
        return self

    # ------------------------------------------------------------------ predict

    def decision_function(self, X) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted, validate_data

        from .kernel import margins

        check_is_fitted(self)
        if _is_dask(X):
            coef = np.append(self.coef_.ravel(), self.intercept_[0])
            return X.astype(np.float64).map_blocks(margins, coef, drop_axis=1, dtype=np.float64)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return margins(X, np.append(self.coef_.ravel(), self.intercept_[0]))

    def predict_proba(self, X) -> np.ndarray:
        margin = self.decision_function(X)
        with np.errstate(over="ignore"):
            positive = 1.0 / (1.0 + np.exp(-margin))
        if _is_dask(positive):
            import dask.array as da

            return da.stack([1.0 - positive, positive], axis=1)
        return np.column_stack([1.0 - positive, positive])

    def predict_log_proba(self, X) -> np.ndarray:
        return np.log(self.predict_proba(X))

    def predict(self, X):
        positive = self.decision_function(X) > 0.0
        if _is_dask(positive):
            return positive.map_blocks(lambda p: self.classes_[p.astype(int)], dtype=self.classes_.dtype)
        return self.classes_[positive.astype(int)]

    # ------------------------------------------------------------------ Parquet and model files

    def fit_parquet(self, path: str, *, label: str, features=None, weight: str | None = None,
                    cluster=None):
        """Train on a Parquet dataset (labels 0/1) like ``pipeline train``;
        ``cluster``: a :class:`pipeline.ClusterSpec`, default in-process."""
        from .config import TrainConfig
        from .train import train

        model = train(TrainConfig(
            data=str(path), label=label, features=features, weight=weight,
            class_weight=self.class_weight if not isinstance(self.class_weight, dict) else
            (float(self.class_weight[0]), float(self.class_weight[1])),
            solver=self.solver, options=SolverOptions(max_iter=self.max_iter, tol=self.tol,
                                                      ftol=self.ftol, history_size=self.history_size),
            penalty=Penalty(l2=float(self.l2), l1=float(self.l1)), standardize=self.standardize,
            cluster=cluster,
        ))
        return self._set_from_model(model)

    @classmethod
    def from_model(cls, directory: str):
        """A fitted estimator from ``directory/model.json``."""
        from .model import Model

        model = Model.load(directory)
        estimator = cls(solver=model.solver, l2=model.l2, l1=model.l1, standardize=model.standardize,
                        class_weight=None if model.class_weight is None else
                        {0: model.class_weight[0], 1: model.class_weight[1]})
        return estimator._set_from_model(model)

    def _set_from_model(self, model):
        self.classes_ = np.array([0, 1])
        self.coef_ = np.array([model.coef], dtype=np.float64)
        self.intercept_ = np.array([model.intercept])
        self.n_iter_ = np.array([model.n_iter], dtype=np.int32)
        self.n_passes_ = model.n_passes
        self.converged_ = model.converged
        self.loss_history_ = list(model.loss_history)
        self.n_features_in_ = len(model.features)
        self.feature_names_in_ = np.array(model.features, dtype=object)
        return self


def _is_dask(value) -> bool:
    return type(value).__module__.startswith("dask.")
