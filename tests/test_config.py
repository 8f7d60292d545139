"""Configuration: YAML round-trip, defaults, and error messages that name the field."""


import pytest

from lora_gym.core.config import EnvConfig, resolve_config
from lora_gym.core.errors import ConfigError
from tests.conftest import CONFIGS, DEFAULT, TINY

CONFIG_FILES = sorted(CONFIGS.glob("*.yaml"))


def test_default_yaml_is_the_embedded_default():
    assert EnvConfig.from_yaml(DEFAULT) == EnvConfig()


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_every_shipped_config_round_trips(path):
    from lora_gym.core.lm_config import LMConfig

    kind = LMConfig if path.stem == "lm" else EnvConfig  # lm.yaml configures LoRATuneLM-v0
    config = kind.from_yaml(path)
    assert kind.from_dict(config.to_dict()) == config


def test_overrides_replace_fields():
    config = resolve_config(TINY, episode_length=7, ranks=[1, 8])
    assert config.episode_length == 7 and config.ranks == (1, 8)
    assert config.model == "tiny-bert"


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"rankz": [1]}, r"unknown config key\(s\) \['rankz'\]; valid keys are \[.*'ranks'"),
        ({"ranks": [4, 2]}, r"`ranks` must be strictly increasing, got \[4, 2\]"),
        ({"ranks": [0, 2]}, r"`ranks` must hold finite positive values"),
        ({"learning_rates": "1e-3"}, r"`learning_rates` must be of type tuple\[float, \.\.\.\]"),
        ({"task_split": "dev"},
         r"`task_split` must be one of \['train', 'val', 'test', 'all'\], got 'dev'"),
        ({"episode_length": 0}, r"`episode_length` must be >= 1, got 0"),
        ({"episode_length": 2.5}, r"`episode_length` must be of type int, got 2.5"),
        ({"lora_layers": "bottom-2"}, r"`lora_layers` must be 'all' or 'top-<k>'"),
        ({"cost_weight": -1.0}, r"`cost_weight` must be a finite number >= 0 or a range"),
        ({"report_wall_time": "yes"}, r"`report_wall_time` must be of type bool"),
    ],
)
def test_bad_values_name_the_field(changes, match):
    with pytest.raises(ConfigError, match=match):
        EnvConfig.from_dict({**EnvConfig().to_dict(), **changes})


@pytest.mark.parametrize(("text", "match"), [
    ("ranks: [8, 4]\n", r"bad\.yaml: `ranks` must be strictly increasing"),
    (None, "does not exist"),
])
def test_yaml_errors_name_the_file(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        EnvConfig.from_yaml(path)


def test_top_layers():
    assert EnvConfig(lora_layers="top-2").top_layers == 2
    assert EnvConfig(lora_layers="all").top_layers is None
