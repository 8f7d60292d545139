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


def replay_random_episodes(config, store: Path, episodes: int = 4):
    """Record random episodes of `config` on two tiny tasks into `store`, then replay random
    actions on `LoRATuneReplay-v0` (every step from the table or the surrogate); the env."""
    import numpy as np

    from lora_gym.core.actions import ActionGrid
    from lora_gym.policies import RandomPolicy
    from lora_gym.policies.recording import record

    grid = ActionGrid.of(config)
    jobs = [(RandomPolicy(grid.n_pairs, seed=0), task, s) for task in ("synth-a", "synth-b")
            for s in range(2)]
    record(config, jobs, store, progress=False)
    env = gym.make("LoRATuneReplay-v0", config=config, store=str(store))
    assert env.action_space.n == len(grid)
    rng = np.random.default_rng(0)
    for episode in range(episodes):
        env.reset(seed=episode)
        for _ in range(config.episode_length):
            *_, terminated, truncated, info = env.step(int(rng.integers(grid.n_pairs)))
            assert info["source"] in ("table", "surrogate") and np.isfinite(info["cost"])
            if terminated or truncated:
                break
    return env


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
