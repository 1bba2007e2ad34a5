"""Per-pass network traffic of a large categorical model, measured and projected.

Usage: python bench/traffic.py [--workers 4] [--rows 400000] [--buckets 1048576]

Trains on ``--rows`` rows with 4 numeric columns and one categorical column
hashed into ``--buckets`` buckets (a gradient state of 24 bytes a level) on a
``LocalCluster`` of ``--workers`` worker processes x 1 thread, ``--cache
memory``, and reads every worker's ``transfer_outgoing_bytes_total`` (what the
workers sent to each other and to the client) before and after.  Per pass
the coordinator scatters the coefficients once (8 bytes each) and receives
one merged state; the workers fetch the coefficients from each other and
merge their states in a tree of four (``pipeline.reduce.merge_states``).
The projection to 100 workers counts the same transfers for that tree.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client, LocalCluster

from pipeline import ClusterSpec, SolverOptions, TrainConfig, train
from pipeline.reduce import TREE_FAN_IN

STATE_BYTES_PER_LEVEL = 24  # three int64 bins
COEF_BYTES = 8


def make_data(path: Path, rows: int) -> None:
    rng = np.random.default_rng(3)
    path.mkdir(parents=True)
    columns = {f"x{j}": rng.standard_normal(rows) for j in range(4)}
    columns["user"] = rng.integers(0, 10**9, rows)
    columns["y"] = (rng.random(rows) < 1 / (1 + np.exp(-columns["x0"]))).astype(np.int8)
    pq.write_table(pa.table(columns), path / "part-0.parquet", row_group_size=max(rows // 16, 1))


def tree_transfers(tasks: int, fan_in: int = TREE_FAN_IN) -> int:
    """States sent between workers to merge ``tasks`` states in a tree of ``fan_in``
    (each merge task receives all but one of its inputs), plus one to the coordinator."""
    sent = 0
    while tasks > 1:
        groups = -(-tasks // fan_in)
        sent += tasks - groups
        tasks = groups
    return sent + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--buckets", type=int, default=2**20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-traffic-") as scratch:
        data = Path(scratch) / "data"
        make_data(data, args.rows)
        with (
            LocalCluster(
                n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):

            def sent(dask_worker) -> int:
                return dask_worker.transfer_outgoing_bytes_total

            before = sum(client.run(sent).values())
            started = time.perf_counter()
            model = train(
                TrainConfig(
                    data=str(data),
                    label="y",
                    categorical=("user",),
                    hash_buckets=args.buckets,
                    options=SolverOptions(max_iter=3, ftol=0.0),
                    cache="memory",
                    cluster=ClusterSpec(scheduler=cluster.scheduler_address),
                )
            )
            seconds = time.perf_counter() - started
            after = sum(client.run(sent).values())
    levels = args.buckets + 1
    state = STATE_BYTES_PER_LEVEL * levels
    coef = COEF_BYTES * (levels + 5)
    passes = model.n_passes
    measured = (after - before) / passes
    expected = tree_transfers(args.workers) * state + (args.workers - 1) * coef
    mib = 2**20
    print(
        f"{args.workers} workers, {levels:,} levels ({state / mib:.1f} MiB state, {coef / mib:.1f} MiB coef), "
        f"{passes} passes in {seconds:.1f} s"
    )
    print(f"measured worker sends per pass: {measured / mib:.0f} MiB (model of the tree: {expected / mib:.0f} MiB)")
    for workers in (args.workers, 100):
        between = tree_transfers(workers) - 1
        print(
            f"projected for {workers} workers per pass: coordinator sends {coef / mib:.1f} MiB (coef, once) and "
            f"receives {state / mib:.1f} MiB (one state); workers send each other {between} states + "
            f"{workers - 1} coef copies = {(between * state + (workers - 1) * coef) / mib:,.0f} MiB in all "
            f"(at most {(TREE_FAN_IN - 1) * state / mib:.0f} MiB into any one merging worker)"
        )


if __name__ == "__main__":
    main()
