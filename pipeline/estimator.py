"""A scikit-learn compatible estimator around the exact trainer.

``LogisticRegression`` follows scikit-learn's conventions (``fit``,
``predict``, ``predict_proba`` of shape (n, 2), ``decision_function``,
``score``, ``coef_`` of shape (1, d), ``intercept_``, ``classes_``,
``n_iter_``, ``get_params``/``set_params``), so it works in
``sklearn.pipeline.Pipeline`` and ``GridSearchCV``.  Any class labels are
accepted (with two, ``classes_[1]`` is the positive class; with more, the
model is multinomial: ``coef_`` (K, d), ``predict_proba`` (n, K),
``decision_function`` (n, K)).  Numpy input trains
in this process; a dask array trains on the cluster of the current
``distributed`` client, one task per worker thread, to the same bits.

The objective is the one of the CLI (:mod:`pipeline.objective`): penalties
are ``l2`` and ``l1`` strengths on the mean loss (scikit-learn's
``C = 1 / (l2 * n_samples)`` for pure L2 without weights).
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import shlex
import warnings
from typing import Any, cast

import numpy as np
import pyarrow as pa

# scikit-learn comes with dask-ml (a core dependency); imported only with this module
from sklearn.base import BaseEstimator, ClassifierMixin

from .config import InferenceKind, SolverName, TrainConfig, check_hashing
from .data import FOLD_CODE, MISSING_POLICIES, Chunk, Folds, MissingPolicy, indicator_name
from .errors import (
    ConfigError,
    LabelValueError,
    NonFiniteInputError,
    PipelineError,
    TooManyLevelsError,
    adopt_sklearn_base,
    is_positive_number,
)
from .exact import ExactSums
from .fitting import HANDED_OVER, build_model, fit, warn_if_underdetermined, warn_single_row_classes, with_inference
from .inference import DEFAULT_CONFIDENCE, Inference, check_inference, refusal
from .kernel import class_sums, sigmoid, softmax
from .levels import (
    MAX_LEVELS,
    LevelCounts,
    LevelKind,
    Vocabulary,
    check_level_policy,
    count_levels,
    level_kind,
    only_nulls,
    vocabulary,
)
from .model import Model, class_margins, predicted_positive
from .objective import Penalty
from .paths import DEFAULT_RATIO, choose
from .reduce import DaskEvaluator, InProcessEvaluator, compile_ahead
from .solvers import SolverOptions
from .tiers import worth_compiling
from .train import (
    Recorder,
    fit_options,
    fit_path,
    hashed_of,
    level_settings_given,
    train,
    warn_unused_level_settings,
)

__all__ = ["LogisticRegression", "LogisticRegressionCV"]

adopt_sklearn_base()  # scikit-learn is loaded now: ConvergenceWarning becomes a subclass of its class


class LogisticRegression(ClassifierMixin, BaseEstimator):
    """Exact, reproducible logistic regression: binary, or multinomial
    (softmax) for more than two classes (``coef_`` of shape (K, d),
    ``predict_proba`` of shape (n, K); the coefficients are centered across
    the classes, see :func:`pipeline.fitting.fit`).

    Parameters mirror ``pipeline train`` options: ``solver`` (``auto``,
    ``lbfgs``, ``newton``, ``gd``), ``l2``, ``l1``, ``standardize``, ``class_weight``
    (None, ``"balanced"`` or ``{label: weight}`` for both labels),
    ``max_iter``, ``tol``, ``ftol``, ``history_size``, ``missing``.

    ``categorical`` (``"from_dtype"``, the default, or a list of column names):
    which columns of a pandas or dask DataFrame are categorical.  Columns of
    ``category``, ``object`` or ``string`` dtype always are (like
    scikit-learn's ``categorical_features="from_dtype"``); named integer
    columns too.  Each one's levels (``vocabularies_``: sorted values, then
    ``<null>``, then ``<other>`` for values rarer than ``min_category_count``
    or beyond the ``max_categories`` most frequent) are learnt when fitting;
    their coefficients follow the numeric columns' (and the indicators') in
    ``coef_``, as ``OneHotEncoder(handle_unknown="ignore")`` would lay them
    out; an unseen value scores as ``<other>``, or adds nothing without it.
    ``hash_buckets`` (None, or 1 to 2**24): the ``hashed`` categorical
    columns (None: every one) take no levels from the data but a value's
    bucket, the fixed 64-bit hash of ``pipeline train --hash-buckets``
    (levels ``column=#0`` .. ``column=#(N-1)``, then ``<null>``): the same
    model as the command's on the same rows.

    ``missing``: what a NaN in ``X`` means.  ``"error"`` (default): refused,
    as scikit-learn does.  ``"mean"``: a missing value, which takes its
    column's exact mean over the training rows (``impute_``; also when
    scoring), like ``SimpleImputer(strategy="mean")`` in front of the model.
    ``"indicator"``: the mean, plus a 0/1 feature for each column that had
    missing values when fitting (``indicator_features_``: their indices; their
    coefficients follow the columns' in ``coef_``), like
    ``SimpleImputer(strategy="mean", add_indicator=True)``.

    ``inference`` (``"nonrobust"`` or ``"hc0"``; binary models on numeric
    features without ``l1``): coefficient inference at the optimum
    (:mod:`pipeline.inference`), in ``inference_`` (covariance, likelihood
    statistics, AIC, BIC, pseudo-R²) and, with the intercept last,
    ``std_err_``, ``z_``, ``p_values_`` and ``conf_int_`` (``(d + 1, 2)``, at
    ``confidence``), as statsmodels' ``Logit`` reports them.
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
        categorical="from_dtype",
        min_category_count: int = 1,
        max_categories: int | None = None,
        hash_buckets: int | None = None,
        hashed=None,
        inference: str | None = None,
        confidence: float = DEFAULT_CONFIDENCE,
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
        self.categorical = categorical
        self.min_category_count = min_category_count
        self.max_categories = max_categories
        self.hash_buckets = hash_buckets
        self.hashed = hashed
        self.inference = inference
        self.confidence = confidence

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Newton and coefficient inference are binary (refused for more classes)
        tags.classifier_tags.multi_class = self._binary_only() is None
        # a NaN is a missing value under a policy (scikit-learn's meta-estimators read this)
        tags.input_tags.allow_nan = self.missing in MISSING_POLICIES and self.missing != "error"
        return tags

    def score(self, X, y, sample_weight=None) -> float:
        """The accuracy of :meth:`predict` on ``X`` (scikit-learn's ``score``);
        dask input too, whose predictions' row chunks may be unknown (a dask
        DataFrame's): they are computed first."""
        from sklearn.metrics import accuracy_score

        predicted, y, sample_weight = (
            value.compute() if _is_dask(value) else value for value in (self.predict(X), y, sample_weight)
        )
        return float(accuracy_score(y, predicted, sample_weight=sample_weight))

    def _check_level_policy(self) -> None:
        """``min_category_count`` and ``max_categories``, by the CLI's rules (a ValueError)."""
        try:
            check_level_policy(self.min_category_count, self.max_categories)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    # ------------------------------------------------------------------ fit

    def fit(self, X, y, sample_weight=None):
        from sklearn.utils.multiclass import (
            check_classification_targets,
            type_of_target,
        )
        from sklearn.utils.validation import _check_sample_weight

        self.vocabularies_: list[Vocabulary] = []
        self._check_level_policy()
        if _is_dask(X):
            return self._fit_dask(X, y, sample_weight)
        X, y, codes, columns = self._in_memory_design(X, y)
        check_classification_targets(y)
        target = type_of_target(y, input_name="y", raise_unknown=True)
        if target not in ("binary", "multiclass"):
            raise ValueError(f"Only binary and multiclass targets are supported. The type of the target is {target}.")
        y01 = self._encode(y)
        weights = None
        if sample_weight is not None:
            weights = _check_sample_weight(sample_weight, X, dtype=np.float64, copy=True, ensure_non_negative=True)
        self._class_totals = _class_totals([class_sums(y01, weights, self._n_classes)]) if self._n_classes else None

        X = self._with_fitted_indicators(X)
        # what the data make the settings do (the warnings of `pipeline train`)
        n_coef = X.shape[1] + sum(vocabulary.size for vocabulary in self.vocabularies_)
        try:
            penalty = self._penalty()
        except ConfigError:
            penalty = None  # (a bad l2 or l1: refused as a ValueError when the fit starts)
        if penalty is not None:
            warn_if_underdetermined(n_coef, X.shape[0], columns, penalty, stacklevel=2)
        warn_single_row_classes("y", self.classes_.tolist(), np.unique(y, return_counts=True)[1].tolist(), stacklevel=2)
        if codes is not None:
            X = np.asfortranarray(np.column_stack([X, codes.astype(X.dtype)]))
        chunk = (X, y01) if weights is None else (X, y01, weights)
        if worth_compiling(X.size):
            compile_ahead()
        return self._fit_evaluator(InProcessEvaluator([chunk], X.shape[1]))

    def _in_memory_design(self, X, y) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
        """In-memory ``X`` and ``y`` checked (scikit-learn's ``validate_data``):
        the numeric columns as a float array (float32 stays float32: widened
        exactly in the kernels), F-ordered; the categorical columns' levels
        learnt (``vocabularies_``) and their codes, None without any; the
        categorical columns' names.  Sets the fitted input's names."""
        from sklearn.utils.validation import validate_data

        columns = self._categorical_columns(X)
        hashed = self._hashed(columns)
        codes = None
        if columns:
            X = _named_by_text(X)
            self.vocabularies_ = self._learn_levels(
                [(_level_counts(X[name], name, name not in hashed),) for name in columns], columns, hashed
            )
            codes = _codes_of(X, self.vocabularies_)
            all_columns, X = list(X.columns), X.drop(columns=columns)
            if not X.shape[1]:  # only categorical columns: no numeric design
                X = np.empty((len(X), 0))
        try:
            X, y = validate_data(
                self,
                X,
                y,
                dtype=_FEATURE_DTYPES,
                order="F",
                y_numeric=False,
                ensure_all_finite=self._finite(),
                ensure_min_features=0 if columns else 1,
            )
        except ValueError as exc:  # (scikit-learn's words point elsewhere: say this estimator's setting)
            if not str(exc).startswith("Input X contains NaN") or self.missing != "error":
                raise
            raise ValueError(
                f"Input X contains NaN. {type(self).__name__} refuses a missing value with missing='error' (the "
                "default); give missing='mean' (its column's exact mean takes its place, as SimpleImputer's) or "
                "missing='indicator' (the mean and a 0/1 missing-value feature)"
            ) from exc
        if columns:
            self.numeric_columns_ = [name for name in all_columns if name not in columns]
            self.n_features_in_ = len(all_columns)
            self.feature_names_in_ = np.array(all_columns, dtype=object)
        return X, y, codes, columns

    def _with_fitted_indicators(self, X: np.ndarray) -> np.ndarray:
        """``X`` with a 0/1 column for each column that has a missing value
        under ``missing="indicator"`` (``indicator_features_``: their indices)."""
        self.indicator_features_ = np.flatnonzero(np.isnan(X).any(axis=0)) if self._indicates() else np.empty(0, int)
        return _with_indicators(X, self.indicator_features_)

    def _named_categorical(self) -> list:
        """The columns ``categorical`` names (none for ``"from_dtype"``): a list,
        tuple, array, Index or Series of names."""
        named = self.categorical
        if isinstance(named, str):
            if named == "from_dtype":
                return []
            raise ValueError(
                f"categorical must be 'from_dtype' or a list of column names; got {named!r} (one column: [{named!r}])"
            )
        if named is None:
            return []
        try:
            return list(named)
        except TypeError:  # (categorical=5: "'int' object is not iterable")
            raise ValueError(
                f"categorical must be 'from_dtype' or a list of column names; got {type(named).__name__} {named!r}"
            ) from None

    def _categorical_columns(self, X) -> list[str]:
        """The categorical columns of a DataFrame (see the class docstring), in X's order."""
        named = self._named_categorical()
        if not hasattr(X, "columns") or not hasattr(X, "dtypes"):
            if named:
                raise ValueError("categorical names columns: X must be a pandas or dask DataFrame")
            return []
        # (by name as text: the design's columns are named by text, whatever X's names are)
        present = [str(name) for name in X.columns]
        absent = [name for name in named if str(name) not in present]
        if absent:
            raise ValueError(f"categorical columns {absent} are not columns of X ({list(X.columns)})")
        import pandas as pd
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        # (a category of booleans is categorical too, though pandas calls its dtype boolean)
        chosen = {str(name) for name in named} | {
            str(name)
            for name, dtype in X.dtypes.items()
            if isinstance(dtype, pd.CategoricalDtype) or not (is_numeric_dtype(dtype) or is_bool_dtype(dtype))
        }
        return [name for name in present if name in chosen]

    def _hashed(self, columns: list[str]) -> set[str]:
        """Which of the categorical ``columns`` ``hash_buckets`` hashes (the
        command's rules, in this class's words: a ValueError)."""
        try:
            check_hashing(self.hash_buckets, self.hashed)
            named = None if self.hashed is None else [str(name) for name in self.hashed]
            hashed = hashed_of(
                columns, self.hash_buckets, named, self.min_category_count, self.max_categories, "the hashed parameter"
            )
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        if not columns:
            # (said at the caller of fit: it called a method that called this one)
            warn_unused_level_settings(self.hash_buckets, self.min_category_count, self.max_categories, stacklevel=4)
        return hashed

    def _learn_levels(self, counted: list[tuple], columns: list[str], hashed: set[str]) -> list[Vocabulary]:
        """Each column's levels from its ``(kind, LevelCounts)`` per part (one part
        in memory, one per partition of a dask DataFrame); a ``hashed`` one's
        buckets (its parts' kinds only: nothing counted)."""
        vocabularies = []
        for name, parts in zip(columns, counted):
            kinds = {kind for kind, _ in parts if kind is not None}
            if len(kinds) > 1:
                raise ValueError(f"categorical column {name!r} holds both text and integers")
            if name in hashed:  # (_hashed checked hash_buckets)
                buckets = int(cast(int, self.hash_buckets))
                vocabularies.append(Vocabulary.hashed(name, kinds.pop() if kinds else "str", buckets))
                continue
            total = LevelCounts()
            for _, more in parts:
                total = total.merge(more)
            kind: LevelKind = kinds.pop() if kinds else "str"  # (nulls only: text)
            try:
                vocabularies.append(vocabulary(name, kind, total, self.min_category_count, self.max_categories))
            except TooManyLevelsError as exc:  # (in this class's words: its parameters)
                raise ValueError(
                    f"categorical column {name!r} has {len(total.counts)} distinct values; expected at "
                    f"most {MAX_LEVELS} without a policy: keep the most frequent with max_categories=K, drop "
                    f"rare ones with min_category_count=N, or hash it with hash_buckets=N, hashed=[{name!r}]"
                ) from exc
            except PipelineError as exc:  # (a bad policy: scikit-learn callers expect ValueError)
                raise ValueError(str(exc)) from exc
        return vocabularies

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

        try:
            client = get_client()
        except ValueError:  # (distributed's "No global client found and no address provided")
            raise ValueError(
                "dask input trains on a distributed cluster: expected a Client (distributed.Client(), or "
                "Client(LocalCluster()) on this machine) before fit; found none; numpy or pandas input "
                "trains in this process"
            ) from None
        _require_2d(X)
        _check_feature_names(self, _columns_of(X), reset=True)
        n_columns = len(X.columns) if hasattr(X, "columns") else X.shape[1]
        columns = self._categorical_columns(X)
        hashed = self._hashed(columns)
        if columns:
            X = _named_by_text(X)
            self.feature_names_in_ = np.array(list(X.columns), dtype=object)
            self.numeric_columns_ = [name for name in X.columns if name not in columns]
            counted = dask.compute(*[dask.delayed(_frame_counts)(part, columns, hashed) for part in X.to_delayed()])
            self.vocabularies_ = self._learn_levels(
                [tuple(part[k] for part in counted) for k in range(len(columns))], columns, hashed
            )
            X = _dask_design(X, self.numeric_columns_, self.vocabularies_)
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
        if X.shape[0] == 0:  # (scikit-learn's words for numpy input; the class check said "found 0 classes")
            raise ValueError(
                f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required by "
                f"{type(self).__name__}."
            )
        inputs = {"X": X, **{name: _dask_rows(value, X.chunks[0], name) for name, value in inputs.items()}}
        if "sample_weight" in inputs:
            inputs["sample_weight"] = inputs["sample_weight"].astype(np.float64)
        inputs = dict(zip(inputs, client.persist(list(inputs.values()))))
        X, y = inputs["X"], inputs["y"]
        numeric = {name: array for name, array in inputs.items() if array.dtype.kind in "fc"}
        allow_nan = self._imputes()  # NaN in X is a missing value
        weights = inputs.get("sample_weight")
        classes, flags, nan_columns, negative = dask.compute(
            da.unique(y),
            [(da.isnan(array).any(), da.isinf(array).any()) for array in numeric.values()],
            da.isnan(X).any(axis=0) if allow_nan and "X" in numeric else np.zeros(X.shape[1], bool),
            False if weights is None else (weights < 0).any(),
        )
        for (name, array), (nan, inf) in zip(numeric.items(), flags):
            if allow_nan and name == "X":
                nan = False
            if nan or inf:
                found = _non_finite(nan, inf)
                raise NonFiniteInputError(
                    f"Input {name} contains {found}; expected finite values (checked over the whole "
                    f"dask array of shape {array.shape} before training, as scikit-learn checks numpy input)"
                )
        if negative:  # (scikit-learn's words for numpy input)
            assert weights is not None
            raise ValueError(
                "Negative values in data passed to `sample_weight`; expected weights >= 0 (checked over the "
                f"whole dask array of shape {weights.shape} before training)"
            )
        check_classification_targets(classes)
        target = type_of_target(classes, input_name="y")
        if target not in ("binary", "multiclass"):
            raise ValueError(f"Only binary and multiclass targets are supported. The type of the target is {target}.")
        self._set_classes(classes)
        if len(self.classes_) == 2:
            y01 = (y == self.classes_[1]).astype(np.float64)
        else:  # class codes 0..K-1
            y01 = y.map_blocks(_class_codes, self.classes_, dtype=np.float64)
        self._class_totals = None
        if self._n_classes:  # exact per block, merged: the numpy path's bits
            weights = inputs.get("sample_weight")
            blocks = zip(y01.to_delayed(), [None] * len(y01.chunks[0]) if weights is None else weights.to_delayed())
            parts = [dask.delayed(class_sums)(codes, w, self._n_classes) for codes, w in blocks]
            self._class_totals = _class_totals(dask.compute(*parts))
        self.n_features_in_ = n_columns
        n_codes = len(self.vocabularies_)
        self.indicator_features_ = (
            np.flatnonzero(nan_columns[: X.shape[1] - n_codes]) if self._indicates() else np.empty(0, int)
        )
        if len(self.indicator_features_):
            X = client.persist(_dask_with_indicators(X, self.indicator_features_, n_codes))
        evaluator = DaskEvaluator(client, Chunk(X, y01, inputs.get("sample_weight")))
        if worth_compiling(X.shape[0] * X.shape[1]):
            compile_ahead(client)
        return self._fit_evaluator(evaluator)

    def _encode(self, y) -> np.ndarray:
        """``y`` as 0/1 (two classes: 1 for ``classes_[1]``) or class codes 0..K-1."""
        self._set_classes(np.unique(y))
        if len(self.classes_) == 2:
            return (y == self.classes_[1]).astype(np.float64)
        return _class_codes(y, self.classes_)

    def _set_classes(self, classes) -> None:
        if len(classes) < 2:
            raise ValueError(
                f"LogisticRegression needs samples of at least 2 classes; found {len(classes)} class"
                f"{'es' if len(classes) != 1 else ''}: {list(classes)[:10]}"
            )
        binary_only = self._binary_only()
        if len(classes) > 2 and binary_only:  # (scikit-learn's words for a binary classifier)
            raise ValueError(
                f"Only binary classification is supported with {binary_only}; found {len(classes)} classes in y: "
                f"{list(classes)[:10]}"
            )
        self.classes_ = classes

    def _binary_only(self) -> str | None:
        """The setting that makes this estimator binary (its tag ``multi_class``
        false), and why; None when it fits any number of classes."""
        if self.solver == "newton":
            return "solver='newton' (the multinomial model's Hessian is not formed; use 'lbfgs' or 'auto')"
        if self.inference not in (None, "none"):
            return f"inference={self.inference!r} (coefficient inference is for the binary model)"
        return None

    @property
    def _n_classes(self) -> int:
        """0 for two classes (the binary model); K for more (the multinomial one)."""
        return len(self.classes_) if len(self.classes_) > 2 else 0

    def _penalty(self) -> Penalty:
        """The fit's penalty (:class:`LogisticRegressionCV` resolves its ``l1=None``)."""
        return Penalty(l2=self.l2, l1=self.l1)

    def _checked_class_weight(self):
        """``class_weight`` as given, if it is None, ``"balanced"`` or a dict of
        finite positive weights; else scikit-learn's ``ValueError``."""
        weight = self.class_weight
        if weight is None or (isinstance(weight, str) and weight == "balanced"):
            return weight
        if not isinstance(weight, dict):
            raise ValueError(f"class_weight must be None, 'balanced' or a dict; got {weight!r}")
        bad = {key: value for key, value in weight.items() if not is_positive_number(value)}
        if bad:
            raise ValueError(f"class_weight must hold finite positive weights; found {bad!r}")
        return weight

    def _class_weight(self):
        weight = self._checked_class_weight()
        if not isinstance(weight, dict):
            return weight
        missing = [label for label in self.classes_.tolist() if label not in weight]  # (as Python values)
        if missing:
            raise ValueError(f"class_weight has no weight for class(es) {missing}")
        return tuple(float(weight[label]) for label in self.classes_)

    def _fit_evaluator(self, evaluator):

        try:  # the values' rules are the configuration objects' (SolverOptions, Penalty)
            options = SolverOptions(
                max_iter=self.max_iter, tol=self.tol, ftol=self.ftol, history_size=self.history_size
            )
            if self.inference not in (None, "none"):
                check_inference(self.inference, self.confidence)
                reason = refusal(
                    l1=float(self._penalty().l1),
                    n_classes=self._n_classes,
                    categorical=[vocabulary.column for vocabulary in self.vocabularies_],
                    class_weight=self.class_weight is not None,
                )
                if reason is not None:
                    raise ConfigError(f"inference: {reason}", column="inference")
            result = fit(
                evaluator,
                solver=self.solver,
                options=options,
                penalty=self._penalty(),
                standardize=self.standardize,
                class_weight=self._class_weight(),
                impute=self._imputes(),
                levels=[v.size for v in self.vocabularies_],
                n_classes=self._n_classes,
                class_totals=getattr(self, "_class_totals", None),
                features=self._design_names(evaluator.n_features),  # (named in its warnings and errors)
            )
            if self.inference not in (None, "none"):
                names = [f"x{j}" for j in range(evaluator.n_features)]
                if hasattr(self, "feature_names_in_") and len(self.feature_names_in_) == len(names):
                    names = [str(name) for name in self.feature_names_in_]
                result = with_inference(evaluator, result, names, self.inference, float(self.confidence))
        except PipelineError as exc:  # scikit-learn callers expect ValueError
            raise ValueError(_in_words(exc, self.classes_)) from exc
        self._set_inference(result.inference)
        self.impute_ = None
        if result.fill is not None:
            self.impute_ = result.fill[: result.fill.shape[0] - len(self.indicator_features_)].copy()
        blocks = result.coef.reshape(max(self._n_classes, 1), -1)
        self.coef_ = blocks[:, :-1].copy()
        self.intercept_ = blocks[:, -1].copy()
        self.n_iter_ = np.array([result.result.n_iter], dtype=np.int32)
        self.n_passes_ = result.n_passes
        self.converged_ = result.result.converged
        self.loss_history_ = [record.loss for record in result.result.history]
        return self

    def _design_names(self, n_columns: int) -> list[str] | None:
        """The names of the fitted design's ``n_columns`` columns -- the numeric
        ones, their missing-value indicators (``name=<missing>``), the
        categorical ones' level codes -- or None where X had no names."""
        if not hasattr(self, "feature_names_in_"):
            return None
        numeric = (
            [str(name) for name in self.numeric_columns_]
            if self.vocabularies_
            else [str(name) for name in self.feature_names_in_]
        )
        names = (
            numeric
            + [indicator_name(numeric[j]) for j in self.indicator_features_]
            + [vocabulary.column for vocabulary in self.vocabularies_]
        )
        return names if len(names) == n_columns else None

    def _set_inference(self, inference: Inference | None) -> None:
        """``inference_`` and its per-coefficient arrays (intercept last); None without inference."""
        self.inference_ = inference
        self.std_err_ = self.z_ = self.p_values_ = self.conf_int_ = None
        if inference is not None:
            self.std_err_, self.z_, self.p_values_ = inference.std_err, inference.z, inference.p_value
            self.conf_int_ = np.column_stack(inference.conf_int)

    # ------------------------------------------------------------------ predict

    def decision_function(self, X) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted, validate_data

        from .fused import margins_fast as margins  # kernel.margins compiled, same bits

        check_is_fitted(self)
        vocabularies = getattr(self, "vocabularies_", [])
        if vocabularies:
            return self._categorical_margins(X, vocabularies)
        blocks = np.column_stack([self.coef_, self.intercept_])  # a row per class (one: binary)
        if _is_dask(X):
            from sklearn.utils.validation import _check_feature_names, _check_n_features

            _require_2d(X)
            _check_feature_names(self, _columns_of(X), reset=False)
            X = _dask_array(X, "X")
            _check_n_features(self, X, reset=False)
            X = _finite_blocks(_as_features(X).rechunk({1: -1}), allow_nan=self._scoring_finite() == "allow-nan")
            X = _dask_with_indicators(X, self._indicators())
            if len(blocks) > 1:
                return X.map_blocks(
                    class_margins, blocks, self._fill(), [], chunks=(X.chunks[0], (len(blocks),)), dtype=np.float64
                )
            return X.map_blocks(margins, blocks[0], self._fill(), drop_axis=1, dtype=np.float64)
        X = validate_data(self, X, dtype=_FEATURE_DTYPES, reset=False, ensure_all_finite=self._scoring_finite())
        X = _with_indicators(X, self._indicators())
        if len(blocks) > 1:
            return class_margins(X, blocks, self._fill(), [])
        return margins(X, blocks[0], self._fill())

    def _categorical_margins(self, X, vocabularies: list[Vocabulary]):
        """Margins of a DataFrame with the fitted categorical columns (numpy, or dask for dask input)."""
        expected = [str(name) for name in self.feature_names_in_]
        found = [str(name) for name in getattr(X, "columns", [])]
        if sorted(found) != sorted(expected):
            raise ValueError(f"X must be a DataFrame with the columns {expected}; found {found or type(X).__name__}")
        blocks = np.column_stack([self.coef_, self.intercept_])  # a row per class (one: binary)
        fill, indicators, finite = self._fill(), self._indicators(), self._scoring_finite()
        numeric = self.numeric_columns_
        X = _named_by_text(X)

        def score(part) -> np.ndarray:
            design = _with_indicators(_frame_design(part, numeric, vocabularies, finite), indicators, len(vocabularies))
            margin = class_margins(design, blocks, fill, vocabularies)
            return margin[:, 0] if len(blocks) == 1 else margin

        if _is_dask(X):
            import dask
            import dask.array as da

            shape = (np.nan,) if len(blocks) == 1 else (np.nan, len(blocks))
            parts = [da.from_delayed(dask.delayed(score)(part), shape, np.float64) for part in X.to_delayed()]
            return da.concatenate(parts)
        try:
            return score(X)
        except PipelineError as exc:  # (a column of another type: scikit-learn callers expect ValueError)
            if isinstance(exc, ValueError):
                raise
            raise ValueError(str(exc)) from exc

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
        if margin.ndim == 2:  # more than two classes: the softmax of each row's margins
            if _is_dask(margin):
                return margin.map_blocks(_softmax, dtype=np.float64)
            return _softmax(margin)
        if _is_dask(margin):  # (block by block: row chunk sizes may be unknown)
            positive = margin.map_blocks(sigmoid, dtype=np.float64)
            return positive.map_blocks(_both_classes, new_axis=1, chunks=(positive.chunks[0], (2,)), dtype=np.float64)
        return _both_classes(sigmoid(margin))

    def predict_log_proba(self, X) -> np.ndarray:
        return np.log(self.predict_proba(X))

    def predict(self, X):
        margin: Any = self.decision_function(X)  # numpy, or dask for dask input
        if margin.ndim == 2:  # the most probable class (the first of a tie), as `pipeline predict` says
            if _is_dask(margin):
                best = margin.map_blocks(_most_probable, drop_axis=1, dtype=np.int64)
                return best.map_blocks(lambda b: self.classes_[b], dtype=self.classes_.dtype)
            return self.classes_[_most_probable(margin)]
        positive = margin.map_blocks(sigmoid, dtype=np.float64) if _is_dask(margin) else sigmoid(margin)
        positive = predicted_positive(positive)  # (`pipeline predict`'s rule, on the same proba)
        if _is_dask(positive):
            return positive.map_blocks(lambda p: self.classes_[p.astype(int)], dtype=self.classes_.dtype)
        return self.classes_[positive.astype(int)]

    # ------------------------------------------------------------------ Parquet and model files

    def fit_parquet(self, path: str, *, label: str, features=None, weight: str | None = None, cluster=None):
        """Train on a Parquet dataset like ``pipeline train`` (any labels, as
        the command takes them); ``cluster``: a :class:`pipeline.ClusterSpec`,
        default in-process.  A ``class_weight`` dict is keyed by the label's
        values (or their text); every class needs a weight, and every key must
        be a class (a ``ValueError`` otherwise, as for ``fit``)."""
        named = self._named_categorical()  # ("from_dtype": None below; another text is refused)
        try:
            config = TrainConfig(
                data=str(path),
                label=label,
                features=features,
                weight=weight,
                class_weight=self._checked_class_weight(),
                solver=self.solver,
                options=SolverOptions(
                    max_iter=self.max_iter, tol=self.tol, ftol=self.ftol, history_size=self.history_size
                ),
                penalty=self._penalty(),
                standardize=self.standardize,
                cluster=cluster,
                # NaN is the estimator's missing value (nulls are Parquet's)
                missing=cast(MissingPolicy, self.missing) if self._imputes() else "error",
                nan_as_missing=self._imputes(),
                categorical=None if isinstance(self.categorical, str) else tuple(named),
                min_category_count=self.min_category_count,
                max_categories=self.max_categories,
                hash_buckets=self.hash_buckets,
                hashed=self.hashed,  # (TrainConfig's rules: a text refused, a list of names taken as a tuple)
                inference=cast(InferenceKind, self.inference or "none"),
                # (the intervals' level: used with inference only, as in fit())
                confidence=float(self.confidence) if self.inference not in (None, "none") else DEFAULT_CONFIDENCE,
            )
            model = train(config)
        except ConfigError as exc:  # (a parameter's value, or class_weight's keys: scikit-learn's error, as fit's)
            raise ValueError(str(exc)) from None
        return self._set_from_model(model)

    @classmethod
    def from_model(cls, directory: str):
        """A fitted estimator from ``directory/model.json``, whose parameters
        are the model's settings as far as the file holds them: its solver,
        penalty, standardization, missing-value policy, categorical columns
        (by name; the hashed ones and their buckets), inference and resolved class weights (per class: a
        ``"balanced"`` fit's weights on its data); the stopping rules and
        ``min_category_count``/``max_categories`` are not in ``model.json``
        and take their defaults (a refit, e.g. after ``clone``, learns the
        levels again by those)."""

        model = Model.load(directory)
        hashed = [vocabulary for vocabulary in model.vocabularies if vocabulary.buckets]
        estimator = cls(
            # the resolved solver Model.load read; a hand-over happens only under auto
            solver=cast(SolverName, "auto" if model.solver == HANDED_OVER else model.solver),
            l2=model.l2,
            l1=model.l1,
            standardize=model.standardize,
            class_weight=None if model.class_weight is None else dict(zip(model.class_labels, model.class_weight)),
            missing=model.missing,
            # the model's categorical columns by name (an integer-coded one is not categorical by its dtype)
            categorical=[vocabulary.column for vocabulary in model.vocabularies] or "from_dtype",
            # (a refit hashes them again: it learnt their levels from the data instead)
            hash_buckets=hashed[0].buckets if hashed else None,
            hashed=[vocabulary.column for vocabulary in hashed] or None,
            inference=None if model.inference is None else model.inference["cov_type"],
            confidence=DEFAULT_CONFIDENCE if model.inference is None else float(model.inference["confidence"]),
        )
        return estimator._set_from_model(model)

    def _set_from_model(self, model):
        self.classes_ = np.array(model.class_labels)
        self.coef_ = model.coef_array.reshape(len(self.classes_) if model.multinomial else 1, -1)
        self.intercept_ = np.array(model.intercept, dtype=np.float64).reshape(-1)
        if len(self.classes_) == 2 and model.multinomial:  # scikit-learn's two classes: one vector, the second's
            self.coef_ = self.coef_[1:] - self.coef_[:1]  # log-odds (the same probabilities, to rounding)
            self.intercept_ = self.intercept_[1:] - self.intercept_[:1]
        self.n_iter_ = np.array([model.n_iter], dtype=np.int32)
        self.n_passes_ = model.n_passes
        self.converged_ = model.converged
        self.loss_history_ = list(model.loss_history)
        columns = model.columns
        self.n_features_in_ = len(columns)
        self.feature_names_in_ = np.array(columns, dtype=object)
        self.impute_ = None if model.impute is None else np.array(model.impute, dtype=np.float64)
        dense = model.dense_columns
        self.indicator_features_ = np.array([dense.index(name) for name in model.indicators or []], dtype=int)
        self.vocabularies_ = model.vocabularies
        if self.vocabularies_:
            self.numeric_columns_ = dense
        self._set_inference(model.inference_result)
        return self


class LogisticRegressionCV(LogisticRegression):
    """Exact K-fold cross-validated logistic regression (binary), as
    ``pipeline train --cv`` (:mod:`pipeline.crossval`) on in-memory input (a
    dask collection is computed first): numpy arrays, or pandas DataFrames
    whose categorical columns and missing
    values it takes as :class:`LogisticRegression` does (``categorical``,
    ``min_category_count``, ``max_categories``, ``hash_buckets``,
    ``hashed``, ``missing``).  The levels are learnt from every row, so each
    fold's fit has every level (one absent from its training rows keeps a
    zero gradient); a missing value's mean is each fit's own, from its
    training rows.

    ``cv`` folds from the hash of each row's position (the same folds as the
    CLI's on the same rows in the same order), or a scikit-learn splitter
    (or ``(train, test)`` pairs) whose test sets partition the rows; ``path`` strengths of the
    penalty whose mix ``l1`` and ``l2`` give (``l1`` alone, or neither: the
    lasso, from the strength that zeroes every weight; ``l2`` alone: ridge,
    from ``l2``; both: that elastic net)
    down to ``path_ratio`` times the largest, each cross-validated with the
    folds' fits in lockstep (``path=None``: the given penalty alone);
    ``rule`` ``"min"`` or ``"1se"`` chooses; the model is the fit on every
    row at that strength, the same bits as the CLI's.

    Attributes, besides :class:`LogisticRegression`'s: ``strengths_`` (the
    grid), ``cv_losses_`` (points x folds: each fold's held-out mean loss),
    ``cv_loss_`` and ``cv_std_`` (their mean and standard deviation per
    point), ``chosen_`` (the chosen point), ``l1_`` and ``l2_`` (its
    penalty), ``coefs_path_`` (points x (d + 1): the fits on every row,
    intercept last; ``d`` counts the indicators and levels too).
    """

    def __init__(
        self,
        *,
        cv: int = 5,
        path: int | None = 10,
        path_ratio: float = DEFAULT_RATIO,
        rule: str = "min",
        solver: SolverName = "auto",
        l2: float = 0.0,
        l1: float | None = None,
        standardize: bool = True,
        class_weight=None,
        max_iter: int = 1000,
        tol: float = 1e-7,
        ftol: float = 1e-12,
        history_size: int = 10,
        missing: str = "error",
        categorical="from_dtype",
        min_category_count: int = 1,
        max_categories: int | None = None,
        hash_buckets: int | None = None,
        hashed=None,
    ) -> None:
        super().__init__(
            solver=solver,
            l2=l2,
            l1=l1,  # type: ignore[arg-type]  # (None: resolved by _penalty when fitting)
            standardize=standardize,
            class_weight=class_weight,
            max_iter=max_iter,
            tol=tol,
            ftol=ftol,
            history_size=history_size,
            missing=missing,
            categorical=categorical,
            min_category_count=min_category_count,
            max_categories=max_categories,
            hash_buckets=hash_buckets,
            hashed=hashed,
        )
        self.cv = cv
        self.path = path
        self.path_ratio = path_ratio
        self.rule = rule

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def fit_parquet(self, path: str, *, label: str, features=None, weight: str | None = None, cluster=None):
        """Not available: a cross-validated path of a Parquet dataset is
        ``pipeline train DATA --label y --cv K --path N`` (every point's model
        kept on disk); this estimator cross-validates in-memory input.  The
        refusal gives the command of this estimator's settings."""
        raise NotImplementedError(
            "LogisticRegressionCV.fit_parquet is not available: run "
            f"`{self._command(path, label, features, weight)}` and load the chosen model with "
            "LogisticRegression.from_model(DIR), or fit this estimator on arrays or a DataFrame"
        )

    def _command(self, path: str, label: str, features, weight: str | None) -> str:
        """``pipeline train`` with this estimator's settings (``--cv K`` where ``cv`` is a splitter)."""

        def listed(names) -> str:
            return shlex.quote(",".join(str(name) for name in names))

        words = ["pipeline", "train", shlex.quote(str(path)), "--label", shlex.quote(str(label))]
        if features is not None:
            words += ["--features", listed(features)]
        if weight is not None:
            words += ["--weight-col", shlex.quote(weight)]
        words += ["--cv", str(self.cv) if isinstance(self.cv, numbers.Integral) else "K"]
        if self.path:
            words += ["--path", str(self.path)]
            if self.path_ratio != DEFAULT_RATIO:
                words += ["--path-ratio", repr(self.path_ratio)]
        if self.rule != "min":
            words += ["--cv-rule", str(self.rule)]
        with contextlib.suppress(ConfigError):  # (a bad penalty: the command refuses it too)
            penalty = self._penalty()
            words += [f"--l2 {penalty.l2!r}"] if penalty.l2 else []
            words += [f"--l1 {penalty.l1!r}"] if penalty.l1 else []
        if self.solver != "auto":
            words += ["--solver", str(self.solver)]
        if not self.standardize:
            words.append("--no-standardize")
        if isinstance(self.class_weight, str):
            words += ["--class-weight", self.class_weight]
        if self.missing != "error":
            words += ["--missing", str(self.missing)]
        named: list = []
        with contextlib.suppress(ValueError):  # (a bad value: fit refuses it)
            named = self._named_categorical()
        if named:
            words += ["--categorical", listed(named)]
        for name, value in level_settings_given(self.hash_buckets, self.min_category_count, self.max_categories):
            words += [f"--{name.replace('_', '-')}", str(value)]
        if self.hash_buckets is not None and self.hashed is not None:
            words += ["--hashed", listed(self.hashed)]
        return " ".join([*words, "--out", "DIR"])

    @classmethod
    def from_model(cls, directory: str):
        """Not available: a model directory holds one fit; load it with
        :meth:`LogisticRegression.from_model`."""
        raise NotImplementedError(
            "LogisticRegressionCV.from_model is not available: a model directory holds one fit (a path's chosen "
            f"one too); load it with LogisticRegression.from_model({directory!r})"
        )

    def _penalty(self) -> Penalty:
        """The penalty whose mix the path walks: ``l1=None`` is the lasso
        (1.0) unless ``l2`` is given, then ridge (0): ``l2=1.0`` alone is not
        an elastic net.  Without a path (``path=None``) the penalty is the
        one given, ``l1=None`` none (as ``pipeline train --cv`` without
        ``--path``; without ``l2`` either, that is refused: it was the lasso
        at 1.0, whose model was all zeros); ``path=0`` is no path too."""
        if self.l1 is not None:
            l1 = self.l1
        else:
            l1 = 0.0 if self.l2 or not self.path else 1.0
        return Penalty(l2=self.l2, l1=l1)

    def fit(self, X, y, sample_weight=None, groups=None):
        """Cross-validate and fit; ``groups``: each row's group, for a
        splitter that takes them (``GroupKFold``), as scikit-learn's
        ``LogisticRegressionCV.fit`` passes them on."""
        from sklearn.utils.multiclass import check_classification_targets
        from sklearn.utils.validation import _check_sample_weight

        self.vocabularies_ = []
        self._check_level_policy()
        # (the folds' fits run in this process: a dask collection is computed first)
        X, y, sample_weight = (value.compute() if _is_dask(value) else value for value in (X, y, sample_weight))
        X, y, level_codes, _ = self._in_memory_design(X, y)
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) != 2:
            raise ValueError(
                "Only binary classification is supported. LogisticRegressionCV is binary: expected 2 classes "
                f"in y, found {len(classes)} class{'' if len(classes) == 1 else 'es'}"
            )
        self.classes_ = classes
        weights = (
            None
            if sample_weight is None
            else _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        )
        n_folds, folds = _cv_folds(self.cv, X, y, groups)
        X = self._with_fitted_indicators(X)
        n_numeric = X.shape[1]
        if level_codes is not None:
            X = np.column_stack([X, level_codes.astype(X.dtype)])
        # the rows grouped by fold, as the command's reader gives them: each fit reads its slices only
        order = np.argsort(folds, kind="stable")
        X = np.asfortranarray(X[order])
        labels = (codes.astype(np.float64) + FOLD_CODE * folds)[order]
        weights = None if weights is None else weights[order]
        evaluator = InProcessEvaluator([(X, labels, weights)], X.shape[1])
        if worth_compiling(X.size):
            compile_ahead()
        names = self._design_names(X.shape[1]) or [f"x{j}" for j in range(X.shape[1])]
        levels = [vocabulary.size for vocabulary in self.vocabularies_]
        # the model's features: the numeric columns, their indicators, each level (as a model file names them)
        features = names[:n_numeric] + [name for vocabulary in self.vocabularies_ for name in vocabulary.level_names()]
        try:
            config = TrainConfig(
                data="<arrays>",
                label="y",
                cluster=None,
                solver=self.solver,
                options=SolverOptions(
                    max_iter=self.max_iter, tol=self.tol, ftol=self.ftol, history_size=self.history_size
                ),
                penalty=self._penalty(),
                standardize=self.standardize,
                class_weight=self._class_weight(),
                path=0 if self.path is None else self.path,  # (checked there: an integer, 0 or 2 ...)
                path_ratio=float(self.path_ratio),
                cv=n_folds,
                cv_rule=self.rule,
                missing=cast(MissingPolicy, self.missing),
            )
            common = fit_options(config, features, "y", levels=levels)

            fits: list = []  # (the fits on every row: the only ones described without an output directory)

            def describe(result, penalty: Penalty, n_samples: int = len(codes)) -> Model:
                fits.append(result)
                return build_model(
                    result, features, n_samples, solver=self.solver, penalty=penalty, label="y", weight=None,
                    dataset="<arrays>", missing=self.missing, nan_as_missing=self._imputes(),
                    indicators=[names[j] for j in self.indicator_features_],
                    vocabularies=self.vocabularies_,
                )  # fmt: skip

            model, points = fit_path(config, evaluator, common, describe, Recorder(), resumed=False)
        except PipelineError as exc:  # scikit-learn callers expect ValueError
            raise ValueError(_in_words(exc, self.classes_)) from exc
        chosen = choose(points, self.rule)
        self.strengths_ = np.array([point.strength for point in points])
        self.cv_losses_ = np.array([point.cv_losses or [] for point in points])
        self.cv_loss_ = np.array([point.cv_loss for point in points], dtype=np.float64)
        self.cv_std_ = np.array([point.cv_std for point in points], dtype=np.float64)
        self.chosen_ = chosen
        self.l1_, self.l2_ = points[chosen].l1, points[chosen].l2
        self.coefs_path_ = np.array([fit_result.coef for fit_result in fits])  # (the fits on every row)
        self.coef_ = model.coef_array.reshape(1, -1)
        self.intercept_ = np.array([model.intercept], dtype=np.float64).reshape(-1)
        self.n_iter_ = np.array([model.n_iter], dtype=np.int32)
        self.n_passes_ = model.n_passes
        self.converged_ = model.converged
        self.loss_history_ = list(model.loss_history)
        self.impute_ = None if model.impute is None else np.array(model.impute, dtype=np.float64)
        self._set_inference(None)
        return self


def _in_words(error: PipelineError, classes) -> str:
    """A fit's error as an estimator's caller sees it: a single class named
    by its label value (the fit counts in class codes)."""
    return (
        error.of_classes(np.asarray(classes).tolist())
        if isinstance(error, LabelValueError) and error.weightless
        else str(error)
    )


#: Feature dtypes fitted and scored as they are (anything else: float64).
_FEATURE_DTYPES = [np.float64, np.float32]


def _cv_folds(cv, X: np.ndarray, y: np.ndarray, groups=None) -> tuple[int, np.ndarray]:
    """``(n_folds, each row's fold)`` for :class:`LogisticRegressionCV`'s
    ``cv``: a number of folds (rows assigned by :class:`pipeline.data.Folds`,
    as ``pipeline train --cv``), or a scikit-learn splitter or an iterable of
    ``(train, test)`` index pairs whose test sets partition the rows, each
    trained on all the other rows (``KFold``, ``StratifiedKFold``, ``GroupKFold``:
    a splitter gets ``groups`` as scikit-learn's own cross-validation passes them)."""
    n_rows = len(y)
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        n_folds = int(cv)
        if n_folds < 2:
            raise ValueError(f"cv must be a number of folds >= 2 or a splitter; got {cv!r}")
        if n_folds > n_rows:
            raise ValueError(f"cv: {n_folds} folds for {n_rows} rows; expected at most one fold per row")
        return n_folds, Folds(n_folds).of(np.arange(n_rows, dtype=np.int64), None)
    if isinstance(cv, (str, bytes, bool)) or not (hasattr(cv, "split") or hasattr(cv, "__iter__")):
        raise ValueError(f"cv must be a number of folds >= 2, a splitter or an iterable of (train, test); got {cv!r}")
    if groups is not None and len(groups) != n_rows:
        raise ValueError(f"groups has {len(groups)} values for {n_rows} rows; expected one group per row")
    splits = list(cv.split(X, y, groups)) if hasattr(cv, "split") else list(cv)
    rows = np.arange(n_rows)
    folds = np.full(n_rows, -1, dtype=np.int64)
    for fold, (fitted, held) in enumerate(splits):
        fitted, held = np.unique(rows[fitted]), np.unique(rows[held])
        if (folds[held] >= 0).any():
            raise ValueError("cv: the test sets overlap; expected test sets that partition the rows (as KFold's)")
        if not np.array_equal(fitted, np.setdiff1d(rows, held)):
            raise ValueError(
                f"cv: fold {fold} does not train on all the rows outside its test set; expected test sets "
                "that partition the rows, each fold trained on the others (as KFold's)"
            )
        folds[held] = fold
    if len(splits) < 2 or (folds < 0).any():
        raise ValueError(
            f"cv: {len(splits)} split(s) whose test sets leave {int((folds < 0).sum())} row(s) out; expected "
            "at least 2 test sets that partition the rows (as KFold's)"
        )
    return len(splits), folds


def _named_by_text(frame):
    """A pandas or dask DataFrame with its column names as text (the names a
    fit with categorical columns records and looks columns up by)."""
    names = [str(name) for name in frame.columns]
    alike = sorted({name for name in names if names.count(name) > 1})
    if alike:
        raise ValueError(
            f"X has more than one column named {alike} (as text); expected distinct column names (a fit with "
            "categorical columns looks its columns up by name)"
        )
    if all(isinstance(name, str) for name in frame.columns):
        return frame
    return frame.rename(columns={name: str(name) for name in frame.columns})


def _require_2d(X) -> None:
    """A dask X (array or DataFrame) has rows and columns; scikit-learn's
    words for a 1-d one."""
    if not hasattr(X, "columns") and getattr(X, "ndim", 2) != 2:
        raise ValueError(
            f"Expected a 2-dimensional X; got a dask {type(X).__name__} of shape {X.shape}. Reshape your data "
            "with X.reshape(-1, 1) if it has a single feature or X.reshape(1, -1) if it is a single sample."
        )


def _finite_blocks(X, allow_nan: bool):
    """A dask X whose blocks, when computed, refuse an infinity, and NaN unless
    it is a missing value (``allow_nan``), as scikit-learn refuses numpy input
    to ``predict``: scores are never computed from them."""
    if X.dtype.kind != "f":
        return X
    return X.map_blocks(_finite_block, allow_nan, dtype=X.dtype)


def _non_finite(nan: bool, inf: bool) -> str:
    """What an input holds that is refused: "NaN", "infinity" or both."""
    return " and ".join(word for word, present in (("NaN", nan), ("infinity", inf)) if present)


def _finite_block(block: np.ndarray, allow_nan: bool) -> np.ndarray:
    nan = False if allow_nan else bool(np.isnan(block).any())
    inf = bool(np.isinf(block).any())
    if nan or inf:
        found = _non_finite(nan, inf)
        expected = "finite values or NaN (a missing value)" if allow_nan else "finite values"
        raise NonFiniteInputError(
            f"Input X contains {found}; expected {expected} (found in a block of the dask array being scored)"
        )
    return block


def _as_features(X):
    """A dask X in one of :data:`_FEATURE_DTYPES` (float32 kept: half the
    memory, widened exactly inside the kernels)."""
    return X if X.dtype in _FEATURE_DTYPES else X.astype(np.float64)


def _with_indicators(X: np.ndarray, columns: np.ndarray, n_codes: int = 0) -> np.ndarray:
    """``X`` with a 0/1 column (X's dtype, F-ordered) per index of ``columns``:
    1 where that column is missing (NaN); inserted before X's last ``n_codes``
    columns (level codes)."""
    if not len(columns):
        return X
    split = X.shape[1] - n_codes
    flags = np.isnan(X[:, columns]).astype(X.dtype)
    return np.asfortranarray(np.column_stack([X[:, :split], flags, X[:, split:]]))


def _dask_with_indicators(X, columns: np.ndarray, n_codes: int = 0):
    """:func:`_with_indicators` of each block of a dask ``X`` (one column chunk)."""
    if not len(columns):
        return X
    return X.map_blocks(
        _with_indicators, columns, n_codes, chunks=(X.chunks[0], (X.shape[1] + len(columns),)), dtype=X.dtype
    )


def _arrow_values(series, name: str):
    """A pandas Series as an Arrow array (category dtype: a dictionary array; NaN/None: null)."""
    try:
        return pa.array(series, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ValueError(f"categorical column {name!r} cannot be read as text or integers: {exc}") from None


def _float_hint(found: pa.DataType) -> str:
    """What a floating column named categorical most likely is in pandas."""
    if not pa.types.is_floating(found):
        return ""
    return (
        " (pandas makes an integer column with missing values float64: give the column the nullable 'Int64' "
        "dtype, whose missing values are nulls)"
    )


def _level_counts(series, name: str, count: bool = True) -> tuple[LevelKind | None, LevelCounts]:
    """``(kind, counts)`` of one part of a column; kind None: nulls only (any
    kind); without ``count`` (a hashed column) its kind alone."""
    values = _arrow_values(series, name)
    if only_nulls(values):
        return None, LevelCounts({}, len(values))
    kind = level_kind(values.type)
    if kind is None:
        raise ValueError(
            f"categorical column {name!r} has type {values.type}; expected text or integers{_float_hint(values.type)}"
        )
    if not count:
        return kind, LevelCounts()
    try:
        return kind, count_levels(values, kind, name)
    except PipelineError as exc:  # (a uint64 beyond int64: scikit-learn callers expect ValueError)
        raise ValueError(str(exc)) from exc


def _frame_counts(frame, columns: list[str], hashed: set[str]) -> list[tuple[LevelKind | None, LevelCounts]]:
    """One partition's level counts, per categorical column (a hashed one's kind alone)."""
    return [_level_counts(frame[name], name, name not in hashed) for name in columns]


def _codes_of(frame, vocabularies: list[Vocabulary]) -> np.ndarray:
    """The level codes of a DataFrame's categorical columns (int64, one column each)."""
    codes = []
    for levels in vocabularies:
        values = _arrow_values(frame[levels.column], levels.column)
        try:
            codes.append(levels.codes(values))
        except PipelineError as exc:  # (a value of another type: scikit-learn callers expect ValueError)
            hint = _float_hint(values.type) if levels.kind != "str" else ""  # (Int64 is no advice for text)
            raise ValueError(f"{exc}{hint}") from exc
    return np.column_stack(codes) if codes else np.empty((len(frame), 0), dtype=np.int64)


def _frame_design(frame, numeric: list[str], vocabularies: list[Vocabulary], finite: bool | str = True) -> np.ndarray:
    """A DataFrame as the kernels take it: its numeric columns (float64, NaN
    where missing: checked as scikit-learn does), then the level codes."""
    from sklearn.utils.validation import check_array

    dense = check_array(
        frame[numeric].to_numpy(dtype=np.float64, na_value=np.nan),
        ensure_all_finite=finite,
        ensure_min_features=0,
        ensure_min_samples=0,
    )
    return np.asfortranarray(np.column_stack([dense, _codes_of(frame, vocabularies).astype(np.float64)]))


def _dask_design(X, numeric: list[str], vocabularies: list[Vocabulary]):
    """:func:`_frame_design` of each partition of a dask DataFrame (NaN and
    infinities kept: the fit checks the whole design at once, naming X)."""
    import dask
    import dask.array as da

    width = len(numeric) + len(vocabularies)
    design = dask.delayed(_frame_design)
    parts = [
        da.from_delayed(design(part, numeric, vocabularies, False), (np.nan, width), np.float64)
        for part in X.to_delayed()
    ]
    return da.concatenate(parts)


def _class_totals(parts) -> list[float]:
    """Each class's total from the :func:`pipeline.kernel.class_sums` of some
    parts of the rows (exact, merged in any order, finalized once): as the
    CLI's classes pass sums them."""
    merged = [functools.reduce(ExactSums.merge, sums) for sums in zip(*parts)]
    return [float(total.finalize()[0]) for total in merged]


def _class_codes(y, classes: np.ndarray) -> np.ndarray:
    """Each label's index in the sorted ``classes`` (float64 codes 0..K-1)."""
    return np.searchsorted(classes, np.asarray(y)).astype(np.float64)


def _most_probable(margin: np.ndarray) -> np.ndarray:
    """Each row's class of the largest probability (the first of a tie)."""
    return np.argmax(_softmax(margin), axis=1)


def _softmax(margin: np.ndarray) -> np.ndarray:
    return softmax(margin)[0]


def _both_classes(positive: np.ndarray) -> np.ndarray:
    return np.column_stack([1.0 - positive, positive])


def _is_dask(value) -> bool:
    return type(value).__module__.startswith("dask.")


def _dask_array(value, name: str):
    """``value`` (a dask array, DataFrame or Series) as a dask array (row chunk sizes may be unknown)."""
    import dask.array as da

    if hasattr(value, "to_dask_array"):  # a dask DataFrame or Series
        if value.ndim == 1 and hasattr(value, "cat") and not value.cat.known:  # (astype("category"): one pass)
            with contextlib.suppress(ValueError):  # (text categories: dask's as_known can fail; kept as they are)
                value = value.cat.as_known()
        if value.ndim == 1 and (_nullable_number(value.dtype) or _number_categories(value.dtype)):
            # (its dask array would hold objects: float64, NA as NaN, as scikit-learn reads such a pandas y)
            value = value.astype(np.float64)
        elif value.ndim == 2:  # the same for a frame's nullable (Int64, boolean, double[pyarrow]) columns
            objects = [name for name, dtype in value.dtypes.items() if _nullable_number(dtype)]
            if objects:
                value = value.astype(dict.fromkeys(objects, np.float64))
        return value.to_dask_array()
    if not isinstance(value, da.Array):
        raise TypeError(
            f"{name} must be a dask array, DataFrame or Series, or an array in memory; got {type(value).__name__}"
        )
    return value


def _nullable_number(dtype) -> bool:
    """Whether ``dtype`` is a pandas extension dtype of numbers or booleans
    (``Int64``, ``Float64``, ``boolean``, ``int8[pyarrow]``, ...)."""
    import pandas as pd

    return isinstance(dtype, pd.api.extensions.ExtensionDtype) and (
        pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
    )


def _number_categories(dtype) -> bool:
    """Whether ``dtype`` is a pandas ``category`` of numbers (its dask array
    would hold objects, as a nullable number's does)."""
    import pandas as pd

    return isinstance(dtype, pd.CategoricalDtype) and pd.api.types.is_numeric_dtype(dtype.categories.dtype)


def _known_rows(array):
    """``array`` with its row chunk sizes known (computed from the blocks where they are not)."""
    return array.compute_chunk_sizes() if any(math.isnan(size) for size in array.chunks[0]) else array


def _dask_rows(value, rows: tuple[int, ...], name: str):
    """``value`` (y or sample_weight: dask or in memory) as a 1-d dask array
    with the row chunks ``rows`` of X, or a ValueError if it does not fit X."""
    import dask.array as da

    value = _known_rows(_dask_array(value, name)) if _is_dask(value) else np.asarray(value)
    if name == "sample_weight" and value.ndim == 0:  # one weight for every row (scikit-learn's too)
        return da.full(sum(rows), value.item(), chunks=(rows,), dtype=np.float64)
    if name == "y" and value.ndim == 2 and value.shape[1] == 1:  # a column vector: raveled, as numpy y is
        from sklearn.exceptions import DataConversionWarning

        warnings.warn(
            "A column-vector y was passed when a 1d array was expected. Please change the shape of y to "
            "(n_samples,), for example using ravel().",
            DataConversionWarning,
            stacklevel=4,
        )
        value = value[:, 0]
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
