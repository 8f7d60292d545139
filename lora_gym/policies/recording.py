"""Record live `LoRATune-v0` (or `LoRATuneLM-v0`) episodes of policies into a store.

`record` runs (policy, task, reset seed) episodes on the live env through a `RecordingWrapper`
and records every step; episodes whose every step is already stored are skipped without
running, so an interrupted run is resumed by running the same call (or ``lora-gym record``
command) again. `lora_gym.policies.distributed` runs the same loop on Ray workers.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import gymnasium as gym

from lora_gym.core.actions import ActionGrid
from lora_gym.core.config import EnvConfig
from lora_gym.core.lm_config import LMConfig
from lora_gym.policies.base import Policy
from lora_gym.replay.index import Node, TableIndex
from lora_gym.replay.recording import RecordingWrapper, episode_seed
from lora_gym.replay.store import Store, live_env_id


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


def pending_jobs(store: Store, config: EnvConfig | LMConfig,
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


def record(config: EnvConfig | LMConfig, jobs: list[tuple[Policy, str, int]], store_path: str,
           progress: bool = True) -> dict[str, int]:
    """Run the episodes of `jobs` not yet fully in the store; returns episode and row counts.

    The live env is the config's (`lora_gym.replay.store.live_env_id`): ``LoRATune-v0`` for an
    `EnvConfig`, ``LoRATuneLM-v0`` for an `LMConfig`.
    """
    with Store(store_path) as store:
        T = config.episode_length
        pending = pending_jobs(store, config, jobs)
        env = RecordingWrapper(gym.make(live_env_id(config), config=config,
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
