"""``augmentation_choices``: the data augmentation as part of the action (seed 000)."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from lora_gym.core.actions import ActionGrid
from lora_gym.core.config import ConfigError, resolve_config
from lora_gym.replay.store import config_hash
from tests.conftest import TINY, replay_random_episodes

KINDS = ["none", "hidden_noise", "mixup"]


def make(**kwargs):
    return gym.make("LoRATune-v0", config=TINY, augmentation_choices=KINDS, **kwargs)


def test_the_grid_multiplies_by_the_choices_and_round_trips():
    plain = gym.make("LoRATune-v0", config=TINY).unwrapped.grid
    grid = make().unwrapped.grid
    assert len(grid) == 3 * plain.n_pairs + 1 and grid.stop_action == 3 * plain.n_pairs
    seen = set()
    for a in range(grid.n_pairs):
        rank, lr = grid.decode(a)
        kind = grid.augmentation_of(a)
        assert grid.encode(rank, lr, augmentation=kind) == a
        seen.add((rank, lr, kind))
    assert seen == {(r, lr, k) for r, lr in plain.pairs() for k in KINDS}
    assert grid.augmentation_of(grid.encode(*plain.decode(0))) == "none"  # the config's


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


def test_check_env_and_seeded_determinism():
    gym_check_env(make().unwrapped, skip_render_check=True)
    sb3_check_env(make().unwrapped, warn=True)
    grid = make().unwrapped.grid
    actions = [grid.encode(2, 1.0e-2, augmentation="mixup"),
               grid.encode(1, 1.0e-3, augmentation="hidden_noise")]
    runs = []
    for _ in range(2):
        env = make()
        obs, _ = env.reset(seed=3)
        runs.append([obs, *(env.step(a)[0] for a in actions)])
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


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


def test_the_variants_refuse_choices_and_tables_keep_their_keys():
    for env_id in ("LoRATunePerLayer-v0", "LoRATuneScope-v0"):
        with pytest.raises(ValueError, match="`augmentation_choices`"):
            gym.make(env_id, config=TINY, augmentation_choices=KINDS)
    plain = resolve_config(TINY)
    assert config_hash(plain) == config_hash(plain.replace(augmentation_choices=()))
    assert config_hash(plain) != config_hash(plain.replace(augmentation_choices=tuple(KINDS)))


def test_replay_serves_choices_from_a_recorded_store(tmp_path):
    config = resolve_config(TINY, augmentation_choices=KINDS, task_split="train")
    env = replay_random_episodes(config, tmp_path / "aug.sqlite")
    assert env.unwrapped.source_counts["surrogate"] > 0  # the surrogate took the one-hot input


def test_default_offers_noise_and_the_variants_drop_it():
    from lora_gym.core.config import EnvConfig

    assert EnvConfig().augmentation_choices == ("none", "hidden_noise")
    env = gym.make("LoRATune-v0").unwrapped  # no heavy work before reset
    assert env.action_space.n == 2 * len(env.config.ranks) * len(env.config.learning_rates) + 1
    for env_id in ("LoRATunePerLayer-v0", "LoRATuneScope-v0"):
        variant = gym.make(env_id).unwrapped
        assert variant.config.augmentation_choices == () and variant.grid.augmentations == ()
