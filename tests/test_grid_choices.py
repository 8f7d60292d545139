"""What ``steps_choices`` and ``augmentation_choices`` share: choices multiply the Discrete grid.

Both turn a config option into part of the action (seed 000); each has its own file for what is
its own (`tests/test_steps_choices.py`, `tests/test_augmentation_choices.py`).
"""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from lora_gym.core.config import resolve_config
from lora_gym.replay.store import config_hash
from tests.conftest import TINY, replay_random_episodes

CASES = {  # field -> (choices, the grid's reader of an action's choice, encode keyword)
    "steps_choices": ([3, 6], "steps_of", "steps"),  # the tiny config trains 3 steps per action
    "augmentation_choices": (["none", "hidden_noise", "mixup"], "augmentation_of",
                             "augmentation"),
}


def make(field, **kwargs):
    return gym.make("LoRATune-v0", config=TINY, **{field: CASES[field][0]}, **kwargs)


@pytest.mark.parametrize("field", CASES)
def test_the_grid_multiplies_by_the_choices_and_round_trips(field):
    choices, read, keyword = CASES[field]
    plain = gym.make("LoRATune-v0", config=TINY).unwrapped.grid
    grid = make(field).unwrapped.grid
    n = len(choices)
    assert len(grid) == n * plain.n_pairs + 1 and grid.stop_action == n * plain.n_pairs
    seen = set()
    for a in range(grid.n_pairs):
        rank, lr = grid.decode(a)
        choice = getattr(grid, read)(a)
        assert grid.encode(rank, lr, **{keyword: choice}) == a
        seen.add((rank, lr, choice))
    assert seen == {(r, lr, c) for r, lr in plain.pairs() for c in choices}
    assert getattr(grid, read)(grid.encode(*plain.decode(0))) == choices[0]  # the config's


@pytest.mark.parametrize("field", CASES)
def test_check_env_and_seeded_determinism(field):
    choices, _, keyword = CASES[field]
    gym_check_env(make(field).unwrapped, skip_render_check=True)
    sb3_check_env(make(field).unwrapped, warn=True)
    grid = make(field).unwrapped.grid
    actions = [grid.encode(2, 1.0e-2, **{keyword: choices[-1]}),
               grid.encode(1, 1.0e-3, **{keyword: choices[0]})]
    runs = []
    for _ in range(2):
        env = make(field)
        obs, _ = env.reset(seed=3)
        runs.append([obs, *(env.step(a)[0] for a in actions)])
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("field", CASES)
def test_the_variants_refuse_choices_and_tables_keep_their_keys(field):
    choices = CASES[field][0]
    for env_id in ("LoRATunePerLayer-v0", "LoRATuneScope-v0"):
        with pytest.raises(ValueError, match=f"`{field}`"):
            gym.make(env_id, config=TINY, **{field: choices})
    plain = resolve_config(TINY)
    assert config_hash(plain) == config_hash(plain.replace(**{field: ()}))
    assert config_hash(plain) != config_hash(plain.replace(**{field: tuple(choices)}))


@pytest.mark.parametrize("field", CASES)
def test_replay_serves_choices_from_a_recorded_store(field, tmp_path):
    config = resolve_config(TINY, **{field: CASES[field][0]}, task_split="train")
    env = replay_random_episodes(config, tmp_path / "choices.sqlite")
    assert env.unwrapped.source_counts["surrogate"] > 0  # the surrogate took the choice input
