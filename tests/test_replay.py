"""Record -> replay on the tiny config: durable store, exact replay, miss policies, sim2real."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest

import lora_gym  # noqa: F401
from lora_gym.core.config import resolve_config
from lora_gym.policies import FixedPolicy, RandomPolicy, SchedulePolicy
from lora_gym.policies.recording import record
from lora_gym.policies.runner import run_episode
from lora_gym.policies.sim2real import compare, summarise
from lora_gym.replay.index import TableMiss
from lora_gym.replay.recording import RecordingWrapper, episode_seed
from lora_gym.replay.store import Store, config_hash
from lora_gym.tasks.sets import load_task_set
from tests.conftest import TINY

CONFIG = resolve_config(TINY)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """A store with random and fixed-action episodes of synth-a and synth-c, seeds 0 and 1."""
    path = tmp_path_factory.mktemp("store") / "steps.sqlite"
    jobs = [(p, t, s) for p in (RandomPolicy(6), FixedPolicy(1)) for t in ("synth-a", "synth-c")
            for s in (0, 1)]
    counts = record(CONFIG, jobs, str(path), progress=False)
    keys = set()  # (task, seed, prefix); these policies' actions do not depend on observations
    for policy, task, seed in jobs:
        policy.begin_episode(task, seed)
        actions = [policy.act(None) for _ in range(3)]
        keys |= {(task, seed, tuple(actions[:t])) for t in range(4)}
    assert counts["run"] == 8 and counts["rows"] == len(keys)  # shared prefixes stored once
    return path


def replay(store_path, **kwargs):
    return gym.make("LoRATuneReplay-v0", config=TINY, store=str(store_path),
                    task_split="all", **kwargs)


def test_second_run_skips_recorded_episodes(store_path):
    jobs = [(FixedPolicy(1), "synth-a", 0), (FixedPolicy(1), "synth-a", 2)]
    before = Store(store_path, readonly=True).count()
    counts = record(CONFIG, jobs, str(store_path), progress=False)
    assert counts["skipped"] == 1 and counts["run"] == 1 and counts["new_rows"] == 4
    assert counts["rows"] == before + 4


def test_exact_replay_equals_live(store_path):
    live = gym.make("LoRATune-v0", config=TINY, task_split="all")
    env = replay(store_path, miss="raise")
    for task, seed in (("synth-a", 0), ("synth-c", 1)):
        a = run_episode(live, RandomPolicy(6), task, seed)
        b = run_episode(env, RandomPolicy(6), task, seed, episode_seed=episode_seed(seed))
        assert {s["source"] for s in b.trajectory} == {"table"}
        for x, y in zip(a.trajectory, b.trajectory, strict=True):
            assert x.pop("source") == "live"
            y.pop("source")
            assert x == y
        assert a.episode_return == b.episode_return
        assert a.final_accuracy == b.final_accuracy and a.total_cost == b.total_cost


def test_replay_obs_bit_identical_to_live(store_path):
    live = gym.make("LoRATune-v0", config=TINY, task_split="all")
    env = replay(store_path, miss="raise")
    o1, i1 = live.reset(seed=1, options={"task": "synth-c"})
    o2, i2 = env.reset(options={"task": "synth-c", "episode_seed": episode_seed(1)})
    assert np.array_equal(o1, o2) and i1["metrics"] == i2["metrics"]
    for _ in range(3):
        s1, s2 = live.step(1), env.step(1)
        assert np.array_equal(s1[0], s2[0]) and s1[1:4] == s2[1:4]


def test_miss_raise_names_the_key(store_path):
    env = replay(store_path, miss="raise")
    env.reset(options={"task": "synth-a", "episode_seed": episode_seed(0)})
    env.step(1)
    with pytest.raises(TableMiss, match=r"prefix=\(1, 5\)"):
        env.step(5)


def test_miss_surrogate_stays_off_table(store_path):
    env = replay(store_path, miss="surrogate")
    obs, _ = env.reset(options={"task": "synth-a", "episode_seed": episode_seed(0)})
    sources = []
    for action in (5, 1, 1):  # the first is not recorded: the rest stay on the surrogate
        obs, reward, terminated, truncated, info = env.step(action)
        assert obs in env.observation_space and np.isfinite(reward)
        sources.append(info["source"])
    assert sources == ["surrogate"] * 3 and truncated and not terminated
    assert env.unwrapped.source_counts["surrogate"] == 3


def test_miss_live_runs_and_records(tmp_path, store_path):
    path = tmp_path / "copy.sqlite"
    with sqlite3.connect(store_path) as src, sqlite3.connect(path) as dst:
        src.backup(dst)
    env = replay(path, miss="live")
    env.reset(options={"task": "synth-a", "episode_seed": episode_seed(0)})
    assert env.step(1)[4]["source"] == "table"
    obs, reward, *_, info = env.step(4)
    assert info["source"] == "live"
    env.close()
    live = gym.make("LoRATune-v0", config=TINY, task_split="all")
    live.reset(seed=0, options={"task": "synth-a"})
    live.step(1)
    assert np.array_equal(live.step(4)[0], obs)
    again = replay(path, miss="raise")  # the live step is now a table row
    again.reset(options={"task": "synth-a", "episode_seed": episode_seed(0)})
    again.step(1)
    assert again.step(4)[4]["source"] == "table"


def test_rewards_are_recomputed_with_the_env_reward_fn(store_path):
    env = replay(store_path, miss="raise", reward_fn="delta_f1_minus_cost", cost_weight=5.0)
    _, info0 = env.reset(options={"task": "synth-a", "episode_seed": episode_seed(0)})
    _, reward, *_, info = env.step(1)
    expected = {"delta_f1": info["metrics"]["f1"] - info0["metrics"]["f1"],
                "cost": -5.0 * info["cost"]}
    assert info["reward_components"] == pytest.approx(expected)
    assert reward == pytest.approx(sum(expected.values()))


def test_store_for_another_config_explains_the_difference(store_path):
    with pytest.raises(LookupError, match="steps_per_action"):
        replay(store_path, steps_per_action=5)


def test_config_hash_ignores_reward_and_threads():
    assert config_hash(CONFIG) == config_hash(CONFIG.replace(
        cost_weight=1.0, reward_fn="delta_acc", torch_threads=2, task_split="test"))
    assert config_hash(CONFIG) != config_hash(CONFIG.replace(steps_per_action=4))


def test_recording_survives_a_kill_mid_run(tmp_path):
    """SIGKILL while recording: every committed row is whole, and a rerun completes the rest."""
    path = tmp_path / "killed.sqlite"
    cmd = [sys.executable, "-m", "lora_gym", "record", "--config", TINY,
           "--store", str(path),
           "--policy", "random", "--split", "all", "--seeds", "3", "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if path.is_file() and _rows(path) >= 6:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = _rows(path)
    assert first >= 6
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    expected = len(load_task_set("tiny").tasks("all")) * 3 * (1 + 3)  # x seeds x (reset + 3)
    assert _rows(path) == expected > first
    with Store(path, readonly=True) as db:
        steps = db.conn.execute("SELECT task, episode_seed, COUNT(*), MAX(step) FROM steps "
                                "GROUP BY task, episode_seed").fetchall()
    assert all(count == 4 and last == 3 for *_, count, last in steps)


def _rows(path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM steps").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_recording_wrapper_keys_by_episode_seed_and_prefix(tmp_path):
    records = []
    env = RecordingWrapper(gym.make("LoRATune-v0", config=TINY), on_record=records.append)
    env.reset(seed=3, options={"task": "synth-b"})
    env.step(2)
    env.step(0)
    assert [r.prefix for r in records] == [(), (2,), (2, 0)]
    assert {r.episode_seed for r in records} == {episode_seed(3)}


def test_shipped_tiny_table_serves_the_schedule(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_GYM_CACHE", str(tmp_path))
    env = gym.make("LoRATuneReplay-v0", config=TINY, miss="raise")
    result = run_episode(env, SchedulePolicy(env.unwrapped.grid, 3), "synth-a", 4,
                         episode_seed=episode_seed(4))
    assert [s["source"] for s in result.trajectory] == ["table"] * 3


def test_sim2real_compares_replay_with_live(store_path):
    jobs = [(RandomPolicy(6), "synth-a", 0), (FixedPolicy(1), "synth-c", 1),
            (FixedPolicy(3), "synth-c", 0)]
    pairs = compare(CONFIG.replace(task_split="all"), jobs, str(store_path))
    assert len(pairs) == 3
    exact = pairs[:2]  # recorded episodes replay exactly
    assert all(p.table_fraction == 1.0 and p.replay_return == p.live_return for p in exact)
    assert pairs[2].table_fraction == 0.0  # fixed-3 is not recorded: the surrogate plays it
    summary = summarise(pairs)
    surrogate_error = abs(pairs[2].replay_final_accuracy - pairs[2].live_final_accuracy)
    assert summary["episodes"] == 3
    assert summary["mae_final_accuracy"] == pytest.approx(surrogate_error / 3)


def test_shipped_tiny_table_matches_the_live_env(tmp_path, monkeypatch):
    """The live env still computes what the shipped table recorded (else: re-record it)."""
    monkeypatch.setenv("LORA_GYM_CACHE", str(tmp_path))
    env = gym.make("LoRATuneReplay-v0", config=TINY, miss="raise", task_split="all")
    live = gym.make("LoRATune-v0", config=TINY, task_split="all")
    for task in ("synth-a", "synth-c"):
        recorded = run_episode(env, FixedPolicy(4), task, 0, episode_seed=episode_seed(0))
        now = run_episode(live, FixedPolicy(4), task, 0)
        assert [s["accuracy"] for s in now.trajectory] == pytest.approx(
            [s["accuracy"] for s in recorded.trajectory], abs=1e-9)
        assert now.episode_return == pytest.approx(recorded.episode_return, abs=1e-6)


def test_pack_makes_a_shipped_table(store_path, tmp_path, monkeypatch):
    from lora_gym.cli.pack import pack
    from lora_gym.replay.tables import resolve_store

    monkeypatch.setenv("LORA_GYM_CACHE", str(tmp_path / "cache"))
    meta = pack(store_path, "tiny", TINY, ["lora-gym record ..."], "test", tmp_path)
    assert meta["rows"] == Store(store_path, readonly=True).count()
    assert json.loads((tmp_path / "tiny.meta.json").read_text())["config_hash"] == \
        config_hash(CONFIG)
    path, shipped = resolve_store("tiny", CONFIG, tables_dir=tmp_path)
    assert shipped and Store(path, readonly=True).count() == meta["rows"]


def test_pack_merges_the_stores_of_several_recorders(store_path, tmp_path):
    """Two recording processes, two stores: one table with the rows of both, each once."""
    from lora_gym.cli.pack import pack

    other = tmp_path / "other.sqlite"
    record(CONFIG, [(FixedPolicy(0), "synth-a", 0), (FixedPolicy(1), "synth-a", 0)], str(other),
           progress=False)  # FixedPolicy(1) on synth-a seed 0 is in store_path too
    with Store(store_path, readonly=True) as a, Store(other, readonly=True) as b:
        keys = {r[:5] for db in (a, b) for r in db.rows(CONFIG.model, config_hash(CONFIG))}
        sizes = (a.count(), b.count())
    meta = pack([store_path, other], "merged", TINY, [], "", tmp_path)
    assert meta["rows"] == len(keys) < sum(sizes)
    with Store(other) as db:
        assert db.merge(store_path) == len(keys) - sizes[1] and db.merge(store_path) == 0


def test_pack_refuses_a_store_of_several_configs(tmp_path):
    from lora_gym.cli.pack import pack

    path = tmp_path / "mixed.sqlite"
    for config in (CONFIG, CONFIG.replace(steps_per_action=1)):
        record(config, [(FixedPolicy(0), "synth-a", 0)], str(path), progress=False)
    with pytest.raises(ValueError, match="rows of other configs"):
        pack(path, "mixed", TINY, [], "", tmp_path)


def test_stop_on_replay_equals_stop_live(store_path):
    live = gym.make("LoRATune-v0", config=CONFIG, disable_env_checker=True)
    replay = gym.make("LoRATuneReplay-v0", config=CONFIG, store=str(store_path), miss="raise")
    stop = live.unwrapped.grid.stop_action
    for env, opts in ((live, {"task": "synth-a"}),
                      (replay, {"task": "synth-a", "episode_seed": episode_seed(0)})):
        env.reset(seed=0, options=opts)
        env.step(1)
    a, b = live.step(stop), replay.step(stop)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:4] == b[1:4]
    replay_only = {"source", "uncertainty"}
    assert b[4]["uncertainty"] == 0.0
    assert {k: v for k, v in a[4].items() if k not in replay_only} == {
        k: v for k, v in b[4].items() if k not in replay_only}


def test_a_stop_is_not_recorded(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        env = RecordingWrapper(gym.make("LoRATune-v0", config=CONFIG), store)
        env.reset(seed=0, options={"task": "synth-a"})
        env.step(0)
        env.step(env.unwrapped.grid.stop_action)
        assert store.count() == 2  # the reset and the one trained segment


def test_live_seeds_with_live_misses_is_a_cached_live_env(tmp_path, store_path):
    import shutil

    path = tmp_path / "cache.sqlite"
    shutil.copyfile(store_path, path)
    live = gym.make("LoRATune-v0", config=CONFIG.replace(task_split="all"))
    cached = gym.make("LoRATuneReplay-v0", config=CONFIG.replace(task_split="all"),
                      store=str(path), miss="live", episode_seeds="live")
    a, b = live.reset(seed=123), cached.reset(seed=123)  # an unrecorded episode: run live
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1]["task"] == b[1]["task"] and a[1]["episode_seed"] == b[1]["episode_seed"]
    for action in (2, 0):
        x, y = live.step(action), cached.step(action)
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1] == y[1] and y[4]["source"] == "live"
    again = gym.make("LoRATuneReplay-v0", config=CONFIG.replace(task_split="all"),
                     store=str(path), miss="raise", episode_seeds="live")
    again.reset(seed=123)
    assert again.step(2)[4]["source"] == "table"  # recorded by the first run


def test_live_rerun_warns_only_when_it_really_disagrees(store_path):
    import dataclasses
    import warnings

    from lora_gym.core.errors import LoRAGymWarning
    from lora_gym.replay.store import METRIC_NAMES, StepRecord

    env = replay(store_path).unwrapped
    env.reset(options={"task": "synth-a", "episode_seed": episode_seed(0)})
    node = env.index.get("synth-a", episode_seed(0), ())
    metrics = (getattr(node.metrics, name) for name in METRIC_NAMES)
    rec = StepRecord("synth-a", CONFIG.model, config_hash(CONFIG), episode_seed(0), (),
                     np.array(node.obs), *metrics, node.rank, node.lr, 0.0, 0.0, False)
    ulp = np.nextafter(rec.obs, np.float32(np.inf)).astype(np.float32)  # one float32 bit off
    with warnings.catch_warnings():
        warnings.simplefilter("error", LoRAGymWarning)
        env._add_live_record(dataclasses.replace(rec, obs=ulp))
    with pytest.warns(LoRAGymWarning, match="disagrees with the table"):
        env._add_live_record(dataclasses.replace(rec, obs=rec.obs + np.float32(0.01)))
