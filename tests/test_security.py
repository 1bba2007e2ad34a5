"""Security: a TLS-secured scheduler and workers (certificates made here with
openssl), reached with the certificates from a job file, from the command
line, or from Dask's configuration; nothing else gets in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from conftest import DaskCLICluster, run_cli
from job_support import write_job

from pipeline.errors import ConfigError
from pipeline.jobfile import config_from_mapping
from pipeline.model import Model

pytestmark = pytest.mark.cluster


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A CA, and one certificate + key it signed (for 127.0.0.1), in PEM files."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make the test certificates")
    root = tmp_path_factory.mktemp("tls")
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=pipeline test CA", cwd=root)
    _openssl("req", *curve, "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1", cwd=root)
    (root / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "node.pem", "-days", "2", "-extfile", "san.ext", cwd=root)
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


def test_tls_from_the_command_line_and_a_job_file(tmp_path, jobs_data, certificates, tls_cluster, in_process):
    assert tls_cluster.address.startswith("tls://")
    tls = ["--tls-ca-file", certificates["ca"], "--tls-cert", certificates["cert"],
           "--tls-key", certificates["key"]]
    result = run_cli("train", jobs_data, "--label", "y", "--scheduler", tls_cluster.address, *tls,
                     "--out", tmp_path / "flags", "--quiet")
    assert result.returncode == 0, result.stderr
    assert Model.load(tmp_path / "flags").digest == in_process.digest
    # a job file, paths relative to where it is submitted from
    job = write_job(tmp_path / "job.toml", jobs_data, tmp_path / "file",
                    cluster=f'scheduler = "{tls_cluster.address}"\ntls_ca_file = "tls/ca.pem"\n'
                            'tls_cert = "tls/node.pem"\ntls_key = "tls/node.key"')
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


def test_tls_from_dask_configuration(tmp_path, jobs_data, certificates, tls_cluster, in_process):
    environment = {
        **os.environ,
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(certificates["ca"]),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(certificates["cert"]),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(certificates["key"]),
    }
    result = subprocess.run(
        [*_pipeline(), "train", str(jobs_data), "--label", "y", "--scheduler", tls_cluster.address,
         "--out", str(tmp_path / "out"), "--quiet"],
        capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr
    assert Model.load(tmp_path / "out").digest == in_process.digest


def test_without_certificates_the_tls_scheduler_is_refused(tmp_path, jobs_data, tls_cluster):
    result = run_cli("train", jobs_data, "--label", "y", "--scheduler", tls_cluster.address,
                     "--connect-timeout", "3", "--out", tmp_path / "out", "--quiet", timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"ClusterError: no Dask scheduler answered at '{tls_cluster.address}'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_tls_options_are_checked_before_anything_runs(tmp_path, certificates):
    base = {"data.url": str(tmp_path), "data.label": "y"}
    with pytest.raises(ConfigError, match="--tls-cert is for a tls:// scheduler: give --scheduler"):
        config_from_mapping({**base, "cluster.tls_cert": str(certificates["cert"])})
    with pytest.raises(ConfigError, match="--tls-ca-file is missing"):
        config_from_mapping({**base, "cluster.scheduler": "tls://127.0.0.1:1",
                             "cluster.tls_cert": str(certificates["cert"])})
    with pytest.raises(ConfigError, match="--tls-key: no file"):
        config_from_mapping({**base, "cluster.scheduler": "tls://127.0.0.1:1",
                             "cluster.tls_ca_file": str(certificates["ca"]),
                             "cluster.tls_cert": str(certificates["cert"]),
                             "cluster.tls_key": str(tmp_path / "missing.key")})


def _pipeline() -> list[str]:
    import sys

    return [sys.executable, "-m", "pipeline"]
