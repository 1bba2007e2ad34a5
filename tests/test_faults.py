"""Faults on a real cluster (`dask scheduler` / `dask worker` processes on
127.0.0.1): lost workers change nothing, a joining worker is used, a cluster
with no worker left or with every worker paused fails in bounded time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager

import pytest
from conftest import DaskCLICluster, run_cli
from job_support import history_rows, job_status, numpy_dispatch_off, slow_job, wait_for

from pipeline.checkpoint import load_checkpoint
from pipeline.model import Model

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # no memory limit: the memory monitor never pauses or unpauses on its own
    cluster = DaskCLICluster(tmp_path_factory.mktemp("faults-cluster"), n_workers=2, memory_limit="0")
    try:
        yield cluster
    finally:
        cluster.close()


def start_job(job, *options):
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "submit", str(job), "--quiet", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def iterations(out) -> int:
    return len(history_rows(out)) if (out / "history.csv").exists() else 0


def start_slow_job(tmp_path, jobs_data, cluster, name: str, cache: str | None = None, *options: str):
    """The slow gd job on ``cluster`` (with ``cache``, else auto), started
    attached with ``options``; (process, out)."""
    out = tmp_path / "out"
    job = slow_job(tmp_path / "job.toml", jobs_data, out, f'scheduler = "{cluster.address}"', name=name)
    if cache:
        job.write_text(job.read_text() + f'\n[cache]\nmode = "{cache}"\n')
    return start_job(job, *options), out


@contextmanager
def paused(process):
    """The job's coordinator (the attached ``pipeline submit``) stopped with
    SIGSTOP meanwhile: a pass takes tens of ms, a worker restart seconds, so
    without the pause the job could end while the test waits on the cluster."""
    os.kill(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(process.pid, signal.SIGCONT)


def kill_worker_processes(cluster, process, out, victims) -> int:
    """SIGKILL each victim's worker process (its nanny restarts it) after 8 more
    iterations each, mid-pass; the job is paused from just after the kill
    until the worker is back.  Returns the iterations seen at the last kill."""
    seen = 0
    for victim in victims:
        seen = wait_for(lambda: iterations(out) >= seen + 8 and iterations(out), what="progress")
        pid = cluster.worker_pids_by_name()[victim]
        os.kill(pid, signal.SIGKILL)
        with paused(process):
            wait_for(lambda: cluster.worker_pids_by_name().get(victim) not in (None, pid), what=f"{victim} restarted")
    return seen


def finish_undisturbed(process, out, seen: int, reference) -> Model:
    """Wait for the job; its model must be the reference's, bit for bit."""
    try:
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stdout + stderr
    assert seen < reference.n_iter  # the faults happened during the run
    model = Model.load(out)
    assert model.digest == reference.digest
    assert model.loss_history == reference.loss_history
    assert model.passes_history == reference.passes_history
    return model


def test_killed_workers_and_nanny_change_nothing_and_a_new_worker_is_used(tmp_path, jobs_data, cluster, reference_slow):
    process, out = start_slow_job(tmp_path, jobs_data, cluster, "faults", "none")
    try:
        seen = kill_worker_processes(cluster, process, out, ("worker-0", "worker-1", "worker-0"))
        wait_for(lambda: iterations(out) >= seen + 8, what="progress")
        os.killpg(cluster.nannies["worker-1"].pid, signal.SIGKILL)  # nanny and worker: gone for good
        with paused(process):
            cluster.add_worker("worker-2")  # joins mid-run
        from distributed import Client

        def worker_2_executed() -> int:
            with Client(cluster.address, timeout=10) as client:
                counts = client.run(
                    lambda dask_worker: (dask_worker.name, dask_worker.state.executed_count), on_error="ignore"
                )
            return dict(counts.values()).get("worker-2", 0)

        wait_for(
            lambda: worker_2_executed() > 0 or process.poll() is not None, poll=0.2, what="the new worker to run tasks"
        )
        assert worker_2_executed() > 0, "the job ended before the new worker was used"
        seen = iterations(out)
    except BaseException:
        process.kill()
        raise
    finish_undisturbed(process, out, seen, reference_slow)


def test_killed_workers_holding_the_cached_data_change_nothing(tmp_path, jobs_data, cluster, reference_slow):
    """--cache memory: the killed worker's decoded chunks are gone; distributed
    reads them again from their lineage, and the model is the same bits."""
    process, out = start_slow_job(tmp_path, jobs_data, cluster, "faults-memory", "memory")
    try:
        # each worker process once
        seen = kill_worker_processes(cluster, process, out, sorted(cluster.worker_pids_by_name()))
    except BaseException:
        process.kill()
        raise
    assert finish_undisturbed(process, out, seen, reference_slow).cache == "memory"


def test_every_worker_killed_at_once_changes_nothing(tmp_path, jobs_data, cluster, reference_slow):
    """Both worker processes gone at once (as when all go over their memory
    limit together), --cache memory: with no worker left, distributed put the
    chunks to read again in no-worker, and left them there when the restarted
    workers joined (their placement on the dead workers was loose, but it
    checks the restriction, not its looseness): the job waited for ever.  The
    pass's watchdog now places them anew (reduce.reschedule_loose)."""
    process, out = start_slow_job(tmp_path, jobs_data, cluster, "faults-all", "memory")
    try:
        seen = wait_for(lambda: iterations(out) >= 8 and iterations(out), what="progress")
        pids = cluster.worker_pids_by_name()
        with paused(process):
            for pid in pids.values():
                os.kill(pid, signal.SIGKILL)
            wait_for(
                lambda: all(cluster.worker_pids_by_name().get(name) not in (None, pid) for name, pid in pids.items()),
                what="every worker restarted",
            )
    except BaseException:
        process.kill()
        raise
    assert finish_undisturbed(process, out, seen, reference_slow).cache == "memory"


def test_a_worker_on_other_simd_paths_gives_the_same_bits(tmp_path, jobs_data, cluster, reference_slow):
    """A worker whose numpy dispatches none of its SIMD targets and whose numba
    compiles for a generic x86-64 (as an older CPU would) computes the same
    bits: its kernel fingerprint agrees, it takes part in the job, and the
    model is the reference's.  (Workers that do disagree are refused by name:
    tests/test_reduce.py, with fakes.)"""
    from pipeline.probe import kernel_fingerprint

    disabled = numpy_dispatch_off()
    env = {"NUMBA_CPU_NAME": "generic", "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    if disabled:
        env["NPY_DISABLE_CPU_FEATURES"] = disabled
    cluster.add_worker("odd", env=env)
    try:
        from distributed import Client

        with Client(cluster.address, timeout=10) as client:
            found = client.run(kernel_fingerprint, on_error="ignore")
            odd = next(address for address, name in _names(cluster).items() if name == "odd")
            assert found[odd]["cpu_dispatch"] == [] or not disabled  # it really runs other numpy paths
            assert len({fingerprint["digest"] for fingerprint in found.values()}) == 1
        process, out = start_slow_job(tmp_path, jobs_data, cluster, "mixed", "memory")
        model = finish_undisturbed(process, out, 0, reference_slow)
        with Client(cluster.address, timeout=10) as client:
            executed = client.run(lambda dask_worker: dask_worker.state.executed_count, workers=[odd])
        assert executed[odd] > 0 and model.cache == "memory"
    finally:
        os.killpg(cluster.nannies.pop("odd").pid, signal.SIGKILL)
        wait_for(lambda: "odd" not in _names(cluster).values(), what="the odd worker to leave")


def _names(cluster) -> dict:
    from distributed import Client

    with Client(cluster.address, timeout=10) as client:
        return {address: info["name"] for address, info in client.scheduler_info(n_workers=-1)["workers"].items()}


def test_every_worker_paused_fails_in_bounded_time(tmp_path, jobs_data, cluster):
    from distributed import Client
    from distributed.core import Status

    process, out = start_slow_job(tmp_path, jobs_data, cluster, "paused", None, "--stall-timeout", "3")
    try:
        wait_for(lambda: iterations(out) >= 5, what="5 iterations")
        with Client(cluster.address, timeout=10) as client:
            client.run(lambda dask_worker: setattr(dask_worker, "status", Status.paused))
            try:
                stdout, stderr = process.communicate(timeout=60)
            finally:
                client.run(lambda dask_worker: setattr(dask_worker, "status", Status.running))
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1 and "Traceback" not in stderr
    line = next(line for line in stderr.splitlines() if line.startswith("ClusterError: "))
    assert "has been paused for 3 s" in line and "--cache disk or none" in line
    document = json.loads((out / "job.json").read_text())
    assert document["status"] == "failed" and "paused" in document["error"]
    assert load_checkpoint(out / "checkpoint.npz")[0].solver_state.n_iter >= 4


def test_all_workers_lost_fails_in_bounded_time_and_the_checkpoint_resumes(
    tmp_path, jobs_data, cluster, reference_slow
):
    process, out = start_slow_job(tmp_path, jobs_data, cluster, "lost", None, "--stall-timeout", "3")
    try:
        wait_for(lambda: iterations(out) >= 5, what="5 iterations")
        for nanny in cluster.nannies.values():
            if nanny.poll() is None:
                os.killpg(nanny.pid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1 and "Traceback" not in stderr
    assert "ClusterError: no worker has been connected to the scheduler for 3 s" in stderr
    assert job_status(out) == "failed"
    resumed = run_cli("resume", out, "--in-process", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    model = Model.load(out)
    assert model.digest == reference_slow.digest
    assert model.loss_history == reference_slow.loss_history


def test_a_result_lost_while_it_is_fetched_fails_in_bounded_time(tmp_path):
    """The task finished, then its only worker died while the result was being
    fetched: distributed reschedules the task, and with no worker left the
    fetch must not wait forever (a plain ``client.gather`` would)."""
    import threading

    from distributed import Client, wait

    from pipeline.errors import ClusterError
    from pipeline.reduce import gather

    lonely = DaskCLICluster(tmp_path, n_workers=0)
    try:
        lonely.add_worker("worker-0", "--no-nanny")  # nothing restarts it
        with Client(lonely.address, timeout=10) as client:
            future = client.submit(sum, [1, 2, 3])
            wait(future, timeout=60)

            def die_when_asked_for_data(dask_worker):  # local: pickled by value
                dask_worker.handlers["get_data"] = lambda *args, **kwargs: os._exit(1)

            client.run(die_when_asked_for_data)
            outcome = []  # (exception type, message): the exception itself would keep
            #               the client's futures alive past the client

            def fetch():
                try:
                    gather(client, [future], stall_timeout_s=1)
                    outcome.append((None, "returned"))
                except Exception as exc:  # noqa: BLE001 - inspected below
                    outcome.append((type(exc), str(exc)))

            thread = threading.Thread(target=fetch, daemon=True)
            thread.start()
            thread.join(timeout=30)
            assert not thread.is_alive(), "gather waited on the lost result with no bound"
    finally:
        lonely.close()
    assert outcome[0][0] is ClusterError
    assert "no worker has been connected to the scheduler for 1 s" in outcome[0][1]


def test_a_scheduler_without_workers_is_waited_on_for_the_stall_timeout(tmp_path):
    """No worker ever joins: the run fails after --stall-timeout with the
    command to start one (it waited a fixed, undocumented 120 s)."""
    from pipeline.cluster import ClusterSpec, connect
    from pipeline.errors import ClusterError

    empty = DaskCLICluster(tmp_path, n_workers=0)
    try:
        with pytest.raises(
            ClusterError, match=r"no workers after 1 s \(the stall timeout: --stall-timeout of train and.*`dask worker "
        ):
            with connect(ClusterSpec(scheduler=empty.address, stall_timeout_s=1.0)):
                pass
    finally:
        empty.close()


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_a_killed_scheduler_under_an_attached_job_is_one_cluster_error(tmp_path, jobs_data, cache):
    """``kill -9`` of the scheduler while an attached job runs: the pass's
    requests meet a closed connection (distributed's CommClosedError, from a
    gather or a who_has), which is the lost-scheduler ClusterError and the
    job's recorded error, not a traceback and an "unexpected" failure."""
    own = DaskCLICluster(tmp_path, n_workers=1)
    try:
        own.wait_for_workers(1)
        process, out = start_slow_job(tmp_path, jobs_data, own, f"lost-{cache}", cache)
        try:
            wait_for(lambda: iterations(out) >= 5, what="5 iterations")
            own.processes[0].kill()  # (the scheduler: started first)
            _, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    finally:
        own.close()
    # (distributed's own client logs its failed reconnection, with asyncio's
    # tracebacks, before the pass gives up: the command's error is its last line)
    last = stderr.strip().splitlines()[-1]
    assert process.returncode == 1 and last.startswith("ClusterError: the connection to the scheduler"), stderr[-3000:]
    assert "was lost" in last and "pipeline/" not in stderr
    document = json.loads((out / "job.json").read_text())
    assert document["status"] == "failed" and "unexpected" not in document["error"]


def test_a_frozen_scheduler_fails_a_pass_in_bounded_time(tmp_path):
    """A scheduler that stops answering while its connection stays open (a
    stopped process, a suspended VM): the watchdog's own check of the cluster
    used to wait for its answer for ever, and the pass with it."""
    import threading
    import time

    from distributed import Client

    from pipeline.errors import ClusterError
    from pipeline.reduce import gather, nthreads

    frozen = DaskCLICluster(tmp_path, n_workers=0)
    scheduler = frozen.processes[0]
    outcome = []  # (exception type, message)

    def attempt(call):
        try:
            call()
            outcome.append((None, "returned"))
        except Exception as exc:  # noqa: BLE001 - inspected below
            outcome.append((type(exc), str(exc)))

    try:
        frozen.add_worker("worker-0")
        with Client(frozen.address, timeout=10) as client:
            future = client.submit(time.sleep, 30, pure=False)
            time.sleep(1.0)
            os.kill(scheduler.pid, signal.SIGSTOP)
            try:
                for call in (lambda: gather(client, [future], stall_timeout_s=2), lambda: nthreads(client, 2)):
                    thread = threading.Thread(target=attempt, args=(call,), daemon=True)
                    thread.start()
                    thread.join(timeout=40)
                    assert not thread.is_alive(), "a pass waited on a frozen scheduler with no bound"
            finally:
                os.kill(scheduler.pid, signal.SIGCONT)
            client.cancel(future)
    finally:
        frozen.close()
    assert [kind for kind, _ in outcome] == [ClusterError, ClusterError]
    assert all("the scheduler has not answered for 2 s" in message for _, message in outcome)


def test_stall_messages_say_what_happened_and_what_to_do():
    from pipeline.reduce import stall_message

    assert stall_message(None, 5).startswith("the scheduler has not answered for 5 s")
    assert "pipeline resume OUTPUT_DIR" in stall_message(None, 5)
    assert stall_message({}, 2).startswith("no worker has been connected to the scheduler for 2 s")
    paused = stall_message({"tcp://b:2": ("paused", 2**30), "tcp://a:1": ("paused", 2**29)}, 3)
    assert paused.startswith("every worker (tcp://a:1, tcp://b:2) has been paused for 3 s")
    assert "memory limit 512 MiB, 1024 MiB" in paused
