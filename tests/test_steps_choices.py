"""``steps_choices``: the number of training steps as part of the action (seed 000)."""

import gymnasium as gym
import pytest

from lora_gym.core.actions import ActionGrid
from lora_gym.core.config import ConfigError, resolve_config
from tests.conftest import TINY

CHOICES = [3, 6]  # the tiny config trains 3 steps per action


def make(**kwargs):
    return gym.make("LoRATune-v0", config=TINY, steps_choices=CHOICES, **kwargs)




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




def test_more_steps_train_more_and_cost_more():
    env = make()
    grid = env.unwrapped.grid
    costs = {}
    for steps in CHOICES:
        env.reset(seed=0, options={"task": "synth-a"})
        *_, info = env.step(grid.encode(2, 1.0e-2, steps))
        costs[steps] = info["cost"]
    assert 1.5 * costs[3] < costs[6] < 2.5 * costs[3]  # tokens of twice as many batches






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
