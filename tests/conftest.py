"""Shared test fixtures and paths: config files are found relative to this file, not the cwd."""

from pathlib import Path

import gymnasium as gym
import pytest

import lora_gym  # noqa: F401 - registers the env ids

ROOT = Path(__file__).resolve().parents[1]
"""The repository root."""
CONFIGS = ROOT / "envs_configs"
TINY = str(CONFIGS / "tiny.yaml")
"""The tiny config: a random tiny BERT on generated tasks (fast)."""
DEFAULT = str(CONFIGS / "default.yaml")


@pytest.fixture
def tiny_env():
    """A fresh live `LoRATune-v0` on the tiny config."""
    env = gym.make("LoRATune-v0", config=TINY)
    yield env
    env.close()


@pytest.fixture(scope="module")
def tiny_grid():
    """The tiny config's action grid (stop included)."""
    return gym.make("LoRATune-v0", config=TINY).unwrapped.grid
