"""The task-blind features extractor: what the policy sees, and a zip trained with it loads."""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from lora_gym_agents.features import ObservationSubset, resolve_policy_kwargs

from lora_gym.core.observation import OBS_HIGH, OBS_LOW, OBSERVATION_NAMES, TASK_FEATURE_NAMES


def test_the_dropped_entries_never_reach_the_policy():
    space = spaces.Box(OBS_LOW, OBS_HIGH, dtype=np.float32)
    extractor = ObservationSubset(space, drop=TASK_FEATURE_NAMES)
    obs = torch.arange(len(OBSERVATION_NAMES), dtype=torch.float32).repeat(3, 1)
    kept = extractor(obs)
    assert extractor.features_dim == len(OBSERVATION_NAMES) - len(TASK_FEATURE_NAMES)
    expected = [i for i, n in enumerate(OBSERVATION_NAMES) if n not in TASK_FEATURE_NAMES]
    assert kept.tolist() == [expected] * 3


def test_extra_entries_after_the_named_ones_are_kept():
    space = spaces.Box(-1, 1, shape=(len(OBSERVATION_NAMES) + 2,), dtype=np.float32)
    extractor = ObservationSubset(space, drop=["val_loss"])
    assert extractor.features_dim == len(OBSERVATION_NAMES) + 1


def test_unknown_names_and_strings_are_refused():
    space = spaces.Box(OBS_LOW, OBS_HIGH, dtype=np.float32)
    with pytest.raises(ValueError, match="unknown observation entries \\['accuracy'\\]"):
        ObservationSubset(space, drop=["accuracy"])
    with pytest.raises(ValueError, match="expected 'module:Name'"):
        resolve_policy_kwargs({"features_extractor_class": "ObservationSubset"})
    kwargs = resolve_policy_kwargs({"features_extractor_class":
                                    "lora_gym_agents.features:ObservationSubset", "net_arch": [8]})
    assert kwargs == {"features_extractor_class": ObservationSubset, "net_arch": [8]}
