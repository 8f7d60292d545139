"""One evaluation for every policy: same tasks, same seeds, same fine-tune budget per episode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from lora_gym.policies.runner import EpisodeResult, run_episode

__all__ = ["evaluate", "fixed_action_returns", "split_tasks",
           "static_returns"]


def evaluate(env, policies: dict[str, Any], tasks: list[str], seeds: list[int],
             progress: bool = True, export_dir: str | Path | None = None
             ) -> list[EpisodeResult]:
    """Run every policy on every (task, seed) pair.

    The same seeds give every policy the same episode seed, head initialisation and batch order.
    With `export_dir` (live env only), the adapter of each method's best episode on each task
    (highest return) is written as a PEFT adapter to ``<export_dir>/<method>/<task>/``; a
    diverged episode's adapter (non-finite weights) is never exported.
    """
    if export_dir is not None and not hasattr(env.unwrapped, "save_adapter"):
        raise ValueError(f"{env.spec.id if env.spec else env} has no live adapter to export; "
                         "export adapters from LoRATune-v0")
    jobs = [(m, t, s) for m in policies for t in tasks for s in seeds]
    results, best = [], {}
    for method, task, seed in tqdm(jobs, desc="evaluate", disable=not progress):
        result = run_episode(env, policies[method], task, seed, method)
        results.append(result)
        if (export_dir is not None and not result.diverged
                and result.episode_return > best.get((method, task), -np.inf)):
            best[method, task] = result.episode_return
            env.unwrapped.save_adapter(Path(export_dir) / method / task)
    return results


def fixed_action_returns(env, tasks: list[str], seeds: list[int], progress: bool = True
                         ) -> dict[str, np.ndarray]:
    """Grid search over static configurations: mean return of every (rank, lr, segments).

    Returns per task an array of shape ``(n_pairs, episode_length)``: entry ``[a, k - 1]`` is the
    mean return over `seeds` of training pair `a` for k segments and then stopping, read off one
    full-length episode per (task, action, seed) as the sum of its first k rewards (stop itself
    earns the reward of no change at zero cost: 0 for the built-in rewards). Without a stop
    action only the last column is a reachable configuration; see `static_returns`.
    """
    from lora_gym.policies.base import FixedPolicy

    grid, T = env.unwrapped.grid, env.unwrapped.config.episode_length
    out = {}
    jobs = [(t, a) for t in tasks for a in range(grid.n_pairs)]
    for task, action in tqdm(jobs, desc="grid search", disable=not progress):
        sums = np.zeros(T)
        for s in seeds:
            rewards = [step["reward"] for step in
                       run_episode(env, FixedPolicy(action), task, s).trajectory]
            cum = np.cumsum(rewards)
            sums += np.concatenate([cum, np.full(T - len(cum), cum[-1])])  # diverged: ends early
        out.setdefault(task, np.zeros((grid.n_pairs, T)))[action] = sums / len(seeds)
    return out


def static_returns(grid_returns: np.ndarray, stop: bool) -> np.ndarray:
    """The reachable static configurations of a task's `fixed_action_returns` array, flat.

    With a stop action every (pair, segments) is reachable; without, only full episodes.
    """
    return grid_returns.ravel() if stop else grid_returns[:, -1]


def split_tasks(env, split: str) -> list[str]:
    """The tasks of `split` that `env` can play: all of them live, the recorded ones on replay.

    A replay env can only start episodes whose reset it holds; the others are left out.
    """
    names = [t.name for t in env.unwrapped.task_set.tasks(split)]
    index = getattr(env.unwrapped, "index", None)
    if index is None or getattr(env.unwrapped, "miss", None) == "live":
        return names
    return [name for name in names if index.seeds(name)]
