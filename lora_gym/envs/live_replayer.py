"""A live env that catches up to any recorded (task, episode seed, action prefix), recording all."""

from __future__ import annotations

from collections.abc import Callable

from lora_gym.core.config import EnvConfig
from lora_gym.core.lm_config import LMConfig
from lora_gym.envs.lm_tune import LoRATuneLMEnv
from lora_gym.envs.lora_tune import LoRATuningEnv
from lora_gym.replay.recording import RecordingWrapper
from lora_gym.replay.store import StepRecord, Store


class LiveReplayer:
    """A live env that catches up to any (task, episode seed, action prefix), recording all."""

    def __init__(self, config: EnvConfig | LMConfig, store: Store | None,
                 on_record: Callable[[StepRecord], None]) -> None:
        live = LoRATuneLMEnv if isinstance(config, LMConfig) else LoRATuningEnv
        self.env = RecordingWrapper(live(config), store, on_record)
        self.at: tuple[str, int, tuple[int, ...]] | None = None

    def advance(self, task: str, seed: int, prefix: tuple[int, ...], action: int | None) -> None:
        """Bring the live env to ``prefix`` of the episode (task, seed) and take `action`.

        ``action=None`` only resets. The env is deterministic, so replaying the prefix from a
        reset with the same episode seed reproduces the recorded state.
        """
        if self.at != (task, seed, prefix):
            self.env.reset(options={"task": task, "episode_seed": seed})
            for a in prefix:
                self.env.step(a)
            self.at = (task, seed, prefix)
        if action is not None:
            self.env.step(action)
            self.at = (task, seed, (*prefix, int(action)))
