"""`LoRATuneLMReplay-v0`: `LoRATuneLM-v0` served from recorded live steps, at table speed."""

from __future__ import annotations

import os
from typing import Any

from lora_gym.core.lm_config import LMConfig, resolve_lm_config
from lora_gym.core.observation import LM_OBSERVATION_SPEC, ObservationSpec
from lora_gym.envs.replay import LoRATuneReplayEnv

LM_MISS_POLICIES: tuple[str, ...] = ("raise", "live")


class LoRATuneLMReplayEnv(LoRATuneReplayEnv):
    """`LoRATuneLM-v0` replayed from a store of its recorded live steps.

    ## Description
    The causal-LM twin of `LoRATuneReplay-v0`: rows recorded from the live `LoRATuneLM-v0`
    (``lora-gym record --env LoRATuneLM-v0 ...``) are keyed by (task, model, config hash, episode
    seed, action prefix), where the hash is over `LMConfig`'s outcome fields and starts with
    ``env_id: LoRATuneLM-v0`` (`lora_gym.replay.store.outcome_config`), so they never mix with a
    classification table's even in one file. Each step looks up the episode's action prefix plus
    the new action in an in-memory index.

    ## Action Space
    Identical to `LoRATuneLM-v0`: `Discrete(len(ranks) * len(learning_rates) + 1)`, the last
    action *stop* (absent with ``stop_action: false``).

    ## Observation Space
    Identical to `LoRATuneLM-v0` (13 floats; see `LoRATuneLMEnv`); table steps return the
    recorded observation bit for bit.

    ## Rewards
    Recomputed at every step from the recorded metrics (token accuracy, exact match, validation
    and training loss; perplexity is derived from the validation loss) and the recorded cost with
    this env's ``reward_fn``, so ``delta_acc_minus_cost``, ``delta_neg_loss_minus_cost`` or any
    other reward function and ``cost_weight`` work on one table. A recorded divergence earns
    ``-divergence_penalty``.

    ## Misses
    ``miss="live"`` (default): a live `LoRATuneLM-v0` with the same config replays the prefix for
    the episode seed, runs the step and records it into ``store`` -- the env is the live env with
    a cache. ``miss="raise"``: `TableMiss` naming the key. There is no surrogate for causal-LM
    rows (the classification surrogate reads task features this env does not have).

    ## Starting State
    As `LoRATuneReplay-v0`: a recorded task of ``task_split`` and one of its recorded episode
    seeds (or ``options={"task": ..., "episode_seed": ...}``); ``episode_seeds="live"`` draws them
    exactly as `LoRATuneLM-v0` does.

    ## Episode End
    Terminated on *stop* or a recorded divergence; truncated after ``episode_length`` segments.

    ## Arguments
    ``gym.make("LoRATuneLMReplay-v0", store=PATH, config=None | "lm" | path | dict | LMConfig,
    miss="live", episode_seeds="recorded", **overrides)``; ``store`` is required: no causal-LM
    table is shipped, because no causal LM is embedded (``tiny-llama`` is random).
    """

    env_id = "LoRATuneLMReplay-v0"
    task_type = "causal_lm"
    miss_policies = LM_MISS_POLICIES

    def __init__(self, config: Any = None, render_mode: str | None = None,
                 store: str | os.PathLike | None = None, miss: str = "live",
                 episode_seeds: str = "recorded", **overrides: Any) -> None:
        if store is None:
            raise ValueError("LoRATuneLMReplay-v0 needs `store`: no causal-LM table is shipped; "
                             "record one with `lora-gym record --env LoRATuneLM-v0 --store PATH "
                             "--policy random --seeds N` and pass store=PATH")
        super().__init__(config, render_mode, store=store, miss=miss,
                         episode_seeds=episode_seeds, **overrides)

    @staticmethod
    def _resolve_config(config: Any, overrides: dict[str, Any]) -> LMConfig:
        return resolve_lm_config(config, **overrides)

    def _observation_spec(self) -> ObservationSpec:
        return LM_OBSERVATION_SPEC
