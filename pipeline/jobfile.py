"""Job files: TOML in, :class:`~pipeline.config.TrainConfig` out — and back.

One table of keys (:data:`KEYS`) describes every setting once: its TOML
section and name, its type, and the ``pipeline train`` option that sets it.
The CLI builds the same flat ``{"section.key": value}`` mapping from its
options and both go through :func:`config_from_mapping`, so a job file and a
command line can express exactly the same things.  A job file looks like::

    name = "demo"

    [data]
    url = "data/demo"          # directory, file, glob or fsspec URL
    label = "y"
    # features = ["f0", "f1"]  # default: every numeric, boolean or text column but label/weight
    # weight = "w"

    [train]
    solver = "auto"            # auto | lbfgs | newton | gd
    max_iter = 1000
    l2 = 0.0

    [cluster]
    workers = 2                # embedded LocalCluster; or scheduler = "tcp://host:8786"

    [cache]
    mode = "auto"

    [output]
    dir = "runs/demo"
    checkpoint_every = 1

Relative local paths (``data.url``, ``train.init``, ``output.dir``) are made
absolute against the current directory when the file is loaded, so a job
keeps its meaning when its coordinator runs on a cluster worker.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .cluster import ClusterSpec
from .config import (
    CACHE_MODES,
    FAMILIES,
    INFERENCE_KINDS,
    SOLVERS,
    TrainConfig,
    check_job_name,
    check_output_root,
    environment_root,
)
from .data import MISSING_POLICIES, file_url_path, is_chain, local_path
from .errors import ConfigError, JobFileError, OutputError, is_positive_number
from .objective import Penalty
from .paths import CV_RULES
from .solvers import SolverOptions
from .synth import LEAST

__all__ = [
    "KEYS",
    "config_from_mapping",
    "config_to_mapping",
    "in_file_words",
    "in_flag_words",
    "job_config",
    "job_source",
    "source_json",
    "source_of",
    "load_job",
    "overridden",
    "read_job_file",
    "suggestion",
    "to_toml",
]


KeyKind = Literal["str", "int", "float", "bool", "names", "class_weight", "generate"]


@dataclass(frozen=True)
class Key:
    """One setting: its job-file key (the dict key of :data:`KEYS`), where it
    lives in :class:`~pipeline.config.TrainConfig`, its type, the ``pipeline
    train`` option that sets it and the help text both show."""

    #: the TrainConfig field it sets: ``"solver"``, or nested ``"options.max_iter"``,
    #: ``"penalty.l2"``, ``"cluster.n_workers"``; None for the keys translated by
    #: a rule of their own (train.reg/alpha: an elastic net; cluster.in_process: no cluster)
    field: str | None
    kind: KeyKind
    #: the `pipeline train` option; None if the CLI has no such option
    flag: str | None
    help: str
    choices: tuple[str, ...] | None = None


#: Every setting, once: the job-file key, the TrainConfig field, the CLI option
#: and its help.  The CLI's options (:func:`pipeline.cli`), job files
#: (:func:`config_from_mapping`) and ``job.json`` (:func:`config_to_mapping`) are
#: all made from it; the values' rules live in the configuration objects.
KEYS: dict[str, Key] = {
    "name": Key(
        "name",
        "str",
        "--name",
        "a name for the job (shown by status and list); without --out, its directory under the output root",
    ),
    "data.url": Key("data", "str", "DATA", "Parquet directory, file, glob or fsspec URL"),
    "data.label": Key("label", "str", "--label", "label column (0/1, or classes: numbers, text, dictionary)"),
    "data.family": Key(
        "family",
        "str",
        "--family",
        "binomial (0/1 or two classes) | multinomial (softmax over K classes) | auto (from the label's classes)",
        FAMILIES,
    ),
    "data.max_classes": Key("max_classes", "int", "--max-classes", "most classes the label may have"),
    "data.features": Key(
        "features",
        "names",
        "--features",
        "feature columns (default: every numeric (decimal too), boolean, text and dictionary column of every file "
        "but the label, the weight and hive keys; text and dictionary columns are categorical)",
    ),
    "data.weight": Key("weight", "str", "--weight-col", "column of sample weights (>= 0)"),
    "data.validation_fraction": Key(
        "validation_fraction", "float", "--validation-fraction", "share of rows held out for validation (0: none)"
    ),
    "data.validation_key": Key(
        "validation_key",
        "str",
        "--validation-key",
        "column whose hash splits the rows (default: canonical row position)",
    ),
    "data.missing": Key(
        "missing",
        "str",
        "--missing",
        "null feature values: error | mean (the column's exact mean) | indicator (mean + a 0/1 feature)",
        MISSING_POLICIES,
    ),
    "data.nan_as_missing": Key("nan_as_missing", "bool", "--nan-as-missing", "NaN feature values are missing too"),
    "data.categorical": Key(
        "categorical",
        "names",
        "--categorical",
        "integer columns to treat as categorical (text and dictionary columns always are)",
    ),
    "data.min_category_count": Key(
        "min_category_count", "int", "--min-category-count", "rarer categorical values go to the <other> level"
    ),
    "data.max_categories": Key(
        "max_categories", "int", "--max-categories", "keep the K most frequent values per categorical column"
    ),
    "data.hash_buckets": Key(
        "hash_buckets",
        "int",
        "--hash-buckets",
        "hash categorical values into N buckets per column (no vocabulary pass)",
    ),
    "data.hashed": Key(
        "hashed", "names", "--hashed", "the categorical columns to hash (default: all, with --hash-buckets)"
    ),
    "data.generate": Key(
        "generate",
        "generate",
        None,
        "create a synthetic dataset at data.url first if it does not exist: "
        "{rows, features, files, row_group_size, seed}",
    ),
    "train.solver": Key("solver", "str", "--solver", "optimizer (auto: see docs/solvers.md)", SOLVERS),
    "train.max_iter": Key("options.max_iter", "int", "--max-iter", "iteration limit"),
    "train.tol": Key("options.tol", "float", "--tol", "stop when the projected gradient's |g|_inf <= tol"),
    "train.ftol": Key(
        "options.ftol", "float", "--ftol", "stop when an iteration (gd: 20) changes the loss by <= ftol (relative)"
    ),
    "train.history_size": Key("options.history_size", "int", "--history-size", "L-BFGS memory (pairs kept)"),
    "train.l2": Key("penalty.l2", "float", "--l2", "L2 strength: + l2/2 ||w||^2"),
    "train.l1": Key("penalty.l1", "float", "--l1", "L1 strength: + l1 ||w||_1"),
    "train.reg": Key(None, "float", "--reg", "elastic net strength (with --alpha / train.alpha), instead of l2/l1"),
    "train.alpha": Key(None, "float", "--alpha", "elastic net mix: l1 = reg*alpha, l2 = reg*(1-alpha)"),
    "train.standardize": Key(
        "standardize",
        "bool",
        "--no-standardize",
        "solve on the raw features, not standardized ones (standardize = false in a job file; by default they are)",
    ),
    "train.class_weight": Key(
        "class_weight",
        "class_weight",
        "--class-weight",
        "'balanced' or a weight per class, by class ('ham:1,spam:5'; '0:1,1:5' for a 0/1 label) or in the "
        "classes' sorted order ('1,5') on the command line; a table {ham = 1, spam = 5} or a list in a job file",
    ),
    "train.init": Key("init", "str", "--init", "warm start from this directory's model.json"),
    "train.early_stopping": Key(
        "early_stopping",
        "int",
        "--early-stopping",
        "stop when the validation loss has not improved for N iterations (0, the default: off); the last "
        "iterate is kept (unless --restore-best)",
    ),
    "train.restore_best": Key(
        "restore_best",
        "bool",
        "--restore-best",
        "the model is the iterate of the least validation loss (the first on a tie), not the last one "
        "(needs --validation-fraction)",
    ),
    "train.cv": Key(
        "cv",
        "int",
        "--cv",
        "K-fold cross-validation of the penalty's strength(s) (with --path: along the path), folds in lockstep",
    ),
    "train.cv_rule": Key(
        "cv_rule",
        "str",
        "--cv-rule",
        "min (smallest mean held-out loss) | 1se (largest strength within 1 SE)",
        CV_RULES,
    ),
    "train.inference": Key(
        "inference",
        "str",
        "--inference",
        "standard errors, p-values and intervals at the optimum: nonrobust (inverse Hessian) | hc0 (sandwich) | none",
        INFERENCE_KINDS,
    ),
    "train.confidence": Key("confidence", "float", "--confidence", "confidence level of the coefficients' intervals"),
    "train.path": Key(
        "path",
        "int",
        "--path",
        "a regularization path of N strengths of the penalty (--l1, --l2 or --reg/--alpha), warm-started",
    ),
    "train.path_ratio": Key("path_ratio", "float", "--path-ratio", "the path's smallest strength / its largest"),
    "cluster.scheduler": Key("cluster.scheduler", "str", "--scheduler", "address of a running Dask scheduler"),
    "cluster.workers": Key("cluster.n_workers", "int", "--workers", "worker processes of an embedded local cluster"),
    "cluster.threads_per_worker": Key(
        "cluster.threads_per_worker", "int", "--threads-per-worker", "threads per embedded worker"
    ),
    "cluster.memory_limit": Key(
        "cluster.memory_limit", "str", "--memory-limit", "memory limit per embedded worker, e.g. '2GiB'"
    ),
    "cluster.in_process": Key(None, "bool", "--in-process", "no Dask: numpy in the submitting process"),
    "cluster.tls_ca_file": Key(
        "cluster.tls_ca_file",
        "str",
        "--tls-ca-file",
        "CA certificate(s) (PEM) a tls:// scheduler's certificate must chain to",
    ),
    "cluster.tls_cert": Key(
        "cluster.tls_cert", "str", "--tls-cert", "this client's certificate (PEM) for a tls:// scheduler"
    ),
    "cluster.tls_key": Key(
        "cluster.tls_key", "str", "--tls-key", "this client's private key (PEM), unless it is in the certificate file"
    ),
    "cluster.connect_timeout": Key(
        "cluster.connect_timeout_s",
        "float",
        "--connect-timeout",
        "seconds to wait for the scheduler to answer (default 10)",
    ),
    "cluster.stall_timeout": Key(
        "cluster.stall_timeout_s",
        "float",
        "--stall-timeout",
        "seconds a pass may wait with no worker, or all workers paused, before the job fails (default 60)",
    ),
    "cache.mode": Key("cache", "str", "--cache", "decoded chunks between passes", CACHE_MODES),
    "cache.memory_fraction": Key(
        "memory_fraction", "float", "--memory-fraction", "share of cluster memory that cache.mode = 'memory' may use"
    ),
    "output.dir": Key("out", "str", "--out", "output directory (model, history, checkpoints, job.json)"),
    "output.root": Key(
        "output_root",
        "str",
        "--output-root",
        "outputs must stay inside this directory; a relative output.dir, or the job "
        "name when output.dir is not given, is taken under it "
        "(default: $PIPELINE_OUTPUT_ROOT)",
    ),
    "output.overwrite": Key("overwrite", "bool", "--overwrite", "replace the outputs of another job"),
    "output.checkpoint_every": Key(
        "checkpoint_every", "int", "--checkpoint-every", "write the optimizer state every k iterations"
    ),
}
#: the key of each TrainConfig field (nested: "options.max_iter")
KEY_OF_FIELD = {spec.field: key for key, spec in KEYS.items() if spec.field is not None}
#: the cluster fields of an embedded cluster (not written for a scheduler's)
_EMBEDDED_CLUSTER_FIELDS = ("n_workers", "threads_per_worker", "memory_limit")
_EMBEDDED_KEYS = ("cluster.threads_per_worker", "cluster.memory_limit")
#: the keys that say where a job runs: one given as an override replaces the file's choice
WHERE_KEYS = ("cluster.scheduler", "cluster.workers", "cluster.in_process")
_TLS_KEYS = ("cluster.tls_ca_file", "cluster.tls_cert", "cluster.tls_key")
#: the settings of any cluster (a scheduler's answer, a pass's stall): none in-process
_CLUSTER_TIMEOUT_KEYS = ("cluster.connect_timeout", "cluster.stall_timeout")
#: what a job file's keys lose to each where-override: the other kinds of cluster
#: and the settings that only apply to them (a scheduler keeps its TLS files)
_REPLACED_BY = {
    "cluster.scheduler": WHERE_KEYS + _EMBEDDED_KEYS,
    "cluster.workers": WHERE_KEYS + _TLS_KEYS,
    "cluster.in_process": WHERE_KEYS + _EMBEDDED_KEYS + _TLS_KEYS + _CLUSTER_TIMEOUT_KEYS,
    # a penalty given one way replaces the file's penalty given the other way
    "train.reg": ("train.l2", "train.l1"),
    "train.alpha": ("train.l2", "train.l1"),
    "train.l2": ("train.reg", "train.alpha"),
    "train.l1": ("train.reg", "train.alpha"),
}

_GENERATE_KEYS = tuple(LEAST)
_PATH_KEYS = (
    "data.url",
    "train.init",
    "output.root",
    "cluster.tls_ca_file",
    "cluster.tls_cert",
    "cluster.tls_key",
)  # output.dir: see _output_dir
#: keys of paths this machine writes: never another filesystem's URL
_LOCAL_KEYS = ("output.dir", "output.root")


def load_job(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read, check and resolve a job file; ``overrides`` (flat keys) win over the file."""
    return job_config(read_job_file(path), str(path), overrides)


def job_config(mapping: Mapping[str, Any], source: str, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """The configuration of a job file's keys (:func:`read_job_file`, read
    once: a pipe cannot be read again), ``overrides`` winning over them."""
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    if any(key in given for key in WHERE_KEYS):
        _check_replaced_cluster(mapping, source)
    return config_from_mapping(overridden(mapping, given), source, overridden=given)


def _check_replaced_cluster(mapping: Mapping[str, Any], source: str) -> None:
    """The job file's own cluster values, by their rules, where a where-option
    replaces them: a bad value in the file is the file's error with or without
    the option (``workers = 0`` went through with ``--in-process``)."""
    where = _Source(source)
    fields = {}
    for key in (*WHERE_KEYS, *_EMBEDDED_KEYS, *_CLUSTER_TIMEOUT_KEYS):
        field = KEYS[key].field
        if field is not None and mapping.get(key) is not None:
            fields[field.rpartition(".")[2]] = _check_type(key, mapping[key], where)
    try:
        _built(ClusterSpec, "cluster", **fields)
    except _FieldError as error:
        raise _refused(error, where) from None


def stored_settings(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A job's settings as ``job.json`` (or a checkpoint) stored them, in
    today's terms: ``data.hashed = []``, which earlier versions accepted and
    which hashed no column, is no hashing (without ``data.hash_buckets``):
    such a job still resumes, to the same model."""
    settings = dict(mapping)
    if settings.get("data.hashed") == []:
        settings.pop("data.hashed")
        settings.pop("data.hash_buckets", None)
    return settings


def read_job_file(path: str | os.PathLike) -> dict[str, Any]:
    """A job file's flat keys, each of the type its setting takes (:class:`JobFileError` if not)."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise JobFileError(f"job file {source} does not exist", path=source) from None
    except OSError as exc:
        raise JobFileError(f"job file {source} cannot be read: {exc}", path=source) from None
    except tomllib.TOMLDecodeError as exc:
        raise JobFileError(f"{source}: not valid TOML: {exc}", path=source) from None
    except UnicodeDecodeError as exc:  # (TOML is UTF-8 text)
        raise JobFileError(f"{source}: not valid TOML: not UTF-8 text ({exc})", path=source) from None
    mapping = _flatten(document, source)
    in_file = _Source(source)
    for key, value in mapping.items():  # (the file's own types, before an option replaces or drops a key)
        if key in KEYS and value is not None:
            _check_type(key, value, in_file)
    return mapping


def overridden(mapping: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """``mapping`` (flat keys) with the keys ``given`` on the command line:
    a where-override (``cluster.scheduler``, ``workers``, ``in_process``)
    replaces the other kinds of cluster and the settings only they have,
    keeping the rest (timeouts, and a scheduler's TLS files); a penalty
    given one way replaces one given the other way."""
    kept = dict(mapping)
    for where, dropped in _REPLACED_BY.items():
        if where in given:
            kept = {key: value for key, value in kept.items() if key not in dropped}
    return {**kept, **given}


def _names_field(column: str | None, field: str | None) -> bool:
    """Whether an error's ``column`` names a configuration ``field``
    (``class_weight``, or its last part: ``max_iter`` of ``options.max_iter``)."""
    return bool(column) and field is not None and column in (field, field.rsplit(".", 1)[-1])


def _setting_of(column: str | None, keys: Iterable[str]) -> str | None:
    """The key among ``keys`` that sets the option an error names (``column``)."""
    return next((key for key in keys if key in KEYS and _names_field(column, KEYS[key].field)), None)


#: a job file and the keys it set that the command line did not replace (:func:`in_file_words`)
JobSource = tuple[str, tuple[str, ...]]


def job_source(path: str | os.PathLike, mapping: Mapping[str, Any], overridden: Iterable[str] = ()) -> JobSource:
    """The job file ``path`` and the keys it sets (``mapping``, as
    :func:`read_job_file` read them: a pipe cannot be read twice) but
    ``overridden``."""
    return str(path), tuple(key for key in mapping if key not in set(overridden))


def source_json(source: JobSource | None) -> dict | None:
    """``source`` as job.json keeps it (a resumed job's errors are in its file's words too)."""
    return None if source is None else {"file": source[0], "keys": list(source[1])}


def source_of(document: Any) -> JobSource | None:
    """The :data:`JobSource` job.json's ``source`` holds (None: none, or not one)."""
    if not isinstance(document, dict):
        return None
    path, keys = document.get("file"), document.get("keys")
    if not isinstance(path, str) or not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        return None
    return path, tuple(keys)


def in_file_words(error: BaseException, source: JobSource | None) -> BaseException:
    """``error`` as a job's: a :class:`ConfigError` of a value that only the
    data can refuse (class_weight's count) set by a key of ``source``'s file
    becomes a :class:`JobFileError` naming the file and the key, as a job
    file's other errors do; one the file did not set is the command line's
    (:func:`in_flag_words`); anything else, or without a job file, as it is."""
    if source is None or not isinstance(error, ConfigError) or isinstance(error, JobFileError):
        return error
    path, keys = source
    setting = _setting_of(error.column, keys)
    if setting is None:
        return in_flag_words(error)
    reason = str(error).removeprefix(f"{error.column}: ")  # (the key names the setting already)
    return JobFileError(f"{path}: {setting}: {reason}", path=path, column=setting)


def in_flag_words(error: ConfigError) -> ConfigError:
    """``error`` with the field that opens its message (``inference: ...``)
    shown as its command-line option (``--inference: ...``)."""
    column, message = error.column, str(error)
    flags = [
        spec.flag
        for spec in KEYS.values()
        if spec.flag and spec.flag.startswith("--") and _names_field(column, spec.field)
    ]
    if not column or not flags or not message.startswith(column) or message[len(column) : len(column) + 1] not in ": ":
        return error
    return ConfigError(flags[0] + message[len(column) :], path=error.path, column=column)


#: other tools' names of a setting (scikit-learn's, glmnet's), by the name it has here
_ALIASES = {"l1_ratio": "alpha", "tolerance": "tol", "directory": "dir", "max_iterations": "max_iter"}


def suggestion(key: str) -> str | None:
    """Policy only: the known key an unknown ``key`` most likely meant, or None.

    Within its section (or the nearest section name): another tool's name of
    the setting (:data:`_ALIASES`), a known name that the typed one extends
    (``l2_penalty``: ``l2``) or starts (``feature``: ``features``), else the
    closest name by difflib's ratio, if close enough."""
    section, _, name = key.rpartition(".")
    sections = {known.rpartition(".")[0] for known in KEYS}
    if section not in sections:
        near = difflib.get_close_matches(section, sections, n=1, cutoff=0.6)
        section = near[0] if near else section
    names = [known.rpartition(".")[2] for known in KEYS if known.rpartition(".")[0] == section]
    if _ALIASES.get(name) in names:
        found = [_ALIASES[name]]
    else:  # a near typo (cv_rules: cv_rule) first, then the longest name it extends or starts, then nearer
        found = difflib.get_close_matches(name, names, n=1, cutoff=0.85)
        extended = [n for n in names if name.startswith(n + "_") or (len(name) >= 3 and n.startswith(name))]
        found = found or sorted(extended, key=len, reverse=True)[:1]
        found = found or difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    if not found and not section:  # a key without its section (l2 = 0.1 at the top): the one section holding it
        holding = [known for known in KEYS if known.rpartition(".")[2] == _ALIASES.get(name, name)]
        return holding[0] if len(holding) == 1 else None
    if not found:
        return None
    return f"{section}.{found[0]}" if section else found[0]


def _flatten(document: Mapping[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    sections = {key.split(".")[0] for key in KEYS if "." in key}
    for name, value in document.items():
        if "." in name:  # a quoted key: TOML reads "train.max_iter" as one key of that name, not [train] max_iter
            section, _, inner = name.partition(".")
            raise JobFileError(
                f"{source}: the quoted key {name!r} is one key of that name in TOML, not a setting (it would "
                f"not replace nor clash with the file's other keys); expected {section}.{inner} without the "
                f"quotes, or {inner} under [{section}]",
                path=source,
                column=name,
            )
        if isinstance(value, dict) and name not in KEYS:  # a section (a misspelt one's keys get a suggestion)
            for inner, item in value.items():
                flat[f"{name}.{inner}"] = item
        elif name in sections:
            known = ", ".join(key.split(".", 1)[1] for key in KEYS if key.startswith(name + "."))
            raise JobFileError(
                f"{source}: {name!r} is a section: expected a table ([{name}] holding {known}); "
                f"found {type(value).__name__} {value!r}",
                path=source,
                column=name,
            )
        else:
            flat[name] = value
    for key in flat:
        if key not in KEYS:
            close = suggestion(key)
            hint = f" (did you mean {close!r}?)" if close else ""
            if key.rpartition(".")[2] == "quiet":
                hint = " (--quiet is a command-line option only)"
            section = key.split(".")[0] + "." if "." in key else ""
            siblings = [k for k in KEYS if k.startswith(section)] if section else list(KEYS)
            listed = "" if close and not (section and siblings) else f"; expected one of {', '.join(siblings or KEYS)}"
            raise JobFileError(f"{source}: unknown key {key!r}{hint}{listed}", path=source, column=key)
    return flat


@dataclass(frozen=True)
class _Source:
    """Where settings come from, for error messages: a job file or the command line."""

    name: str
    command_line: bool = False
    #: keys of a job file's settings that the command line gave instead
    overridden: frozenset[str] = frozenset()

    def by_command_line(self, key: str | None) -> bool:
        return self.command_line or (key is not None and key in self.overridden)

    def show(self, key: str) -> str:
        flag = KEYS[key].flag if key in KEYS else None
        return flag if self.by_command_line(key) and flag else f"key {key!r}"

    def error(self, message: str, key: str | None = None) -> ConfigError:
        """The error of ``key``'s value: the job file's, unless the command
        line gave it (an option's value is the command line's error)."""
        if self.by_command_line(key):
            return ConfigError(message, column=key)
        return JobFileError(f"{self.name}: {message}", path=self.name, column=key)


def _check_type(key: str, value: Any, source: _Source) -> Any:
    spec = KEYS[key]

    def wrong(expected: str):
        return source.error(f"{source.show(key)} must be {expected}; found {type(value).__name__} {value!r}", key)

    if key == "cluster.memory_limit" and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = repr(value)  # 0 (no limit) or a fraction of the machine: a TOML number as the text Dask takes
    if spec.kind == "str":
        if not isinstance(value, str) or not value:
            raise wrong("a non-empty string")
        if spec.choices and value not in spec.choices:
            raise source.error(f"{source.show(key)} must be one of {', '.join(spec.choices)}; found {value!r}", key)
    elif spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
    elif spec.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong("a number")
        value = float(value)
    elif spec.kind == "bool":
        if not isinstance(value, bool):
            raise wrong("true or false")
    elif spec.kind == "names":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise wrong("a list of column names")
        if key in ("data.features", "data.hashed") and not value:  # (no hashed column: hash_buckets unused)
            raise source.error(f"{source.show(key)} must name at least one column; found an empty list", key)
        if not all(value):  # ("" on the command line, or "a,": an empty name)
            found = "no name" if not any(value) else f"an empty name in {', '.join(map(repr, value))}"
            raise source.error(f"{source.show(key)} must name columns, each non-empty; found {found}", key)
        value = tuple(value)
    elif spec.kind == "class_weight":
        examples = ("ham:1,spam:5", "1,5") if source.by_command_line(key) else ("{ham = 1, spam = 5}", "[1, 5]")
        weights_rule = f"'balanced', or positive weights by class ({examples[0]}) or one per class ({examples[1]})"
        if value == "balanced":
            return value
        if isinstance(value, dict):  # by class: {ham = 1.0, spam = 5.0}; {"0" = 1, "1" = 5} for a 0/1 label
            if not value or not all(is_positive_number(v) for v in value.values()):
                raise wrong(weights_rule)
            return {str(k): float(v) for k, v in value.items()}
        if (
            not isinstance(value, (list, tuple))
            or len(value) < 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise wrong(weights_rule)
        value = tuple(float(v) for v in value)
    elif spec.kind == "generate":
        if not isinstance(value, dict):
            raise wrong("a table {rows, features, files, row_group_size, seed}")
        for inner, item in value.items():
            if inner not in _GENERATE_KEYS:
                raise source.error(f"unknown key {key + '.' + inner!r}; expected {', '.join(_GENERATE_KEYS)}", key)
            if isinstance(item, bool) or not isinstance(item, int):
                raise source.error(f"key {key + '.' + inner!r} must be an integer; found {item!r}", key)
        for required in ("rows", "features"):
            if required not in value:
                raise source.error(f"{source.show(key)} needs {required!r}", key)
        for inner, item in value.items():
            if item < LEAST[inner]:
                raise source.error(f"key {key + '.' + inner!r} must be >= {LEAST[inner]}; found {item!r}", key)
    return value


def _absolute(value: str) -> str:
    """A local path made absolute; one with ``..`` also resolved as the
    filesystem means it (``jobs/../data``: ``data``; symbolic links followed,
    as ``link/..`` is the link target's parent), others kept as written (a
    symbolic link stays the user's name); a URL as it is, but a ``file:``
    URL, which is a local path (percent-decoded; ``file://../data``, read as
    fsspec reads it, relative to where pipeline runs, not where a detached
    job's worker does)."""
    value = file_url_path(value)
    if "://" in value or is_chain(value):  # (a chain of filesystems, blockcache::/d, as written)
        return value
    if ".." in Path(value).parts:
        return os.path.realpath(value)
    return str(Path(value).absolute())


def _output_dir(out: str | None, name: str | None, root: str | None) -> str | None:
    """``output.dir`` made absolute: against the output root when there is one
    (then it must stay inside it, and a job name alone names a directory
    there), else against the current directory.  Both are local paths
    (a ``file:`` URL's path; another URL was refused before)."""
    out = None if out is None else file_url_path(out)
    if root is None:
        return None if out is None else _absolute(out)
    root = _absolute(root)
    if out is None:
        if name is None:
            return None
        out = os.path.join(root, name)
    elif not os.path.isabs(out):
        out = os.path.join(root, out)
    check_output_root(out, [root])
    return out


def config_from_mapping(
    mapping: Mapping[str, Any],
    source: str = "the command line",
    *,
    command_line: bool | None = None,
    overridden: Iterable[str] = (),
) -> TrainConfig:
    """A :class:`TrainConfig` from flat keys: each key's value checked for its
    type and put in its field (:data:`KEYS`); the values' rules are the
    configuration objects' own (their errors come back naming the key).

    Errors name ``source`` and the key (:class:`JobFileError`), or, for the
    command line (``source == "the command line"``) and the keys in
    ``overridden`` (a job file's settings the command line gave), the option
    (:class:`ConfigError`).
    """
    where = _Source(
        source, source == "the command line" if command_line is None else command_line, frozenset(overridden)
    )
    show, fail = where.show, where.error
    values = {}
    for key, value in mapping.items():
        if key not in KEYS:
            raise fail(f"unknown key {key!r}", key)
        if value is not None:
            values[key] = _check_type(key, value, where)
    for required in ("data.url", "data.label"):
        if required not in values:
            raise fail(f"missing {show(required)} ({KEYS[required].help})", required)
    # written here: a URL would be a local directory named after its scheme, an empty path the
    # current directory (pipeline.data.local_path; data.url with data.generate: TrainConfig's rule)
    for key in (key for key in _LOCAL_KEYS if key in values):
        try:
            local_path(values[key], show(key))
        except OutputError as exc:
            raise fail(str(exc), key) from None
    for key in _PATH_KEYS:
        if key in values:
            if isinstance(values[key], str) and not file_url_path(values[key]):  # ("file:": no path at all)
                raise fail(f"{show(key)} is {values[key]!r}, which names no path; expected a path or URL", key)
            values[key] = _absolute(values[key])
    if "name" in values:  # before it can name a directory (the same rule as TrainConfig's)
        try:
            check_job_name(values["name"])
        except ConfigError as exc:
            raise fail(f"{show('name')}: {exc}", "name") from None
    root = values.get("output.root") or environment_root()  # (an OutputError of its own: not the job's key)
    try:
        out = _output_dir(values.get("output.dir"), values.get("name"), root)
    except OutputError as exc:
        raise fail(f"{show('output.dir')}: {exc}", "output.dir") from None
    if out is not None:
        values["output.dir"] = out
    # which keys may be given together (a source's way of saying something)
    get = values.get
    if get("cluster.in_process") and (get("cluster.scheduler") or get("cluster.workers")):
        raise fail(
            f"{show('cluster.in_process')} cannot be combined with "
            f"{show('cluster.scheduler')} or {show('cluster.workers')}",
            "cluster.in_process",
        )
    # settings of workers or of a cluster, with no cluster (TLS files: refused by
    # their own rule), or of workers with a scheduler's, which were set up by
    # whoever started them (each would be silently ignored)
    embedded = "sets up the workers of an embedded cluster"
    for keys, what, beside, lacking in (
        (_EMBEDDED_KEYS, embedded, "cluster.in_process", "no workers"),
        (_CLUSTER_TIMEOUT_KEYS, "is a setting of a Dask cluster", "cluster.in_process", "no cluster"),
        (
            _EMBEDDED_KEYS,
            embedded,
            "cluster.scheduler",
            "whose workers are set up where they are started: `dask worker --nthreads N --memory-limit SIZE`",
        ),
    ):
        given = [key for key in keys if get(key) is not None]
        if get(beside) and given:
            raise fail(f"{show(given[0])} {what}; found it with {show(beside)} ({lacking})", given[0])
    if get("cluster.scheduler") and get("cluster.workers"):
        raise fail(f"give {show('cluster.scheduler')} or {show('cluster.workers')}, not both", "cluster.workers")
    elastic = get("train.reg") is not None or get("train.alpha") is not None
    if elastic and (get("train.l1") is not None or get("train.l2") is not None):
        names = "--reg/--alpha or --l2/--l1" if where.command_line else "train.reg/train.alpha or train.l2/train.l1"
        raise fail(f"give either {names}, not both", "train.reg")
    if get("train.alpha") is not None and get("train.reg") is None:
        raise fail(
            f"{show('train.alpha')} is the elastic net's mix of {show('train.reg')}; found it without "
            f"{show('train.reg')} (the strength, which it would leave at 0: no penalty)",
            "train.alpha",
        )
    fields: dict[str, dict[str, Any]] = {"": {}, "options": {}, "penalty": {}, "cluster": {}}
    for key, value in values.items():
        field = KEYS[key].field
        if field is not None:
            group, _, name = field.rpartition(".")
            fields[group][name] = value
    try:
        penalty = (
            _built(Penalty.elastic_net, "train.reg", get("train.reg", 0.0), get("train.alpha", 0.0))
            if elastic
            else _built(Penalty, "penalty", **fields["penalty"])
        )
        cluster = _built(ClusterSpec, "cluster", **fields["cluster"])  # its rules hold in-process too
        if get("cluster.in_process"):
            cluster = None
        options = _built(SolverOptions, "options", **fields["options"])
        return _built(TrainConfig, "", **fields[""], options=options, penalty=penalty, cluster=cluster)
    except _FieldError as error:
        raise _refused(error, where) from None


def _refused(error: _FieldError, where: _Source) -> ConfigError:
    """A configuration object's refusal in ``where``'s words: the key (or
    option) that set the value, the other fields it quotes shown likewise."""
    refused, show = error.error, where.show
    if error.key is None:
        return refused if where.by_command_line(None) else where.error(str(refused))
    message, name = str(refused), refused.column or ""
    shown = (
        show(error.key) + message[len(name) :] if name and message.startswith(name) else f"{show(error.key)}: {message}"
    )
    return where.error(_quoted_fields(shown, error.group, show), error.key)


class _FieldError(Exception):
    """A configuration object refused a value: the key that set it (None if
    unknown), the object's group of fields and the error."""

    def __init__(self, key: str | None, group: str, error: ConfigError) -> None:
        super().__init__(str(error))
        self.key, self.group, self.error = key, group, error


def _quoted_fields(message: str, group: str, show) -> str:
    """The other fields a message quotes as `name`, shown as their option or key."""

    def shown(match: re.Match) -> str:
        field = f"{group}.{match.group(1)}" if group else match.group(1)
        return show(KEY_OF_FIELD[field]) if field in KEY_OF_FIELD else match.group(0)

    return re.sub(r"`(\w+)`", shown, message)


def _built(make, group: str, *args, **kwargs):
    """``make(*args, **kwargs)``; a :class:`ConfigError` naming a field
    (``column``) becomes a :class:`_FieldError` naming the field's key."""
    try:
        return make(*args, **kwargs)
    except ConfigError as exc:
        key: str | None
        if group == "train.reg":  # the elastic net's own rules (alpha in [0, 1], ...)
            key = "train.alpha" if exc.column == "alpha" else "train.reg"
        elif exc.column:
            key = KEY_OF_FIELD.get(f"{group}.{exc.column}" if group else exc.column)
        else:
            key = None
        raise _FieldError(key, group, exc) from None


def config_to_mapping(config: TrainConfig) -> dict[str, Any]:
    """The flat keys that :func:`config_from_mapping` turns back into ``config``
    (the fields of :data:`KEYS`; None values left out)."""
    mapping: dict[str, Any] = {}
    for key, spec in KEYS.items():
        if spec.field is None:
            continue
        group, _, name = spec.field.rpartition(".")
        owner = getattr(config, group) if group else config
        if owner is None:  # in-process: no cluster settings
            continue
        if group == "cluster" and config.cluster is not None and config.cluster.scheduler:
            if name in _EMBEDDED_CLUSTER_FIELDS:
                continue
        value = getattr(owner, name)
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, dict):
            value = dict(value)
        mapping[key] = value
    if config.cluster is None:
        mapping["cluster.in_process"] = True
    return {key: value for key, value in mapping.items() if value is not None}


def basic_string(text: str) -> str:
    """``text`` as a TOML basic string: JSON's escapes, which TOML shares,
    but characters beyond the Basic Multilingual Plane as they are (JSON's
    surrogate pairs, ``\ud83d\ude00``, are no Unicode scalar values to
    TOML) and DEL escaped (TOML allows no raw control character)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def to_toml(mapping: Mapping[str, Any]) -> str:
    """A job file for flat ``mapping`` (the subset of TOML that job files use)."""

    def literal(value) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return (
                repr(value) if math.isfinite(value) else ("nan" if value != value else ("inf" if value > 0 else "-inf"))
            )
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(literal(v) for v in value) + "]"
        if isinstance(value, dict):
            return "{ " + ", ".join(f"{basic_string(str(k))} = {literal(v)}" for k, v in value.items()) + " }"
        if isinstance(value, int):
            return str(value)
        return basic_string(str(value))

    lines = [f"{key} = {literal(value)}" for key, value in mapping.items() if "." not in key]
    sections: dict[str, list[str]] = {}
    for key, value in mapping.items():
        if "." in key:
            section, name = key.split(".", 1)
            sections.setdefault(section, []).append(f"{name} = {literal(value)}")
    for section, entries in sections.items():
        lines += ["", f"[{section}]", *entries]
    return "\n".join(lines) + "\n"
