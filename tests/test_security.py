"""Security: a TLS-secured scheduler and workers (certificates made here with
openssl), reached with the certificates from a job file, from the command
line, or from Dask's configuration; nothing else gets in.  Outputs stay
inside the output root; a job name is never a path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from conftest import DaskCLICluster, run_cli
from job_support import write_job

from pipeline.config import TrainConfig
from pipeline.errors import ConfigError, JobFileError, OutputError
from pipeline.jobfile import config_from_mapping, load_job
from pipeline.jobs import run_job
from pipeline.model import Model


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A CA, and one certificate + key it signed (for 127.0.0.1), in PEM files."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make the test certificates")
    root = tmp_path_factory.mktemp("tls")
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req",
        "-x509",
        *curve,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=pipeline test CA",
        cwd=root,
    )
    _openssl("req", *curve, "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1", cwd=root)
    (root / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "node.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        cwd=root,
    )
    return {"ca": root / "ca.pem", "cert": root / "node.pem", "key": root / "node.key"}


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory, certificates):
    cluster = DaskCLICluster(tmp_path_factory.mktemp("tls-cluster"), n_workers=2, tls=certificates)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def in_process(tmp_path_factory, jobs_data):
    out = tmp_path_factory.mktemp("in-process") / "out"
    result = run_cli("train", jobs_data, "--label", "y", "--in-process", "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    return Model.load(out)


@pytest.mark.cluster
def test_tls_from_the_command_line_and_a_job_file(tmp_path, jobs_data, certificates, tls_cluster, in_process):
    assert tls_cluster.address.startswith("tls://")
    tls = ["--tls-ca-file", certificates["ca"], "--tls-cert", certificates["cert"], "--tls-key", certificates["key"]]
    result = run_cli(
        "train",
        jobs_data,
        "--label",
        "y",
        "--scheduler",
        tls_cluster.address,
        *tls,
        "--out",
        tmp_path / "flags",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    assert Model.load(tmp_path / "flags").digest == in_process.digest
    # a job file, paths relative to where it is submitted from
    job = write_job(
        tmp_path / "job.toml",
        jobs_data,
        tmp_path / "file",
        cluster=f'scheduler = "{tls_cluster.address}"\ntls_ca_file = "tls/ca.pem"\n'
        'tls_cert = "tls/node.pem"\ntls_key = "tls/node.key"',
    )
    job.write_text(job.read_text().replace("tol = 1e-9", ""))
    (tmp_path / "tls").symlink_to(certificates["ca"].parent)
    result = run_cli("submit", job, "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Model.load(tmp_path / "file").digest == in_process.digest
    config = json.loads((tmp_path / "file" / "job.json").read_text())["config"]
    assert config["cluster.tls_cert"] == str(tmp_path / "tls" / "node.pem")  # made absolute
    # the commands that only look things up take the same options
    listed = run_cli("list", "--scheduler", tls_cluster.address, *tls)
    assert listed.returncode == 0, listed.stderr
    assert "test-job" in listed.stdout


@pytest.mark.cluster
def test_a_detached_job_on_a_tls_cluster(tmp_path, jobs_data, certificates, tls_cluster, in_process):
    """The coordinator runs in a task on a TLS worker (using that worker's own
    connection); status and logs reach the job by id over TLS."""
    from job_support import wait_for

    tls = ["--tls-ca-file", certificates["ca"], "--tls-cert", certificates["cert"], "--tls-key", certificates["key"]]
    job = write_job(
        tmp_path / "job.toml",
        jobs_data,
        tmp_path / "out",
        name="tls-detached",
        cluster=f'scheduler = "{tls_cluster.address}"',
    )
    job.write_text(job.read_text().replace("tol = 1e-9", ""))
    result = run_cli("submit", job, "--detach", *tls)
    assert result.returncode == 0, result.stderr
    job_id = json.loads((tmp_path / "out" / "job.json").read_text())["job_id"]

    def finished():
        status = run_cli("status", job_id, "--scheduler", tls_cluster.address, *tls)
        assert status.returncode == 0, status.stderr
        return status.stdout if ("succeeded" in status.stdout or "failed" in status.stdout) else None

    assert "succeeded" in wait_for(finished, timeout=120, poll=0.5, what="the detached job")
    assert Model.load(tmp_path / "out").digest == in_process.digest
    logs = run_cli("logs", job_id, "--scheduler", tls_cluster.address, *tls)
    assert logs.returncode == 0 and "succeeded" in logs.stdout


@pytest.mark.cluster
def test_tls_from_dask_configuration(tmp_path, jobs_data, certificates, tls_cluster, in_process):
    environment = {
        **os.environ,
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(certificates["ca"]),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(certificates["cert"]),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(certificates["key"]),
    }
    result = subprocess.run(
        [
            *_pipeline(),
            "train",
            str(jobs_data),
            "--label",
            "y",
            "--scheduler",
            tls_cluster.address,
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    assert Model.load(tmp_path / "out").digest == in_process.digest


@pytest.mark.cluster
def test_without_certificates_the_tls_scheduler_is_refused(tmp_path, jobs_data, tls_cluster):
    result = run_cli(
        "train",
        jobs_data,
        "--label",
        "y",
        "--scheduler",
        tls_cluster.address,
        "--connect-timeout",
        "3",
        "--out",
        tmp_path / "out",
        "--quiet",
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"ClusterError: no Dask scheduler answered at '{tls_cluster.address}'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_tls_options_are_checked_before_anything_runs(tmp_path, certificates):
    base = {"data.url": str(tmp_path), "data.label": "y"}
    with pytest.raises(ConfigError, match="--tls-cert is for a tls:// scheduler: give --scheduler"):
        config_from_mapping({**base, "cluster.tls_cert": str(certificates["cert"])})
    with pytest.raises(ConfigError, match="--tls-ca-file is missing"):
        config_from_mapping(
            {**base, "cluster.scheduler": "tls://127.0.0.1:1", "cluster.tls_cert": str(certificates["cert"])}
        )
    with pytest.raises(ConfigError, match="--tls-key: no file"):
        config_from_mapping(
            {
                **base,
                "cluster.scheduler": "tls://127.0.0.1:1",
                "cluster.tls_ca_file": str(certificates["ca"]),
                "cluster.tls_cert": str(certificates["cert"]),
                "cluster.tls_key": str(tmp_path / "missing.key"),
            }
        )


# --------------------------------------------------------------------------- output root, job names


def test_outputs_resolve_under_the_root_and_cannot_leave_it(tmp_path, monkeypatch):
    monkeypatch.delenv("PIPELINE_OUTPUT_ROOT", raising=False)
    root = tmp_path / "runs"
    (root / "inside").mkdir(parents=True)
    (root / "link").symlink_to(tmp_path)  # a way out through a symbolic link
    base = {"data.url": str(tmp_path), "data.label": "y", "output.root": str(root)}
    assert config_from_mapping({**base, "output.dir": "a/b"}).out == str(root / "a" / "b")
    assert config_from_mapping({**base, "name": "nightly"}).out == str(root / "nightly")
    assert config_from_mapping({**base, "output.dir": str(root / "inside")}).out == str(root / "inside")
    for escape in ("../elsewhere", str(tmp_path / "elsewhere"), "inside/../../elsewhere", "link/x"):
        with pytest.raises(ConfigError, match=r"--out: output directory .* is outside the output root .*output.root"):
            config_from_mapping({**base, "output.dir": escape})
    for name in ("..", "../up", "a/b", "/etc", "tab\there"):
        with pytest.raises(ConfigError, match="--name: a job name"):
            config_from_mapping({**base, "name": name})
    # in a job file: the file and the key are named
    job = tmp_path / "job.toml"
    job.write_text(f'name = "../../x"\n[data]\nurl = "{tmp_path}"\nlabel = "y"\n[output]\nroot = "{root}"\n')
    with pytest.raises(JobFileError, match=r"job.toml: key 'name': a job name cannot contain '/'"):
        load_job(job)


def test_the_root_of_the_machine_running_the_job_applies(tmp_path, monkeypatch, jobs_data):
    """$PIPELINE_OUTPUT_ROOT where the job runs (e.g. on the worker of a detached
    job) is checked again, whatever the submitting side resolved."""
    monkeypatch.delenv("PIPELINE_OUTPUT_ROOT", raising=False)
    config = TrainConfig(data=str(jobs_data), label="y", out=str(tmp_path / "out"), cluster=None)
    monkeypatch.setenv("PIPELINE_OUTPUT_ROOT", str(tmp_path / "runs"))
    with pytest.raises(
        OutputError, match=r"is outside the output root .*or change \$PIPELINE_OUTPUT_ROOT where the job runs$"
    ):
        run_job(config)
    assert not (tmp_path / "out").exists()
    # a job that generates its data writes that dataset: inside the root only
    generating = TrainConfig(
        data=str(tmp_path / "made"),
        label="y",
        out=str(tmp_path / "runs" / "out"),
        cluster=None,
        generate={"rows": 100, "features": 2},
    )
    with pytest.raises(OutputError, match=r"dataset to generate \(data.generate\) .* is outside"):
        run_job(generating)
    assert not (tmp_path / "made").exists() and not (tmp_path / "runs" / "out").exists()


def test_the_cli_keeps_outputs_under_the_environment_root(tmp_path, jobs_data):
    root = tmp_path / "runs"
    root.mkdir()
    environment = {**os.environ, "PIPELINE_OUTPUT_ROOT": str(root)}

    def cli(*args):
        return subprocess.run(
            [*_pipeline(), *map(str, args)], capture_output=True, text=True, timeout=300, env=environment, cwd=tmp_path
        )

    refused = cli("train", jobs_data, "--label", "y", "--in-process", "--out", tmp_path / "elsewhere")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "ConfigError: --out: output directory" in refused.stderr and str(root) in refused.stderr
    refused = cli("train", jobs_data, "--label", "y", "--in-process", "--name", "../escape")
    assert refused.returncode == 1 and "ConfigError: --name: a job name cannot contain" in refused.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["runs"] and not any(root.iterdir())
    done = cli("train", jobs_data, "--label", "y", "--in-process", "--name", "nightly", "--quiet")
    assert done.returncode == 0, done.stderr
    assert Model.load(root / "nightly").n_samples > 0
    refused = cli("predict", root / "nightly", jobs_data, "--out", tmp_path / "scores")
    assert refused.returncode == 1 and "OutputError: prediction output directory" in refused.stderr
    assert not (tmp_path / "scores").exists()
    refused = cli("evaluate", root / "nightly", jobs_data, "--out", tmp_path / "metrics.json")
    assert refused.returncode == 1 and "OutputError: metrics file" in refused.stderr
    assert not (tmp_path / "metrics.json").exists()


def _pipeline() -> list[str]:
    import sys

    return [sys.executable, "-m", "pipeline"]
