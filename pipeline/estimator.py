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

import math
from typing import Any, cast

import numpy as np

# scikit-learn comes with dask-ml (a core dependency); imported only with this module
from sklearn.base import BaseEstimator, ClassifierMixin

from .config import SolverName, TrainConfig
from .data import MISSING_POLICIES, Chunk, MissingPolicy
from .errors import NonFiniteInputError, PipelineError, adopt_sklearn_base
from .fitting import HANDED_OVER, fit
from .kernel import sigmoid
from .model import Model
from .objective import Penalty
from .reduce import DaskEvaluator, InProcessEvaluator
from .solvers import SolverOptions
from .train import train

__all__ = ["LogisticRegression"]

adopt_sklearn_base()  # scikit-learn is loaded now: ConvergenceWarning becomes a subclass of its class


class LogisticRegression(ClassifierMixin, BaseEstimator):
    """Exact, reproducible binary logistic regression.

    Parameters mirror ``pipeline train`` options: ``solver`` (``auto``,
    ``lbfgs``, ``newton``, ``gd``), ``l2``, ``l1``, ``standardize``, ``class_weight``
    (None, ``"balanced"`` or ``{label: weight}`` for both labels),
    ``max_iter``, ``tol``, ``ftol``, ``history_size``, ``missing``.

    ``missing``: what a NaN in ``X`` means.  ``"error"`` (default): refused,
    as scikit-learn does.  ``"mean"``: a missing value, which takes its
    column's exact mean over the training rows (``impute_``; also when
    scoring), like ``SimpleImputer(strategy="mean")`` in front of the model.
    ``"indicator"``: the mean, plus a 0/1 feature for each column that had
    missing values when fitting (``indicator_features_``: their indices; their
    coefficients follow the columns' in ``coef_``), like
    ``SimpleImputer(strategy="mean", add_indicator=True)``.
    """

    def __init__(
        self,
        *,
        solver: SolverName = "auto",
        l2: float = 0.0,
        l1: float = 0.0,
        standardize: bool = True,
        class_weight=None,
        max_iter: int = 1000,
        tol: float = 1e-7,
        ftol: float = 1e-12,
        history_size: int = 10,
        missing: str = "error",
    ) -> None:
        self.solver = solver
        self.l2 = l2
        self.l1 = l1
        self.standardize = standardize
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol
        self.ftol = ftol
        self.history_size = history_size
        self.missing = missing

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
        # float32 stays float32 (half the memory; widened exactly in the kernels)
        X, y = validate_data(
            self, X, y, dtype=_FEATURE_DTYPES, order="F", y_numeric=False, ensure_all_finite=self._finite()
        )
        check_classification_targets(y)
        target = type_of_target(y, input_name="y", raise_unknown=True)
        if target != "binary":
            raise ValueError(f"Only binary classification is supported. The type of the target is {target}.")
        y01 = self._encode(y)
        weights = None
        if sample_weight is not None:
            weights = _check_sample_weight(sample_weight, X, dtype=np.float64, copy=True)

        self.indicator_features_ = np.flatnonzero(np.isnan(X).any(axis=0)) if self._indicates() else np.empty(0, int)
        X = _with_indicators(X, self.indicator_features_)
        chunk = (X, y01) if weights is None else (X, y01, weights)
        return self._fit_evaluator(InProcessEvaluator([chunk], X.shape[1]))

    def _imputes(self) -> bool:
        """Whether a NaN in X is a missing value (``missing`` checked)."""
        if self.missing not in MISSING_POLICIES:
            raise ValueError(f"missing must be one of {list(MISSING_POLICIES)}; got {self.missing!r}")
        return self.missing != "error"

    def _finite(self) -> bool | str:
        """scikit-learn's ``ensure_all_finite``: NaN allowed where it is a missing value."""
        return "allow-nan" if self._imputes() else True

    def _indicates(self) -> bool:
        return self._imputes() and self.missing == "indicator"

    def _fit_dask(self, X, y, sample_weight):
        """Dask arrays, DataFrames or Series (y and sample_weight may also be in
        memory).  Persisted first (read once), then checked with one computation
        (classes of y, NaN/±inf in every input) before anything is trained; y and
        the weights take X's row chunks."""
        import dask
        import dask.array as da
        from distributed import get_client
        from sklearn.utils.multiclass import check_classification_targets, type_of_target
        from sklearn.utils.validation import _check_feature_names

        client = get_client()
        _check_feature_names(self, _columns_of(X), reset=True)
        X = _dask_array(X, "X")
        if X.ndim != 2:
            raise ValueError(f"Expected a 2-dimensional X; got a dask array of shape {X.shape}")
        # as given (float32 kept): an X the caller persisted is not copied; row-major
        # blocks are transposed block by block inside each pass (docs/performance.md)
        inputs = {"X": _as_features(X).rechunk({1: -1}), "y": y}
        if sample_weight is not None:
            inputs["sample_weight"] = sample_weight
        # persisted as given (read once), then aligned to X's row chunks and persisted as
        # used: every later graph starts from persisted blocks (never recomputes a layer)
        lazy = [name for name, value in inputs.items() if _is_dask(value)]
        inputs.update(zip(lazy, client.persist([_dask_array(inputs[name], name) for name in lazy])))
        X = _known_rows(inputs.pop("X"))
        inputs = {"X": X, **{name: _dask_rows(value, X.chunks[0], name) for name, value in inputs.items()}}
        if "sample_weight" in inputs:
            inputs["sample_weight"] = inputs["sample_weight"].astype(np.float64)
        inputs = dict(zip(inputs, client.persist(list(inputs.values()))))
        X, y = inputs["X"], inputs["y"]
        numeric = {name: array for name, array in inputs.items() if array.dtype.kind in "fc"}
        allow_nan = self._imputes()  # NaN in X is a missing value
        classes, flags, nan_columns = dask.compute(
            da.unique(y),
            [(da.isnan(array).any(), da.isinf(array).any()) for array in numeric.values()],
            da.isnan(X).any(axis=0) if allow_nan and "X" in numeric else np.zeros(X.shape[1], bool),
        )
        for (name, array), (nan, inf) in zip(numeric.items(), flags):
            if allow_nan and name == "X":
                nan = False
            if nan or inf:
                found = " and ".join(word for word, present in (("NaN", nan), ("infinity", inf)) if present)
                raise NonFiniteInputError(
                    f"Input {name} contains {found}; expected finite values (checked over the whole "
                    f"dask array of shape {array.shape} before training, as scikit-learn checks numpy input)"
                )
        check_classification_targets(classes)
        target = type_of_target(classes, input_name="y")
        if target != "binary":
            raise ValueError(f"Only binary classification is supported. The type of the target is {target}.")
        self._set_classes(classes)
        y01 = (y == self.classes_[1]).astype(np.float64)
        self.n_features_in_ = X.shape[1]
        self.indicator_features_ = np.flatnonzero(nan_columns) if self._indicates() else np.empty(0, int)
        if len(self.indicator_features_):
            X = client.persist(_dask_with_indicators(X, self.indicator_features_))
        evaluator = DaskEvaluator(client, Chunk(X, y01, inputs.get("sample_weight")))
        return self._fit_evaluator(evaluator)

    def _encode(self, y) -> np.ndarray:
        self._set_classes(np.unique(y))
        return (y == self.classes_[1]).astype(np.float64)

    def _set_classes(self, classes) -> None:
        if len(classes) != 2:
            raise ValueError(
                f"LogisticRegression needs samples of 2 classes; found {len(classes)} class"
                f"{'es' if len(classes) != 1 else ''}: {list(classes)[:10]}"
            )
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

        try:  # the values' rules are the configuration objects' (SolverOptions, Penalty)
            options = SolverOptions(
                max_iter=self.max_iter, tol=self.tol, ftol=self.ftol, history_size=self.history_size
            )
            result = fit(
                evaluator,
                solver=self.solver,
                options=options,
                penalty=Penalty(l2=float(self.l2), l1=float(self.l1)),
                standardize=self.standardize,
                class_weight=self._class_weight(),
                impute=self._imputes(),
            )
        except PipelineError as exc:  # scikit-learn callers expect ValueError
            raise ValueError(str(exc)) from exc
        self.impute_ = None
        if result.fill is not None:
            self.impute_ = result.fill[: result.fill.shape[0] - len(self.indicator_features_)].copy()
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

        from .fused import margins_fast as margins  # kernel.margins compiled, same bits

        check_is_fitted(self)
        if _is_dask(X):
            from sklearn.utils.validation import _check_feature_names, _check_n_features

            _check_feature_names(self, _columns_of(X), reset=False)
            X = _dask_array(X, "X")
            _check_n_features(self, X, reset=False)
            coef = np.append(self.coef_.ravel(), self.intercept_[0])
            X = _dask_with_indicators(_as_features(X).rechunk({1: -1}), self._indicators())
            return X.map_blocks(margins, coef, self._fill(), drop_axis=1, dtype=np.float64)
        X = validate_data(self, X, dtype=_FEATURE_DTYPES, reset=False, ensure_all_finite=self._scoring_finite())
        X = _with_indicators(X, self._indicators())
        return margins(X, np.append(self.coef_.ravel(), self.intercept_[0]), self._fill())

    def _indicators(self) -> np.ndarray:
        return getattr(self, "indicator_features_", np.empty(0, int))

    def _fill(self) -> np.ndarray | None:
        """Per feature of the design (indicators last), a missing value's value (None: no imputation)."""
        impute = getattr(self, "impute_", None)
        return None if impute is None else np.append(impute, np.zeros(len(self._indicators())))

    def _scoring_finite(self) -> bool | str:
        return True if getattr(self, "impute_", None) is None else "allow-nan"

    def predict_proba(self, X) -> np.ndarray:
        margin: Any = self.decision_function(X)  # numpy, or dask for dask input
        if _is_dask(margin):  # (block by block: row chunk sizes may be unknown)
            positive = margin.map_blocks(sigmoid, dtype=np.float64)
            return positive.map_blocks(_both_classes, new_axis=1, chunks=(positive.chunks[0], (2,)), dtype=np.float64)
        return _both_classes(sigmoid(margin))

    def predict_log_proba(self, X) -> np.ndarray:
        return np.log(self.predict_proba(X))

    def predict(self, X):
        positive: Any = self.decision_function(X) > 0.0  # numpy, or dask for dask input
        if _is_dask(positive):
            return positive.map_blocks(lambda p: self.classes_[p.astype(int)], dtype=self.classes_.dtype)
        return self.classes_[positive.astype(int)]

    # ------------------------------------------------------------------ Parquet and model files

    def fit_parquet(self, path: str, *, label: str, features=None, weight: str | None = None, cluster=None):
        """Train on a Parquet dataset (labels 0/1) like ``pipeline train``;
        ``cluster``: a :class:`pipeline.ClusterSpec`, default in-process."""

        model = train(
            TrainConfig(
                data=str(path),
                label=label,
                features=features,
                weight=weight,
                class_weight=self.class_weight
                if not isinstance(self.class_weight, dict)
                else (float(self.class_weight[0]), float(self.class_weight[1])),
                solver=self.solver,
                options=SolverOptions(
                    max_iter=self.max_iter, tol=self.tol, ftol=self.ftol, history_size=self.history_size
                ),
                penalty=Penalty(l2=float(self.l2), l1=float(self.l1)),
                standardize=self.standardize,
                cluster=cluster,
                # NaN is the estimator's missing value (nulls are Parquet's)
                missing=cast(MissingPolicy, self.missing) if self._imputes() else "error",
                nan_as_missing=self._imputes(),
            )
        )
        return self._set_from_model(model)

    @classmethod
    def from_model(cls, directory: str):
        """A fitted estimator from ``directory/model.json``."""

        model = Model.load(directory)
        estimator = cls(
            # the resolved solver Model.load read; a hand-over happens only under auto
            solver=cast(SolverName, "auto" if model.solver == HANDED_OVER else model.solver),
            l2=model.l2,
            l1=model.l1,
            standardize=model.standardize,
            class_weight=None if model.class_weight is None else {0: model.class_weight[0], 1: model.class_weight[1]},
            missing=model.missing,
        )
        return estimator._set_from_model(model)

    def _set_from_model(self, model):
        self.classes_ = np.array([0, 1])
        self.coef_ = np.array([model.coef], dtype=np.float64)
        self.intercept_ = np.array([model.intercept])
        self.n_iter_ = np.array([model.n_iter], dtype=np.int32)
        self.n_passes_ = model.n_passes
        self.converged_ = model.converged
        self.loss_history_ = list(model.loss_history)
        columns = model.columns
        self.n_features_in_ = len(columns)
        self.feature_names_in_ = np.array(columns, dtype=object)
        self.impute_ = None if model.impute is None else np.array(model.impute, dtype=np.float64)
        self.indicator_features_ = np.array([columns.index(name) for name in model.indicators or []], dtype=int)
        return self


#: Feature dtypes fitted and scored as they are (anything else: float64).
_FEATURE_DTYPES = [np.float64, np.float32]


def _as_features(X):
    """A dask X in one of :data:`_FEATURE_DTYPES` (float32 kept: half the
    memory, widened exactly inside the kernels)."""
    return X if X.dtype in _FEATURE_DTYPES else X.astype(np.float64)


def _with_indicators(X: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``X`` with a 0/1 column (X's dtype, F-ordered) per index of ``columns``:
    1 where that column is missing (NaN)."""
    if not len(columns):
        return X
    return np.asfortranarray(np.column_stack([X, np.isnan(X[:, columns]).astype(X.dtype)]))


def _dask_with_indicators(X, columns: np.ndarray):
    """:func:`_with_indicators` of each block of a dask ``X`` (one column chunk)."""
    if not len(columns):
        return X
    return X.map_blocks(_with_indicators, columns, chunks=(X.chunks[0], (X.shape[1] + len(columns),)), dtype=X.dtype)


def _both_classes(positive: np.ndarray) -> np.ndarray:
    return np.column_stack([1.0 - positive, positive])


def _is_dask(value) -> bool:
    return type(value).__module__.startswith("dask.")


def _dask_array(value, name: str):
    """``value`` (a dask array, DataFrame or Series) as a dask array (row chunk sizes may be unknown)."""
    import dask.array as da

    if hasattr(value, "to_dask_array"):  # a dask DataFrame or Series
        return value.to_dask_array()
    if not isinstance(value, da.Array):
        raise TypeError(
            f"{name} must be a dask array, DataFrame or Series, or an array in memory; got {type(value).__name__}"
        )
    return value


def _known_rows(array):
    """``array`` with its row chunk sizes known (computed from the blocks where they are not)."""
    return array.compute_chunk_sizes() if any(math.isnan(size) for size in array.chunks[0]) else array


def _dask_rows(value, rows: tuple[int, ...], name: str):
    """``value`` (y or sample_weight: dask or in memory) as a 1-d dask array
    with the row chunks ``rows`` of X, or a ValueError if it does not fit X."""
    import dask.array as da

    value = _known_rows(_dask_array(value, name)) if _is_dask(value) else np.asarray(value)
    if value.ndim != 1:
        raise ValueError(f"Expected a 1-dimensional {name}; got shape {value.shape}")
    if value.shape[0] != sum(rows):
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: "
            f"[{sum(rows)}, {value.shape[0]}] (rows of X and of {name})"
        )
    if not isinstance(value, da.Array):
        return da.from_array(value, chunks=(rows,))
    return value if value.chunks[0] == rows else value.rechunk((rows,))


def _columns_of(X):
    """For scikit-learn's feature-name checks: an empty pandas DataFrame with a
    dask DataFrame's columns (nothing computed), else ``X`` itself."""
    if not _is_dask(X) or not hasattr(X, "columns"):
        return X
    import pandas as pd

    return pd.DataFrame(columns=list(X.columns))
