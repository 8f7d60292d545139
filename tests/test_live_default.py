"""One real step of the embedded default (all-MiniLM-L6-v2) on a real task."""

import gymnasium as gym
import numpy as np
import pytest

import lora_gym  # noqa: F401


@pytest.mark.slow
def test_one_real_step_on_minilm():
    env = gym.make("LoRATune-v0", steps_per_action=4, episode_length=2)
    obs, info = env.reset(seed=0, options={"task": "bbc-news"})
    assert obs in env.observation_space
    net = env.unwrapped.session.net
    assert net.config.num_hidden_layers == 6 and net.config.hidden_size == 384
    obs, reward, terminated, truncated, info = env.step(env.unwrapped.grid.encode(16, 1.0e-3))
    assert obs in env.observation_space and not terminated
    assert np.isfinite(reward) and info["rank"] == 16
    assert 0.0 <= info["metrics"]["accuracy"] <= 1.0
