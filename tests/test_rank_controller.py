"""Seed 002's heuristic rank controller: grow on stagnation, shrink on overfitting, registered."""

import gymnasium as gym
import numpy as np
import pytest

import lora_gym  # noqa: F401
from lora_gym.core.actions import ActionGrid
from lora_gym.core.config import EnvConfig
from lora_gym.core.observation import OBSERVATION_NAMES
from lora_gym.policies import PolicyContext, RankControllerPolicy, make_policies
from lora_gym.policies.runner import run_episode
from tests.conftest import TINY as TINY_PATH

GRID = ActionGrid((2, 4, 8), (1.0e-3, 1.0e-2), stop=True)
T = 8


def observe(t: int, delta: float, val_loss: float, train_loss: float) -> np.ndarray:
    obs = np.zeros(len(OBSERVATION_NAMES), dtype=np.float32)
    for name, value in (("steps_left", 1 - t / T), ("delta_accuracy", delta),
                        ("val_loss", val_loss), ("train_loss", train_loss)):
        obs[OBSERVATION_NAMES.index(name)] = value
    return obs


def ranks(policy, steps) -> list:
    out = []
    for t, step in enumerate(steps):
        action = policy.act(observe(t, *step))
        out.append("stop" if action == GRID.stop_action else GRID.decode(action)[0])
    return out


def test_grows_on_stagnation_and_stops_at_the_largest_rank():
    policy = RankControllerPolicy(1.0e-2, GRID, T, threshold=0.01, patience=2)
    steps = [(0, 1.0, 0), (0.2, 0.9, 0.8), (0.0, 0.8, 0.7), (0.005, 0.7, 0.6),  # 2 flat: grow
             (0.0, 0.6, 0.5), (0.0, 0.5, 0.4),  # 2 flat again: grow to 8
             (0.0, 0.4, 0.3), (0.001, 0.3, 0.2)]  # flat at the largest rank: stop
    assert ranks(policy, steps) == [2, 2, 2, 4, 4, 8, 8, "stop"]
    assert GRID.decode(policy.act(observe(0, 0, 1.0, 0)))[0] == 2  # a new episode starts over


def test_shrinks_on_overfitting():
    policy = RankControllerPolicy(1.0e-3, GRID, T, threshold=0.01, patience=1)
    steps = [(0, 1.0, 0), (0.005, 0.9, 0.8),  # flat: grow to 4
             (0.05, 1.0, 0.6),  # val loss up, train loss down: shrink to 2
             (0.05, 1.1, 0.7),  # both up: no overfitting, improving: keep
             (0.05, 1.0, 0.6)]  # val down: keep
    assert ranks(policy, steps) == [2, 4, 2, 2, 2]
    with pytest.raises(ValueError, match="`patience` must be >= 1"):
        RankControllerPolicy(1.0e-3, GRID, T, patience=0)


def test_registered_and_plays_a_live_episode():
    config = EnvConfig.from_yaml(TINY_PATH)
    (policy,) = make_policies(["rank-controller"], PolicyContext.of(config))
    assert isinstance(policy, RankControllerPolicy) and policy.lr == 1.0e-3
    env = gym.make("LoRATune-v0", config=config)
    result = run_episode(env, policy, "synth-a", 0)
    assert result.trajectory[0]["rank"] == config.ranks[0]
    assert {s["lr"] for s in result.trajectory if not s["stopped"]} == {1.0e-3}
