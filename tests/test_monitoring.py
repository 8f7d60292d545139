"""Seed 002's monitoring: per-layer LoRA statistics in info, TensorBoard, optional observations."""

import types

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from lora_gym_agents.callbacks import LoRAInfoCallback
from stable_baselines3.common.logger import Logger

import lora_gym  # noqa: F401
from lora_gym.core.config import EnvConfig
from lora_gym.core.errors import ConfigError
from lora_gym.core.monitoring import MONITOR_NAMES, monitor_values
from lora_gym.engine import resize as lora
from lora_gym.engine.monitor import effective_rank, singular_values
from lora_gym.policies import FixedPolicy
from lora_gym.policies.recording import record
from lora_gym.replay.recording import episode_seed
from lora_gym.replay.store import config_hash
from tests.conftest import TINY as TINY_PATH
from tests.test_lora import tiny_lora_model

TINY = EnvConfig.from_yaml(TINY_PATH)
EXTRA = TINY.replace(extra_observations=["mean_grad_norm", "effective_rank", "delta_w_norm"],
                     task_split="all")
STATS = {"rank", "a_norm", "b_norm", "a_grad_norm", "b_grad_norm", "grad_norm", "delta_w_norm",
         "effective_rank"}


def test_singular_values_and_effective_rank_of_delta_w():
    model, _ = tiny_lora_model(rank=4)
    for layer in lora.lora_layers(model):
        expected = torch.linalg.svdvals(lora.delta_weight(layer).double())[:4]
        torch.testing.assert_close(singular_values(layer), expected, atol=1e-9, rtol=1e-6)
    assert effective_rank(torch.tensor([3.0, 1.0, 0.0])) == 1  # 9/10 of the energy in one
    assert effective_rank(torch.tensor([1.0, 1.0, 1.0, 1.0])) == 4
    assert effective_rank(torch.tensor([2.0, 1.0, 1.0])) == 3  # 4/6, 5/6 < 0.9
    assert effective_rank(torch.zeros(3)) == 0
    assert effective_rank(torch.tensor([float("nan"), 1.0])) == 0


def test_live_info_has_every_layers_stats():
    env = gym.make("LoRATune-v0", config=TINY)
    env.reset(seed=0)
    stats = env.unwrapped._lora_stats
    layers = env.unwrapped.session.adapter.layers
    assert set(stats) == set(layers) and all(set(s) == STATS for s in stats.values())
    assert all(s["grad_norm"] == 0 and s["effective_rank"] == 0 for s in stats.values())
    _, _, _, _, info = env.step(env.unwrapped.uniform_action(4, 1.0e-2))
    for name, s in info["lora_stats"].items():
        assert s["rank"] == 4 and s["a_grad_norm"] > 0 and s["b_grad_norm"] > 0
        assert 1 <= s["effective_rank"] <= 4 and s["b_norm"] > 0
        assert s["delta_w_norm"] == pytest.approx(
            lora.delta_weight(layers[name]).norm().item(), rel=1e-5)


def test_extra_observations_are_appended_and_valid():
    env = gym.make("LoRATune-v0", config=EXTRA)
    names = env.unwrapped.observation_names
    assert names[-3:] == MONITOR_NAMES and env.observation_space.shape == (len(names),)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=1)
    assert obs[-3:].tolist() == [0.0, 0.0, 0.0]
    obs, _, _, _, info = env.step(env.unwrapped.uniform_action(2, 1.0e-2))
    assert obs in env.observation_space
    expected = monitor_values(info["lora_stats"], max(EXTRA.ranks))
    np.testing.assert_allclose(obs[-3:], [expected[n] for n in MONITOR_NAMES], rtol=1e-6)
    assert obs[-3] > 0 and obs[-2] > 0
    plain = gym.make("LoRATune-v0", config=TINY).observation_space
    assert plain.shape == (env.observation_space.shape[0] - 3,)


def test_extra_observations_get_their_own_table_key_and_replay(tmp_path):
    assert config_hash(EXTRA) != config_hash(EXTRA.replace(extra_observations=()))
    path = str(tmp_path / "steps.sqlite")
    record(EXTRA, [(FixedPolicy(a), "synth-a", s) for a in (1, 2) for s in (0, 1)], path,
           progress=False)
    live = gym.make("LoRATune-v0", config=EXTRA)
    for miss in ("raise", "surrogate"):
        env = gym.make("LoRATuneReplay-v0", config=EXTRA, store=path, miss=miss)
        assert env.observation_space == live.observation_space
        assert env.unwrapped.observation_names == live.unwrapped.observation_names
    o1, _ = live.reset(seed=0, options={"task": "synth-a"})
    o2, _ = env.reset(options={"task": "synth-a", "episode_seed": episode_seed(0)})
    assert np.array_equal(o1, o2)
    s1, s2 = live.step(1), env.step(1)
    assert np.array_equal(s1[0], s2[0]) and s2[4]["source"] == "table"
    off = env.step(3)  # no row: the surrogate predicts, carrying the monitoring entries
    assert off[4]["source"] == "surrogate" and off[0] in env.observation_space
    assert np.array_equal(off[0][-3:], s2[0][-3:])


def test_callback_logs_the_stats():
    logger = Logger(folder=None, output_formats=[])
    callback = LoRAInfoCallback()
    callback.model = types.SimpleNamespace(logger=logger)
    stats = {"bert.encoder.layer.0.attention.self.query": {"grad_norm": 1.0, "effective_rank": 2},
             "bert.encoder.layer.1.attention.self.query": {"grad_norm": 3.0, "effective_rank": 4}}
    info = {"metrics": {"accuracy": 0.5, "f1": 0.5}, "rank": 2, "lr": 1.0e-3, "cost": 1.0,
            "cost_so_far": 1.0, "lora_stats": stats}
    callback.locals = {"infos": [info], "dones": [False]}
    assert callback._on_step()
    values = logger.name_to_value
    assert values["lora_stats/grad_norm"] == 2.0 and values["lora_stats/effective_rank"] == 3.0
    assert values["lora_stats/grad_norm/layer.1.attention.self.query"] == 3.0


def test_unknown_extra_observation_names_the_field():
    with pytest.raises(ConfigError, match=r"`extra_observations` must be one of \['mean_grad"):
        TINY.replace(extra_observations=["loss_slope"])
    with pytest.raises(ConfigError, match="must not repeat"):
        TINY.replace(extra_observations=["effective_rank", "effective_rank"])
