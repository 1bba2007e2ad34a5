"""End to end, as a user runs it: process start -> model on disk, with the defaults.

Usage: python bench/e2e.py [--rows 1000000,8000000] [--features 32] [--timeout 900]
                           [--data-dir DIR] [--skip ours-in-process,...]
                           [--rounds 1] [--page-cache warm|cold]

For each size, one dataset (``pipeline make-data``: standard-normal float64
features, an int8 label from a logistic model, snappy Parquet, files of
250,000 rows in row groups of 62,500) and, one after another, each contender
in a fresh process, timed from the moment it is spawned until its model file
is on disk and until it exits:

* ``ours``: ``pipeline train DATA --label y --out OUT``, the defaults (an
  embedded cluster of 2 worker processes, ``--cache auto``, ``--solver auto`` (newton up to 64 features),
  standardization, no penalty).  Phases from the time each line of its output
  arrives: *start* (process start to the ``cache:`` line: imports, cluster,
  dataset plan), *load* (to the ``loaded`` line: every row group read,
  decoded and checked on the workers), *statistics* (to ``iter 0``, less one
  loss pass: the exact statistics pass), *passes* (one loss pass, then every
  iteration to the last), *tail* (the last iteration to ``model.json`` on
  disk) and *exit* (to the end of the process: cluster shutdown).
* ``ours in-process``: the same with ``--in-process`` (numpy only, no Dask).
* ``dask-ml``: a script that starts a ``LocalCluster`` of 2 worker processes
  x 1 thread, ``dask.dataframe.read_parquet`` -> ``to_dask_array(lengths=True)``,
  persists, fits ``dask_ml.linear_model.LogisticRegression(solver="lbfgs",
  penalty=None)`` (the same objective as ours; dask-ml's default solver
  ``admm`` with ``C=1`` is a penalized one) and writes the coefficients.
* ``scikit-learn``: ``pyarrow.parquet.read_table`` -> numpy, then
  ``make_pipeline(StandardScaler(), LogisticRegression(penalty=None))``
  (default ``lbfgs``, ``max_iter=100``, all BLAS threads) and writes the
  coefficients in original units.

Every contender starts from the same page cache: with ``--page-cache warm``
(the default) each is preceded by a read of every file of the dataset, so
that none reads what the one before it left cached while another reads
from disk; with ``cold`` each is preceded by evicting the dataset's files
from the page cache (``fsync`` + ``posix_fadvise(DONTNEED)``, no privileges
needed), so that each reads from disk.  With ``--rounds N`` the contenders
run N times in rotation; each run's ratios are to the dask-ml and
scikit-learn runs of its own round, and a last line per contender gives the
median over rounds.

Each model's mean log-loss is then evaluated on the whole dataset (numpy, in
this process, after the contenders ran) and compared with the lowest one, so
the table shows how close each got to the common optimum, not only how fast.
Nothing else should run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FILE_ROWS = 250_000
ROW_GROUP_ROWS = 62_500
LABEL = "y"
ROOT = Path(__file__).resolve().parent.parent

# The peers, each a script run as `python -c SCRIPT DATA OUT`; each prints
# "MARK <phase> <time.time()>" lines and writes OUT/coef.json ([w..., b]).
_DASK_ML = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    print("MARK start", time.time(), flush=True)
    import dask.dataframe as dd
    from distributed import Client, LocalCluster
    from dask_ml.linear_model import LogisticRegression
    data, out = sys.argv[1], Path(sys.argv[2])
    if __name__ == "__main__":
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:
            print("MARK cluster", time.time(), flush=True)
            frame = dd.read_parquet(data)
            features = [c for c in frame.columns if c != "y"]
            # one array, so X and y have the same partitions
            both = frame[features + ["y"]].to_dask_array(lengths=True).astype("float64")
            X, y = client.persist([both[:, :-1], both[:, -1]])
            from distributed import wait
            wait([X, y])
            print("MARK loaded", time.time(), flush=True)
            model = LogisticRegression(solver="lbfgs", penalty=None, max_iter=10000).fit(X, y)
            print("MARK fitted", time.time(), flush=True)
            out.mkdir(parents=True, exist_ok=True)
            coef = [float(v) for v in model.coef_] + [float(model.intercept_)]
            (out / "coef.json").write_text(json.dumps({"features": features, "coef": coef}))
            print("MARK written", time.time(), flush=True)
""")

_SKLEARN = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    print("MARK start", time.time(), flush=True)
    import numpy as np
    import pyarrow.parquet as pq
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    data, out = sys.argv[1], Path(sys.argv[2])
    print("MARK cluster", time.time(), flush=True)
    table = pq.read_table(data)
    features = [c for c in table.column_names if c != "y"]
    X = np.column_stack([table.column(c).to_numpy() for c in features]).astype(np.float64)
    y = table.column("y").to_numpy().astype(np.float64)
    del table
    print("MARK loaded", time.time(), flush=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(penalty=None)).fit(X, y)
    print("MARK fitted", time.time(), flush=True)
    scaler, logistic = model[0], model[1]
    w = logistic.coef_[0] / scaler.scale_
    b = float(logistic.intercept_[0] - np.dot(w, scaler.mean_))
    out.mkdir(parents=True, exist_ok=True)
    (out / "coef.json").write_text(json.dumps({"features": features, "coef": [*map(float, w), b]}))
    print("MARK written", time.time(), flush=True)
""")


@dataclass
class Run:
    name: str
    round: int = 1
    wall: float | None = None  # spawn -> model on disk
    exit: float | None = None  # spawn -> process end
    phases: dict[str, float] = field(default_factory=dict)
    n_passes: int | None = None
    coef: np.ndarray | None = None
    loss: float | None = None
    note: str = ""


def make_dataset(path: Path, rows: int, features: int) -> None:
    if path.exists():
        return
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "make-data",
            str(path),
            "--rows",
            str(rows),
            "--features",
            str(features),
            "--files",
            str(max(1, rows // FILE_ROWS)),
            "--row-group-size",
            str(ROW_GROUP_ROWS),
            "--seed",
            "0",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


PAGE_CACHE_STATES = ("warm", "cold")


def set_page_cache(data: Path, state: str) -> None:
    """Read every file of ``data`` (``warm``) or evict each from the page cache (``cold``)."""
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        fd = os.open(path, os.O_RDONLY)
        try:
            if state == "warm":
                while os.read(fd, 1 << 23):
                    pass
            else:
                os.fsync(fd)  # only clean pages can be dropped
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _lines_with_times(command: list[str], timeout: float, env: dict | None = None):
    """Run ``command``; ``(seconds since spawn, line)`` for each output line, the exit time."""
    import signal
    import threading

    spawned = time.time()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    # past the timeout the whole process group goes (a cluster's workers too),
    # also when the contender prints nothing
    killer = threading.Timer(timeout, lambda: os.killpg(process.pid, signal.SIGKILL))
    killer.start()
    lines = []
    try:
        for line in process.stdout:
            lines.append((time.time() - spawned, line.rstrip("\n"), time.time()))
        process.wait()
    finally:
        killer.cancel()
    return spawned, lines, time.time() - spawned, process.returncode


def run_ours(data: Path, out: Path, timeout: float, in_process: bool) -> Run:
    run = Run("ours, in-process" if in_process else "ours, 2 workers")
    command = [
        str(Path(sys.executable).parent / "pipeline"),
        "train",
        str(data),
        "--label",
        LABEL,
        "--out",
        str(out),
        "--overwrite",
    ] + (["--in-process"] if in_process else ["--workers", "2"])  # the peers' cluster size
    spawned, lines, run.exit, code = _lines_with_times(command, timeout)
    if code != 0:
        run.note = f"exit {code}: " + " / ".join(line for _, line, _ in lines[-3:])
        return run
    model_file = out / "model.json"
    run.wall = model_file.stat().st_mtime - spawned
    model = json.loads(model_file.read_text())
    run.coef = np.append(model["coef"], model["intercept"])
    run.n_passes = model["n_passes"]
    times = {}
    iterations = []
    for seconds, line, _ in lines:
        if line.startswith("cache:"):
            times["cache"] = seconds
        elif line.startswith("loaded "):
            times["loaded"] = seconds
        elif line.startswith("iter "):
            parts = line.split()
            iterations.append((seconds, int(parts[parts.index("passes") + 1])))
    if not iterations:
        run.note = "no iteration lines"
        return run
    (first, first_passes), (last, last_passes) = iterations[0], iterations[-1]
    per_pass = (last - first) / max(last_passes - first_passes, 1)
    start = times.get("cache", first)
    loaded = times.get("loaded", start)
    run.phases = {
        "start": start,
        "load": loaded - start,
        "statistics": max(first - loaded - per_pass, 0.0),
        "passes": last - first + per_pass,
        "tail": run.wall - last,
        "exit": run.exit - run.wall,
    }
    return run


def run_peer(name: str, script: str, data: Path, out: Path, timeout: float) -> Run:
    run = Run(name)
    spawned, lines, run.exit, code = _lines_with_times(
        [sys.executable, "-c", script, str(data), str(out)], timeout, env={"PYTHONWARNINGS": "ignore"}
    )
    marks = {}
    for _, line, _ in lines:
        if line.startswith("MARK "):
            _, phase, stamp = line.split()
            marks[phase] = float(stamp) - spawned
    if code != 0 or "written" not in marks:
        run.note = f"exit {code}: " + " / ".join(line for _, line, _ in lines[-2:])
        return run
    run.wall = marks["written"]
    run.phases = {
        "start": marks["cluster"],
        "load": marks["loaded"] - marks["cluster"],
        "statistics": 0.0,
        "passes": marks["fitted"] - marks["loaded"],
        "tail": marks["written"] - marks["fitted"],
        "exit": run.exit - run.wall,
    }
    run.coef = np.array(json.loads((out / "coef.json").read_text())["coef"])
    return run


def mean_log_loss(data: Path, coef: np.ndarray) -> float:
    """Mean log-loss of ``coef`` (original units) over every row, row group by row group."""
    from pipeline.data import open_dataset

    dataset = open_dataset(str(data), LABEL)
    reader = dataset.reader
    total = 0.0
    for chunk in dataset.chunks:
        X, y, _ = reader(chunk)
        margin = X @ coef[:-1] + coef[-1]
        total += float(np.sum(np.logaddexp(0.0, margin) - y * margin))
    return total / dataset.n_samples


def versions() -> str:
    from importlib.metadata import version

    names = ("numpy", "pyarrow", "dask", "distributed", "dask-ml", "scikit-learn", "numba")
    return ", ".join(f"{name} {version(name)}" for name in names)


def measure(
    rows: int,
    features: int,
    data_dir: Path,
    timeout: float,
    skip: set[str],
    log=print,
    *,
    rounds: int = 1,
    page_cache: str = "warm",
) -> list[Run]:
    if page_cache not in PAGE_CACHE_STATES:
        raise ValueError(f"page_cache must be one of {PAGE_CACHE_STATES}, not {page_cache!r}")
    if page_cache == "cold" and not hasattr(os, "posix_fadvise"):
        raise SystemExit("--page-cache cold evicts files with posix_fadvise, which this system lacks")
    data = data_dir / f"e2e-{rows}x{features}"
    log(f"dataset {data}")
    make_dataset(data, rows, features)
    runs = []
    with tempfile.TemporaryDirectory(prefix="pipeline-e2e-") as scratch:
        scratch = Path(scratch)
        contenders = [
            ("ours", lambda: run_ours(data, scratch / "ours", timeout, in_process=False)),
            ("ours-in-process", lambda: run_ours(data, scratch / "ours-ip", timeout, in_process=True)),
            ("dask-ml", lambda: run_peer("dask-ml lbfgs, 2 workers", _DASK_ML, data, scratch / "dask-ml", timeout)),
            (
                "scikit-learn",
                lambda: run_peer("scikit-learn lbfgs + StandardScaler", _SKLEARN, data, scratch / "sklearn", timeout),
            ),
        ]
        for round_ in range(1, rounds + 1):
            for key, contender in contenders:
                if key in skip:
                    continue
                log(f"{rows:,} rows, round {round_}: {key} (page cache {page_cache})")
                set_page_cache(data, page_cache)
                run = contender()
                run.round = round_
                runs.append(run)
    for run in runs:
        if run.coef is not None:
            run.loss = mean_log_loss(data, run.coef)
    return runs


#: the contenders each run's time is compared with: (the column's word, the start of the run's name)
PEERS = (("dask-ml", "dask-ml"), ("sklearn", "scikit-learn"))


def table(rows: int, features: int, runs: list[Run]) -> list[str]:
    best = min((run.loss for run in runs if run.loss is not None), default=None)
    rounds = max((run.round for run in runs), default=1)

    def peer_wall(prefix: str, round_: int) -> float | None:
        return next((r.wall for r in runs if r.name.startswith(prefix) and r.round == round_ and r.wall), None)

    lines = []
    for run in runs:
        phases = (
            " / ".join(
                f"{run.phases.get(p, 0.0):.1f}" for p in ("start", "load", "statistics", "passes", "tail", "exit")
            )
            if run.phases
            else ""
        )
        gap = "" if run.loss is None or best is None else f"{(run.loss - best) / best:.1e}"
        versus = []
        for label, prefix in PEERS:
            reference = peer_wall(prefix, run.round)
            if run.wall and reference:
                versus.append(f"{run.wall / reference:.2f}x {label}")
        name = run.name if rounds == 1 else f"{run.name} (round {run.round})"
        lines.append(
            f"| {name:<46} | {f'{rows / 1e6:g}M x {features}':<10} | "
            f"{'-' if run.wall is None else f'{run.wall:.1f}':>7} | "
            f"{'-' if run.exit is None else f'{run.exit:.1f}':>6} | {phases:<34} | "
            f"{', '.join(versus):<28} | {run.n_passes or '':>6} | {gap:>9} | {run.note}"
        )
    if rounds > 1:
        for name in dict.fromkeys(run.name for run in runs):
            walls = [run.wall for run in runs if run.name == name and run.wall]
            versus = []
            for label, prefix in PEERS:
                ratios = [
                    run.wall / reference
                    for run in runs
                    if run.name == name and run.wall and (reference := peer_wall(prefix, run.round))
                ]
                if ratios:
                    versus.append(f"{np.median(ratios):.2f}x {label}")
            median = f"{np.median(walls):.1f}" if walls else "-"
            data = f"{rows / 1e6:g}M x {features}"
            lines.append(
                f"| {name + ', median':<46} | {data:<10} | {median:>7} | {'':>6} | {'':<34} | "
                f"{', '.join(versus):<28} | {'':>6} | {'':>9} | {len(walls)} of {rounds} rounds"
            )
    return lines


HEADER = [
    f"| {'end to end, defaults':<46} | {'data':<10} | model s | exit s | {'start/load/stats/passes/tail/exit':<34} "
    f"| {'vs':<28} | passes | loss gap  | note",
    f"|{'-' * 48}|{'-' * 12}|---------|--------|{'-' * 36}|{'-' * 30}|--------|-----------|-----",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000000,8000000")
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--data-dir", default=None, help="keep the datasets here (default: a temp dir)")
    parser.add_argument("--skip", default="", help="contenders to leave out, comma-separated")
    parser.add_argument("--rounds", type=int, default=1, help="run the contenders this many times in rotation")
    parser.add_argument(
        "--page-cache",
        choices=PAGE_CACHE_STATES,
        default="warm",
        help="before each contender, read the dataset's files (warm) or evict them from the page cache (cold)",
    )
    args = parser.parse_args()
    started = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {line}", file=sys.stderr, flush=True)

    lines = []
    with tempfile.TemporaryDirectory(prefix="pipeline-e2e-data-") as scratch:
        data_dir = Path(args.data_dir or scratch)
        data_dir.mkdir(parents=True, exist_ok=True)
        for rows in (int(n) for n in args.rows.split(",")):
            runs = measure(
                rows,
                args.features,
                data_dir,
                args.timeout,
                set(filter(None, args.skip.split(","))),
                log,
                rounds=args.rounds,
                page_cache=args.page_cache,
            )
            lines += table(rows, args.features, runs)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {versions()}")
    print(
        f"load average at the end: {os.getloadavg()[0]:.2f}; whole run {time.perf_counter() - started:.0f} s; "
        f"page cache {args.page_cache} before each contender"
    )
    print("\n".join(HEADER + lines))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
