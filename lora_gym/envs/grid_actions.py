"""`GridActions`: the (rank, lr) grid actions of `LoRATune-v0` on the `MultiDiscrete` variants.

The baselines (`lora_gym.policies`) choose among the ``Discrete`` grid of `LoRATune-v0`: a
(rank, lr) index, then *stop*. On `LoRATunePerLayer-v0` and `LoRATuneScope-v0` this wrapper plays
such an action as the variant's uniform action (every layer group at that rank; the widest scope:
see each env's ``uniform_action``), and stop as the variant's stop. Array actions (an agent
trained on the variant itself) pass through unchanged, so baselines and agents play the same
episodes of the same env.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class GridActions(gym.ActionWrapper):
    """Accept `LoRATune-v0` grid actions (ints) as well as the variant's own array actions."""

    def __init__(self, env: gym.Env) -> None:
        if not isinstance(env.action_space, spaces.MultiDiscrete):
            raise ValueError(f"GridActions wraps the MultiDiscrete variants; {env} has "
                             f"{env.action_space}")
        super().__init__(env)

    def action(self, action: Any) -> np.ndarray:
        """An int grid action -> the variant's action; an array is passed through."""
        if np.ndim(action):
            return np.asarray(action)
        inner = self.env.unwrapped
        grid = inner.grid
        if grid.is_stop(int(action)):
            stop = np.zeros(len(self.env.action_space.nvec), dtype=np.int64)
            stop[-1] = 1
            return stop
        return inner.uniform_action(*grid.decode(int(action)))


def grid_actions(env: gym.Env) -> gym.Env:
    """`env` itself if its actions are the grid's (``Discrete``), else `env` in `GridActions`."""
    return env if isinstance(env.action_space, spaces.Discrete) else GridActions(env)
