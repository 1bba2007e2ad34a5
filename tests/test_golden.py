"""Golden digests: a fixed set of runs gives the same model bits release after
release, and on every CPU (the pipeline's own exp/log: pipeline.elementary).

First recorded before the application layer was restructured (issue 13),
which changed no bit; recorded again, deliberately, when the pipeline's own
exponential and logarithm replaced numpy's (issue 14: model format 2).  (With
5 features ``auto`` still starts with Newton, so its runs kept their digests
when ``auto`` began to start wider data with L-BFGS: issue 12.)

To re-record after a *deliberate* change of results:
``PIPELINE_RECORD_GOLDEN=1 pytest tests/test_golden.py -s`` prints the table.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import ClusterSpec, Penalty, SolverOptions, TrainConfig, train
from pipeline.elementary import sigmoid
from pipeline.kernel import margins
from pipeline.probe import kernel_fingerprint

pytestmark = pytest.mark.filterwarnings("ignore::pipeline.errors.ConvergenceWarning")

N_ROWS, N_FEATURES = 2400, 5
FEATURES = tuple(f"f{j}" for j in range(N_FEATURES))
OPTIONS = SolverOptions(max_iter=60, tol=1e-10)

#: run name -> TrainConfig fields (besides data, label, features)
RUNS = {
    "auto": dict(),
    "gd": dict(solver="gd", options=SolverOptions(max_iter=40)),
    "gd-raw-l1": dict(solver="gd", standardize=False, penalty=Penalty(l1=1e-3), options=SolverOptions(max_iter=40)),
    "lbfgs-l2": dict(solver="lbfgs", penalty=Penalty(l2=1e-2)),
    "lbfgs-elastic-weights": dict(solver="lbfgs", penalty=Penalty(l1=2e-3, l2=1e-3), weight="w"),
    "newton-l2-balanced": dict(solver="newton", penalty=Penalty(l2=1e-3), class_weight="balanced"),
    "newton-l1-class-weight": dict(solver="newton", penalty=Penalty(l1=5e-3), class_weight=(1.0, 2.5)),
    "auto-validation": dict(validation_fraction=0.25),
    "lbfgs-validation-key-early-stop": dict(
        solver="lbfgs", validation_fraction=0.3, validation_key="key", early_stopping=2, weight="w"
    ),
    # a 4-class label (issue 16): the multinomial pass's softmax, its own exp and log1p
    "multinomial-l2-balanced": dict(label="cls", penalty=Penalty(l2=1e-3), class_weight="balanced"),
    "multinomial-l1-weights": dict(label="cls", penalty=Penalty(l1=2e-3), weight="w"),
}

#: model digests (the same on every CPU)
GOLDEN = {
    "auto": "1f1e200b36f1f22ac4385529f9aea1f8553b21fcf37cdc922702aa7f8d2660e8",
    "gd": "9c4e748941eab823df7be911e1772f03169a68af247a2edb02c1bce10eb94302",
    "gd-raw-l1": "9b512bac2f232400d1b2c8ced25f1c1b566a88cced2bade708b3b1512427d313",
    "lbfgs-l2": "7a1f5ac0fd4af68cda9eaad63a3ec4254d3a31c39357b88c0e8a6c1991c71717",
    "lbfgs-elastic-weights": "8d39fa513d16b9f6c0d2284982dc2d5212ef633fae5207c4382273df35470193",
    "newton-l2-balanced": "8e741c9b95191db06c199e16f216c3c048050c9ad89f0a19df9b96b4126d7105",
    "newton-l1-class-weight": "93fd4f0ce2967ec05faa58a5a21d47e3047455db81192522e3477fe1c78f99e0",
    "auto-validation": "6ae1a28bf57917fe6f1d33c100bfb4542f9b3ec93754a45a3cbc2249ddb527c8",
    "lbfgs-validation-key-early-stop": "cfbddc1dc6e83aff3ffe4c31279e47d3ca8b2c6f7dac819ead50926a2492ca0b",
    "multinomial-l2-balanced": "32af4a578f7fef2eca136453cc1cb4a49baf4db6a468dfc3942b432312fee1ca",
    "multinomial-l1-weights": "2763d40d041517c4649ff07fd303901a875a81d0ff5e0724d1eeb1b0cc985aff",
}
#: the resumed-after-kill job of tests/test_jobs.py equals this uninterrupted run
GOLDEN_SLOW_JOB = "48fb2cf3fa1c9d4486c2b61db851fb011c84c3655e2147b4722f3ca70fc0b479"

#: the outputs of pipeline.probe.kernel_fingerprint (its digest without the
#: library versions): the same on every CPU (README, "Checked on other CPUs")
GOLDEN_PROBE_OUTPUTS = "be0a518bbd7f191e"

RECORD = bool(os.environ.get("PIPELINE_RECORD_GOLDEN"))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Seeded, badly scaled rows with weights and a string key, in uneven files and row groups."""
    root = tmp_path_factory.mktemp("golden") / "data"
    root.mkdir()
    rng = np.random.default_rng(2026_11_30)
    X = rng.standard_normal((N_ROWS, N_FEATURES)) * np.array([1e-2, 1.0, 5.0, 30.0, 0.3]) + np.array(
        [0.0, 2.0, -1.0, 40.0, 0.0]
    )
    # kernel.margins' fixed order and the pipeline's own sigmoid, not BLAS's
    # product or numpy's exp, whose last bits depend on the CPU
    margin = margins((X - X.mean(axis=0)) / X.std(axis=0), np.array([1.5, -0.5, 0.8, 0.0, -1.2, -0.4]))
    y = (rng.random(N_ROWS) < sigmoid(margin)).astype(np.int64)
    weights = rng.uniform(0.2, 3.0, N_ROWS).round(3)
    keys = np.array([f"id-{i:05d}" for i in rng.permutation(N_ROWS)])
    classes = np.digitize(margin + X[:, 1] - 2.0, [-1.0, 0.0, 1.0])  # (no draw: the other columns stay)
    for index, (start, stop) in enumerate([(0, 700), (700, 1900), (1900, N_ROWS)]):
        table = pa.table(
            {
                **{name: X[start:stop, j] for j, name in enumerate(FEATURES)},
                "y": y[start:stop],
                "w": weights[start:stop],
                "key": keys[start:stop],
                "cls": classes[start:stop],
            }
        )
        pq.write_table(table, root / f"part-{index}.parquet", row_group_size=[128, 500, 333][index])
    return root


def config(data: Path, name: str, **where) -> TrainConfig:
    fields = dict(RUNS[name])
    fields.setdefault("options", OPTIONS)
    fields.setdefault("label", "y")
    return TrainConfig(data=str(data), features=FEATURES, **fields, **where)


def check(name: str, digest: str) -> None:
    if RECORD:
        print(f'    "{name}": "{digest}",')
    else:
        assert digest == GOLDEN[name], f"{name}: the model's bits changed"


@pytest.mark.parametrize("name", RUNS)
def test_in_process_runs_keep_their_digests(data, name):
    model = train(config(data, name, cluster=None))
    assert model.n_iter >= 3  # real work, not a first-iteration stop
    check(name, model.digest)


@pytest.mark.cluster
@pytest.mark.parametrize("cache", ["memory", "disk", "none"])
def test_each_cache_mode_on_a_cluster_keeps_the_digest(data, tmp_path, cache):
    name = "lbfgs-elastic-weights"
    model = train(config(data, name, cluster=ClusterSpec(n_workers=2), cache=cache, out=str(tmp_path / "out")))
    assert model.cache == cache
    check(name, model.digest)


def test_the_kernel_fingerprint_probe_gives_the_recorded_outputs():
    """The fingerprint's probe (the numpy reference's exact sums and the
    pipeline's own sigmoid/softplus on margins from -745 to 709) gives the
    outputs recorded on the README's checked CPUs: with the same library
    versions, a worker here has their fingerprint and joins their jobs."""
    outputs = kernel_fingerprint()["outputs"]
    if RECORD:
        print(f"GOLDEN_PROBE_OUTPUTS = {outputs!r}")
    else:
        assert outputs == GOLDEN_PROBE_OUTPUTS


def test_the_slow_job_that_resume_tests_compare_with_keeps_its_digest(reference_slow):
    if RECORD:
        print(f"GOLDEN_SLOW_JOB = {reference_slow.digest!r}")
    else:
        assert reference_slow.digest == GOLDEN_SLOW_JOB
