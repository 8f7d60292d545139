"""Shared by the live `LoRATune-v0` and the replayed `LoRATuneReplay-v0`, so they cannot drift.

Action validation, the stop action's reward, and the ``ansi`` render line.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from lora_gym.core.config import EnvConfig
from lora_gym.core.metrics import Metrics
from lora_gym.core.rewards import evaluate_reward


def check_action(action: Any, space: gym.Space, started: bool) -> None:
    """Raise `ResetNeeded` before the first reset, `InvalidAction` outside `space`.

    A plain integer inside a ``Discrete`` space is accepted without `space.contains` (the replay
    env's hot path).
    """
    if not started:
        raise gym.error.ResetNeeded("call reset() before step()")
    if isinstance(action, int | np.integer) and isinstance(space, gym.spaces.Discrete) \
            and space.start <= action < space.start + space.n:
        return
    if not space.contains(action):
        raise gym.error.InvalidAction(f"action {action!r} is not in the action space {space}")


def stop_reward(reward_fn: Any, metrics: Metrics, config: EnvConfig
                ) -> tuple[float, dict[str, float]]:
    """The stop action's reward: the reward of a step that trained nothing and cost nothing."""
    reward, components = evaluate_reward(reward_fn, metrics, metrics, 0.0, config)
    return float(reward), dict(components)


def render_line(task: str, t: int, rank: Any, lr: Any, metrics: Metrics, cost: float) -> str:
    """One line describing an env's current state (``render_mode="ansi"``)."""
    return (f"task={task} t={t} rank={rank} lr={lr} acc={metrics.accuracy:.3f} "
            f"f1={metrics.f1:.3f} loss={metrics.val_loss:.3f} cost={cost:.2f}")
