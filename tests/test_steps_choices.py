"""``steps_choices``: the number of training steps as part of the action (seed 000)."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from lora_gym.core.actions import ActionGrid
from lora_gym.core.config import ConfigError, resolve_config
from lora_gym.replay.store import config_hash
from tests.conftest import TINY, replay_random_episodes

CHOICES = [3, 6]  # the tiny config trains 3 steps per action


def make(**kwargs):
    return gym.make("LoRATune-v0", config=TINY, steps_choices=CHOICES, **kwargs)


def test_the_grid_multiplies_by_the_choices():
    plain = gym.make("LoRATune-v0", config=TINY).unwrapped.grid
    grid = make().unwrapped.grid
    assert len(grid) == 2 * plain.n_pairs + 1 and grid.stop_action == 2 * plain.n_pairs
    seen = set()
    for a in range(grid.n_pairs):
        rank, lr = grid.decode(a)
        steps = grid.steps_of(a)
        assert grid.encode(rank, lr, steps) == a
        seen.add((rank, lr, steps))
    assert seen == {(r, lr, s) for r, lr in plain.pairs() for s in CHOICES}
    assert grid.steps_of(grid.encode(*plain.decode(0))) == 3  # encode defaults to K


def test_without_choices_every_action_trains_steps_per_action():
    grid = ActionGrid.of(resolve_config(TINY))
    assert grid.n_steps == 1 and {grid.steps_of(a) for a in range(grid.n_pairs)} == {3}
    with pytest.raises(ValueError, match="no steps choices"):
        grid.encode(1, 1.0e-3, steps=6)


@pytest.mark.parametrize(("value", "match"), [([6, 3], "strictly increasing"),
                                              ([4, 6], "must include `steps_per_action`"),
                                              ([0, 3], "positive")])
def test_bad_choices_name_the_field(value, match):
    with pytest.raises(ConfigError, match=match):
        resolve_config(TINY, steps_choices=value)


def test_check_env_and_seeded_determinism():
    gym_check_env(make().unwrapped, skip_render_check=True)
    sb3_check_env(make().unwrapped, warn=True)
    grid = make().unwrapped.grid
    actions = [grid.encode(2, 1.0e-2, 6), grid.encode(1, 1.0e-3, 3)]
    runs = []
    for _ in range(2):
        env = make()
        obs, _ = env.reset(seed=3)
        runs.append([obs, *(env.step(a)[0] for a in actions)])
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_more_steps_train_more_and_cost_more():
    env = make()
    grid = env.unwrapped.grid
    costs = {}
    for steps in CHOICES:
        env.reset(seed=0, options={"task": "synth-a"})
        *_, info = env.step(grid.encode(2, 1.0e-2, steps))
        costs[steps] = info["cost"]
    assert 1.5 * costs[3] < costs[6] < 2.5 * costs[3]  # tokens of twice as many batches


def test_the_variants_refuse_choices_and_tables_keep_their_keys():
    for env_id in ("LoRATunePerLayer-v0", "LoRATuneScope-v0"):
        with pytest.raises(ValueError, match="`steps_choices`"):
            gym.make(env_id, config=TINY, steps_choices=CHOICES)
    plain = resolve_config(TINY)
    assert config_hash(plain) == config_hash(plain.replace(steps_choices=()))
    assert config_hash(plain) != config_hash(plain.replace(steps_choices=(3, 6)))


def test_replay_serves_choices_from_a_recorded_store(tmp_path):
    config = resolve_config(TINY, steps_choices=CHOICES, task_split="train")
    env = replay_random_episodes(config, tmp_path / "steps.sqlite")
    assert env.unwrapped.source_counts["surrogate"] > 0  # the surrogate took the steps input


def test_patience_repeats_best_statics_steps_choice():
    from lora_gym.policies import POLICIES, PolicyContext

    config = resolve_config(TINY, steps_choices=CHOICES)
    grid = ActionGrid.of(config)
    action = grid.encode(grid.ranks[-1], grid.learning_rates[0], steps=CHOICES[1])
    ctx = PolicyContext.of(config, cache={"static_action": action})
    (patience,) = POLICIES["patience"](ctx)
    obs, _ = gym.make("LoRATune-v0", config=config).reset(seed=0)  # the episode's first step
    assert patience.act(obs) == action and grid.steps_of(action) == CHOICES[1]
    default = POLICIES["patience"](PolicyContext.of(config))[0]
    assert grid.steps_of(default.act(obs)) == config.steps_per_action
