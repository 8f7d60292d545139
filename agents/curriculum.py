"""Curriculum learning (seed 000): env settings that switch at given training timesteps.

A curriculum file lists stages; each applies from its first episode that starts at or after
``at`` timesteps (an episode in progress finishes under the stage it began in)::

    stages:
      - at: 0                      # stage 1: one fixed task, LoRA in the top layer only
        task: tweet-sentiment/n2000-s0
        env_kwargs: {lora_layers: top-1}
      - at: 20000                  # stage 2: every training task, LoRA in the top 2 layers
        env_kwargs: {}

``env_kwargs`` are env keyword arguments on top of ``--env-kwargs``; ``task`` pins the task of
every reset (``options={"task": ...}``; omitted: the env samples its split). Every stage's env
must have the observation and action spaces of the first (the policy network is fixed), which is
checked when the stage starts. `CurriculumEnv` wraps the env and rebuilds it at stage changes;
`CurriculumCallback` tells the training envs when a stage begins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml
from stable_baselines3.common.callbacks import BaseCallback

STAGE_KEYS = ("at", "task", "env_kwargs")


@dataclass(frozen=True)
class Stage:
    """One stage of a curriculum."""

    at: int
    """Training timestep from which the stage applies (the first stage: 0)."""
    task: str | None = None
    """Task every reset uses (``None``: the env samples one from its split)."""
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Env keyword arguments of the stage, on top of the run's ``--env-kwargs``."""


def load_curriculum(path: str | Path) -> tuple[Stage, ...]:
    """The stages of a curriculum YAML file.

    Raises:
        ValueError: the file is malformed (the message names the stage and the field).
    """
    data = yaml.safe_load(Path(path).read_text()) or {}
    stages = data.get("stages") if isinstance(data, Mapping) else None
    if not isinstance(stages, list) or not stages or set(data) != {"stages"}:
        raise ValueError(f"{path}: a curriculum is a mapping with one key `stages`, a non-empty "
                         "list of stages")
    out = []
    for i, raw in enumerate(stages):
        if not isinstance(raw, Mapping) or set(raw) - set(STAGE_KEYS):
            raise ValueError(f"{path}: stage {i} must be a mapping with keys among "
                             f"{list(STAGE_KEYS)}, got {raw!r}")
        at, kwargs = raw.get("at"), raw.get("env_kwargs") or {}
        if not isinstance(at, int) or isinstance(at, bool) or at < 0:
            raise ValueError(f"{path}: stage {i}: `at` must be an integer >= 0, got {at!r}")
        if not isinstance(kwargs, Mapping):
            raise ValueError(f"{path}: stage {i}: `env_kwargs` must be a mapping, got {kwargs!r}")
        out.append(Stage(at, raw.get("task"), dict(kwargs)))
    ats = [s.at for s in out]
    if ats[0] != 0 or any(b <= a for a, b in zip(ats, ats[1:], strict=False)):
        raise ValueError(f"{path}: stage `at` values must start at 0 and increase, got {ats}")
    return tuple(out)


class CurriculumEnv(gym.Wrapper):
    """The env of the current stage; `set_stage` rebuilds it at the next reset.

    Args:
        env_id: the registered env id.
        stages: the curriculum (`load_curriculum`).
        **env_kwargs: the run's env keyword arguments (each stage's are applied on top).
    """

    def __init__(self, env_id: str, stages: tuple[Stage, ...], **env_kwargs: Any) -> None:
        self.env_id, self.stages, self.base_kwargs = env_id, stages, env_kwargs
        self.stage = 0
        self._pending: int | None = None
        super().__init__(self._build(0))

    def _build(self, index: int) -> gym.Env:
        return gym.make(self.env_id, **{**self.base_kwargs, **self.stages[index].env_kwargs})

    def set_stage(self, index: int) -> None:
        """Switch to stage `index` at the next reset."""
        if not 0 <= index < len(self.stages):
            raise IndexError(f"stage {index} out of range: the curriculum has "
                             f"{len(self.stages)} stages")
        self._pending = index if index != self.stage else None

    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None):
        """Reset the stage's env (rebuilt first if a new stage began), its task pinned."""
        if self._pending is not None:
            self._switch(self._pending)
        task = self.stages[self.stage].task
        if task is not None:
            options = {"task": task, **(options or {})}
        return self.env.reset(seed=seed, options=options)

    def _switch(self, index: int) -> None:
        env = self._build(index)
        for name in ("observation_space", "action_space"):
            if getattr(env, name) != getattr(self.env, name):
                env.close()
                raise ValueError(f"curriculum stage {index} changes the {name} "
                                 f"({getattr(self.env, name)} -> {getattr(env, name)}); a "
                                 "policy needs the same spaces in every stage")
        self.env.close()
        self.env, self.stage, self._pending = env, index, None


class CurriculumCallback(BaseCallback):
    """Moves the training envs (`CurriculumEnv`) to each stage when its timestep is reached."""

    def __init__(self, stages: tuple[Stage, ...], verbose: int = 0) -> None:
        super().__init__(verbose)
        self.stages, self.stage = stages, 0

    def _on_step(self) -> bool:
        while self.stage + 1 < len(self.stages) and \
                self.num_timesteps >= self.stages[self.stage + 1].at:
            self.stage += 1
            self.training_env.env_method("set_stage", self.stage)
            if self.verbose:
                print(f"curriculum: stage {self.stage} from timestep {self.num_timesteps}")
        self.logger.record("curriculum/stage", self.stage)
        return True
