"""Helpers shared by the job and fault tests (fixtures in conftest.py)."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.elementary import sigmoid
from pipeline.kernel import margins, numpy_cpu_dispatch

N_ROWS, N_FEATURES = 3000, 6
#: the features' scales: np.logspace(-1, 1, 6) as numpy computes it with AVX-512
_SCALES = (0.1, 0.251188643150958, 0.6309573444801932, 1.584893192461114, 3.981071705534973, 10.0)
#: the label's weights: np.linspace(-1, 1, 6)
_WEIGHTS = (-1.0, -0.6, -0.19999999999999996, 0.20000000000000018, 0.6000000000000001, 1.0)


def numpy_dispatch_off() -> str | None:
    """``NPY_DISABLE_CPU_FEATURES`` for a child process whose numpy takes none
    of its SIMD paths (None: this numpy takes none here). A child's setting
    replaces its parent's, so the targets this process has off are named
    too: under ``NPY_DISABLE_CPU_FEATURES=X86_V4`` naming only the enabled
    X86_V3 would turn X86_V4 back on in the child."""
    enabled = numpy_cpu_dispatch()
    if not enabled:
        return None
    already = os.environ.get("NPY_DISABLE_CPU_FEATURES", "").replace(",", " ").split()
    return " ".join(dict.fromkeys([*already, *enabled]))


def write_jobs_data(root: Path) -> Path:
    """Badly scaled features, so an unstandardized gd run takes many iterations."""
    root.mkdir()
    rng = np.random.default_rng(11)
    # Only IEEE basic operations on the draws (kernel.margins' fixed order)
    # and the pipeline's own sigmoid: the same data on every CPU (numpy's
    # power and exp, and BLAS's matrix product, round by CPU: np.logspace's
    # last bits changed with numpy's AVX-512 paths off, and so did the slow
    # job's digest).
    X = rng.standard_normal((N_ROWS, N_FEATURES)) * np.array(_SCALES) + 0.5
    y = (rng.random(N_ROWS) < sigmoid(margins(X, np.array([*_WEIGHTS, 0.0])) / 3)).astype(np.int8)
    for index, (start, stop) in enumerate([(0, 1000), (1000, 2200), (2200, N_ROWS)]):
        table = pa.table({**{f"f{j}": X[start:stop, j] for j in range(N_FEATURES)}, "y": y[start:stop]})
        pq.write_table(table, root / f"part-{index}.parquet", row_group_size=400)
    return root


def write_job(
    path: Path,
    data: Path,
    out: Path,
    *,
    name="test-job",
    extra_train="",
    cluster="in_process = true",
    checkpoint_every=1,
) -> Path:
    path.write_text(f"""
name = "{name}"
[data]
url = "{data}"
label = "y"
[train]
solver = "auto"
tol = 1e-9
{extra_train}
[cluster]
{cluster}
[output]
dir = "{out}"
checkpoint_every = {checkpoint_every}
""")
    return path


SLOW_TRAIN = 'solver = "gd"\nstandardize = false\nmax_iter = 200\nftol = 0.0'


def slow_job(path, data, out, cluster, name="slow") -> Path:
    """A gd run on raw, badly scaled features: hundreds of iterations."""
    text = write_job(path, data, out, name=name, cluster=cluster).read_text()
    path.write_text(text.replace('solver = "auto"\ntol = 1e-9', SLOW_TRAIN))
    return path


def history_rows(out: Path) -> list[dict]:
    with open(out / "history.csv") as handle:
        return list(csv.DictReader(handle))


def wait_for(condition, timeout=120.0, poll=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def job_status(out: Path) -> str | None:
    try:
        return json.loads((out / "job.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def checkpoint_iteration(out: Path) -> int:
    """The iteration the job's checkpoint holds (-1 while there is none).

    Wait on this, not on history.csv, before killing a job whose resume point
    a test checks: the history row of an iteration is written before its
    checkpoint."""
    from pipeline.checkpoint import load_checkpoint
    from pipeline.errors import CheckpointError

    try:
        return int(load_checkpoint(out / "checkpoint.npz")[0].solver_state.n_iter)
    except CheckpointError:
        return -1


def without_work_stealing():
    """Dask config for an embedded cluster whose scheduler moves no task.

    Chunk placement is a hint (``allow_other_workers``: a lost worker's chunk is
    read elsewhere), so on a loaded machine the scheduler may steal a queued read
    for an idle worker. Fits do not care (a pass goes where the blocks are), but a
    test of the placement plan itself must start its cluster inside this context.
    """
    import dask
    import distributed  # noqa: F401 (its config defaults must be loaded first)

    return dask.config.set({"distributed.scheduler.work-stealing": False})
