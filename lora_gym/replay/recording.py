"""Record live `LoRATune-v0` steps into a store: the recording wrapper and the recorder loop.

`record` runs (policy, task, reset seed) episodes on the live env and records every step;
episodes whose every step is already stored are skipped without running, so an interrupted
run is resumed by running the same call (or ``lora-gym record`` command) again.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding

from lora_gym.core.actions import ActionGrid
from lora_gym.core.config import EnvConfig
from lora_gym.core.observation import draw_episode_seed
from lora_gym.core.preferences import preference_spec
from lora_gym.policies import Policy
from lora_gym.replay.index import Node, TableIndex
from lora_gym.replay.store import StepRecord, Store, config_hash


class RecordingWrapper(gym.Wrapper):
    """Record every reset and step of a live `LoRATuningEnv` as a `StepRecord`.

    Args:
        env: A live env (possibly wrapped); its ``unwrapped.config`` fixes the key.
        store: Where rows go (each committed at once), or None to only call `on_record`.
        on_record: Called with every record made.
    """

    def __init__(self, env: gym.Env, store: Store | None = None,
                 on_record: Callable[[StepRecord], None] | None = None) -> None:
        super().__init__(env)
        self.store, self.on_record = store, on_record
        config: EnvConfig = env.unwrapped.config
        self._model, self._hash = config.model, config_hash(config)
        self._outcome_size = len(env.observation_space.low) - len(preference_spec(config))
        if store is not None:
            store.register_config(config)
        self._prefix: tuple[int, ...] = ()
        self._episode: tuple[str, int] | None = None

    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None):
        """Reset the env and record the reset row (empty action prefix)."""
        started = time.perf_counter()
        obs, info = self.env.reset(seed=seed, options=options)
        self._episode, self._prefix = (info["task"], int(info["episode_seed"])), ()
        self._record(obs, info, time.perf_counter() - started, cost=0.0, diverged=False)
        return obs, info

    def step(self, action):
        """Step the env and record the step under the episode's action prefix."""
        started = time.perf_counter()
        obs, reward, terminated, truncated, info = self.env.step(action)
        if info.get("stopped"):
            return obs, reward, terminated, truncated, info  # nothing trained: nothing to record
        self._prefix = (*self._prefix, int(action))
        self._record(obs, info, time.perf_counter() - started, cost=info["cost"],
                     diverged=info["diverged"])
        return obs, reward, terminated, truncated, info

    def _record(self, obs: np.ndarray, info: dict, wall: float, cost: float,
                diverged: bool) -> None:
        assert self._episode is not None
        m = {k: (np.nan if v is None else float(v)) for k, v in info["metrics"].items()}
        rec = StepRecord(self._episode[0], self._model, self._hash, self._episode[1],
                         self._prefix, np.asarray(obs[:self._outcome_size], dtype=np.float32),
                         m["accuracy"], m["f1"],
                         m["val_loss"], m["train_loss"], int(info["rank"]), info["lr"],
                         float(cost), float(info["cost_so_far"]), bool(diverged), wall)
        if self.store is not None:
            self.store.add(rec)
        if self.on_record is not None:
            self.on_record(rec)


def episode_seed(reset_seed: int) -> int:
    """The episode seed `LoRATuningEnv.reset(seed=s, options={"task": ...})` draws."""
    return draw_episode_seed(seeding.np_random(reset_seed)[0])


def episode_recorded(index: TableIndex | None, policy: Policy, task: str, reset_seed: int,
                     episode_length: int, stop_action: int | None = None) -> bool:
    """Whether every step `policy` takes in this episode is in `index` (walked, nothing run).

    A stop ends the walk: it trains nothing, so it needs no row.
    """
    node: Node | None = None if index is None else index.get(task, episode_seed(reset_seed), ())
    policy.begin_episode(task, reset_seed)
    for _ in range(episode_length):
        if node is None or node.diverged:
            break
        action = policy.act(node.obs)
        if stop_action is not None and action == stop_action:
            break
        node = node.children.get(action)
    return node is not None


def pending_jobs(store: Store, config: EnvConfig,
                 jobs: list[tuple[Policy, str, int]]) -> list[tuple[Policy, str, int]]:
    """The jobs whose episodes are not yet fully in `store` (walked, nothing run)."""
    try:
        index: TableIndex | None = TableIndex.load(store, config)
    except LookupError:
        index = None
    stop = ActionGrid.of(config).stop_action
    return [(p, t, s) for p, t, s in jobs
            if not episode_recorded(index, p, t, s, config.episode_length, stop)]


def play_episode(env: gym.Env, policy: Policy, task: str, seed: int,
                 episode_length: int) -> Iterator[int]:
    """Run one episode on `env` (a `RecordingWrapper`), yielding progress after each env call.

    Yields the number of the episode's `episode_length` steps accounted for: 0 after the reset,
    t after step t, and `episode_length` once the episode ended (early on termination).

    Raises:
        RuntimeError: The reset did not draw the episode seed `episode_seed` predicts.
    """
    obs, info = env.reset(seed=seed, options={"task": task})
    if info["episode_seed"] != episode_seed(seed):
        raise RuntimeError(f"reset seed {seed} gave episode seed {info['episode_seed']}, "
                           f"not the expected {episode_seed(seed)}")
    policy.begin_episode(task, seed)
    yield 0
    for t in range(1, episode_length + 1):
        obs, _, terminated, truncated, _ = env.step(policy.act(obs))
        if terminated or truncated:
            yield episode_length
            return
        yield t


def progress_bar(pending: int, done: int, episode_length: int, progress: bool):
    """The one tqdm bar (in steps, with an ETA) over the `pending` episodes of a recording."""
    from tqdm import tqdm

    return tqdm(total=pending * episode_length, unit="step", disable=not progress,
                file=sys.stderr, desc=f"record {pending} episodes ({done} done)")


def record(config: EnvConfig, jobs: list[tuple[Policy, str, int]], store_path: str,
           progress: bool = True) -> dict[str, int]:
    """Run the episodes of `jobs` not yet fully in the store; returns episode and row counts."""
    with Store(store_path) as store:
        T = config.episode_length
        pending = pending_jobs(store, config, jobs)
        env = RecordingWrapper(gym.make("LoRATune-v0", config=config,
                                        disable_env_checker=True), store)
        before = store.count()
        bar = progress_bar(len(pending), len(jobs) - len(pending), T, progress)
        for policy, task, seed in pending:
            last = 0
            for steps in play_episode(env, policy, task, seed, T):
                bar.update(steps - last)
                last = steps
        bar.close()
        return record_counts(store, len(jobs), len(pending), before)


def record_counts(store: Store, jobs: int, run: int, rows_before: int) -> dict[str, int]:
    """What a recording did: episodes asked for, run and skipped; rows added and in all."""
    rows = store.count()
    return {"episodes": jobs, "run": run, "skipped": jobs - run, "new_rows": rows - rows_before,
            "rows": rows}
