"""A features extractor that feeds the policy a subset of `LoRATune-v0`'s observation entries.

    train_agent.py --env LoRATuneReplay-v0 -params \
        policy_kwargs:"{'features_extractor_class': 'lora_gym_agents.features:ObservationSubset',
                        'features_extractor_kwargs': {'drop': ['log10_train_size']}}"

Used to train a *task-blind* agent (``drop`` = the task-feature entries,
`lora_gym.core.observation.TASK_FEATURE_NAMES`): it sees only the fine-tune's own curve (metrics,
cost, rank, lr, progress), so its first action is the same on every task and it cannot key on
features that a held-out corpus puts outside the training range. The observation space, the env
and the saved VecNormalize statistics stay those of the env: the zip loads and acts as any other.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from lora_gym.core.observation import OBSERVATION_NAMES, TASK_FEATURE_NAMES

TASK_BLIND: dict = {"features_extractor_class": "lora_gym_agents.features:ObservationSubset",
                    "features_extractor_kwargs": {"drop": list(TASK_FEATURE_NAMES)}}
"""``policy_kwargs`` entries of a task-blind policy (as ppo.yml or ``-params`` would write them)."""


class ObservationSubset(BaseFeaturesExtractor):
    """The observation without the entries named in `drop` (names of `OBSERVATION_NAMES`)."""

    def __init__(self, observation_space: gym.spaces.Box, drop: Sequence[str] = ()) -> None:
        unknown = sorted(set(drop) - set(OBSERVATION_NAMES))
        if unknown:
            raise ValueError(f"ObservationSubset: unknown observation entries {unknown}; "
                             f"known: {list(OBSERVATION_NAMES)}")
        size = observation_space.shape[0]
        if len(observation_space.shape) != 1 or size < len(OBSERVATION_NAMES):
            raise ValueError(f"ObservationSubset needs LoRATune-v0's flat observation (at least "
                             f"{len(OBSERVATION_NAMES)} entries), got shape "
                             f"{observation_space.shape}")
        keep = [i for i in range(size)
                if i >= len(OBSERVATION_NAMES) or OBSERVATION_NAMES[i] not in set(drop)]
        super().__init__(observation_space, features_dim=len(keep))
        self.register_buffer("keep", torch.tensor(keep, dtype=torch.long), persistent=False)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """The kept entries, in the observation's order."""
        return observations.index_select(-1, self.keep)


def resolve_policy_kwargs(policy_kwargs: dict) -> dict:
    """`policy_kwargs` with ``*_class`` values given as ``"module:Name"`` strings imported."""
    out = dict(policy_kwargs)
    for key, value in policy_kwargs.items():
        if key.endswith("_class") and isinstance(value, str):
            module, _, name = value.partition(":")
            if not name:
                raise ValueError(f"policy_kwargs.{key}: expected 'module:Name', got {value!r}")
            out[key] = getattr(importlib.import_module(module), name)
    return out
