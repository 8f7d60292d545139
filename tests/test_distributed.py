"""The Ray backend: job queue and options (no Ray), then recordings on a local Ray (tiny config)."""

import os
from pathlib import Path

import pytest

import lora_gym  # noqa: F401
from lora_gym.cli.record import main as record_main
from lora_gym.core.config import resolve_config
from lora_gym.policies import FixedPolicy, PolicyContext, make_policies
from lora_gym.policies.distributed import (
    ClusterOptions,
    EpisodeWorker,
    JobQueue,
    evaluate_ray,
    record_ray,
)
from lora_gym.policies.recording import record
from lora_gym.policies.sim2real import _run_live
from lora_gym.replay.store import Store
from tests.conftest import TINY

CONFIG = resolve_config(TINY)
TASKS = ("synth-a", "synth-c")


def jobs():
    """The episodes ``--policy random --tasks synth-a synth-c --seeds 2`` asks for."""
    (policy,) = make_policies(["random"], PolicyContext.of(CONFIG))
    return [(policy, t, s) for t in TASKS for s in (0, 1)]


def store_rows(path):
    """Every row with its key, wall time and creation time left out, in key order."""
    with Store(path, readonly=True) as store:
        rows = store.conn.execute(f"{Store.ROW_SELECT} ORDER BY task, episode_seed, prefix")
        return [row[:-1] for row in rows]


# -- without Ray -------------------------------------------------------------------------------
def test_job_queue_keeps_workers_on_their_corpus_then_shares_the_largest():
    corpora = ["a", "b", "a", "a", "b", "c", "a"]
    tasks = ["a2", "b1", "a1", "a1", "b1", "c1", "a2"]
    queue = JobQueue(corpora, tasks)
    assert queue.take(0) == 2  # the largest corpus "a", its first task a1
    assert queue.take(1) == 1  # the largest corpus nobody works on
    assert [queue.take(0), queue.take(0)] == [3, 0]  # worker 0 stays on "a", task by task
    queue.put_back(3)
    assert queue.take(0) == 3  # a job put back is first in line
    assert queue.take(1) == 4
    assert queue.take(1) == 5  # "b" done: "c" is unclaimed
    assert queue.take(1) == 6  # then it helps with "a"
    assert len(queue) == 0 and queue.take(0) is None and queue.take(1) is None


@pytest.mark.parametrize(("field", "value"), [("num_workers", 0), ("worker_cpus", 0),
                                              ("worker_gpus", -1), ("max_retries", 1.5),
                                              ("address", "localhost:6379")])
def test_cluster_options_reject_bad_values(field, value):
    with pytest.raises(ValueError, match=f"`{field}`.*{value!r}"):
        ClusterOptions(**{field: value})


# -- on a local Ray ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def serial_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("serial") / "steps.sqlite"
    record(CONFIG, jobs(), str(path), progress=False)
    return path


def test_worker_gpus_and_the_device_must_agree():
    import dataclasses

    from lora_gym.policies.distributed import check_devices

    with pytest.raises(ValueError, match=r"reserves GPUs.*device:cuda"):
        check_devices(CONFIG, ClusterOptions(worker_gpus=1))
    with pytest.raises(ValueError, match=r"needs GPUs on the Ray workers: --worker-gpus"):
        check_devices(dataclasses.replace(CONFIG, device="cuda"), ClusterOptions())
    check_devices(dataclasses.replace(CONFIG, device="cuda:0"), ClusterOptions(worker_gpus=0.5))
    check_devices(CONFIG, ClusterOptions())


def test_ray_recording_equals_serial_row_for_row(ray_local, serial_store, tmp_path, capsys):
    path = tmp_path / "ray.sqlite"
    argv = ["--config", TINY, "--store", str(path), "--policy", "random", "--split", "all",
            "--tasks", *TASKS, "--seeds", "2", "--backend", "ray", "--num-workers", "2",
            "--quiet"]
    record_main(argv)
    out = capsys.readouterr().out
    assert "run=4" in out and "workers=2 retried=0" in out
    assert store_rows(path) == store_rows(serial_store)
    record_main(argv)  # everything recorded: nothing runs, no Ray worker starts
    assert "run=0 skipped=4 new_rows=0" in capsys.readouterr().out


def crash_once(marker: Path) -> type[EpisodeWorker]:
    """A worker whose process dies after the first step of its first episode, once in all."""

    class CrashOnce(EpisodeWorker):
        def record(self, policy, task, seed):
            for rows, steps in super().record(policy, task, seed):
                yield rows, steps
                if steps == 1 and not marker.exists():
                    marker.touch()
                    os._exit(1)

    return CrashOnce


def test_killed_worker_loses_and_duplicates_nothing(ray_local, serial_store, tmp_path):
    path, marker = tmp_path / "ray.sqlite", tmp_path / "crashed"
    counts = record_ray(CONFIG, jobs(), str(path), ClusterOptions(num_workers=2),
                        progress=False, worker_cls=crash_once(marker))
    assert marker.exists() and counts["retried"] == 1
    rows = store_rows(path)
    assert counts["new_rows"] == len(rows) == len(store_rows(serial_store))
    assert rows == store_rows(serial_store)


def test_sim2real_live_half_on_ray_equals_serial(ray_local, tmp_path):
    live_jobs = [(FixedPolicy(1), "synth-a", 0), *jobs()[:2]]
    path = tmp_path / "live.sqlite"
    on_ray = evaluate_ray(CONFIG, live_jobs, ClusterOptions(num_workers=1), record_to=str(path))
    assert [r.to_dict() for r in on_ray] == [r.to_dict() for r in _run_live(CONFIG, live_jobs,
                                                                             None)]
    assert Store(path, readonly=True).count() > 0
