"""Shipped tables are found by the hash of the config they were recorded under."""

import gymnasium as gym
import pytest

from lora_gym.core.config import EnvConfig, resolve_config
from lora_gym.replay.store import config_hash
from lora_gym.replay.tables import SHIPPED_TABLES, shipped_table_name, table_meta


@pytest.mark.parametrize("name", SHIPPED_TABLES)
def test_each_table_is_found_from_the_config_its_meta_names(name):
    meta = table_meta(name)
    config = resolve_config(meta["config"].split("/")[-1].removesuffix(".yaml"))
    assert config_hash(config) == meta["config_hash"]
    assert shipped_table_name(config) == name
    # λ, the split and the stop action change no outcome: the same table serves them
    assert shipped_table_name(config.replace(cost_weight=(0.001, 0.01), task_split="val")) == name


def test_a_config_without_a_table_is_told_which_configs_have_one():
    other = EnvConfig(learning_rates=(1e-3, 1e-2))
    with pytest.raises(LookupError, match="legacy-v1"):
        shipped_table_name(other)
    with pytest.raises(LookupError, match="no table is shipped for this config"):
        gym.make("LoRATuneReplay-v0", learning_rates=(1e-3, 1e-2))


def test_the_default_config_has_its_own_table():
    assert shipped_table_name(EnvConfig()) == "default"
    env = gym.make("LoRATuneReplay-v0", task_split="train")
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space and info["source"] == "table"
    assert env.action_space.n == 31


def test_the_legacy_config_replays_the_shipped_minilm_table():
    env = gym.make("LoRATuneReplay-v0", config="legacy-v1", task_split="test")
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space and info["source"] == "table"
    assert env.unwrapped.grid.ranks == (2, 4, 8, 16)
