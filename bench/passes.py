"""Per-pass cost of our loss pass on a LocalCluster, per cache mode, against one-core baselines.

Usage: python bench/passes.py [--rows 1000000] [--features 32] [--repeat 5]
                              [--files 8] [--row-group-size 62500]
                              [--compression snappy] [--workers 1,2] [--quick]

One run, one table:

1. Writes a seeded dataset as Parquet into a temp dir (standard-normal float64
   features, an int8 label drawn from a logistic model; ``--files`` files of
   ``--row-group-size``-row row groups; snappy by default, ``--compression
   none`` for uncompressed).
2. In this process, one core (``OMP_NUM_THREADS=1`` / ``OPENBLAS_NUM_THREADS=1``
   are set before numpy is imported; pyarrow with ``use_threads=False``), on the
   same data: a plain numpy/BLAS gradient+loss pass, the fused exact kernel
   (``pipeline.fused.chunk_partials_fast``) on the whole array and per row
   group, and a Parquet decode of the whole dataset (``pq.read_table``).
3. For each worker count (default 1 and 2) and cache mode, a fresh embedded
   LocalCluster (``pipeline.cluster.connect``: worker processes, 1 thread each)
   runs the loss pass (``KernelSpec()``, a fixed coef):

   * ``memory``: ``DaskEvaluator.from_dataset(client, dataset, workers)``, loaded
     (the load is timed on its own row);
   * ``disk``: ``StreamingEvaluator`` with a ``DiskCache`` in the workers'
     local directories (the first pass, which writes the cache, on its own row);
   * ``none``: ``StreamingEvaluator`` without a cache.

   Before anything is timed, every worker runs the compiled kernel once on
   contiguous and strided arrays (loads numba's cache); then one warm-up pass,
   then the median of ``--repeat`` passes.  Each cluster pass uses its own
   coef (``coef + 1e-3 * i``, the same sequence on every cluster): the pass
   graph's keys are tokenized by value, and repeating a coef can return a
   result still held on the cluster instead of running a pass.  Every pass's
   result is checked to be equal to the in-process fused result for its coef.

Columns: ``seconds`` is one pass (median) or the one-shot load / first pass;
``MB/s`` counts decoded bytes (features + label as float64, rows * (d+1) * 8);
``x plain/worker`` is seconds * workers / plain-pass seconds (1.00x: each
worker is as fast as one core doing the plain numpy pass); ``peak RSS`` is each
worker process's VmHWM (/proc/<pid>/status) at the end of that mode, on a
fresh cluster, with the value right after start-up and kernel warm-up in
brackets.  The Parquet files and the disk cache live on local disk, but after
the first touch they are read from the OS page cache (nothing drops it).
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from pipeline import fused  # noqa: E402
from pipeline.cluster import ClusterSpec, cluster_memory, connect  # noqa: E402
from pipeline.data import open_dataset  # noqa: E402
from pipeline.fused import chunk_partials_fast  # noqa: E402
from pipeline.kernel import KernelSpec, Partials  # noqa: E402
from pipeline.reduce import DaskEvaluator, StreamingEvaluator  # noqa: E402
from pipeline.stream import DiskCache  # noqa: E402

LABEL = "y"


def write_dataset(
    directory: Path, rows: int, n_features: int, files: int, row_group_size: int, seed: int, compression: str
) -> np.ndarray:
    """Parquet files in ``directory``; returns the generating ``[w, b]``."""
    rng = np.random.default_rng([seed, 0])
    true_coef = np.append(rng.normal(0.0, 1.0 / np.sqrt(n_features), n_features), 0.2)
    names = [f"f{j}" for j in range(n_features)]
    schema = pa.schema([(name, pa.float64()) for name in names] + [(LABEL, pa.int8())])
    group = 0
    for index in range(files):
        start, stop = rows * index // files, rows * (index + 1) // files
        with pq.ParquetWriter(directory / f"part-{index:05d}.parquet", schema, compression=compression) as writer:
            for lo in range(start, stop, row_group_size):
                n = min(lo + row_group_size, stop) - lo
                part = np.random.default_rng([seed, 1, group])
                group += 1
                X = part.standard_normal((n, n_features))
                proba = 1.0 / (1.0 + np.exp(-(X @ true_coef[:-1] + true_coef[-1])))
                y = (part.random(n) < proba).astype(np.int8)
                writer.write_table(
                    pa.table({**{name: X[:, j] for j, name in enumerate(names)}, LABEL: y}),
                    row_group_size=row_group_size,
                )
    return true_coef


def plain_pass(X, y, coef):
    margin = X @ coef[:-1] + coef[-1]
    residual = 1.0 / (1.0 + np.exp(-margin)) - y
    return X.T @ residual, residual.sum(), (np.logaddexp(0.0, margin) - y * margin).sum()


def timings(repeat: int, fn) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def once(fn):
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def warm_kernel(n_features: int) -> None:
    """Run on a worker: load/compile the fused kernel for the layouts the passes use."""
    rng = np.random.default_rng(1)
    X = np.asfortranarray(rng.standard_normal((2000, n_features)))
    y = (rng.random(2000) < 0.5).astype(np.float64)
    coef = np.zeros(n_features + 1)
    chunk_partials_fast(X, y, coef)  # F-contiguous (memory mode, decoded batches)
    chunk_partials_fast(X[:1000], y[:1000], coef)  # strided rows of an F matrix
    block = np.asfortranarray(rng.standard_normal((2000, n_features + 1)))[100:1100]
    chunk_partials_fast(block[:, :n_features], block[:, n_features], coef)  # disk-cache views


def vm_hwm_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_mode(mode: str, n_workers: int, dataset, coefs, spec, expected: list[Partials], repeat: int) -> dict:
    """A fresh cluster; the load/first pass, warm-up, ``repeat`` timed passes; peak RSS."""
    with connect(ClusterSpec(n_workers=n_workers, threads_per_worker=1)) as client:
        workers, _ = cluster_memory(client)
        pids = client.run(os.getpid)
        client.run(warm_kernel, dataset.n_features)
        base = [vm_hwm_mib(pids[w]) for w in workers]
        first = None
        cache = None
        passes = iter(zip(coefs, expected))
        if mode == "memory":

            def load():  # what `pipeline train` does with --cache memory
                evaluator = DaskEvaluator.from_dataset(client, dataset, workers)
                evaluator.load()
                return evaluator

            first, evaluator = once(load)
        else:
            cache = DiskCache(dataset.fingerprint) if mode == "disk" else None
            evaluator = StreamingEvaluator(client, dataset, cache, workers)
            if mode == "disk":
                coef, want = next(passes)
                first, result = once(lambda: evaluator.partials(coef, spec))
                assert result == want, "disk first pass differs"

        def one_pass():
            coef, want = next(passes)
            result = evaluator.partials(coef, spec)
            assert result == want, f"{mode} pass differs"

        warmup = timings(1, one_pass)[0]
        times = timings(repeat, one_pass)
        peak = [vm_hwm_mib(pids[w]) for w in workers]
        if cache is not None:
            client.run(cache.clear)
    return dict(first=first, warmup=warmup, times=times, base=base, peak=peak)


def measure(
    rows: int = 1_000_000,
    features: int = 32,
    repeat: int = 5,
    files: int = 8,
    row_group_size: int = 62_500,
    compression: str = "snappy",
    worker_counts=(1, 2),
    modes=("memory", "disk", "none"),
    seed: int = 0,
) -> dict:
    """Write the dataset, time every pass; the rows of the table and what they need."""
    n, d = rows, features
    megabytes = n * (d + 1) * 8 / 1e6
    rng = np.random.default_rng([seed, 2])
    coef = rng.normal(0.0, 0.2, d + 1)  # fixed, not the generating one
    # One coef per cluster pass (coef + 1e-3 * i): the graph's keys are pure
    # (tokenized by value), so repeating one coef could return a result still
    # held on the cluster instead of computing a pass.
    coefs = [coef + 1e-3 * i for i in range(repeat + 2)]
    spec = KernelSpec()
    rows_out = []  # (label, workers, seconds, note)

    with tempfile.TemporaryDirectory(prefix="bench-passes-") as scratch:
        directory = Path(scratch)
        started = time.perf_counter()
        write_dataset(directory, n, d, files, row_group_size, seed, compression)
        write_s = time.perf_counter() - started
        on_disk = sum(p.stat().st_size for p in directory.glob("*.parquet")) / 1e6
        dataset = open_dataset(str(directory), LABEL)
        assert dataset.n_features == d and dataset.n_samples == n

        # ---- in this process, one core
        columns = [*dataset.features, LABEL]
        decode = timings(repeat, lambda: pq.read_table(directory, columns=columns, use_threads=False))
        chunks = dataset.read_chunks()
        X = np.asfortranarray(np.concatenate([c.X for c in chunks]))
        y = np.concatenate([c.y for c in chunks])
        del chunks
        expected_all = [chunk_partials_fast(X, y, c, None, spec) for c in coefs]
        expected = expected_all[0]
        bounds = [(c.offset, c.offset + c.n_rows) for c in dataset.chunks]
        X_parts = [np.asfortranarray(X[a:b]) for a, b in bounds]
        y_parts = [y[a:b] for a, b in bounds]

        def per_chunk():
            total = Partials.zeros(d + 1)
            for Xc, yc in zip(X_parts, y_parts):
                total = total.merge(chunk_partials_fast(Xc, yc, coef, None, spec))
            return total

        assert per_chunk() == expected
        plain = statistics.median(timings(repeat, lambda: plain_pass(X, y, coef)))
        rows_out.append(("plain numpy/BLAS gradient+loss", "-", plain, ""))
        rows_out.append(
            (
                "fused exact kernel, whole array",
                "-",
                statistics.median(timings(repeat, lambda: chunk_partials_fast(X, y, coef, None, spec))),
                "",
            )
        )
        rows_out.append(("fused exact kernel, per row group", "-", statistics.median(timings(repeat, per_chunk)), ""))
        rows_out.append(("pyarrow read_table (1 thread)", "-", statistics.median(decode), ""))
        X = y = X_parts = y_parts = None  # free them before the clusters start

        # ---- on LocalClusters
        results = {}
        for n_workers in worker_counts:
            for mode in modes:
                r = run_mode(mode, n_workers, dataset, coefs, spec, expected_all, repeat)
                results[mode, n_workers] = r
                rss = "/".join(f"{p:.0f}" for p in r["peak"]) + " [" + "/".join(f"{b:.0f}" for b in r["base"]) + "]"
                if mode == "memory":
                    rows_out.append(("memory: load (read + persist)", n_workers, r["first"], rss))
                if mode == "disk":
                    rows_out.append(("disk: first pass (writes cache)", n_workers, r["first"], rss))
                    label = "disk: cached passes"
                else:
                    label = f"{mode}: passes"
                rows_out.append((label, n_workers, statistics.median(r["times"]), rss))
    return dict(rows=rows_out, plain=plain, results=results, megabytes=megabytes, on_disk=on_disk, write_s=write_s)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--row-group-size", type=int, default=62_500)
    parser.add_argument("--compression", default="snappy", help="snappy (default), none, zstd, ...")
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--modes", default="memory,disk,none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 3 repeats")
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    if args.quick:
        args.rows, args.repeat = min(args.rows, 100_000), min(args.repeat, 3)
    if not fused.STATS_AVAILABLE:
        raise SystemExit("pipeline.fused is not available here (numba missing)")
    worker_counts = [int(n) for n in args.workers.split(",")]
    modes = args.modes.split(",")
    measured = measure(
        args.rows,
        args.features,
        args.repeat,
        args.files,
        args.row_group_size,
        args.compression,
        worker_counts,
        modes,
        args.seed,
    )
    n, d = args.rows, args.features
    rows_out, plain, results = measured["rows"], measured["plain"], measured["results"]
    megabytes, on_disk, write_s = measured["megabytes"], measured["on_disk"], measured["write_s"]
    print(
        f"{n:,} rows x {d} features float64 + int8 label; {args.files} files, "
        f"{args.row_group_size:,}-row row groups, {args.compression}, {on_disk:.0f} MB on disk "
        f"(written in {write_s:.1f} s); decoded {megabytes:.0f} MB; "
        f"median of {args.repeat} after 1 warm-up"
    )
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, "
        f"pyarrow {pa.__version__}; load average at start " + ", ".join(f"{v:.2f}" for v in load_at_start)
    )
    header = (
        f"{'pass':<36}{'workers':>8}{'seconds':>9}{'rows/s':>13}{'MB/s':>8}"
        f"{'x plain/worker':>16}  peak RSS MiB/worker [after start-up]"
    )
    print(header)
    print("-" * len(header))
    for label, workers, seconds, rss in rows_out:
        factor = workers if isinstance(workers, int) else 1
        print(
            f"{label:<36}{workers!s:>8}{seconds:>9.3f}{n / seconds:>13,.0f}"
            f"{megabytes / seconds:>8.0f}{seconds * factor / plain:>15.2f}x  {rss}"
        )
    print()
    for (mode, n_workers), r in results.items():
        print(
            f"{mode:>6} x{n_workers}: warm-up {r['warmup']:.3f} s, passes " + " ".join(f"{t:.3f}" for t in r["times"])
        )


if __name__ == "__main__":
    main()
