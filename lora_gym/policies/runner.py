"""One episode of a policy on an env (live or replay), with what a comparison needs of it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


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
    """Fine-tune segments trained (a stop is not a segment)."""
    diverged: bool
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    """Per step: rank, lr, accuracy, cost_so_far, reward, source (``live``, or the replay
    env's ``table``/``live``/``surrogate``)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready)."""
        return asdict(self)


def run_episode(env, policy, task: str, seed: int, method: str | None = None,
                episode_seed: int | None = None) -> EpisodeResult:
    """Run one full episode of `policy` on `task` with reset seed `seed`.

    ``episode_seed`` is passed to a replay env's reset (``options["episode_seed"]``) to pick the
    recorded episode that reset seed `seed` gives on the live env.
    """
    options = {"task": task} if episode_seed is None else {"task": task,
                                                            "episode_seed": episode_seed}
    obs, info = env.reset(seed=seed, options=options)
    if hasattr(policy, "begin_episode"):
        policy.begin_episode(task, seed)
    initial = info["metrics"]["accuracy"]
    done, ret, trajectory, diverged = False, 0.0, [], False
    while not done:
        action, _ = policy.predict(obs, deterministic=True)
        action = np.asarray(action) if np.ndim(action) else int(action)
        obs, reward, terminated, truncated, info = env.step(action)
        ret += float(reward)
        diverged = bool(info.get("diverged", False))
        trajectory.append({"rank": info["rank"], "lr": info["lr"],
                           "accuracy": info["metrics"]["accuracy"],
                           "cost_so_far": info["cost_so_far"], "reward": float(reward),
                           "stopped": bool(info.get("stopped", False)),
                           "source": info.get("source", "live")})
        done = terminated or truncated
    segments = sum(not step["stopped"] for step in trajectory)
    return EpisodeResult(method or getattr(policy, "name", type(policy).__name__), task, seed, ret,
                         info["metrics"]["accuracy"], initial, info["cost_so_far"],
                         segments, diverged, trajectory)
