"""docker-compose.yml: valid, follows the conventions, and its commands really run.

There is no Docker engine here, so the topology test starts the compose
services' own commands (read from docker-compose.yml, host names and volume
paths substituted) as local processes on 127.0.0.1: the file and the test
cannot drift apart.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import free_port, stop_processes

from pipeline.jobfile import load_job
from pipeline.model import Model

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _bin(name: str) -> str:
    found = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    assert found, f"{name} is not installed (pip install -e '.[test]')"
    return found


def test_compose_file_validates_against_the_compose_spec():
    result = subprocess.run(
        [_bin("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_one_pinned_non_root_image(compose):
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.splitlines()[0:3] and "FROM python:3.11-slim" in dockerfile
    assert "--constraint docker/constraints.txt" in dockerfile
    assert "\nUSER pipeline" in dockerfile and "useradd" in dockerfile
    pins = dict(
        line.split("==")
        for line in (ROOT / "docker" / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    for package in ("dask", "distributed", "numpy", "pyarrow", "numba", "dask-ml"):
        assert package in pins, package
    images = {service.get("image") for service in compose["services"].values()}
    assert images == {"pipeline:local"}  # every service runs the one image built here
    assert all(service["build"]["dockerfile"] == "Dockerfile" for service in compose["services"].values())


def test_the_tests_run_against_the_image_versions():
    """The README's install (and CI's) uses docker/constraints.txt, the Dockerfile's
    pins: every pinned package installed here has exactly the pinned version, so
    what the suite tests is what the image runs."""
    from importlib.metadata import PackageNotFoundError, version

    pins = dict(
        line.strip().split("==")
        for line in (ROOT / "docker" / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    installed = {}
    for package, pinned in pins.items():
        try:
            installed[package] = version(package)
        except PackageNotFoundError:
            continue  # only in the image (the dashboard's bokeh)
    assert {"dask", "distributed", "dask-ml", "numpy", "pyarrow", "numba", "scikit-learn"} <= set(installed)
    assert {p: v for p, v in installed.items() if v != pins[p]} == {}, "versions differ from the image's pins"
    assert "-c docker/constraints.txt" in (ROOT / "README.md").read_text()
    assert "-c docker/constraints.txt" in (ROOT / ".ci" / "run").read_text()


def test_services_follow_the_conventions(compose):
    services = compose["services"]
    assert set(services) == {"scheduler", "worker", "trainer", "make-data"}
    scheduler, worker, trainer, make_data = (services[name] for name in ("scheduler", "worker", "trainer", "make-data"))
    # scheduler: dask scheduler on 8786, dashboard 8787, both published, /health checked
    assert scheduler["command"][:2] == ["dask", "scheduler"]
    assert _option(scheduler["command"], "--port") == "8786"
    assert _option(scheduler["command"], "--dashboard-address") == ":8787"
    # published on the host's loopback only, unless PUBLISH_HOST says otherwise
    assert sorted(scheduler["ports"]) == [
        "${PUBLISH_HOST:-127.0.0.1}:8786:8786",
        "${PUBLISH_HOST:-127.0.0.1}:8787:8787",
    ]
    assert "/health" in " ".join(scheduler["healthcheck"]["test"])
    # only the scheduler publishes ports; workers can scale
    for name, service in services.items():
        if name != "scheduler":
            assert "ports" not in service, name
    assert "container_name" not in worker and "hostname" not in worker
    assert worker["command"][:3] == ["dask", "worker", "tcp://scheduler:8786"]
    for option in ("--nthreads", "--memory-limit", "--local-directory"):
        assert _option(worker["command"], option), option
    assert worker["deploy"]["replicas"] == 2
    limit = _bytes(worker["deploy"]["resources"]["limits"]["memory"])
    dask_limit = _bytes(_option(worker["command"], "--memory-limit"))
    assert dask_limit < limit <= 1.5 * dask_limit  # a little above the nanny's limit
    assert worker["depends_on"]["scheduler"]["condition"] == "service_healthy"
    assert _seconds(worker["stop_grace_period"]) >= 30
    scratch = [v for v in worker["volumes"] if isinstance(v, dict)]
    assert scratch == [{"type": "volume", "target": _option(worker["command"], "--local-directory")}]
    assert "source" not in scratch[0]  # anonymous: one per replica
    # volumes: the data volume at one path everywhere, read-only on workers
    declared = set(compose["volumes"])
    mounts = {
        name: {v.split(":")[0]: v.split(":")[1:] for v in service.get("volumes", []) if isinstance(v, str)}
        for name, service in services.items()
    }
    assert all(mounts[name]["data"][0] == "/data" for name in services), mounts
    assert mounts["worker"]["data"][1:] == ["ro"]
    assert {source for m in mounts.values() for source in m} <= declared
    # the trainer: one shot, profile "job", submits the shipped job file
    for service in (trainer, make_data):
        assert service["profiles"] == ["job"] and service["restart"] == "no"
    assert trainer["environment"]["DASK_SCHEDULER_ADDRESS"] == "tcp://scheduler:8786"
    # outputs (the trainer's, and a detached job's coordinator on a worker) stay in the runs volume
    for service in (trainer, worker):
        assert service["environment"]["PIPELINE_OUTPUT_ROOT"] == "/runs"
    assert "pipeline submit jobs/compose.toml" in " ".join(trainer["command"])
    assert make_data["command"][:3] == ["pipeline", "make-data", "/data/demo"]
    job = load_job(ROOT / "jobs" / "compose.toml")
    assert job.data == "/data/demo" and job.cluster.scheduler == "tcp://scheduler:8786"
    assert job.out.startswith("/runs/") and mounts["trainer"]["runs"] == ["/runs"]


def _option(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def _bytes(text: str) -> float:
    units = {"GiB": 2**30, "MiB": 2**20, "G": 2**30, "M": 2**20, "GB": 1e9, "MB": 1e6}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    return float(text)


def _seconds(text: str) -> float:
    return float(text[:-1]) * {"s": 1, "m": 60}[text[-1]]


# --------------------------------------------------------------------------- the same topology, for real


class Topology:
    """The compose services' commands as local processes on 127.0.0.1."""

    def __init__(self, compose: dict, root: Path) -> None:
        self.port, self.dashboard = free_port(), free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.root = root
        self.paths = {"/data": root / "data", "/runs": root / "runs"}
        for path in self.paths.values():
            path.mkdir()
        self.services = compose["services"]
        self.processes: list[subprocess.Popen] = []

    def command(self, service: str, replica: int = 0) -> list[str]:
        """The service's command with host names, ports and volume paths made local."""
        scratch = self.root / f"scratch-{service}-{replica}"
        out = []
        for arg in self.services[service]["command"]:
            arg = arg.replace("tcp://scheduler:8786", self.address).replace(
                "localhost:8787", f"127.0.0.1:{self.dashboard}"
            )
            if arg == "0.0.0.0":
                arg = "127.0.0.1"
            elif arg == ":8787":
                arg = f"127.0.0.1:{self.dashboard}"
            elif arg == "8786":
                arg = str(self.port)
            elif arg == "/scratch":
                arg = str(scratch)
            else:
                for inside, outside in self.paths.items():
                    if arg == inside or arg.startswith(inside + "/"):
                        arg = str(outside) + arg[len(inside) :]
            out.append(arg)
        if out[0] in ("dask", "pipeline"):
            out[0] = _bin(out[0])
        return out

    def environment(self, service: str) -> dict:
        """This process's environment plus the service's, with the same substitutions."""
        local = {}
        for name, value in (self.services[service].get("environment") or {}).items():
            value = str(value).replace("tcp://scheduler:8786", self.address)
            for inside, outside in self.paths.items():
                if value == inside or value.startswith(inside + "/"):
                    value = str(outside) + value[len(inside) :]
            local[name] = value
        return {**os.environ, **local}

    def start(self, service: str, replica: int = 0) -> None:
        log = open(self.root / f"{service}-{replica}.log", "w")
        self.processes.append(
            subprocess.Popen(
                self.command(service, replica),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.environment(service),
            )
        )

    def healthy(self) -> bool:
        test = self.services["scheduler"]["healthcheck"]["test"]
        assert test[0] == "CMD"
        command = [sys.executable if test[1] == "python" else test[1]] + [
            arg.replace("localhost:8787", f"127.0.0.1:{self.dashboard}") for arg in test[2:]
        ]
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0

    def close(self) -> None:
        stop_processes(self.processes, timeout=30)


@pytest.mark.cluster
def test_the_compose_topology_runs_the_job_for_real(compose, tmp_path):
    topology = Topology(compose, tmp_path)
    try:
        topology.start("scheduler")
        deadline = time.monotonic() + 60
        while not topology.healthy():  # the compose healthcheck, as compose would run it
            assert time.monotonic() < deadline, (tmp_path / "scheduler-0.log").read_text()
            time.sleep(0.5)
        replicas = compose["services"]["worker"]["deploy"]["replicas"]
        for replica in range(replicas):
            topology.start("worker", replica)
        # make-data, smaller than the compose default
        make = topology.command("make-data")
        make[make.index("--rows") + 1] = "20000"
        make[make.index("--features") + 1] = "6"
        make[make.index("--row-group-size") + 1] = "3000"
        assert subprocess.run(make, capture_output=True, timeout=120).returncode == 0
        # the trainer's command, run in a copy of the app directory whose job
        # file points at the local volume paths
        app = tmp_path / "app"
        (app / "jobs").mkdir(parents=True)
        job_text = (ROOT / "jobs" / "compose.toml").read_text()
        for inside, outside in topology.paths.items():
            job_text = job_text.replace(f'"{inside}/', f'"{outside}/')
        (app / "jobs" / "compose.toml").write_text(job_text)
        trainer = topology.services["trainer"]
        command = list(trainer["command"])
        assert command[:2] == ["sh", "-c"]
        script = command[2].replace("$$", "$").replace("exec pipeline", f"exec {_bin('pipeline')}")
        env = topology.environment("trainer")
        assert env["PIPELINE_OUTPUT_ROOT"] == str(topology.paths["/runs"])
        result = subprocess.run(["sh", "-c", script], cwd=app, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert topology.address in result.stdout
        out = topology.paths["/runs"] / "compose"
        model = Model.load(out)
        document = json.loads((out / "job.json").read_text())
        assert document["status"] == "succeeded" and document["cluster"]["n_workers"] == replicas
        # every worker used its own --local-directory
        for replica in range(replicas):
            assert (tmp_path / f"scratch-worker-{replica}").is_dir()
    finally:
        topology.close()
    reference = subprocess.run(
        [
            _bin("pipeline"),
            "train",
            str(topology.paths["/data"] / "demo"),
            "--label",
            "y",
            "--in-process",
            "--out",
            str(tmp_path / "in-process"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert reference.returncode == 0, reference.stderr
    assert Model.load(tmp_path / "in-process").digest == model.digest
