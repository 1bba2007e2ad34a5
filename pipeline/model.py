"""The trained model artifact: ``model.json``, its digest, and prediction."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import numpy as np

from .atomic import write_atomic
from .data import MISSING_POLICIES, file_url_path, indicator_name
from .errors import ModelFileError, OutputError
from .inference import Inference
from .kernel import Categories, sigmoid, softmax
from .levels import Vocabulary
from .outputs import MODEL_FILE

__all__ = ["Model", "class_margins", "coef_digest"]
#: 2: the pipeline's own exp/log (pipeline.elementary): the same bits on every
#: CPU, not numpy's (format 1 models came from numpy's exp/log; their layout
#: is the same, so they are still read, and score with today's functions).
#: 3: missing values and categorical columns (the keys below).
#: 4: classes and the multinomial model (``family``, ``classes``; ``coef``
#: K x d and ``intercept`` K values for a multinomial model).
#: 5: coefficient inference (``inference``: :meth:`pipeline.inference.Inference.to_json`).
#: 6: ``separated``: the classes ended (nearly) separated (:class:`pipeline.errors.SeparationWarning`).
#: 7: ``restored_iteration``: ``coef`` is that iteration's, not the last one's (``restore_best``).
FORMAT_VERSION = 7
#: the format versions this version reads (3 adds missing, nan_as_missing,
#: impute, indicators and categorical: format 2 files have none, which reads as
#: no missing values and no categorical columns; 4 adds family and classes:
#: older files are binary models of a 0/1 label; 5 adds inference; 6 separated;
#: 7 restored_iteration)
READS_FORMATS = (1, 2, 3, 4, 5, 6, 7)
#: The format a binary model of a 0/1 label is still written in (its layout
#: has not changed since; versions that read format 3 read it).
PLAIN_BINARY_FORMAT = 3
#: The format a model with classes and without inference is written in.
CLASSES_FORMAT = 4
#: The format a model with inference (and not separated) is written in.
INFERENCE_FORMAT = 5
#: The format of a model whose classes ended separated (only such a model is
#: written in it: the others keep the oldest format that holds them).
SEPARATED_FORMAT = 6
#: The format of a model that holds an earlier iterate than the last
#: (``restore_best``; only such a model is written in it).
RESTORED_FORMAT = 7
#: The model families (:data:`pipeline.config.Family` less ``auto``).
FAMILIES = ("binomial", "multinomial")


def coef_digest(coef, intercept) -> str:
    """sha256 hex of the little-endian float64 bytes of coef (row by row for a
    multinomial model's K x d), then the intercept(s)."""
    values = np.concatenate([np.asarray(coef, dtype="<f8").ravel(), np.asarray(intercept, dtype="<f8").ravel()])
    return hashlib.sha256(values.tobytes()).hexdigest()


@dataclass(frozen=True)
class Model:
    features: list[str]
    #: one per feature; a multinomial model's: a row of them per class
    coef: list[float] | list[list[float]]
    #: a multinomial model's: one per class
    intercept: float | list[float]
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
    #: what a missing (null) feature value means: ``error``, ``mean`` or
    #: ``indicator`` (:data:`pipeline.data.MissingPolicy`); ``nan_as_missing``: NaN too
    missing: str = "error"
    nan_as_missing: bool = False
    #: per column (the features less the indicators), the value a missing one
    #: takes: its exact mean in the training data (None: policy ``error``)
    impute: list[float] | None = None
    #: the columns whose missing-value indicator (``"name=<missing>"``) follows the columns in ``features``
    indicators: list[str] | None = None
    #: the categorical columns' levels (:meth:`pipeline.levels.Vocabulary.to_json`),
    #: whose features (``"column=value"``) end ``features``, in this order
    categorical: list[dict] | None = None
    #: ``binomial`` (one coefficient vector: the log-odds of the second class)
    #: or ``multinomial`` (a row of ``coef`` and an intercept per class, softmax)
    family: str = "binomial"
    #: the label's classes, sorted (None: a 0/1 label, the binary model of
    #: format 3 and before); ``proba``/``proba_<class>`` are theirs
    classes: list[str | int | float] | None = None
    #: coefficient inference at the optimum (:meth:`pipeline.inference.Inference.to_json`; None: not asked for)
    inference: dict | None = None
    #: the classes ended (nearly) separated: an unpenalized fit whose loss
    #: went to 0, so ``coef`` is where the solver stopped, not an optimum
    separated: bool = False
    #: ``coef`` is this iteration's (the least validation loss: ``restore_best``),
    #: an index into the histories; None: the last iteration's
    restored_iteration: int | None = None
    digest: str = field(default="")
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", coef_digest(self.coef, self.intercept))
        if self.format_version <= PLAIN_BINARY_FORMAT and (self.multinomial or self.classes is not None):
            raise ValueError(f"format {self.format_version} has no classes: a model with classes is format 4")
        if self.format_version < INFERENCE_FORMAT and self.inference is not None:
            raise ValueError(f"format {self.format_version} has no inference: a model with inference is format 5")
        if self.format_version < SEPARATED_FORMAT and self.separated:
            raise ValueError(f"format {self.format_version} has no separated: a model of separated classes is format 6")
        if self.format_version < RESTORED_FORMAT and self.restored_iteration is not None:
            raise ValueError(
                f"format {self.format_version} has no restored_iteration: a model of a restored iterate is format 7"
            )

    @property
    def _coef_record(self) -> int:
        """The index in the histories of ``coef``'s iteration: the last, or the restored one."""
        return -1 if self.restored_iteration is None else self.restored_iteration

    @property
    def loss(self) -> float:
        """J at ``coef`` (penalty included)."""
        return self.loss_history[self._coef_record]

    @property
    def grad_norm(self) -> float:
        """The projected gradient's largest magnitude at ``coef``."""
        return self.grad_norm_history[self._coef_record]

    @property
    def validation_loss(self) -> float | None:
        """The mean validation loss at ``coef`` (None without a validation set)."""
        if not self.validation_loss_history:
            return None
        return self.validation_loss_history[self._coef_record]

    @property
    def coef_array(self) -> np.ndarray:
        """``(d,)``; a multinomial model's ``(K, d)``."""
        return np.array(self.coef, dtype=np.float64)

    @property
    def multinomial(self) -> bool:
        return self.family == "multinomial"

    @property
    def n_classes(self) -> int:
        """2 for a binary model; K for a multinomial one."""
        return len(self.classes) if self.multinomial and self.classes else 2

    @property
    def class_labels(self) -> list:
        """The label values of the classes (``[0, 1]`` for a binary model of a 0/1 label)."""
        return list(self.classes) if self.classes else [0, 1]

    @functools.cached_property
    def inference_result(self) -> Inference | None:
        """:attr:`inference` as an :class:`~pipeline.inference.Inference` (None: the model has none)."""
        if self.inference is None:
            return None
        return Inference.from_json(self.inference, np.append(self.coef_array, self.intercept))

    @functools.cached_property
    def vocabularies(self) -> list[Vocabulary]:
        return [Vocabulary.from_json(document) for document in self.categorical or []]

    @property
    def dense_columns(self) -> list[str]:
        """The numeric input columns (the first features)."""
        n_levels = sum(vocabulary.size for vocabulary in self.vocabularies)
        return self.features[: len(self.features) - len(self.indicators or []) - n_levels]

    @property
    def columns(self) -> list[str]:
        """The input columns: the numeric ones, then the categorical ones."""
        return self.dense_columns + [vocabulary.column for vocabulary in self.vocabularies]

    @property
    def fill(self) -> np.ndarray | None:
        """Per dense feature (indicators included), the value of a missing one (NaN)
        when scoring (None: no imputation)."""
        if self.impute is None:
            return None
        return np.array(self.impute + [0.0] * len(self.indicators or []), dtype=np.float64)

    def scoring(self) -> tuple[np.ndarray, Categories | None]:
        """``(coef, categories)`` to score rows decoded as :meth:`columns` with
        these vocabularies: each categorical column gets one more level, of
        coefficient 0, for the values it never saw (:mod:`pipeline.levels`)."""
        if self.multinomial:
            raise ValueError("a multinomial model scores with its class margins (decision_function)")
        coef = np.append(self.coef_array, self.intercept)
        return (coef, None) if not self.vocabularies else scoring_coef(coef, self.vocabularies)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Margins in the fixed order of the loss pass (compiled where numba
        imports; same bits); ``X`` has a column per dense feature (indicators
        included), NaN where missing, then the level codes of each categorical column."""
        from .fused import margins_fast

        if self.multinomial:  # (n, K): each class's margins
            return class_margins(X, np.column_stack([self.coef_array, self.intercept]), self.fill, self.vocabularies)
        coef, categories = self.scoring()
        return margins_fast(X, coef, self.fill, categories)  # (narrow X widened inside)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of label 1 (the second class) for each row of ``X``; a
        multinomial model's: ``(n, K)``, each class's (:func:`pipeline.kernel.softmax`)."""
        margin = self.decision_function(X)
        if self.multinomial:
            return softmax(margin)[0]
        return sigmoid(margin)

    def to_json(self) -> str:
        # json writes floats with repr(), which round-trips float64 exactly; the
        # fields as they are (JSON values): asdict's deep copy took seconds for
        # a vocabulary of 50,000 levels
        document = {item.name: getattr(self, item.name) for item in fields(self)}
        if self.format_version <= PLAIN_BINARY_FORMAT:  # (format 3 has neither key: older versions read it)
            del document["family"], document["classes"]
        if self.format_version < INFERENCE_FORMAT:  # (nor format 4 this one)
            del document["inference"]
        if self.format_version < SEPARATED_FORMAT:  # (nor format 5 this one)
            del document["separated"]
        if self.format_version < RESTORED_FORMAT:  # (nor format 6 this one)
            del document["restored_iteration"]
        return json.dumps(document, indent=2, allow_nan=True) + "\n"

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
        """The model of ``directory/model.json``, checked: the only place a
        model file is read.  :class:`ModelFileError` (naming the file) when
        the directory or file is missing, the file is not JSON, a key is
        missing, unknown or of the wrong type, a number that must be finite is
        not, the coefficients do not match the features, or the digest does
        not match the coefficients."""
        path = Path(file_url_path(os.fspath(directory))) / MODEL_FILE  # (a file: URL is its local path)
        data = _checked_fields(cls, path, _read_json(path))
        stored = data.pop("digest")
        _check_rectangular(data, path)  # (before the digest is computed from them)
        try:
            model = cls(**data)
        except ValueError as exc:  # (a format that cannot hold the keys found)
            raise ModelFileError(f"{path}: {exc}", path=str(path), column="format_version") from None
        _check_consistent(model, path)
        if model.digest != stored:
            raise ModelFileError(
                f"{path}: digest {stored} does not match its coef and intercept (their digest is "
                f"{model.digest}); expected the file as training wrote it, found it edited or damaged",
                path=str(path),
            )
        return model


#: model.json fields whose numbers must be finite (prediction, --init and from_model use them;
#: center and scale are only shown, and may hold NaN for a column whose sums overflowed)
FINITE_FIELDS = ("coef", "intercept", "class_weight", "l1", "l2", "impute")
#: model.json numbers with a least value: field -> (least, whether the least is allowed)
BOUNDED_FIELDS = {
    "n_samples": (1, True),
    "n_iter": (0, True),
    "n_passes": (0, True),
    "l2": (0.0, True),
    "l1": (0.0, True),
    "class_weight": (0.0, False),
}
#: classes of a binary model (its class_weight has one weight per class)
N_CLASSES = 2
#: per-iteration histories that must be non-empty and of one length
HISTORY_FIELDS = ("loss_history", "grad_norm_history", "step_history", "passes_history")
#: entries of a directory listed when it holds no model.json
SHOWN_ENTRIES = 5
#: characters of a wrong value quoted in an error message
SHOWN_CHARS = 60


#: a binary model's prediction is ``proba > threshold`` (this one unless told)
DEFAULT_THRESHOLD = 0.5


def predicted_positive(proba, threshold: float = DEFAULT_THRESHOLD):
    """A binary model's prediction: the second class where ``proba > threshold``
    (Spark's rule; a tie goes to the first class, as a multinomial model's
    does), for ``pipeline predict``, ``evaluate`` and the estimator alike.  At
    0.5 it is scikit-learn's ``decision_function > 0`` except for margins in
    (0, 1.2e-16], whose proba rounds to 0.5: one quantity decides everywhere."""
    return proba > threshold


def class_margins(X: np.ndarray, blocks: np.ndarray, fill: np.ndarray | None, vocabularies: list[Vocabulary]):
    """``(n, K)``: the margins of ``X``'s rows for each row ``[w_k, b_k]`` of
    ``blocks`` (``w_k``: the dense features', then the levels' of
    ``vocabularies``, laid out by :func:`scoring_coef`), compiled where numba
    imports (:func:`pipeline.fused.margins_fast`, the loss pass's order)."""
    from .fused import margins_fast

    scored = [scoring_coef(block, vocabularies) if vocabularies else (block, None) for block in blocks]
    return np.column_stack([margins_fast(X, coef, fill, categories) for coef, categories in scored])


def scoring_coef(coef: np.ndarray, vocabularies: list[Vocabulary]) -> tuple[np.ndarray, Categories]:
    """``coef`` (``[w_dense, w_levels, b]``) with a 0 after each categorical
    column's levels -- the coefficient of a value the column never saw, whose
    code is the column's size (:mod:`pipeline.levels`) -- and the categories
    that lay it out."""
    n_dense = coef.shape[0] - 1 - sum(v.size for v in vocabularies)
    parts, start = [coef[:n_dense]], n_dense
    for vocabulary in vocabularies:
        parts += [coef[start : start + vocabulary.size], np.zeros(1)]
        start += vocabulary.size
    parts.append(coef[-1:])
    return np.concatenate(parts), Categories(tuple(v.size + 1 for v in vocabularies))


def _read_json(path: Path) -> object:
    """``path`` parsed as JSON, or :class:`ModelFileError` saying what is there instead."""
    directory = path.parent
    try:
        text = path.read_text()
    except FileNotFoundError:
        found = _listing(directory) if directory.exists() else f"{directory} does not exist"
        raise ModelFileError(
            f"{path}: no such file; expected a model directory holding {MODEL_FILE} "
            f"(written by a successful pipeline train), found that {found}",
            path=str(path),
        ) from None
    except NotADirectoryError:
        raise ModelFileError(
            f"{path}: no such file; expected a model directory holding {MODEL_FILE}, found that {directory} is a file",
            path=str(path),
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: cannot be read: {exc}", path=str(path)) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ModelFileError(
            f"{path}: not JSON ({exc}); expected the JSON object training writes", path=str(path)
        ) from None


def _listing(directory: Path) -> str:
    try:
        entries = sorted(entry.name for entry in directory.iterdir())
    except OSError as exc:
        return f"{directory} cannot be listed ({exc})"
    shown = ", ".join(entries[:SHOWN_ENTRIES]) + (", ..." if len(entries) > SHOWN_ENTRIES else "")
    return f"{directory} holds {shown}" if entries else f"{directory} is empty"


class _Mismatch(Exception):
    """A value is not of its field's type (caught in :func:`_checked_fields`)."""


def _checked_fields(cls, path: Path, data: object) -> dict:
    """``data`` as keyword arguments of ``cls`` (ints where floats are expected become
    floats), or :class:`ModelFileError` naming the first key that is wrong."""
    if not isinstance(data, dict):
        raise ModelFileError(
            f"{path}: expected a JSON object of the model's fields, found {_found(data)}", path=str(path)
        )
    known = {spec.name: spec for spec in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ModelFileError(f"{path}: unknown key(s) {unknown}; expected only {list(known)}", path=str(path))
    missing = [
        name
        for name, spec in known.items()
        if name not in data and (name == "digest" or (spec.default is MISSING and spec.default_factory is MISSING))
    ]
    if missing:
        raise ModelFileError(f"{path}: missing key(s) {missing}", path=str(path))
    hints = typing.get_type_hints(cls)
    checked = {}
    for name, value in data.items():
        try:
            checked[name] = _as_type(value, hints[name])
        except _Mismatch:
            raise ModelFileError(
                f"{path}: {name} must be {known[name].type}; found {_found(value)}", path=str(path), column=name
            ) from None
        if name in FINITE_FIELDS and not all(math.isfinite(v) for v in _numbers(checked[name])):
            raise ModelFileError(
                f"{path}: {name} must hold finite numbers; found {_found(value)}", path=str(path), column=name
            )
        if name in BOUNDED_FIELDS:
            least, allowed = BOUNDED_FIELDS[name]
            if any(v < least or (v == least and not allowed) for v in _numbers(checked[name])):
                raise ModelFileError(
                    f"{path}: {name} must be {'>=' if allowed else '>'} {least}; found {_found(value)}",
                    path=str(path),
                    column=name,
                )
    return checked


def _as_type(value, kind):
    """``value`` if it is of type ``kind`` (ints accepted where floats are), else _Mismatch."""
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        for option in typing.get_args(kind):
            try:
                return _as_type(value, option)
            except _Mismatch:
                pass
        raise _Mismatch
    if origin is list:
        if not isinstance(value, list):
            raise _Mismatch
        (item,) = typing.get_args(kind)
        return [_as_type(entry, item) for entry in value]
    if kind is type(None):
        matches = value is None
    elif kind is dict:  # (its content is checked by whoever reads it)
        matches = isinstance(value, dict)
    elif kind in (bool, str):
        matches = isinstance(value, kind)
    elif kind in (int, float):  # (bool is an int to Python, not to a model file)
        matches = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
    else:
        raise TypeError(f"no check for a model field of type {kind!r}")  # a new field type: add one
    if not matches:
        raise _Mismatch
    if kind is float:
        try:
            return float(value)
        except OverflowError:  # an int beyond float64: not a finite number
            return math.inf
    return value


def _numbers(value) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        return [value]
    return [number for entry in value for number in _numbers(entry)]  # (rows of a K x d coef too)


def _found(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    if len(text) > SHOWN_CHARS:
        text = text[:SHOWN_CHARS] + "..."
    return text if value is None else f"{type(value).__name__} {text}"


def _check_rectangular(data: dict, path: Path) -> None:
    """A ``coef`` of rows (a multinomial model's, typed ``list[list[float]]``
    by then) has rows of one length (which length, :func:`_check_classes`)."""
    rows = data["coef"]
    lengths = [len(row) for row in rows if isinstance(row, list)]
    if len(set(lengths)) > 1:
        raise ModelFileError(
            f"{path}: coef must be rows of one length (one row per class, one value per feature); found rows of "
            f"lengths {lengths[:20]}" + (f" ... ({len(lengths)} rows)" if len(lengths) > 20 else ""),
            path=str(path),
            column="coef",
        )


def _check_consistent(model: Model, path: Path) -> None:
    """Lengths that must agree, and features that must be distinct."""
    d = len(model.features)
    if len(set(model.features)) != d:
        repeated = sorted({name for name in model.features if model.features.count(name) > 1})
        raise ModelFileError(
            f"{path}: features must be distinct; found {repeated} more than once", path=str(path), column="features"
        )
    k = _check_classes(model, path)
    blocks = k if model.multinomial else 1
    sizes = {} if model.multinomial else {"coef": (d, "one per feature")}
    sizes |= {
        "center": (d, "one per feature"),
        "scale": (d, "one per feature"),
        "gradient": (blocks * (d + 1), "one per feature, then the intercept's" + (", per class" if blocks > 1 else "")),
        "class_weight": (k, "one per class"),
    }
    for name, (expected, meaning) in sizes.items():
        value = getattr(model, name)
        if value is not None and len(value) != expected:
            raise ModelFileError(
                f"{path}: {name} has {len(value)} value(s); expected {expected} "
                f"({meaning}; features: {model.features})",
                path=str(path),
                column=name,
            )
    _check_missing(model, path)
    if model.inference is not None:
        if model.multinomial:
            raise ModelFileError(f"{path}: inference is for binomial models", path=str(path), column="inference")
        try:
            model.inference_result  # noqa: B018 - checked as it is read
        except ValueError as exc:
            raise ModelFileError(f"{path}: {exc}", path=str(path), column="inference") from None
    lengths = {name: len(getattr(model, name)) for name in HISTORY_FIELDS}
    if min(lengths.values()) == 0 or len(set(lengths.values())) != 1:
        raise ModelFileError(
            f"{path}: the per-iteration histories must be non-empty and of one length; found lengths {lengths}",
            path=str(path),
        )
    if model.format_version not in READS_FORMATS:
        raise ModelFileError(
            f"{path}: format_version {model.format_version}; this version of "
            f"pipeline reads format_version {' or '.join(map(str, READS_FORMATS))}",
            path=str(path),
            column="format_version",
        )


def _check_classes(model: Model, path: Path) -> int:
    """The family, classes and coefficients' shape agree; the number of classes."""

    def wrong(column: str, message: str) -> ModelFileError:
        return ModelFileError(f"{path}: {message}", path=str(path), column=column)

    if model.family not in FAMILIES:
        raise wrong("family", f"family must be one of {list(FAMILIES)}; found {model.family!r}")
    classes = model.classes
    if classes is not None and (len(classes) < N_CLASSES or len(set(map(repr, classes))) != len(classes)):
        raise wrong("classes", f"classes must be at least {N_CLASSES} distinct values; found {_found(classes)}")
    if classes is not None and not _sorted_classes(classes):
        raise wrong(
            "classes",
            "classes must be all text, all integers (int64) or all finite numbers, in increasing order (what "
            f"training writes: the second class is the one proba is of); found {_found(classes)}",
        )
    if not model.multinomial:
        if isinstance(model.intercept, list) or any(isinstance(row, list) for row in model.coef):
            raise wrong("coef", "a binomial model has one coefficient per feature and one intercept")
        if classes is not None and len(classes) != N_CLASSES:
            raise wrong("classes", f"a binomial model has {N_CLASSES} classes; found {len(classes)}")
        return N_CLASSES
    if classes is None:
        raise wrong("classes", "a multinomial model needs its classes")
    k, d = len(classes), len(model.features)
    rows = model.coef
    if not isinstance(model.intercept, list) or len(model.intercept) != k:
        raise wrong(
            "intercept", f"a multinomial model has one intercept per class ({k}); found {_found(model.intercept)}"
        )
    if len(rows) != k or not all(isinstance(row, list) and len(row) == d for row in rows):
        raise wrong("coef", f"a multinomial model's coef is {k} rows (one per class) of {d} (one per feature)")
    return k


INT64_MIN, INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


def _sorted_classes(classes: list) -> bool:
    """Whether ``classes`` are of one label kind (text, int64 integers or
    finite floats; no booleans) and strictly increasing."""
    if all(isinstance(value, str) for value in classes):
        pass
    elif all(isinstance(value, int) and not isinstance(value, bool) for value in classes):
        if not all(INT64_MIN <= value <= INT64_MAX for value in classes):
            return False
    elif not all(isinstance(value, float) and math.isfinite(value) for value in classes):
        return False
    return all(a < b for a, b in zip(classes, classes[1:]))


def _check_missing(model: Model, path: Path) -> None:
    """The missing-value fields agree with each other and with the features."""

    def wrong(column: str, message: str) -> ModelFileError:
        return ModelFileError(f"{path}: {message}", path=str(path), column=column)

    if model.missing not in MISSING_POLICIES:
        raise wrong("missing", f"missing must be one of {list(MISSING_POLICIES)}; found {model.missing!r}")
    if (model.impute is None) != (model.missing == "error"):
        raise wrong("impute", f"impute is needed exactly when missing is not 'error'; found missing {model.missing!r}")
    indicators = model.indicators or []
    if indicators and model.missing != "indicator":
        raise wrong("indicators", f"indicators need missing 'indicator'; found {model.missing!r}")
    try:
        vocabularies = model.vocabularies
    except (ValueError, TypeError, KeyError) as exc:
        raise wrong("categorical", f"categorical: {exc}") from None
    columns_named = [vocabulary.column for vocabulary in vocabularies]
    if len(set(columns_named)) != len(columns_named):
        raise wrong("categorical", f"categorical columns must be distinct; found {columns_named}")
    if model.nan_as_missing and model.missing == "error":
        raise wrong("nan_as_missing", "nan_as_missing needs missing 'mean' or 'indicator'; found 'error'")
    restored = model.restored_iteration
    if restored is not None and not 0 <= restored < len(model.loss_history) - 1:
        raise wrong(
            "restored_iteration",
            f"restored_iteration must index an iteration before the last (0 to {len(model.loss_history) - 2}); "
            f"found {restored}",
        )
    levels = [name for vocabulary in vocabularies for name in vocabulary.level_names()]
    if len(levels) > len(model.features) or model.features[len(model.features) - len(levels) :] != levels:
        raise wrong("categorical", f"the features must end with the levels {levels[:20]}; found {model.features[:20]}")
    before_levels = model.features[: len(model.features) - len(levels)]
    expected = [indicator_name(name) for name in indicators]
    if len(expected) > len(before_levels) or before_levels[len(before_levels) - len(expected) :] != expected:
        raise wrong("indicators", f"the indicators {expected} must follow the columns; found {model.features}")
    columns = model.dense_columns
    if not set(indicators) <= set(columns):
        raise wrong("indicators", f"indicators {indicators} must name columns among {columns}")
    if model.impute is not None and len(model.impute) != len(columns):
        raise wrong(
            "impute", f"impute has {len(model.impute)} value(s); expected {len(columns)} (one per column: {columns})"
        )
