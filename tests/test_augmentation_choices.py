"""``augmentation_choices``: the data augmentation as part of the action (seed 000)."""

import gymnasium as gym
import numpy as np
import pytest

from lora_gym.core.actions import ActionGrid
from lora_gym.core.config import ConfigError, resolve_config
from tests.conftest import TINY

KINDS = ["none", "hidden_noise", "mixup"]


def make(**kwargs):
    return gym.make("LoRATune-v0", config=TINY, augmentation_choices=KINDS, **kwargs)




def test_with_steps_choices_too_every_combination_once():
    grid = ActionGrid((1, 2), (1e-3, 1e-2), True, (3, 6), 3, ("none", "mixup"), "none")
    combos = {(*grid.decode(a), grid.steps_of(a), grid.augmentation_of(a))
              for a in range(grid.n_pairs)}
    assert len(combos) == grid.n_pairs == 16


@pytest.mark.parametrize(("value", "match"), [(["none", "blur"], "must be one of"),
                                              (["hidden_noise", "mixup"], "must include"),
                                              (["none", "none"], "must not repeat")])
def test_bad_choices_name_the_field(value, match):
    with pytest.raises(ConfigError, match=f"augmentation_choices.*{match}|{match}"):
        resolve_config(TINY, augmentation_choices=value)




def test_each_choice_trains_as_the_config_option_does():
    """Action (r, lr, kind) gives the outcome of a config with ``augmentation: kind``."""
    for kind in KINDS:
        env = make()
        env.reset(seed=0, options={"task": "synth-a"})
        obs, *_ = env.step(env.unwrapped.grid.encode(2, 1.0e-2, augmentation=kind))
        fixed = gym.make("LoRATune-v0", config=TINY, augmentation=kind)
        fixed.reset(seed=0, options={"task": "synth-a"})
        expected, *_ = fixed.step(fixed.unwrapped.grid.encode(2, 1.0e-2))
        np.testing.assert_allclose(obs, expected, rtol=1e-5, atol=1e-6)
    losses = set()
    for kind in KINDS:
        env = make()
        env.reset(seed=0, options={"task": "synth-a"})
        *_, info = env.step(env.unwrapped.grid.encode(2, 1.0e-2, augmentation=kind))
        losses.add(round(info["metrics"]["train_loss"], 6))
    assert len(losses) == 3  # the three choices train differently






def test_default_offers_noise_and_the_variants_drop_it():
    from lora_gym.core.config import EnvConfig

    assert EnvConfig().augmentation_choices == ("none", "hidden_noise")
    env = gym.make("LoRATune-v0").unwrapped  # no heavy work before reset
    assert env.action_space.n == 2 * len(env.config.ranks) * len(env.config.learning_rates) + 1
    for env_id in ("LoRATunePerLayer-v0", "LoRATuneScope-v0"):
        variant = gym.make(env_id).unwrapped
        assert variant.config.augmentation_choices == () and variant.grid.augmentations == ()
