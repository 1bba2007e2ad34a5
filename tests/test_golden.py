"""Golden digests: a fixed set of runs gives the same model bits release after
release (refactors of the application layer must not change one bit).

The digests were recorded before the application layer was restructured
(issue 13).  They depend on the floating-point functions of this machine's
numpy (exp, log1p, logaddexp: see :mod:`pipeline.probe`), so on a machine
whose functions give other bits the test skips and says so; there the
invariance tests still hold every path to the in-process one.

To re-record after a *deliberate* change of results:
``PIPELINE_RECORD_GOLDEN=1 pytest tests/test_golden.py -s`` prints the table.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import ClusterSpec, Penalty, SolverOptions, TrainConfig, train

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
}

#: model digests recorded on an x86-64 CPU with AVX-512 (numpy's own exp/log
#: kernels), numpy 2.x; NUMERICS below identifies those functions' bits
GOLDEN = {
    "auto": "0f40217443b2ae627f5ad6aee28c4ebc60507d3c786b79f6ece7483932b21a91",
    "gd": "d8876d2bd2ed0881b02665eb8afb9b40ad7f2bc4618189b5e1692f5c2eda3009",
    "gd-raw-l1": "3f0498158a0be104f51f7dbe1ae42f825f49ed1116c45fa6a8b78b7689f7bee1",
    "lbfgs-l2": "068ef1b849f59fe279eb0067501be803f8f6704047976a39d1bcc799ec6fe347",
    "lbfgs-elastic-weights": "46f59f23eff445ca4ac5b335db9f2dd89bd11139f9ea78b774eedb0d09b4b516",
    "newton-l2-balanced": "8e741c9b95191db06c199e16f216c3c048050c9ad89f0a19df9b96b4126d7105",
    "newton-l1-class-weight": "a08460c30ca198c6566a94100419a36485e8973034413e848a53d4e757e3cd03",
    "auto-validation": "99cbc4fdbd2a6b4ab7b1e655901eefc6be4d3290fd01d921b9650a78b1922be7",
    "lbfgs-validation-key-early-stop": "e94ab39ed48580bfba35d2bd1f7d9c8a28073ac011fae668fa145ca44df2fd0b",
}
#: the resumed-after-kill job of tests/test_jobs.py equals this uninterrupted run
GOLDEN_SLOW_JOB = "e67f1c0afb0cb8cd9b37fe7e2fc31fc569867c4a7308ba848be09a636640c2f1"
NUMERICS = "69012fc10261488a"

RECORD = bool(os.environ.get("PIPELINE_RECORD_GOLDEN"))


def numerics() -> str:
    """A hash of the bits of the floating-point functions the kernels use."""
    margins = np.linspace(-745.0, 709.0, 20_001)
    digest = hashlib.sha256()
    for values in (np.exp(margins), np.log1p(np.exp(-np.abs(margins))), np.logaddexp(0.0, margins)):
        digest.update(values.tobytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="module", autouse=True)
def same_numerics():
    if RECORD:
        print(f"\nNUMERICS = {numerics()!r}")
    elif numerics() != NUMERICS:
        pytest.skip(f"this machine's exp/log give other bits (numerics {numerics()}, recorded {NUMERICS})")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Seeded, badly scaled rows with weights and a string key, in uneven files and row groups."""
    root = tmp_path_factory.mktemp("golden") / "data"
    root.mkdir()
    rng = np.random.default_rng(2026_11_30)
    X = rng.standard_normal((N_ROWS, N_FEATURES)) * np.array([1e-2, 1.0, 5.0, 30.0, 0.3]) + np.array(
        [0.0, 2.0, -1.0, 40.0, 0.0]
    )
    margin = (X - X.mean(axis=0)) / X.std(axis=0) @ np.array([1.5, -0.5, 0.8, 0.0, -1.2]) - 0.4
    y = (rng.random(N_ROWS) < 1.0 / (1.0 + np.exp(-margin))).astype(np.int64)
    weights = rng.uniform(0.2, 3.0, N_ROWS).round(3)
    keys = np.array([f"id-{i:05d}" for i in rng.permutation(N_ROWS)])
    for index, (start, stop) in enumerate([(0, 700), (700, 1900), (1900, N_ROWS)]):
        table = pa.table(
            {
                **{name: X[start:stop, j] for j, name in enumerate(FEATURES)},
                "y": y[start:stop],
                "w": weights[start:stop],
                "key": keys[start:stop],
            }
        )
        pq.write_table(table, root / f"part-{index}.parquet", row_group_size=[128, 500, 333][index])
    return root


def config(data: Path, name: str, **where) -> TrainConfig:
    fields = dict(RUNS[name])
    fields.setdefault("options", OPTIONS)
    return TrainConfig(data=str(data), label="y", features=FEATURES, **fields, **where)


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


def test_the_slow_job_that_resume_tests_compare_with_keeps_its_digest(reference_slow):
    if RECORD:
        print(f"GOLDEN_SLOW_JOB = {reference_slow.digest!r}")
    else:
        assert reference_slow.digest == GOLDEN_SLOW_JOB
