"""The pipeline's exceptions, all in one place.

Every error the library raises on purpose derives from :class:`PipelineError`;
the CLI catches only that base class, prints ``ErrorName: message`` and exits
non-zero.  Each error's message says what was expected and what was found, and
names the file, column, row group and row range where they apply.  The same
facts are kept as attributes (``path``, ``column``, ``row_group``, ``rows``) so
callers can act on them without parsing the message.

Hierarchy::

    PipelineError
    ├── ConfigError              invalid option or combination of options
    ├── ClusterError             scheduler unreachable, cluster failed to start
    ├── OutputError              output directory exists, is not writable or is another filesystem's URL
    ├── ModelFileError           model directory without model.json, or a model.json (or the
    │                            job.json / metrics.json beside it) that is not what a run writes
    ├── JobError                 a training job's file, state or checkpoint
    │   ├── JobFileError             malformed job file (names the file and key)
    │   ├── CheckpointError          checkpoint damaged, or from other data/options
    │   ├── JobNotFoundError         no job with that id or directory
    │   └── JobCancelled             the job was cancelled (not a failure)
    └── DataError                anything wrong with the input dataset
        ├── DatasetNotFoundError     path/glob matches nothing, or no Parquet files
        ├── UnreadableFileError      not Parquet, truncated or corrupt
        ├── ColumnNotFoundError      label/feature column absent from a file
        ├── ColumnTypeError          column of a type that cannot be used
        ├── LabelValueError          label value outside {0, 1}
        │                            (or the training rows' weight on one class of two)
        ├── NonFiniteValueError      NaN, +inf or -inf in a feature or the label (or a
        │                            feature too large to standardize: its squares overflow;
        │                            or a row to score whose margins overflow to no probability)
        │   └── NonFiniteInputError      ... in a dask X, y or sample_weight (also a ValueError)
        ├── MissingValueError        null in a feature or the label
        ├── WeightValueError         negative sample weight, or all weights zero
        ├── EmptyDatasetError        no rows to train on
        ├── CollinearityError        collinear features: the Hessian at the optimum is
        │                            singular (coefficient inference)
        └── SeparationError          separated classes: the Hessian where the fit
                                     stopped is singular (coefficient inference)

:class:`ConvergenceWarning` (a warning, not an error) is issued when a solver
stops without meeting its tolerance; it is a subclass of scikit-learn's
``sklearn.exceptions.ConvergenceWarning`` (see the class for when).
:class:`SeparationWarning` (a ``UserWarning``) says that the features
(nearly) separate the classes of an unpenalized fit.  :class:`DataWarning`
(a ``UserWarning``) says the data make a setting do less than asked: a
constant feature, more coefficients than rows or categorical levels without
a penalty, classes of a single row.

Errors raised inside cluster tasks travel back to the client pickled; the
``__reduce__`` below keeps their attributes on the way.
"""

from __future__ import annotations

import copy
import math
import numbers
import sys
from typing import Any

import numpy as np

__all__ = [
    "PipelineError",
    "ConfigError",
    "ClusterError",
    "OutputError",
    "ModelFileError",
    "JobError",
    "JobFileError",
    "CheckpointError",
    "JobNotFoundError",
    "JobCancelled",
    "DataError",
    "DatasetNotFoundError",
    "UnreadableFileError",
    "ColumnNotFoundError",
    "ColumnTypeError",
    "LabelValueError",
    "TooManyLevelsError",
    "NonFiniteValueError",
    "NonFiniteInputError",
    "MissingValueError",
    "WeightValueError",
    "EmptyDatasetError",
    "CollinearityError",
    "SeparationError",
    "ConvergenceWarning",
    "SeparationWarning",
    "DataWarning",
]


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        column: str | None = None,
        row_group: int | None = None,
        rows: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.column = column
        self.row_group = row_group
        self.rows = rows

    def __reduce__(self):
        return (self.__class__, (self.message,), self.__dict__)

    def in_fold_rows(self, fold: int, n_folds: int) -> PipelineError:
        """The same finding (its class and fields), found in cross-validation
        fold ``fold``'s training rows and said so: its counts of rows are theirs."""
        worded = copy.copy(self)
        worded.message = f"cross-validation fold {fold} of {n_folds} (its training rows): {self.message}"
        worded.args = (worded.message,)
        return worded

    def __str__(self) -> str:
        return self.message


class ConfigError(PipelineError):
    """An option or a combination of options is invalid."""


def invalid(field: str, expected: str, found: object) -> ConfigError:
    """The error of one configuration value, in the configuration objects' one
    form: ``"<field> must be <expected>; found <found>"`` with ``column=field``
    (the CLI and job files put the option or key in the field's place)."""
    return ConfigError(f"{field} must be {expected}; found {found!r}", column=field)


def require_number(field: str, value: object, *, positive: bool = False) -> float:
    """``value`` as a float: a finite real number (Python's or numpy's, not a
    bool), ``> 0`` with ``positive``, else ``>= 0``; else :func:`invalid`."""
    expected = f"a finite number {'>' if positive else '>='} 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise invalid(field, expected, value)
    number = float(value)
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise invalid(field, expected, value)
    return number


def require_flag(field: str, value: object) -> bool:
    """``value`` as a bool: ``True`` or ``False`` (Python's or numpy's), else
    :func:`invalid` (``"yes"``, ``1`` or ``None`` would be read by truth)."""
    if not isinstance(value, (bool, np.bool_)):
        raise invalid(field, "true or false", value)
    return bool(value)


def is_positive_number(value: object) -> bool:
    """Whether ``value`` is a finite real number > 0 (Python's or numpy's, not a bool)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(float(value))
        and float(value) > 0
    )


def require_count(field: str, value: object, least: int) -> None:
    """``value`` must be an integer (Python's or numpy's, not a bool) of at
    least ``least``, else :func:`invalid`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise invalid(field, f"an integer >= {least}", value)


class ClusterError(PipelineError):
    """The Dask cluster could not be reached or started."""


class OutputError(PipelineError):
    """The output location cannot be used (taken, not writable, outside the
    output root, or a URL: outputs are local paths)."""


class ModelFileError(PipelineError):
    """A model directory has no ``model.json``, or its ``model.json`` (or the
    ``job.json`` / ``metrics.json`` that ``pipeline report`` reads beside it) is
    not JSON, not of the expected shape and types, or inconsistent (coefficient
    count, non-finite coefficients, digest)."""


class JobError(PipelineError):
    """A training job cannot be defined, found, resumed or continued."""


class JobFileError(JobError, ConfigError):
    """A job file is not valid TOML, or a key is unknown, mistyped or missing."""


class CheckpointError(JobError):
    """A checkpoint is damaged, or belongs to other data or other options."""


class JobNotFoundError(JobError):
    """No job is known under that id or directory."""


class JobCancelled(JobError):
    """The job was cancelled on request; its last checkpoint stays usable."""


class DataError(PipelineError):
    """The input dataset cannot be used as asked."""


class DatasetNotFoundError(DataError):
    """The dataset path or glob matches no Parquet files."""


class UnreadableFileError(DataError):
    """A file is not Parquet, or is truncated or corrupt."""


class ColumnNotFoundError(DataError):
    """A requested label or feature column is absent."""


class ColumnTypeError(DataError):
    """A column has a type that cannot be used (string, nested, ...)."""


class TooManyLevelsError(DataError):
    """A categorical column has more distinct values than are kept without a
    policy (``--max-categories``, ``--min-category-count`` or ``--hash-buckets``)."""


class LabelValueError(DataError):
    """A label value is not 0 or 1; or the training rows' weight is all on
    one class of two, or a class of K has none (``weightless``: those class
    codes, 0..K-1 of the sorted classes; ``n_classes``; ``n_samples``: the
    rows counted; ``fold``: the cross-validation fold whose training rows
    they are, None for every row): that class's log-odds go to infinity, so
    there is no finite optimum."""

    def __init__(
        self,
        message: str,
        *,
        weightless: tuple[int, ...] = (),
        n_classes: int = 0,
        n_samples: int = 0,
        fold: int | None = None,
        n_folds: int = 0,
        path: str | None = None,
        column: str | None = None,
        row_group: int | None = None,
        rows: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(message, path=path, column=column, row_group=row_group, rows=rows)
        self.weightless = weightless
        self.n_classes = n_classes
        self.n_samples = n_samples
        self.fold = fold
        self.n_folds = n_folds

    def reworded(self, message: str, **changes: Any) -> LabelValueError:
        """The same finding (its class codes, rows, fold, column) said as
        ``message``, with ``changes`` to its fields."""
        fields = dict(
            weightless=self.weightless,
            n_classes=self.n_classes,
            n_samples=self.n_samples,
            fold=self.fold,
            n_folds=self.n_folds,
            column=self.column,
        )
        return LabelValueError(message, **{**fields, **changes})

    def in_fold(self, fold: int, n_folds: int) -> LabelValueError:
        """A class without weight (``weightless``), found in cross-validation
        fold ``fold``'s training rows."""
        return self.reworded(_fold_words(fold, n_folds, self.message), fold=fold, n_folds=n_folds)

    def in_fold_words(self, text: str) -> str:
        """``text`` said of the fold whose training rows it is about (the
        pipeline's folds: by each row's hash, not stratified)."""
        return _fold_words(self.fold, self.n_folds, text)

    def of_classes(self, classes, label: str = "y", hashed_folds: bool = False) -> str:
        """A class without weight (``weightless``) in the words of ``label``
        and its ``classes`` (sorted), of a fold's training rows with the
        advice of :meth:`in_fold_words` where the folds are the pipeline's
        (``hashed_folds``), else without (a caller's splitter)."""
        rows = "training rows" if self.fold is not None or not self.n_samples else "rows"
        where = f"the {self.n_samples} {rows}" if self.n_samples else f"the {rows}"
        if self.n_classes == 2:
            kept = classes[1 - self.weightless[0]]
            text = (
                f"{label} has a single class: all the sample weight of {where} is on class {kept!r} (class "
                f"{classes[self.weightless[0]]!r} has none); expected weight on both classes (logistic "
                "regression has no finite optimum otherwise)"
            )
        else:
            empty = [classes[k] for k in self.weightless]
            text = (
                f"{label} has class(es) {empty} with no sample weight in {where}; expected every class with "
                "positive weight (the multinomial model has no finite optimum otherwise)"
            )
        if self.fold is not None and hashed_folds:
            return self.in_fold_words(text)
        if self.fold is not None:
            return f"cross-validation fold {self.fold} (its training rows): {text}"
        return text


def _fold_words(fold: int | None, n_folds: int, text: str) -> str:
    """:meth:`LabelValueError.in_fold_words`."""
    return (
        f"cross-validation fold {fold} of {n_folds} (its training rows): {text}; the folds (by each row's hash) "
        "are not stratified by class: with few rows or little weight in a class, use fewer folds"
    )


class NonFiniteValueError(DataError):
    """A feature or label holds NaN or an infinity, or a feature values whose
    sums overflow float64 (they cannot be standardized), or a row to score
    without a probability (its terms overflow to +inf and -inf, or two
    classes' margins to +inf)."""


class NonFiniteInputError(NonFiniteValueError, ValueError):
    """A dask ``X``, ``y`` or ``sample_weight`` given to the estimator holds NaN
    or an infinity; also a ``ValueError``, which scikit-learn raises for numpy input."""


class MissingValueError(DataError):
    """A feature or label holds a null."""


class WeightValueError(DataError):
    """A sample weight is negative, or all weights are zero."""


class EmptyDatasetError(DataError):
    """There are no rows to train on."""


class CollinearityError(DataError):
    """Collinear features: the Hessian at the optimum is singular, so the
    coefficients' covariance does not exist (coefficient inference)."""


class SeparationError(DataError):
    """The classes are separated (:class:`SeparationWarning`) and coefficient
    inference was asked for: the loss has no optimum, and the Hessian where
    the solver stopped is singular (every row's probability is 0 or 1), so
    there is no covariance to report."""


class _WarningLayout(UserWarning):
    """A Python-level warning class: the same instance layout as scikit-learn's
    warning classes, so :class:`ConvergenceWarning` can take one as its base."""


class ConvergenceWarning(_WarningLayout):
    """A solver stopped (max_iter, failed line search) without converging.

    A subclass of ``sklearn.exceptions.ConvergenceWarning`` once scikit-learn
    is loaded, so scikit-learn-style filters (``-W``,
    ``warnings.filterwarnings(category=...)``, ``pytest.warns``) match it.
    Importing scikit-learn here would add most of a second to every CLI start
    (the CLI never needs it), so the base is switched by
    :func:`adopt_sklearn_base`: when this module is imported after
    scikit-learn, when :mod:`pipeline.estimator` is imported, and whenever one
    is issued (``warnings.warn`` builds the instance before it consults the
    filters).  Until then it is a plain ``UserWarning``.
    """

    def __init__(self, *args) -> None:
        adopt_sklearn_base()
        super().__init__(*args)


class SeparationWarning(UserWarning):
    """The features (nearly) separate the classes and there is no penalty: the
    log-likelihood approaches its supremum 0 only as coefficients grow without
    bound, so the fitted coefficients are where the solver stopped, not an
    optimum, and standard errors mean nothing (statsmodels'
    ``PerfectSeparationWarning``; a penalty gives a unique optimum)."""


class DataWarning(UserWarning):
    """The data make a setting do less than asked, and the fit goes on: a
    constant feature (its coefficient stays 0), more coefficients than rows or
    categorical levels without a penalty (no unique coefficients), classes of
    a single row (a stray value?), level settings (hashing, a level policy)
    for a fit without categorical features.  ``warnings.filterwarnings("ignore",
    category=DataWarning)`` silences these alone."""


def adopt_sklearn_base() -> None:
    """Make :class:`ConvergenceWarning` a subclass of scikit-learn's, if scikit-learn is loaded."""
    sklearn_exceptions = sys.modules.get("sklearn.exceptions")
    base = getattr(sklearn_exceptions, "ConvergenceWarning", None)
    if base is not None and ConvergenceWarning.__bases__ != (base,):
        ConvergenceWarning.__bases__ = (base,)


adopt_sklearn_base()
