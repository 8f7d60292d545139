"""One evaluation for every policy: same tasks, same seeds, same fine-tune budget per episode."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm


@dataclass
class EpisodeResult:
    """What one episode of one policy on one task and seed gave."""

    method: str
    task: str
    seed: int
    episode_return: float
    final_accuracy: float | None
    """None when the fine-tune diverged."""
    initial_accuracy: float
    total_cost: float
    steps: int
    diverged: bool
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    """Per step: rank, lr, accuracy, cost_so_far, reward."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready)."""
        return asdict(self)


def run_episode(env, policy, task: str, seed: int, method: str | None = None) -> EpisodeResult:
    """Run one full episode of `policy` on `task` with reset seed `seed`."""
    obs, info = env.reset(seed=seed, options={"task": task})
    if hasattr(policy, "begin_episode"):
        policy.begin_episode(task)
    initial = info["metrics"]["accuracy"]
    done, ret, trajectory, diverged = False, 0.0, [], False
    while not done:
        action, _ = policy.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, info = env.step(int(action))
        ret += float(reward)
        diverged = bool(info.get("diverged", False))
        trajectory.append({"rank": info["rank"], "lr": info["lr"],
                           "accuracy": info["metrics"]["accuracy"],
                           "cost_so_far": info["cost_so_far"], "reward": float(reward)})
        done = terminated or truncated
    return EpisodeResult(method or getattr(policy, "name", type(policy).__name__), task, seed, ret,
                         info["metrics"]["accuracy"], initial, info["cost_so_far"],
                         len(trajectory), diverged, trajectory)


def evaluate(env, policies: dict[str, Any], tasks: list[str], seeds: list[int],
             progress: bool = True) -> list[EpisodeResult]:
    """Run every policy on every (task, seed) pair.

    The same seeds give every policy the same episode seed, head initialisation and batch order.
    """
    jobs = [(m, t, s) for m in policies for t in tasks for s in seeds]
    results = []
    for method, task, seed in tqdm(jobs, desc="evaluate", disable=not progress):
        results.append(run_episode(env, policies[method], task, seed, method))
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
