"""Shared by the live `LoRATune-v0`, `LoRATuneLM-v0` and the replayed `LoRATuneReplay-v0`.

Action validation, the stop action's reward, the ``ansi`` render line, and `LiveTuningEnv`: what
the two live envs share (render mode, the task set and the session built on first use, render).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from lora_gym.core.config import EnvConfig
from lora_gym.core.metrics import Metrics
from lora_gym.core.rewards import evaluate_reward


def check_action(action: Any, space: gym.Space, started: bool) -> None:
    """Raise `ResetNeeded` before the first reset, `InvalidAction` outside `space`.

    A plain integer inside a ``Discrete`` space is accepted without `space.contains` (the replay
    env's hot path).
    """
    if not started:
        raise gym.error.ResetNeeded("call reset() before step()")
    if isinstance(action, int | np.integer) and isinstance(space, gym.spaces.Discrete) \
            and space.start <= action < space.start + space.n:
        return
    if not space.contains(action):
        raise gym.error.InvalidAction(f"action {action!r} is not in the action space {space}")


def stop_reward(reward_fn: Any, metrics: Metrics, config: EnvConfig
                ) -> tuple[float, dict[str, float]]:
    """The stop action's reward: the reward of a step that trained nothing and cost nothing."""
    reward, components = evaluate_reward(reward_fn, metrics, metrics, 0.0, config)
    return float(reward), dict(components)


def render_line(task: str, t: int, rank: Any, lr: Any, metrics: Metrics, cost: float) -> str:
    """One line describing an env's current state (``render_mode="ansi"``)."""
    return (f"task={task} t={t} rank={rank} lr={lr} acc={metrics.accuracy:.3f} "
            f"f1={metrics.f1:.3f} loss={metrics.val_loss:.3f} cost={cost:.2f}")


class LiveTuningEnv(gym.Env[np.ndarray, np.int64]):
    """Base of the live envs: the render mode, a lazily loaded task set and session, render.

    Subclasses set `env_id` and `task_type` (the task sets they tune) and `_make_session`.
    """

    metadata = {"render_modes": ["ansi"]}
    env_id = ""
    """The registered id, for messages."""
    task_type = "classification"
    """The `lora_gym.tasks.sets.TASK_TYPES` entry this env tunes."""

    def _init_live(self, render_mode: str | None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or "
                             f"None, got {render_mode!r}")
        self.render_mode = render_mode
        self._task_set = None  # loaded lazily on the first reset: no file or torch work here
        self._session = None
        self._t: int | None = None

    def _make_session(self) -> Any:
        raise NotImplementedError

    @property
    def task_set(self):
        """The env's `TaskSet` (loaded on first use; its tasks must be of `task_type`)."""
        if self._task_set is None:
            from lora_gym.tasks.sets import load_task_set

            self._task_set = load_task_set(self.config.task_set).require(self.task_type,
                                                                         self.env_id)
        return self._task_set

    @property
    def session(self):
        """The live fine-tuning session (created on first use)."""
        if self._session is None:
            self._session = self._make_session()
        return self._session

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: one line describing the current state."""
        if self.render_mode != "ansi" or self._t is None:
            return None
        return render_line(self.task.name, self._t, self._rank, self._lr, self._metrics,
                           self._cost)
