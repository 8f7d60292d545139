"""`LoRATuneScope-v0`: the agent also widens or narrows which LoRA modules train (the scope)."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from lora_gym.core.config import EnvConfig
from lora_gym.core.errors import ConfigError
from lora_gym.core.observation import ObservationSpec
from lora_gym.envs.lora_tune import LoRATuningEnv


class LoRAScopeEnv(LoRATuningEnv):
    """Tune a live LoRA fine-tune whose trainable modules the agent chooses at every step.

    ## Description
    The live fine-tune of `LoRATune-v0`, with a third choice per step: the **scope**, one of the
    ``scopes`` of the config, which names the transformer layers (``all`` or ``top-<k>``) and the
    modules (e.g. ``query+value``, or every target module) that train. PEFT cannot add modules to
    a live model, so every candidate module (``lora_layers`` x ``target_modules``) carries a LoRA
    layer from the start of the episode; those outside the scope are frozen
    (``requires_grad=False``). A module that never trained has B = 0 and no effect on the output;
    one that trained and left the scope keeps its learned ΔW, frozen. Changing the scope changes no
    weight, so the model's output is the same just before and just after (tested). The optimizer
    is rebuilt over the trainable tensors: newly trainable ones start with fresh AdamW moments, the
    others keep theirs. The rank applies to every candidate module (an untrained one just gets a
    wider zero update), so a module joins the scope at the current rank.

    Frozen-prefix cache: scopes lie within ``lora_layers`` (``all`` means every layer carrying
    LoRA, ``top-<k>`` needs k no larger than that of ``lora_layers``), so with ``lora_layers:
    top-<k>`` the layers below stay frozen and their cached activations stay valid. To let the
    scope reach every layer, use ``lora_layers: all`` (which runs every layer).

    ## Action Space
    `MultiDiscrete([len(scopes), len(ranks), len(learning_rates), 2])`: (scope index, rank index,
    learning-rate index, stop); stop = 1 ends the episode without training (absent with
    ``stop_action: false``). With the default config:

    | Num | Action        | Values                         |
    |-----|---------------|--------------------------------|
    | 0   | scope         | top-1, top-2, all              |
    | 1   | rank          | 2, 4, 8, 16                    |
    | 2   | learning rate | 1.0e-4, 3.0e-4, 1.0e-3, 3.0e-3 |
    | 3   | stop          | 0 (train), 1 (stop)            |

    ## Observation Space
    `Box(low, high, (18,), float32)`: entries 0-15 are those of `LoRATune-v0`, then:

    | Num | Observation        | Min  | Max  |
    |-----|--------------------|------|------|
    | 16  | trainable_rank     | 0    | 1    |
    | 17  | scope_position     | 0    | 1    |

    ``trainable_rank``: size-weighted mean rank over every candidate module, frozen ones counting
    0, divided by the grid's largest rank; ``scope_position``: the scope index scaled to [0, 1].

    ## Rewards
    As `LoRATune-v0`; the cost's rank factor uses the trainable rank, so a narrow scope is
    cheaper.

    ## Starting State
    As `LoRATune-v0`, with the first scope of ``scopes`` trainable.

    ## Episode End
    As `LoRATune-v0`: termination on stop or divergence, truncation after ``episode_length``
    segments.

    ## Arguments
    ```python
    >>> import gymnasium as gym, lora_gym
    >>> env = gym.make("LoRATuneScope-v0", config="tiny",
    ...                scopes=["top-1:value", "top-1", "all"])
    >>> env.action_space
    MultiDiscrete([3 3 2 2])

    ```
    The arguments of `LoRATune-v0`; ``scopes`` lists the scopes, narrowest first by convention.

    ## Registered Configurations
    * ``LoRATuneScope-v0``: the embedded default, scopes top-1 -> top-2 -> all layers.

    ## Version History
    * v0: Initial version: (scope, rank, lr) actions over pre-allocated, frozen candidate modules.
    """

    takes_grid_choices = False

    def __init__(self, config: Any = None, render_mode: str | None = None, **overrides: Any):
        super().__init__(config, render_mode, **overrides)
        self._parsed = [_within(self.config, scope) for scope in self.config.scope.scopes]
        self._scope = 0

    def uniform_action(self, rank: int, lr: float) -> np.ndarray:
        """The widest (last) scope at `rank`, learning rate `lr` (both on the grid)."""
        i, j = divmod(self.grid.encode(rank, lr), len(self.config.learning_rates))
        return np.array([len(self.config.scope.scopes) - 1, i, j] + [0] * len(self._stop_dims()))

    def _action_space(self) -> spaces.Space:
        cfg = self.config
        return spaces.MultiDiscrete([len(cfg.scope.scopes), len(cfg.ranks), len(cfg.learning_rates),
                                     *self._stop_dims()])

    def _extra_observation_spec(self) -> ObservationSpec:
        return (("trainable_rank", 0.0, 1.0), ("scope_position", 0.0, 1.0))

    def _set_scope(self, index: int) -> None:
        self._scope = index
        self.session.set_active(self.session.adapter.select(*self._parsed[index]))

    def _on_reset(self) -> None:
        self._set_scope(0)

    def _apply_action(self, action) -> tuple[int, float]:
        scope, rank, lr = (int(i) for i in action[:3])
        self._set_scope(scope)
        return self.config.ranks[rank], self.config.learning_rates[lr]

    def _observation_values(self) -> dict[str, float]:
        n = len(self.config.scope.scopes)
        return {**super()._observation_values(),
                "scope_position": self._scope / (n - 1) if n > 1 else 0.0}

    def _extra_info(self) -> dict[str, Any]:
        return {"scope": self.config.scope.scopes[self._scope],
                "trainable_rank": self.session.adapter.trainable_rank()}


def _within(config: EnvConfig, scope: str) -> tuple[int | None, tuple[str, ...]]:
    """The parsed scope, checked to lie within `lora_layers` (so the prefix cache stays valid)."""
    k, modules = config.parse_scope(scope)
    top = config.top_layers
    if top is not None and k is not None and k > top:
        raise ConfigError(f"`scopes` entry {scope!r} reaches beyond `lora_layers` "
                          f"({config.lora_layers!r}): candidate modules are pre-allocated only "
                          "there; use top-<k> with k <= that, or 'all' (every LoRA layer)")
    return k, modules
