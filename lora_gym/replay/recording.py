"""The recording wrapper: every reset and step of a live env as a `StepRecord` row.

Rows are keyed by (task, model, config hash, episode seed, action prefix); `episode_seed` gives
the episode seed of a reset seed.

The recorder loop that runs policies through it is `lora_gym.policies.recording`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding

from lora_gym.core.config import EnvConfig
from lora_gym.core.observation import draw_episode_seed
from lora_gym.core.preferences import preference_spec
from lora_gym.replay.store import StepRecord, Store, config_hash


class RecordingWrapper(gym.Wrapper):
    """Record every reset and step of a live `LoRATuningEnv` as a `StepRecord`.

    Args:
        env: A live env (possibly wrapped); its ``unwrapped.config`` fixes the key.
        store: Where rows go (each committed at once), or None to only call `on_record`.
        on_record: Called with every record made.
    """

    def __init__(self, env: gym.Env, store: Store | None = None,
                 on_record: Callable[[StepRecord], None] | None = None) -> None:
        super().__init__(env)
        self.store, self.on_record = store, on_record
        config: EnvConfig = env.unwrapped.config
        self._model, self._hash = config.model, config_hash(config)
        self._outcome_size = len(env.observation_space.low) - len(preference_spec(config))
        if store is not None:
            store.register_config(config)
        self._prefix: tuple[int, ...] = ()
        self._episode: tuple[str, int] | None = None

    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None):
        """Reset the env and record the reset row (empty action prefix)."""
        started = time.perf_counter()
        obs, info = self.env.reset(seed=seed, options=options)
        self._episode, self._prefix = (info["task"], int(info["episode_seed"])), ()
        self._record(obs, info, time.perf_counter() - started, cost=0.0, diverged=False)
        return obs, info

    def step(self, action):
        """Step the env and record the step under the episode's action prefix."""
        started = time.perf_counter()
        obs, reward, terminated, truncated, info = self.env.step(action)
        if info.get("stopped"):
            return obs, reward, terminated, truncated, info  # nothing trained: nothing to record
        self._prefix = (*self._prefix, int(action))
        self._record(obs, info, time.perf_counter() - started, cost=info["cost"],
                     diverged=info["diverged"])
        return obs, reward, terminated, truncated, info

    def _record(self, obs: np.ndarray, info: dict, wall: float, cost: float,
                diverged: bool) -> None:
        assert self._episode is not None
        m = {k: (np.nan if v is None else float(v)) for k, v in info["metrics"].items()}
        rec = StepRecord(self._episode[0], self._model, self._hash, self._episode[1],
                         self._prefix, np.asarray(obs[:self._outcome_size], dtype=np.float32),
                         m["accuracy"], m["f1"],
                         m["val_loss"], m["train_loss"], int(info["rank"]), info["lr"],
                         float(cost), float(info["cost_so_far"]), bool(diverged), wall)
        if self.store is not None:
            self.store.add(rec)
        if self.on_record is not None:
            self.on_record(rec)


def episode_seed(reset_seed: int) -> int:
    """The episode seed `LoRATuningEnv.reset(seed=s, options={"task": ...})` draws."""
    return draw_episode_seed(seeding.np_random(reset_seed)[0])
