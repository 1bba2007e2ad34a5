"""One place per rule: the options table (pipeline.jobfile.KEYS) drives the CLI,
job files and job.json; each value's rule lives in its configuration object
and comes back naming the option (CLI) or the key (job file)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from conftest import run_cli

from pipeline.cluster import MEMORY_LIMIT_RULE, ClusterSpec
from pipeline.config import TrainConfig
from pipeline.errors import ConfigError, JobFileError
from pipeline.jobfile import KEYS, config_from_mapping, config_to_mapping, load_job, to_toml
from pipeline.objective import Penalty
from pipeline.solvers import SolverOptions

#: the objects behind TrainConfig's nested fields
GROUPS = {"": TrainConfig, "options": SolverOptions, "penalty": Penalty, "cluster": ClusterSpec}


def test_every_key_names_a_real_field_and_every_setting_has_a_key():
    fields = {group: {f.name for f in dataclasses.fields(kind)} for group, kind in GROUPS.items()}
    mapped = set()
    for key, spec in KEYS.items():
        if spec.field is None:
            continue
        group, _, name = spec.field.rpartition(".")
        assert name in fields[group], f"{key}: {spec.field} is not a field of {GROUPS[group].__name__}"
        mapped.add(spec.field)
    # every TrainConfig field is set by a key (the nested objects by their fields' keys)
    top = fields[""] - set(GROUPS) - mapped
    assert not top, f"TrainConfig fields without a key in KEYS: {sorted(top)}"
    for group in ("penalty", "cluster"):
        missing = {f"{group}.{name}" for name in fields[group]} - mapped
        assert not missing, f"{group} fields without a key: {sorted(missing)}"


def test_each_key_lands_in_its_field_and_comes_back(tmp_path):
    """A non-default value for every key with a field: set by the mapping, read
    from the field the table names, and written back by config_to_mapping."""
    values = {
        "name": "x",
        "data.url": str(tmp_path / "data"),
        "data.label": "y",
        "data.family": "multinomial",
        "data.max_classes": 20,
        "data.features": ["a", "b"],
        "data.weight": "w",
        "data.validation_fraction": 0.2,
        "data.validation_key": "user",
        "data.missing": "indicator",
        "data.nan_as_missing": True,
        "data.categorical": ["a"],
        "data.min_category_count": 3,
        "data.max_categories": 50,
        "data.generate": {"rows": 10, "features": 2},
        "train.solver": "gd",
        "train.max_iter": 7,
        "train.tol": 1e-5,
        "train.ftol": 0.0,
        "train.history_size": 3,
        "train.l2": 0.5,
        "train.l1": 0.25,
        "train.standardize": False,
        "train.class_weight": [1.0, 2.5],
        "train.init": str(tmp_path / "init"),
        "train.early_stopping": 4,
        "train.restore_best": True,
        "train.inference": "none",  # (the other values refuse this L1, multinomial fit: below)
        "train.confidence": 0.95,  # (the default: another level needs inference, below)
        "train.path": 0,  # (a path refuses this init: below)
        "train.path_ratio": 1e-4,  # (the default: another end needs a path, below)
        "train.cv": 0,  # (cross-validation refuses this init and validation split: below)
        "train.cv_rule": "min",  # (the default: another rule needs cross-validation, below)
        "cluster.workers": 3,
        "cluster.threads_per_worker": 2,
        "cluster.memory_limit": "1GiB",
        "cluster.stall_timeout": 7.5,
        "cluster.connect_timeout": 3.0,
        "cache.mode": "memory",
        "cache.memory_fraction": 0.25,
        "output.dir": str(tmp_path / "o"),
        "output.root": str(tmp_path),
        "output.overwrite": True,
        "output.checkpoint_every": 5,
    }
    config = config_from_mapping(values)
    for key, value in values.items():
        group, _, name = KEYS[key].field.rpartition(".")
        found = getattr(getattr(config, group) if group else config, name)
        assert found == (tuple(value) if isinstance(value, list) else value), key
    assert config_to_mapping(config) == values
    inference = {"data.url": values["data.url"], "data.label": "y", "train.inference": "hc0", "train.confidence": 0.9}
    assert config_from_mapping(inference).inference == "hc0" and config_from_mapping(inference).confidence == 0.9
    assert config_to_mapping(config_from_mapping(inference))["train.inference"] == "hc0"
    assert config_to_mapping(config_from_mapping(inference))["train.confidence"] == 0.9
    path = {"data.url": values["data.url"], "data.label": "y", "train.l1": 1.0, "train.path": 7}
    path["train.path_ratio"] = 0.01
    assert config_from_mapping(path).path == 7 and config_to_mapping(config_from_mapping(path))["train.path"] == 7
    assert config_from_mapping(path).path_ratio == 0.01
    assert config_to_mapping(config_from_mapping(path))["train.path_ratio"] == 0.01
    folds = {**path, "train.cv": 5, "train.cv_rule": "1se"}
    assert config_from_mapping(folds).cv == 5 and config_to_mapping(config_from_mapping(folds))["train.cv"] == 5
    assert config_to_mapping(config_from_mapping(folds))["train.cv_rule"] == "1se"
    job = tmp_path / "job.toml"  # and through a job file
    job.write_text(to_toml(config_to_mapping(config)))
    assert load_job(job) == config
    # text beyond the Basic Multilingual Plane, and control characters (DEL raw is no TOML)
    for label in ("y\U0001f600", "a\x7fb", 'tab\tq"\\', "\x00\x1f", "é"):
        odd = config_to_mapping(dataclasses.replace(config, label=label))
        job.write_text(to_toml(odd), encoding="utf-8")
        assert load_job(job).label == label


@pytest.mark.parametrize(
    "key, value, flag, rule",
    [
        ("train.max_iter", -1, "--max-iter", "must be an integer >= 0; found -1"),
        ("train.history_size", 0, "--history-size", "must be an integer >= 1; found 0"),
        ("train.tol", -1e-3, "--tol", "must be a finite number >= 0; found -0.001"),
        ("train.l2", -1.0, "--l2", "must be a finite number >= 0; found -1.0"),
        ("train.alpha", 1.5, "--alpha", "must be in [0, 1]; found 1.5"),
        ("cluster.workers", 0, "--workers", "must be an integer >= 1; found 0"),
        ("cluster.threads_per_worker", 0, "--threads-per-worker", "must be an integer >= 1; found 0"),
        ("cluster.memory_limit", "lots", "--memory-limit", f"{MEMORY_LIMIT_RULE}; found 'lots'"),
        ("cluster.memory_limit", "1.5", "--memory-limit", f"{MEMORY_LIMIT_RULE}; found '1.5'"),
        ("cluster.stall_timeout", 0.0, "--stall-timeout", "must be a finite number > 0; found 0.0"),
        ("cluster.connect_timeout", -2.0, "--connect-timeout", "must be a finite number > 0; found -2.0"),
        ("cache.memory_fraction", 2.0, "--memory-fraction", "must be in (0, 1]; found 2.0"),
        ("data.validation_fraction", 1.0, "--validation-fraction", "must be in [0, 1); found 1.0"),
        ("output.checkpoint_every", 0, "--checkpoint-every", "must be >= 1; found 0"),
        ("train.early_stopping", -1, "--early-stopping", "must be >= 0; found -1"),
    ],
)
def test_a_value_rule_names_the_option_or_the_key(key, value, flag, rule):
    """The rule is checked once (in the configuration object); the CLI's
    message names the option, a job file's the file and the key."""
    mapping = {"data.url": "/d", "data.label": "y", key: value}
    if key == "train.alpha":
        mapping["train.reg"] = 0.1
    with pytest.raises(ConfigError) as from_cli:
        config_from_mapping(mapping)
    assert str(from_cli.value) == f"{flag} {rule}" and not isinstance(from_cli.value, JobFileError)
    assert from_cli.value.column == key
    with pytest.raises(JobFileError) as from_file:
        config_from_mapping(mapping, "job.toml")
    assert str(from_file.value) == f"job.toml: key {key!r} {rule}"


def test_the_objects_refuse_the_same_values_on_their_own():
    """The API (and the estimator) meet the same rules without a mapping."""
    with pytest.raises(ConfigError, match="^max_iter must be an integer >= 0"):
        SolverOptions(max_iter=-1)
    with pytest.raises(ConfigError, match="^n_workers must be an integer >= 1"):
        ClusterSpec(n_workers=0)
    with pytest.raises(ConfigError, match="^checkpoint_every must be >= 1"):
        TrainConfig(data="/d", label="y", checkpoint_every=0)
    for flag in ("standardize", "nan_as_missing", "overwrite"):
        with pytest.raises(ConfigError, match=f"^{flag} must be true or false; found 'no'$"):
            TrainConfig(data="/d", label="y", **{flag: "no"})
    for name in ("features", "categorical", "hashed"):  # (a text was read letter by letter: 'f', '0')
        with pytest.raises(ConfigError, match=rf"^{name} must be a list of column names; found the text 'f0'"):
            TrainConfig(data="/d", label="y", hash_buckets=4, **{name: "f0"})
    with pytest.raises(ConfigError, match="^hashed must name at least one column"):
        TrainConfig(data="/d", label="y", hash_buckets=4, hashed=())  # (hash_buckets would go unused)


def test_the_cli_help_comes_from_the_table():
    result = run_cli("train", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for key, spec in KEYS.items():
        if spec.flag and spec.flag.startswith("--"):
            assert spec.flag in text, key
            assert " ".join(spec.help.split())[:30] in text, key


def test_rules_that_name_two_options_name_both():
    with pytest.raises(ConfigError) as raised:
        config_from_mapping({"data.url": "/d", "data.label": "y", "train.early_stopping": 3})
    assert str(raised.value) == "--early-stopping needs a validation set (--validation-fraction > 0)"
    with pytest.raises(ConfigError, match=r"^--reg must be a finite number >= 0; found -1.0$"):
        config_from_mapping({"data.url": "/d", "data.label": "y", "train.reg": -1.0, "train.alpha": 0.5})


def test_in_process_still_checks_the_cluster_keys(tmp_path):
    pem = tmp_path / "ca.pem"
    pem.write_text("x")
    base = {"data.url": "/d", "data.label": "y", "cluster.in_process": True}
    with pytest.raises(ConfigError, match="is for a tls:// scheduler"):
        config_from_mapping({**base, "cluster.tls_ca_file": str(pem)})
    # a timeout of a cluster that is not there was silently ignored: refused, valid or not
    for key, flag, value in [
        ("cluster.stall_timeout", "--stall-timeout", 0.0),
        ("cluster.connect_timeout", "--connect-timeout", 5.0),
    ]:
        with pytest.raises(ConfigError, match=f"^{flag} is a setting of a Dask cluster; found it with --in-process"):
            config_from_mapping({**base, key: value})
    with pytest.raises(JobFileError, match="key 'cluster.connect_timeout' is a setting of a Dask cluster"):
        config_from_mapping({**base, "cluster.connect_timeout": 5.0}, "job.toml")
    assert config_from_mapping(base).cluster is None


@pytest.mark.parametrize(
    "key, value, flag",
    [("cluster.threads_per_worker", 2, "--threads-per-worker"), ("cluster.memory_limit", "1GiB", "--memory-limit")],
)
def test_worker_settings_without_workers_are_refused(tmp_path, key, value, flag):
    """An embedded cluster's worker settings with in-process (no workers) were
    silently ignored: refused, naming the option or the key; a where-override
    to in-process drops a job file's worker settings instead."""
    base = {"data.url": "/d", "data.label": "y", "cluster.in_process": True, key: value}
    with pytest.raises(
        ConfigError, match=f"^{flag} sets up the workers of an embedded cluster; found it with --in-process"
    ):
        config_from_mapping(base)
    with pytest.raises(JobFileError, match=f"key '{key}' sets up the workers"):
        config_from_mapping(base, "job.toml")
    job = tmp_path / "job.toml"
    job.write_text(
        f'[data]\nurl = "/d"\nlabel = "y"\n[cluster]\nworkers = 3\n{key.split(".")[1]} = {value!r}\n'.replace("'", '"')
    )
    assert load_job(job, {"cluster.in_process": True}).cluster is None
    # nor with a scheduler, whose workers are set up where they are started
    scheduler = {"data.url": "/d", "data.label": "y", "cluster.scheduler": "tcp://127.0.0.1:1", key: value}
    with pytest.raises(
        ConfigError, match=f"^{flag} sets up the workers of an embedded cluster; found it with --scheduler"
    ):
        config_from_mapping(scheduler)
    with pytest.raises(JobFileError, match=f"key '{key}' sets up the workers"):
        config_from_mapping(scheduler, "job.toml")
    field = key.split(".")[1]
    with pytest.raises(ConfigError, match=f"^{field} sets up the workers of an embedded cluster; found it with"):
        ClusterSpec(scheduler="tcp://127.0.0.1:1", **{field: value})
    # a scheduler given over the job file's embedded cluster drops its worker settings
    assert load_job(job, {"cluster.scheduler": "tcp://127.0.0.1:1"}).cluster.scheduler == "tcp://127.0.0.1:1"


def test_numpy_numbers_are_numbers():
    options = SolverOptions(max_iter=np.int64(5), tol=np.float32(1e-4), ftol=np.float64(0.0))
    assert options.max_iter == 5 and ClusterSpec(stall_timeout_s=np.float32(2.5)).stall_timeout_s == 2.5


def test_a_where_override_replaces_the_job_files_cluster(tmp_path):
    ca, cert = tmp_path / "ca.pem", tmp_path / "cert.pem"
    ca.write_text("x")
    cert.write_text("x")
    job = tmp_path / "job.toml"
    job.write_text(
        '[data]\nurl = "/d"\nlabel = "y"\n[cluster]\nscheduler = "tls://127.0.0.1:1"\n'
        f'tls_ca_file = "{ca}"\ntls_cert = "{cert}"\nstall_timeout = 9.0\n'
    )
    embedded = load_job(job, {"cluster.workers": 3}).cluster
    assert embedded.n_workers == 3 and embedded.scheduler is None and embedded.tls_cert is None
    assert embedded.stall_timeout_s == 9.0
    other = load_job(job, {"cluster.scheduler": "tls://127.0.0.1:2"}).cluster
    assert other.scheduler == "tls://127.0.0.1:2" and other.tls_cert == str(cert)  # the same certificates
    assert load_job(job, {"cluster.in_process": True}).cluster is None


def test_alpha_without_reg_is_refused_naming_the_option_or_the_key():
    """The elastic net's mix alone would leave its strength at 0 (no penalty):
    refused, not ignored."""
    mapping = {"data.url": "/d", "data.label": "y", "train.alpha": 0.5}
    with pytest.raises(ConfigError, match="--alpha is the elastic net's mix of --reg; found it without --reg") as cli:
        config_from_mapping(mapping)
    assert cli.value.column == "train.alpha"
    with pytest.raises(JobFileError, match="key 'train.alpha' is the elastic net's mix of key 'train.reg'"):
        config_from_mapping(mapping, "job.toml")


@pytest.mark.parametrize(
    "more, flag_words, key_words",
    [
        (
            {"train.cv_rule": "1se"},
            "--cv-rule chooses a cross-validated strength (--cv = 2 or more folds); found --cv-rule '1se' without --cv",
            "key 'train.cv_rule' chooses a cross-validated strength (key 'train.cv' = 2 or more folds)",
        ),
        (
            {"data.hashed": ["a"]},
            "--hashed columns need --hash-buckets",
            "key 'data.hashed' columns need key 'data.hash_buckets'",
        ),
        (  # (each column once, as --features says: the second was taken in silence)
            {"data.categorical": ["a", "b", "a"]},
            "--categorical: columns listed more than once: ['a']",
            "key 'data.categorical': columns listed more than once: ['a']",
        ),
        (
            {"data.hashed": ["a", "a"], "data.hash_buckets": 8},
            "--hashed: columns listed more than once: ['a']",
            "key 'data.hashed': columns listed more than once: ['a']",
        ),
    ],
)
def test_a_setting_that_would_do_nothing_is_refused_in_the_sources_words(more, flag_words, key_words):
    """--cv-rule without --cv did nothing, silently (--path-ratio without
    --path was refused); a message quoting another setting names it as the
    source does."""
    mapping = {"data.url": "/d", "data.label": "y", **more}
    with pytest.raises(ConfigError) as from_cli:
        config_from_mapping(mapping)
    assert str(from_cli.value).startswith(flag_words)
    with pytest.raises(JobFileError) as from_file:
        config_from_mapping(mapping, "job.toml")
    assert str(from_file.value).startswith(f"job.toml: {key_words}")


def test_job_file_values_as_toml_writes_them(tmp_path):
    """A memory limit of 0 (none) or a fraction is a TOML number as the docs
    write it (it had to be quoted); a file that is not UTF-8 is a JobFileError
    (it was a UnicodeDecodeError traceback); data.generate's numbers have
    make-data's ranges, and it writes a local directory only (memory://x was a
    traceback and a local folder named 'memory:')."""
    head = '[data]\nurl = "/d"\nlabel = "y"\n'
    job = tmp_path / "job.toml"
    for value, kept in (("0", "0"), ("0.5", "0.5"), ('"2GiB"', "2GiB")):
        job.write_text(f"{head}[cluster]\nworkers = 1\nmemory_limit = {value}\n")
        assert load_job(job).cluster.memory_limit == kept
    job.write_text(head, encoding="utf-16")
    with pytest.raises(JobFileError, match=r"job.toml: not valid TOML: not UTF-8 text"):
        load_job(job)
    for url, generate, words in (
        ("/d", "{rows = -5, features = 3}", "key 'data.generate.rows' must be >= 1; found -5"),
        ("/d", "{rows = 10, features = 0}", "key 'data.generate.features' must be >= 1; found 0"),
        ("memory://d", "{rows = 10, features = 3}", "key 'data.generate' writes a dataset into a local directory"),
        ("/d/*.parquet", "{rows = 10, features = 3}", "key 'data.generate' writes a dataset into a local directory"),
    ):
        job.write_text(f'[data]\nurl = "{url}"\nlabel = "y"\ngenerate = {generate}\n')
        with pytest.raises(JobFileError, match=f"^{re.escape(str(job))}: {re.escape(words)}"):
            load_job(job)


def test_the_demo_needs_rows(capsys):
    """--rows 0 said 'make-data needs rows >= 0 ... row-group-size=0'."""
    from pipeline.cli import main

    assert main(["demo", "--rows", "0"]) == 1
    assert capsys.readouterr().err.strip() == "ConfigError: --rows must be >= 1; found 0"


def test_the_class_weight_rule_shows_the_sources_syntax():
    mapping = {"data.url": "/d", "data.label": "y", "train.class_weight": {"ham": -1.0, "spam": 2.0}}
    with pytest.raises(ConfigError, match=re.escape("by class (ham:1,spam:5) or one per class (1,5)")):
        config_from_mapping(mapping)
    with pytest.raises(JobFileError, match=re.escape("by class ({ham = 1, spam = 5}) or one per class ([1, 5])")):
        config_from_mapping(mapping, "job.toml")


@pytest.mark.parametrize(
    "section, wrong, overrides, found",
    [
        ("train", 'max_iter = "10"', {"train.max_iter": 3}, "key 'train.max_iter' must be an integer; found str '10'"),
        ("cluster", "workers = true", {"cluster.in_process": True}, "key 'cluster.workers' must be an integer"),
    ],
)
def test_a_wrong_type_in_a_job_file_is_refused_whatever_the_command_line_gives(
    tmp_path, section, wrong, overrides, found
):
    """An option that replaces a key (--max-iter) or drops it (--in-process
    drops the file's cluster keys) hid the file's wrongly typed value: the
    job ran, and the file stayed wrong for the next run without the option."""
    job = tmp_path / "job.toml"
    job.write_text(f'[data]\nurl = "/d"\nlabel = "y"\n[{section}]\n{wrong}\n')
    with pytest.raises(JobFileError, match=f"^{re.escape(str(job))}: {re.escape(found)}"):
        load_job(job, overrides)
    job.write_text('[data]\nurl = "/d"\nlabel = "y"\n[train]\nmax_iter = 10\n[cluster]\nworkers = 2\n')
    assert load_job(job, overrides).options.max_iter == overrides.get("train.max_iter", 10)
