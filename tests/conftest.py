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


def build_wheel(tmp: Path) -> Path:
    """The lora-gym wheel built from a copy of the package's sources (no network, no deps)."""
    import shutil
    import subprocess
    import sys

    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("lora_gym", "agents", "envs_configs"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(tmp / "dist"), str(src)],
                   check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("lora_gym-*.whl")
    return wheel
