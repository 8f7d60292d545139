"""`LoRATunePerLayer-v0`: the agent picks a LoRA rank per layer group (and the lr) at every step."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from lora_gym.core.observation import ObservationSpec
from lora_gym.envs.lora_tune import LoRATuningEnv


class LoRAPerLayerEnv(LoRATuningEnv):
    """Tune a live LoRA fine-tune with a rank budget spread over layer groups.

    ## Description
    The live fine-tune of `LoRATune-v0` (same engine, tasks, episodes and rewards), but the rank
    is chosen per **layer group**: the transformer layers carrying LoRA (``lora_layers``) are
    split, bottom up, into ``layer_groups`` contiguous groups of near-equal size, and every step
    sets one rank per group. Each group's LoRA layers are resized with the same weight-preserving
    resize as `LoRATune-v0` (grow: new zero directions; shrink: truncated SVD of ΔW), so the
    agent can move rank budget to the layers that need it without losing what was learned.

    ## Action Space
    `MultiDiscrete([len(ranks)] * layer_groups + [len(learning_rates), 2])`: entry
    g < layer_groups is the rank index of group g (group 0 holds the lowest layers), then the
    learning rate index, then *stop* (1 ends the episode without training, whatever the other
    entries say; absent with ``stop_action: false``). With the default config (2 groups):

    | Num | Action            | Values             |
    |-----|-------------------|--------------------|
    | 0   | rank of group 0   | 2, 4, 8, 16        |
    | 1   | rank of group 1   | 2, 4, 8, 16        |
    | 2   | learning rate     | 1.0e-4, 3.0e-4, 1.0e-3, 3.0e-3 |
    | 3   | stop              | 0 (train), 1 (stop) |

    ## Observation Space
    `Box(low, high, (16 + 1 + layer_groups,), float32)`: entries 0-15 are those of `LoRATune-v0`
    (``rank_position`` is the mean of the groups' rank positions), then:

    | Num | Observation        | Min  | Max  |
    |-----|--------------------|------|------|
    | 16  | trainable_rank     | 0    | 1    |
    | 17  | group_rank_0       | 0    | 1    |
    | 18  | group_rank_1       | 0    | 1    |

    ``trainable_rank`` is the budget in use: the size-weighted mean rank over all LoRA layers
    (``Σ r_i (in_i + out_i) / Σ (in_i + out_i)``, proportional to the trainable LoRA parameters)
    divided by the largest rank of the grid; ``group_rank_<g>`` is group g's rank index scaled to
    [0, 1].

    ## Rewards
    As `LoRATune-v0`; the segment cost's rank factor uses the trainable rank above, so a budget
    concentrated in a few layers costs less than the same rank everywhere, and a uniform
    allocation costs exactly what `LoRATune-v0` charges for that rank.

    ## Starting State
    As `LoRATune-v0`: every group at the smallest rank.

    ## Episode End
    As `LoRATune-v0`: termination on stop or divergence, truncation after ``episode_length``
    segments.

    ## Arguments
    ```python
    >>> import gymnasium as gym, lora_gym
    >>> env = gym.make("LoRATunePerLayer-v0", config="tiny", layer_groups=2)
    >>> env.action_space
    MultiDiscrete([3 3 2 2])

    ```
    The arguments of `LoRATune-v0`; ``layer_groups`` (default 2) sets the number of groups, at
    most the number of layers carrying LoRA (checked at the first reset).

    ## Registered Configurations
    * ``LoRATunePerLayer-v0``: the embedded default, 2 groups over the layers carrying LoRA.

    ## Version History
    * v0: Initial version: a rank per layer group plus lr, weight-preserving per-layer resize.
    """

    takes_grid_choices = False

    @property
    def n_groups(self) -> int:
        """Number of layer groups with their own rank."""
        return self.config.per_layer.layer_groups

    def uniform_action(self, rank: int, lr: float) -> np.ndarray:
        """Every group at `rank`, learning rate `lr` (both on the grid)."""
        i, j = divmod(self.grid.encode(rank, lr), len(self.config.learning_rates))
        return np.array([i] * self.n_groups + [j] + [0] * len(self._stop_dims()))

    def _action_space(self) -> spaces.Space:
        n_ranks, n_lrs = len(self.config.ranks), len(self.config.learning_rates)
        return spaces.MultiDiscrete([n_ranks] * self.n_groups + [n_lrs] + self._stop_dims())

    def _extra_observation_spec(self) -> ObservationSpec:
        groups = tuple((f"group_rank_{g}", 0.0, 1.0) for g in range(self.n_groups))
        return (("trainable_rank", 0.0, 1.0), *groups)

    def _on_reset(self) -> None:
        self.session.adapter.groups(self.n_groups)  # fails early if there are too few layers
        self._rank = (self.config.ranks[0],) * self.n_groups

    def _apply_action(self, action) -> tuple[tuple[int, ...], float]:
        *ranks, lr = (int(i) for i in action[:self.n_groups + 1])
        return tuple(self.config.ranks[i] for i in ranks), self.config.learning_rates[lr]

    def _group_positions(self) -> list[float]:
        return [self.grid.rank_position(r) for r in self._rank]

    def _rank_position(self) -> float:
        return float(np.mean(self._group_positions()))

    def _observation_values(self) -> dict[str, float]:
        values = super()._observation_values()
        values.update({f"group_rank_{g}": p for g, p in enumerate(self._group_positions())})
        return values

    def _extra_info(self) -> dict[str, Any]:
        return {"trainable_rank": self.session.adapter.trainable_rank()}
