"""One evaluation for every policy: same tasks, same seeds, same fine-tune budget per episode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from lora_gym.rollout import EpisodeResult, run_episode

__all__ = ["EpisodeResult", "evaluate", "fixed_action_returns", "run_episode"]


def evaluate(env, policies: dict[str, Any], tasks: list[str], seeds: list[int],
             progress: bool = True, export_dir: str | Path | None = None
             ) -> list[EpisodeResult]:
    """Run every policy on every (task, seed) pair.

    The same seeds give every policy the same episode seed, head initialisation and batch order.
    With `export_dir` (live env only), the adapter of each method's best episode on each task
    (highest return) is written as a PEFT adapter to ``<export_dir>/<method>/<task>/``.
    """
    if export_dir is not None and not hasattr(env.unwrapped, "save_adapter"):
        raise ValueError(f"{env.spec.id if env.spec else env} has no live adapter to export; "
                         "export adapters from LoRATune-v0")
    jobs = [(m, t, s) for m in policies for t in tasks for s in seeds]
    results, best = [], {}
    for method, task, seed in tqdm(jobs, desc="evaluate", disable=not progress):
        result = run_episode(env, policies[method], task, seed, method)
        results.append(result)
        if export_dir is not None and result.episode_return > best.get((method, task), -np.inf):
            best[method, task] = result.episode_return
            env.unwrapped.save_adapter(Path(export_dir) / method / task)
    return results


def fixed_action_returns(env, tasks: list[str], seeds: list[int], progress: bool = True
                         ) -> dict[str, np.ndarray]:
    """Grid search: mean return of every fixed action on every task, shape (n_actions,)."""
    from agents.baselines import FixedPolicy

    n = int(env.action_space.n)
    out = {}
    jobs = [(t, a) for t in tasks for a in range(n)]
    for task, action in tqdm(jobs, desc="grid search", disable=not progress):
        returns = [run_episode(env, FixedPolicy(action), task, s).episode_return for s in seeds]
        out.setdefault(task, np.zeros(n))[action] = float(np.mean(returns))
    return out
