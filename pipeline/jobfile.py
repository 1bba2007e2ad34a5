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
    # features = ["f0", "f1"]  # default: every numeric column but label/weight
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
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import (
    CACHE_MODES,
    MEMORY_FRACTION,
    OUTPUT_ROOT_ENV,
    SOLVERS,
    TrainConfig,
    check_job_name,
    check_output_root,
)
from .errors import ConfigError, JobFileError, OutputError
from .objective import Penalty
from .reduce import CONNECT_TIMEOUT_S, STALL_TIMEOUT_S, ClusterSpec
from .solvers import SolverOptions

__all__ = ["KEYS", "config_from_mapping", "config_to_mapping", "load_job", "to_toml"]


@dataclass(frozen=True)
class Key:
    kind: str  # str, int, float, bool, names, class_weight, generate
    flag: str | None  # the `pipeline train` option, None if the CLI has no such option
    help: str
    choices: tuple[str, ...] | None = None


#: Every job-file key; the CLI option that sets the same thing (``None``: job files only).
KEYS: dict[str, Key] = {
    "name": Key("str", "--name", "a name for the job (shown by status and list)"),
    "data.url": Key("str", "DATA", "Parquet directory, file, glob or fsspec URL"),
    "data.label": Key("str", "--label", "label column (values 0/1)"),
    "data.features": Key("names", "--features", "feature columns (default: every numeric column)"),
    "data.weight": Key("str", "--weight-col", "column of sample weights (>= 0)"),
    "data.validation_fraction": Key(
        "float", "--validation-fraction", "share of rows held out for validation (0: none)"
    ),
    "data.validation_key": Key(
        "str", "--validation-key", "column whose hash splits the rows (default: canonical row position)"
    ),
    "data.generate": Key(
        "generate",
        None,
        "create a synthetic dataset at data.url first if it does not exist: "
        "{rows, features, files, row_group_size, seed}",
    ),
    "train.solver": Key("str", "--solver", "optimizer (auto: newton up to 64 features, else lbfgs)", SOLVERS),
    "train.max_iter": Key("int", "--max-iter", "iteration limit"),
    "train.tol": Key("float", "--tol", "stop when the projected gradient's |g|_inf <= tol"),
    "train.ftol": Key("float", "--ftol", "stop when the loss changes by <= ftol (relative)"),
    "train.history_size": Key("int", "--history-size", "L-BFGS memory (pairs kept)"),
    "train.l2": Key("float", "--l2", "L2 strength: + l2/2 ||w||^2"),
    "train.l1": Key("float", "--l1", "L1 strength: + l1 ||w||_1"),
    "train.reg": Key("float", "--reg", "elastic net strength (with train.alpha), instead of l2/l1"),
    "train.alpha": Key("float", "--alpha", "elastic net mix: l1 = reg*alpha, l2 = reg*(1-alpha)"),
    "train.standardize": Key("bool", "--no-standardize", "solve on standardized features"),
    "train.class_weight": Key("class_weight", "--class-weight", "'balanced' or [weight of label 0, weight of label 1]"),
    "train.init": Key("str", "--init", "warm start from this directory's model.json"),
    "train.early_stopping": Key(
        "int", "--early-stopping", "stop when the validation loss has not improved for N iterations"
    ),
    "cluster.scheduler": Key("str", "--scheduler", "address of a running Dask scheduler"),
    "cluster.workers": Key("int", "--workers", "worker processes of an embedded local cluster"),
    "cluster.threads_per_worker": Key("int", "--threads-per-worker", "threads per embedded worker"),
    "cluster.memory_limit": Key("str", "--memory-limit", "memory limit per embedded worker, e.g. '2GiB'"),
    "cluster.in_process": Key("bool", "--in-process", "no Dask: numpy in the submitting process"),
    "cluster.tls_ca_file": Key(
        "str", "--tls-ca-file", "CA certificate(s) (PEM) a tls:// scheduler's certificate must chain to"
    ),
    "cluster.tls_cert": Key("str", "--tls-cert", "this client's certificate (PEM) for a tls:// scheduler"),
    "cluster.tls_key": Key("str", "--tls-key", "this client's private key (PEM), unless it is in the certificate file"),
    "cluster.connect_timeout": Key(
        "float", "--connect-timeout", "seconds to wait for the scheduler at cluster.scheduler to answer (default 10)"
    ),
    "cluster.stall_timeout": Key(
        "float",
        "--stall-timeout",
        "seconds a pass may wait with no worker, or all workers paused, before the job fails (default 60)",
    ),
    "cache.mode": Key("str", "--cache", "decoded chunks between passes", CACHE_MODES),
    "cache.memory_fraction": Key(
        "float", "--memory-fraction", "share of cluster memory that cache.mode = 'memory' may use"
    ),
    "output.dir": Key("str", "--out", "output directory (model, history, checkpoints, job.json)"),
    "output.root": Key(
        "str",
        "--output-root",
        "outputs must stay inside this directory; a relative output.dir, or the job "
        "name when output.dir is not given, is taken under it "
        "(default: $PIPELINE_OUTPUT_ROOT)",
    ),
    "output.overwrite": Key("bool", "--overwrite", "replace the outputs of another job"),
    "output.checkpoint_every": Key("int", "--checkpoint-every", "write the optimizer state every k iterations"),
}

_GENERATE_KEYS = {"rows": int, "features": int, "files": int, "row_group_size": int, "seed": int}
_PATH_KEYS = (
    "data.url",
    "train.init",
    "output.root",
    "cluster.tls_ca_file",
    "cluster.tls_cert",
    "cluster.tls_key",
)  # output.dir: see _output_dir
_TLS_KEYS = ("cluster.tls_ca_file", "cluster.tls_cert", "cluster.tls_key")


def load_job(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read, check and resolve a job file; ``overrides`` (flat keys) win over the file."""
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
    mapping = _flatten(document, source)
    mapping.update({key: value for key, value in (overrides or {}).items() if value is not None})
    return config_from_mapping(mapping, source)


def _flatten(document: Mapping[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in document.items():
        if isinstance(value, dict) and name in {key.split(".")[0] for key in KEYS if "." in key}:
            for inner, item in value.items():
                flat[f"{name}.{inner}"] = item
        else:
            flat[name] = value
    for key in flat:
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            section = key.split(".")[0] + "." if "." in key else ""
            known = [k for k in KEYS if k.startswith(section)] if section else list(KEYS)
            raise JobFileError(
                f"{source}: unknown key {key!r}{hint}; expected one of {', '.join(known or KEYS)}",
                path=source,
                column=key,
            )
    return flat


@dataclass(frozen=True)
class _Source:
    """Where settings come from, for error messages: a job file or the command line."""

    name: str
    command_line: bool = False

    def show(self, key: str) -> str:
        if self.command_line and KEYS.get(key) and KEYS[key].flag:
            return KEYS[key].flag
        return f"key {key!r}"

    def error(self, message: str, key: str | None = None) -> ConfigError:
        if self.command_line:
            return ConfigError(message, column=key)
        return JobFileError(f"{self.name}: {message}", path=self.name, column=key)


def _check_type(key: str, value: Any, source: _Source) -> Any:
    spec = KEYS[key]

    def wrong(expected: str):
        return source.error(f"{source.show(key)} must be {expected}; found {type(value).__name__} {value!r}", key)

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
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise wrong("a list of column names")
        value = tuple(value)
    elif spec.kind == "class_weight":
        if value == "balanced":
            return value
        if (
            not isinstance(value, (list, tuple))
            or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise wrong("'balanced' or a list of two weights [label 0, label 1]")
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
    return value


def _absolute(value: str) -> str:
    if "://" in value or os.path.isabs(value):
        return value
    return str(Path(value).absolute())


def _output_dir(out: str | None, name: str | None, root: str | None) -> str | None:
    """``output.dir`` made absolute: against the output root when there is one
    (then it must stay inside it, and a job name alone names a directory
    there), else against the current directory."""
    if root is None:
        return None if out is None else _absolute(out)
    root = _absolute(root)
    if out is None:
        if name is None:
            return None
        out = os.path.join(root, name)
    elif "://" not in out and not os.path.isabs(out):
        out = os.path.join(root, out)
    check_output_root(out, [root])
    return out


def config_from_mapping(
    mapping: Mapping[str, Any], source: str = "the command line", *, command_line: bool | None = None
) -> TrainConfig:
    """A :class:`TrainConfig` from flat keys.

    Errors name ``source`` and the key (:class:`JobFileError`), or, for the
    command line (``source == "the command line"``), the option (:class:`ConfigError`).
    """
    where = _Source(source, source == "the command line" if command_line is None else command_line)
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
    for key in _PATH_KEYS:
        if key in values:
            values[key] = _absolute(values[key])
    if "name" in values:
        try:
            check_job_name(values["name"])
        except ConfigError as exc:
            raise fail(f"{show('name')}: {exc}", "name") from None
    try:
        out = _output_dir(
            values.get("output.dir"),
            values.get("name"),
            values.get("output.root") or os.environ.get(OUTPUT_ROOT_ENV) or None,
        )
    except OutputError as exc:
        raise fail(f"{show('output.dir')}: {exc}", "output.dir") from None
    if out is not None:
        values["output.dir"] = out
    get = values.get
    if get("cluster.in_process") and (get("cluster.scheduler") or get("cluster.workers")):
        raise fail(
            f"{show('cluster.in_process')} cannot be combined with "
            f"{show('cluster.scheduler')} or {show('cluster.workers')}",
            "cluster.in_process",
        )
    if get("cluster.scheduler") and get("cluster.workers"):
        raise fail(f"give {show('cluster.scheduler')} or {show('cluster.workers')}, not both", "cluster.workers")
    tls = [key for key in _TLS_KEYS if get(key)]
    if tls and not get("cluster.scheduler"):
        raise fail(
            f"{show(tls[0])} is for a tls:// scheduler: give {show('cluster.scheduler')} too "
            "(an embedded cluster needs no TLS)",
            tls[0],
        )
    if tls and not (get("cluster.tls_ca_file") and get("cluster.tls_cert")):
        missing = "cluster.tls_ca_file" if not get("cluster.tls_ca_file") else "cluster.tls_cert"
        raise fail(
            f"TLS needs {show('cluster.tls_ca_file')} and {show('cluster.tls_cert')} "
            f"({show('cluster.tls_key')} too unless the key is in the certificate file); "
            f"{show(missing)} is missing",
            missing,
        )
    for key in tls:
        if not os.path.isfile(values[key]):
            raise fail(f"{show(key)}: no file {values[key]}", key)
    if get("train.reg") is not None or get("train.alpha") is not None:
        if get("train.l1") is not None or get("train.l2") is not None:
            names = "--reg/--alpha or --l2/--l1" if where.command_line else "train.reg/train.alpha or train.l2/train.l1"
            raise fail(f"give either {names}, not both", "train.reg")
    for key in ("cluster.workers", "cluster.threads_per_worker", "output.checkpoint_every"):
        if key in values and values[key] < 1:
            raise fail(f"{show(key)} must be >= 1; found {values[key]}", key)
    for key in ("cluster.stall_timeout", "cluster.connect_timeout"):
        if key in values and not values[key] > 0:
            raise fail(f"{show(key)} must be > 0; found {values[key]}", key)
    for key in ("train.tol", "train.ftol", "train.l2", "train.l1", "train.reg", "cache.memory_fraction"):
        if key in values and not math.isfinite(values[key]):
            raise fail(f"{show(key)} must be finite; found {values[key]}", key)
    try:
        if get("train.reg") is not None or get("train.alpha") is not None:
            penalty = Penalty.elastic_net(get("train.reg", 0.0), get("train.alpha", 0.0))
        else:
            penalty = Penalty(l2=get("train.l2", 0.0), l1=get("train.l1", 0.0))
        defaults = SolverOptions()
        options = SolverOptions(
            max_iter=get("train.max_iter", defaults.max_iter),
            tol=get("train.tol", defaults.tol),
            ftol=get("train.ftol", defaults.ftol),
            history_size=get("train.history_size", defaults.history_size),
        )
        if get("cluster.in_process"):
            cluster = None
        else:
            cluster = ClusterSpec(
                scheduler=get("cluster.scheduler"),
                n_workers=get("cluster.workers", 2),
                threads_per_worker=get("cluster.threads_per_worker", 1),
                memory_limit=get("cluster.memory_limit"),
                stall_timeout_s=get("cluster.stall_timeout", STALL_TIMEOUT_S),
                connect_timeout_s=get("cluster.connect_timeout", CONNECT_TIMEOUT_S),
                tls_ca_file=get("cluster.tls_ca_file"),
                tls_cert=get("cluster.tls_cert"),
                tls_key=get("cluster.tls_key"),
            )
        return TrainConfig(
            data=values["data.url"],
            label=values["data.label"],
            out=get("output.dir"),
            features=get("data.features"),
            weight=get("data.weight"),
            class_weight=get("train.class_weight"),
            solver=get("train.solver", "auto"),
            options=options,
            penalty=penalty,
            standardize=get("train.standardize", True),
            init=get("train.init"),
            cluster=cluster,
            cache=get("cache.mode", "auto"),
            memory_fraction=get("cache.memory_fraction", MEMORY_FRACTION),
            overwrite=get("output.overwrite", False),
            name=get("name"),
            checkpoint_every=get("output.checkpoint_every", 1),
            generate=get("data.generate"),
            validation_fraction=get("data.validation_fraction", 0.0),
            validation_key=get("data.validation_key"),
            early_stopping=get("train.early_stopping", 0),
            output_root=get("output.root"),
        )
    except JobFileError:
        raise
    except ConfigError as exc:
        if where.command_line:
            raise
        raise JobFileError(f"{source}: {exc}", path=source) from None


def config_to_mapping(config: TrainConfig) -> dict[str, Any]:
    """The flat keys that :func:`config_from_mapping` turns back into ``config``."""
    options, penalty, cluster = config.options, config.penalty, config.cluster
    mapping: dict[str, Any] = {
        "name": config.name,
        "data.url": config.data,
        "data.label": config.label,
        "data.features": None if config.features is None else list(config.features),
        "data.weight": config.weight,
        "data.generate": None if config.generate is None else dict(config.generate),
        "data.validation_fraction": config.validation_fraction or None,
        "data.validation_key": config.validation_key,
        "train.solver": config.solver,
        "train.max_iter": options.max_iter,
        "train.tol": options.tol,
        "train.ftol": options.ftol,
        "train.history_size": options.history_size,
        "train.l2": penalty.l2,
        "train.l1": penalty.l1,
        "train.standardize": config.standardize,
        "train.class_weight": (
            None
            if config.class_weight is None
            else config.class_weight
            if isinstance(config.class_weight, str)
            else list(config.class_weight)
        ),
        "train.init": config.init,
        "train.early_stopping": config.early_stopping or None,
        "cache.mode": config.cache,
        "cache.memory_fraction": config.memory_fraction,
        "output.dir": config.out,
        "output.root": config.output_root,
        "output.overwrite": config.overwrite,
        "output.checkpoint_every": config.checkpoint_every,
    }
    if cluster is None:
        mapping["cluster.in_process"] = True
    elif cluster.scheduler:
        mapping["cluster.scheduler"] = cluster.scheduler
        mapping["cluster.tls_ca_file"] = cluster.tls_ca_file
        mapping["cluster.tls_cert"] = cluster.tls_cert
        mapping["cluster.tls_key"] = cluster.tls_key
    else:
        mapping["cluster.workers"] = cluster.n_workers
        mapping["cluster.threads_per_worker"] = cluster.threads_per_worker
        mapping["cluster.memory_limit"] = cluster.memory_limit
    if cluster is not None and cluster.stall_timeout_s != STALL_TIMEOUT_S:
        mapping["cluster.stall_timeout"] = cluster.stall_timeout_s
    if cluster is not None and cluster.connect_timeout_s != CONNECT_TIMEOUT_S:
        mapping["cluster.connect_timeout"] = cluster.connect_timeout_s
    return {key: value for key, value in mapping.items() if value is not None}


def to_toml(mapping: Mapping[str, Any]) -> str:
    """A job file for flat ``mapping`` (the subset of TOML that job files use)."""
    import json

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
            return "{ " + ", ".join(f"{k} = {literal(v)}" for k, v in value.items()) + " }"
        if isinstance(value, int):
            return str(value)
        return json.dumps(value)  # a TOML basic string

    lines = [f"{key} = {literal(value)}" for key, value in mapping.items() if "." not in key]
    sections: dict[str, list[str]] = {}
    for key, value in mapping.items():
        if "." in key:
            section, name = key.split(".", 1)
            sections.setdefault(section, []).append(f"{name} = {literal(value)}")
    for section, entries in sections.items():
        lines += ["", f"[{section}]", *entries]
    return "\n".join(lines) + "\n"
