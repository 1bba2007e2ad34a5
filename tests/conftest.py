"""Shared test helpers: the CLI in a subprocess, free loopback ports, and a
real cluster started with the ``dask scheduler`` / ``dask worker`` commands."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"

# Every pass of the suite runs compiled, in this process and in every process it
# starts (clusters, CLI runs), whatever the data's size or this machine's numba
# cache: the compiled kernels are what the tests exercise end to end, as they
# did before passes on small data started on the reference (pipeline.tiers).
# tests/test_tiers.py sets "auto" where the choice itself is tested; run the
# suite with PIPELINE_KERNELS=reference to run it on the numpy reference.
os.environ.setdefault("PIPELINE_KERNELS", "compiled")


#: The slowest files (a minute or more on 2 cores with a fresh numba cache),
#: collected first: the README's command runs the files on two processes
#: (pytest-xdist, ``--dist loadfile``), and one of these started last would
#: run alone at the end.
SLOW_FILES_FIRST = (
    "test_fused.py",
    "test_out_of_core.py",
    "test_faults.py",
    "test_multinomial.py",
    "test_jobs.py",
    "test_categorical.py",
)


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: index for index, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its order


def run_cli(*args: str, timeout: float = 300, cwd: str | os.PathLike | None = None):
    """``python -m pipeline ARGS`` in a fresh process; returns CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _dask_command() -> list[str]:
    found = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")
    return [found] if found else [sys.executable, "-m", "distributed.cli.dask_main"]


class DaskCLICluster:
    """``dask scheduler`` + ``dask worker`` processes on 127.0.0.1."""

    def __init__(self, workdir: Path, n_workers: int = 2, memory_limit: str = "2GiB", tls: dict | None = None) -> None:
        """``tls``: {"ca": PEM, "cert": PEM, "key": PEM} for scheduler, workers and
        this class's own clients (then the address is tls://)."""
        self.workdir = workdir
        self.processes: list[subprocess.Popen] = []
        self.tls_options = (
            []
            if not tls
            else ["--tls-ca-file", str(tls["ca"]), "--tls-cert", str(tls["cert"]), "--tls-key", str(tls["key"])]
        )
        self.security = None
        if tls:
            from distributed.security import Security

            self.security = Security(
                tls_ca_file=str(tls["ca"]),
                tls_client_cert=str(tls["cert"]),
                tls_client_key=str(tls["key"]),
                require_encryption=True,
            )
        # the scheduler takes a free port itself and tells it in its file: a
        # port probed here could be taken meanwhile (the suite runs in two
        # processes at once, pytest-xdist)
        scheduler_file = workdir / "scheduler.json"
        self._start(
            "scheduler",
            "--host",
            LOOPBACK,
            "--port",
            "0",
            "--scheduler-file",
            str(scheduler_file),
            "--dashboard-address",
            f"{LOOPBACK}:0",
            *(["--protocol", "tls", *self.tls_options] if tls else []),
        )
        self.address = self._address_from(scheduler_file)
        self.memory_limit = memory_limit
        #: worker name -> its `dask worker` process (the nanny)
        self.nannies: dict[str, subprocess.Popen] = {}
        for index in range(n_workers):
            self.add_worker(f"worker-{index}", wait=False)
        if n_workers:
            self.wait_for_workers(n_workers)

    def _address_from(self, scheduler_file: Path, timeout: float = 120) -> str:
        """The address the scheduler wrote to ``scheduler_file`` once it listens."""
        import json

        deadline = time.monotonic() + timeout
        while True:
            try:
                return json.loads(scheduler_file.read_text())["address"]
            except (FileNotFoundError, ValueError, KeyError):  # not (completely) written yet
                scheduler = self.processes[0]
                assert scheduler.poll() is None, f"dask scheduler exited with {scheduler.returncode}"
                assert time.monotonic() < deadline, "dask scheduler wrote no address"
                time.sleep(0.1)

    def add_worker(self, name: str, *options: str, wait: bool = True, env: dict | None = None) -> None:
        self._start(
            "worker",
            self.address,
            *options,
            *self.tls_options,
            "--host",
            LOOPBACK,
            "--nthreads",
            "1",
            "--memory-limit",
            self.memory_limit,
            "--no-dashboard",
            "--local-directory",
            str(self.workdir / name),
            "--name",
            name,
            env=env,
        )
        self.nannies[name] = self.processes[-1]
        deadline = time.monotonic() + 120
        while wait and name not in self.worker_pids_by_name():
            assert time.monotonic() < deadline, f"worker {name} did not join"
            time.sleep(0.2)

    def worker_pids_by_name(self) -> dict[str, int]:
        """Worker name -> pid of its worker process (the nanny's child)."""
        from distributed import Client

        with Client(self.address, timeout=10, security=self.security) as client:
            pids = client.run(os.getpid, on_error="ignore")
            names = {address: info["name"] for address, info in client.scheduler_info(n_workers=-1)["workers"].items()}
        return {names[address]: pid for address, pid in pids.items() if address in names}

    def _start(self, *args: str, env: dict | None = None) -> None:
        log = open(self.workdir / f"{args[0]}-{len(self.processes)}.log", "w")
        self.processes.append(
            subprocess.Popen(
                _dask_command() + list(args),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        )

    def wait_for_workers(self, n: int, timeout: float = 120) -> None:
        from distributed import Client

        deadline = time.monotonic() + timeout
        while True:
            try:
                with Client(self.address, timeout=10, security=self.security) as client:
                    client.wait_for_workers(n, timeout=max(deadline - time.monotonic(), 1))
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def worker_pids(self) -> list[int]:
        """Pids of the worker processes (the nannies' children) now."""
        from distributed import Client

        with Client(self.address, timeout=10, security=self.security) as client:
            return list(client.run(os.getpid).values())

    def close(self) -> None:
        stop_processes(self.processes, timeout=20)


def stop_processes(processes: list[subprocess.Popen], timeout: float) -> None:
    """SIGTERM each process group (last started first), SIGKILL what outlives ``timeout``."""
    for process in reversed(processes):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def dask_cli_cluster(tmp_path_factory):
    cluster = DaskCLICluster(tmp_path_factory.mktemp("dask-cli-cluster"))
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def jobs_data(tmp_path_factory):
    """The small, badly scaled dataset of the job and fault tests."""
    from job_support import write_jobs_data

    return write_jobs_data(tmp_path_factory.mktemp("jobs-data") / "data")


@pytest.fixture(scope="session")
def reference_slow(tmp_path_factory, jobs_data):
    """The uninterrupted slow job run, in-process (every path gives the same bits)."""
    from job_support import slow_job

    from pipeline.model import Model

    root = tmp_path_factory.mktemp("reference")
    job = slow_job(root / "slow.toml", jobs_data, root / "out", "in_process = true")
    result = run_cli("submit", job, "--quiet")
    assert result.returncode == 0, result.stderr
    model = Model.load(root / "out")
    assert model.n_iter >= 100  # long enough to be interrupted
    return model


def fair_frame():
    """statsmodels' fair data set (6,366 rows) with a 0/1 label ``y``: any affair."""
    import numpy as np
    import statsmodels.api as sm

    data = sm.datasets.fair.load_pandas().data
    data["y"] = (data.pop("affairs") > 0).astype(np.float64)
    return data


def write_frame(path: Path, data, row_group: int = 2000, files: int = 1) -> str:
    """``data`` (a pandas frame) as ``files`` Parquet files of ``row_group``-row row groups in ``path``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(data), files + 1).astype(int)
    for k, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        table = pa.Table.from_pandas(data.iloc[start:stop], preserve_index=False)
        pq.write_table(table, path / f"part-{k}.parquet", row_group_size=row_group)
    return str(path)
