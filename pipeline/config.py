"""Training configuration: one frozen object behind the CLI and the API."""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

from .cluster import ClusterSpec
from .data import MISSING_POLICIES, MissingPolicy, is_glob, local_path
from .errors import ConfigError, OutputError, invalid, is_positive_number, require_count, require_flag
from .inference import DEFAULT_CONFIDENCE, check_inference, refusal
from .levels import MAX_BUCKETS, check_level_policy
from .objective import Penalty
from .paths import CV_RULES, DEFAULT_RATIO, MAX_POINTS, mixing
from .solvers import SolverOptions

__all__ = [
    "CACHE_MODES",
    "CacheMode",
    "FAMILIES",
    "Family",
    "INFERENCE_KINDS",
    "InferenceKind",
    "MAX_CLASSES",
    "SolverName",
    "OUTPUT_ROOT_ENV",
    "SOLVERS",
    "TrainConfig",
    "check_job_name",
    "check_output_root",
    "output_roots",
]

#: ``auto``: :func:`pipeline.fitting.auto_start` (newton with L1 or up to 8 features; else
#: lbfgs, handed over to newton where it is slow, up to 64 features)
SolverName = Literal["auto", "lbfgs", "newton", "gd"]
#: ``auto``: memory when the decoded data fits (:func:`pipeline.train.choose_cache`), else disk
CacheMode = Literal["auto", "memory", "disk", "none"]
#: ``auto``: binomial for a 0/1 label (today's model, bit for bit) or two
#: classes, multinomial for more (:func:`pipeline.train.learn_classes`)
Family = Literal["auto", "binomial", "multinomial"]
FAMILIES: tuple[Family, ...] = get_args(Family)
#: ``none``: no coefficient inference; ``nonrobust`` / ``hc0``: standard errors
#: from the inverse Hessian / the sandwich (:mod:`pipeline.inference`)
InferenceKind = Literal["none", "nonrobust", "hc0"]
INFERENCE_KINDS: tuple[InferenceKind, ...] = get_args(InferenceKind)
#: Most folds of a cross-validation (each a fit, and a thread, per step).
MAX_FOLDS = 100
#: Most classes a label may have (``max_classes``) unless raised.
MAX_CLASSES = 1000
SOLVERS: tuple[SolverName, ...] = get_args(SolverName)
CACHE_MODES: tuple[CacheMode, ...] = get_args(CacheMode)
#: Most buckets a hashed categorical column may have (codes stay exact in float32).
MAX_HASH_BUCKETS = MAX_BUCKETS
#: Share of the cluster's total worker memory that ``memory`` caching may use.
MEMORY_FRACTION = 0.5


@dataclass(frozen=True)
class TrainConfig:
    """What to train on, how, where, and where to put the result.

    ``cluster=None`` means the in-process path (no Dask at all).
    ``cache``: ``memory`` keeps the decoded chunks in worker memory (they must
    fit in ``memory_fraction`` of the cluster's memory); ``disk`` keeps a
    decoded copy on each worker's local disk and memory-maps it on later
    passes; ``none`` re-reads Parquet every pass; ``auto`` picks ``memory``
    when it fits, else ``disk``.  ``disk`` and ``none`` stream row groups in
    bounded batches, so they train on data larger than the cluster's memory.
    ``class_weight``: None, ``"balanced"`` or a weight per class: ``(weight of
    label 0, weight of label 1)``, or one per class in the classes' sorted order,
    or a dict keyed by the classes (their values, or as text: ``{"spam": 5.0,
    "ham": 1.0}``; ``{"0": 1.0, "1": 2.0}`` for a 0/1 label), resolved to the
    tuple once the classes are known (:func:`pipeline.train.resolve_class_weight`).
    ``init``: directory of a ``model.json`` to start from (warm start).
    ``name``: a label for the job; ``checkpoint_every``: write the optimizer
    state to ``out`` every k iterations (jobs); ``generate``: parameters of
    :func:`pipeline.synth.make_data` to create ``data`` first when it does not
    exist (demo jobs).  :mod:`pipeline.jobfile` maps every field to a job-file key.
    """

    data: str
    label: str
    out: str | None = None
    features: tuple[str, ...] | None = None
    weight: str | None = None
    class_weight: str | tuple[float, ...] | dict[Any, float] | None = None
    solver: SolverName = "auto"
    options: SolverOptions = field(default_factory=SolverOptions)
    penalty: Penalty = field(default_factory=Penalty)
    standardize: bool = True
    init: str | None = None
    cluster: ClusterSpec | None = field(default_factory=ClusterSpec)
    cache: CacheMode = "auto"
    memory_fraction: float = MEMORY_FRACTION
    overwrite: bool = False
    name: str | None = None
    checkpoint_every: int = 1
    generate: dict | None = None
    #: share of rows held out for validation (0: none), by a hash of
    #: ``validation_key`` or of the row's canonical position (:class:`pipeline.data.Split`)
    validation_fraction: float = 0.0
    validation_key: str | None = None
    #: stop when the validation loss has not improved for this many iterations (0: never)
    early_stopping: int = 0
    #: the model is the iterate of the least validation loss (the first, on a
    #: tie), not the last one (needs a validation set)
    restore_best: bool = False
    #: what a null feature value means (:data:`pipeline.data.MissingPolicy`):
    #: ``error``, ``mean`` (the column's exact mean takes its place) or
    #: ``indicator`` (the mean, plus a 0/1 feature per column that may be missing)
    missing: MissingPolicy = "error"
    #: NaN feature values are missing values too (needs ``missing`` other than ``error``)
    nan_as_missing: bool = False
    #: integer (or boolean) feature columns to treat as categorical (text and
    #: dictionary columns always are: :mod:`pipeline.levels`)
    categorical: tuple[str, ...] | None = None
    #: a categorical value with fewer training rows goes to the ``<other>`` level
    min_category_count: int = 1
    #: keep at most this many values per categorical column, the most frequent
    #: (the rest: ``<other>``); None: all (up to :data:`pipeline.levels.MAX_LEVELS`)
    max_categories: int | None = None
    #: hash the values of the ``hashed`` categorical columns (default: every
    #: categorical column) into this many buckets each, without a vocabulary pass
    hash_buckets: int | None = None
    hashed: tuple[str, ...] | None = None
    #: binomial (a 0/1 label, or two classes) or multinomial (K classes, softmax);
    #: ``auto`` decides from the label's classes
    family: Family = "auto"
    #: most classes the label may have
    max_classes: int = MAX_CLASSES
    #: coefficient inference at the optimum (standard errors, p-values,
    #: intervals, likelihood statistics): ``nonrobust``, ``hc0`` or ``none``
    inference: InferenceKind = "none"
    #: the confidence level of the coefficients' intervals
    confidence: float = DEFAULT_CONFIDENCE
    #: a regularization path of this many strengths of the penalty (0: one
    #: fit), from the largest (:func:`pipeline.paths.lambda_max`) down to
    #: ``path_ratio`` times it, each fit warm-started from the one before
    path: int = 0
    path_ratio: float = DEFAULT_RATIO
    #: K-fold cross-validation (0: none): the folds' fits of each strength in
    #: lockstep, the mean held-out loss choosing the strength by ``cv_rule``
    #: (``min`` or ``1se``), and the fit on every row as the model
    cv: int = 0
    cv_rule: str = "min"
    #: every output directory must lie inside this one (None: no restriction,
    #: unless $PIPELINE_OUTPUT_ROOT is set where the job runs; see :func:`check_output_root`)
    output_root: str | None = None

    def __post_init__(self) -> None:
        """The rules of the run's values (each option's own rules live with the
        object that holds it: :class:`SolverOptions`, :class:`Penalty`,
        :class:`ClusterSpec`).  A :class:`ConfigError` names the field in
        ``column``, and its message starts with the field's name."""
        for flag in ("standardize", "nan_as_missing", "overwrite", "restore_best"):
            require_flag(flag, getattr(self, flag))
        for name in ("features", "categorical"):
            refuse_text(name, getattr(self, name))
        check_hashing(self.hash_buckets, self.hashed)  # (before hashed is read as names)
        for name in ("out", "output_root"):  # written on this machine: local paths
            if getattr(self, name) is not None:
                try:
                    object.__setattr__(self, name, local_path(getattr(self, name), name))
                except OutputError as exc:
                    raise ConfigError(str(exc), column=name) from None
        if self.generate is not None and ("://" in self.data or is_glob(self.data)):
            raise ConfigError(
                f"generate writes a dataset into a local directory: `data` must be one (not a URL or a glob); "
                f"found {self.data!r}",
                column="generate",
            )
        if self.solver not in SOLVERS:
            raise invalid("solver", f"one of {', '.join(SOLVERS)}", self.solver)
        if self.cache not in CACHE_MODES:
            raise invalid("cache", f"one of {', '.join(CACHE_MODES)}", self.cache)
        if self.family not in FAMILIES:
            raise invalid("family", f"one of {', '.join(FAMILIES)}", self.family)
        if self.max_classes < 2:
            raise invalid("max_classes", ">= 2", self.max_classes)
        if self.cv_rule not in CV_RULES:
            raise invalid("cv_rule", f"one of {', '.join(CV_RULES)}", self.cv_rule)
        if self.cv_rule != CV_RULES[0] and not self.cv:
            raise ConfigError(
                "cv_rule chooses a cross-validated strength (`cv` = 2 or more folds); found `cv_rule` "
                f"{self.cv_rule!r} without `cv`",
                column="cv_rule",
            )
        if self.cv:
            if not 2 <= self.cv <= MAX_FOLDS:
                raise invalid("cv", f"0 (none) or 2 to {MAX_FOLDS} folds", self.cv)
            for name, value, why in (
                ("validation_fraction", self.validation_fraction, "the folds hold every row out once"),
                ("early_stopping", self.early_stopping, "the folds' fits run to convergence"),
                ("init", self.init, "the fits start from zero"),
            ):
                if value:
                    raise ConfigError(f"{name} cannot be used with cross-validation (`cv`: {why})", column=name)
            if self.family == "multinomial":
                raise ConfigError(
                    "cv: cross-validation is for the binary model; found family 'multinomial'", column="cv"
                )
            if self.inference != "none":
                raise ConfigError(
                    "inference is for one fit: choose the strength by cross-validation, then train it with inference",
                    column="inference",
                )
            mixing(self.penalty, "cv")  # (cross-validation chooses a penalty's strength)
        require_count("path", self.path, 0)
        if self.path:
            if not 2 <= self.path <= MAX_POINTS:
                raise invalid("path", f"0 (no path) or 2 to {MAX_POINTS} strengths", self.path)
            if not 0.0 < self.path_ratio < 1.0:
                raise invalid("path_ratio", "in (0, 1)", self.path_ratio)
            mixing(self.penalty)  # (a path needs a penalty to walk)
            if self.init is not None:
                raise ConfigError("a regularization path starts from zero: init cannot be used with it", column="init")
            if self.inference != "none":
                raise ConfigError(
                    "inference is for one fit: choose the strength with the path, then train it with inference",
                    column="inference",
                )
        elif self.path_ratio != DEFAULT_RATIO:
            raise ConfigError(
                f"path_ratio sets the end of a regularization path (`path` = 2 or more strengths); "
                f"found path_ratio {self.path_ratio!r} without a path",
                column="path_ratio",
            )
        if self.inference not in INFERENCE_KINDS:
            raise invalid("inference", f"one of {', '.join(INFERENCE_KINDS)}", self.inference)
        check_inference(None, self.confidence)
        if self.inference == "none" and self.confidence != DEFAULT_CONFIDENCE:
            raise ConfigError(
                f"confidence sets the intervals of coefficient inference (`inference` = nonrobust or hc0); "
                f"found confidence {self.confidence!r} without inference",
                column="confidence",
            )
        if self.inference != "none":
            reason = refusal(
                l1=self.penalty.l1, n_classes=0, categorical=False, class_weight=self.class_weight is not None
            )
            if reason is None and self.family == "multinomial":
                reason = "coefficient inference is for the binary model; found family 'multinomial'"
            if reason is not None:
                raise ConfigError(f"inference: {reason}", column="inference")
        if self.missing not in MISSING_POLICIES:
            raise invalid("missing", f"one of {', '.join(MISSING_POLICIES)}", self.missing)
        if self.nan_as_missing and self.missing == "error":
            raise ConfigError(
                "nan_as_missing needs a missing-value policy (`missing` = mean or indicator)",
                column="nan_as_missing",
            )
        check_level_policy(self.min_category_count, self.max_categories)
        for name in ("categorical", "hashed"):  # (column names, each once, as features are)
            if getattr(self, name) is not None:
                columns = tuple(getattr(self, name))
                object.__setattr__(self, name, columns)
                twice = sorted({column for column in columns if columns.count(column) > 1})
                if twice:
                    raise ConfigError(f"{name}: columns listed more than once: {twice}", column=name)
        if not 0 < self.memory_fraction <= 1:
            raise invalid("memory_fraction", "in (0, 1]", self.memory_fraction)
        if isinstance(self.class_weight, str) and self.class_weight != "balanced":
            raise invalid(
                "class_weight", "'balanced', a weight per class, or a mapping of class to weight", self.class_weight
            )
        if isinstance(self.class_weight, Mapping):
            named = dict(self.class_weight)
            if not named or not all(is_positive_number(value) for value in named.values()):
                raise invalid(
                    "class_weight", "'balanced' or positive weights, one per class (by class: {class: weight})", named
                )
            # (numpy scalars as Python values: job.json holds the keys as text)
            keys = [key.item() if hasattr(key, "item") and not isinstance(key, str) else key for key in named]
            if not all(isinstance(key, (str, int, float)) for key in keys):
                raise invalid("class_weight", "a mapping whose keys are classes (text or numbers)", named)
            object.__setattr__(self, "class_weight", {k: float(v) for k, v in zip(keys, named.values())})
        elif self.class_weight is not None and self.class_weight != "balanced":
            values = tuple(self.class_weight) if isinstance(self.class_weight, Iterable) else ()
            if len(values) < 2 or not all(is_positive_number(value) for value in values):
                raise invalid(
                    "class_weight",
                    "'balanced' or positive weights, one per class (label 0, label 1 for a 0/1 label)",
                    self.class_weight,
                )
            object.__setattr__(self, "class_weight", tuple(float(cast(float, value)) for value in values))
        if not 0.0 <= self.validation_fraction < 1.0:
            raise invalid("validation_fraction", "in [0, 1)", self.validation_fraction)
        if self.early_stopping < 0:
            raise invalid("early_stopping", ">= 0", self.early_stopping)
        if self.early_stopping and not self.validation_fraction:
            raise ConfigError(
                "early_stopping needs a validation set (`validation_fraction` > 0)", column="early_stopping"
            )
        if self.restore_best:
            if not self.validation_fraction:
                raise ConfigError(
                    "restore_best needs a validation set (`validation_fraction` > 0): it keeps the iterate of the "
                    "least validation loss",
                    column="restore_best",
                )
            if self.inference != "none":
                raise ConfigError(
                    "restore_best keeps an iterate of least validation loss, and inference is at the optimum: "
                    "choose one (inference moves the model to the optimum)",
                    column="restore_best",
                )
            if self.path:
                raise ConfigError(
                    "restore_best cannot be used with a regularization path (`path`: each strength starts from "
                    "the fit of the one before, which must be its last iterate; the path chooses by validation loss)",
                    column="restore_best",
                )
        if self.validation_key and not (self.validation_fraction or self.cv):
            raise ConfigError(
                "validation_key needs `validation_fraction` > 0 (or `cv`: it cuts the folds)", column="validation_key"
            )
        if self.name is not None:
            check_job_name(self.name)
        if self.checkpoint_every < 1:
            raise invalid("checkpoint_every", ">= 1", self.checkpoint_every)
        if self.features is not None:
            object.__setattr__(self, "features", tuple(self.features))


#: Environment variable naming the directory every job output must stay inside
#: (set it on the submitting machine and on the workers that run detached jobs).
OUTPUT_ROOT_ENV = "PIPELINE_OUTPUT_ROOT"
#: Longest job name.
MAX_NAME_LENGTH = 128


def refuse_text(name: str, value: object) -> None:
    """A text where column names are expected is refused (it was read letter by letter)."""
    if isinstance(value, str):
        raise ConfigError(
            f"{name} must be a list of column names; found the text {value!r} (one column: [{value!r}])", column=name
        )


def check_hashing(hash_buckets: object, hashed: object) -> None:
    """``hash_buckets``: None, or an integer in 1 .. :data:`MAX_HASH_BUCKETS`;
    ``hashed``: None, or the names of at least one column, with
    ``hash_buckets``.  Each refused by name (a :class:`ConfigError`): the rules
    of :class:`TrainConfig` and of the estimator's parameters."""
    if hash_buckets is not None and (
        isinstance(hash_buckets, bool)
        or not isinstance(hash_buckets, numbers.Integral)
        or not 1 <= int(hash_buckets) <= MAX_HASH_BUCKETS
    ):
        raise invalid("hash_buckets", f"an integer in 1 .. {MAX_HASH_BUCKETS}", hash_buckets)
    if hashed is None:
        return
    refuse_text("hashed", hashed)
    if not isinstance(hashed, Sized) or not hasattr(hashed, "__iter__"):  # (hashed=5)
        raise invalid("hashed", "a list of column names", hashed)
    if hash_buckets is None:
        raise ConfigError("hashed columns need `hash_buckets`", column="hashed")
    if not len(hashed):  # (hash_buckets would go unused, silently)
        raise ConfigError(
            "hashed must name at least one column (or be left out: every categorical column); found an empty list",
            column="hashed",
        )


def check_job_name(name: str) -> None:
    """A job name is a name, never a path: it can become a directory under an output root."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        raise ConfigError(f"a job name is 1 to {MAX_NAME_LENGTH} characters; found {name!r}")
    if name in (".", "..") or "/" in name or "\\" in name or any(ord(c) < 32 for c in name):
        raise ConfigError(
            f"a job name cannot contain '/', '\\' or control characters, nor be "
            f"'.' or '..' (it may name a directory under the output root); found {name!r}"
        )


def environment_root() -> str | None:
    """This machine's ``$PIPELINE_OUTPUT_ROOT`` as a local path (a ``file:``
    URL's path); None where it is not set; :class:`OutputError` for another
    filesystem's URL (:func:`pipeline.data.local_path`)."""
    value = os.environ.get(OUTPUT_ROOT_ENV) or None
    return None if value is None else local_path(value, f"${OUTPUT_ROOT_ENV}")


def output_roots(config: TrainConfig | None = None) -> list[str]:
    """The roots an output must lie inside: ``config``'s own, and this machine's
    ``$PIPELINE_OUTPUT_ROOT`` (a worker running a detached job checks its own)."""
    roots = [config and config.output_root, environment_root()]
    return [root for root in roots if root]


def check_output_root(path: str, roots: list[str], what: str = "output directory") -> None:
    """:class:`OutputError` unless ``path`` (``..`` and symbolic links resolved)
    lies inside every one of ``roots``."""
    resolved = Path(path).resolve()
    for root in roots:
        if not resolved.is_relative_to(Path(root).resolve()):
            environment = environment_root()  # (it binds every job where it is set)
            by_environment = environment is not None and Path(root).resolve() == Path(environment).resolve()
            remedy = f"${OUTPUT_ROOT_ENV} where the job runs" if by_environment else "output.root (--output-root)"
            raise OutputError(
                f"{what} {path} is outside the output root {root} (resolved: "
                f"{resolved}); write under {root}, or change {remedy}",
                path=str(path),
            )
