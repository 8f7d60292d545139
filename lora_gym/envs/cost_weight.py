"""`FixedCostWeight`: play every episode of an env at one λ (the accuracy-cost trade-off).

With a ``cost_weight`` range the env draws λ at each reset; comparisons and recommendations fix
it instead, so that every method plays the same trade-off: this wrapper passes
``options={"cost_weight": λ}`` to every reset (an explicit option of the caller wins).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from lora_gym.core.preferences import check_cost_weight


class FixedCostWeight(gym.Wrapper):
    """Reset every episode at ``cost_weight`` λ (> 0)."""

    def __init__(self, env: gym.Env, cost_weight: float) -> None:
        super().__init__(env)
        self.cost_weight = check_cost_weight(cost_weight)

    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None):
        """Reset with this wrapper's λ unless `options` gives one."""
        return self.env.reset(seed=seed, options={"cost_weight": self.cost_weight,
                                                  **dict(options or {})})
