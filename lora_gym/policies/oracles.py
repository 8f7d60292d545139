"""Baselines that know the task: a policy per task (the per-task oracle), a fixed sequence.

The searches that build them are `lora_gym.policies.search`; the policy protocol is
`lora_gym.policies.base.Policy` (``begin_episode(task, seed)`` after every reset).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lora_gym.policies.base import Policy


class TaskTablePolicy(Policy):
    """A policy per task, from a search (the per-task oracle) - an upper-bound baseline."""

    def __init__(self, policies: Mapping[str, Policy], name: str = "oracle") -> None:
        self.policies, self.name, self.task = dict(policies), name, None

    def begin_episode(self, task: str, seed: int | None = None) -> None:
        """Look up the task's policy."""
        if task not in self.policies:
            raise KeyError(f"{self.name}: no policy searched for task {task!r}; "
                           f"known: {sorted(self.policies)}")
        self.task = task
        self.policies[task].begin_episode(task, seed)

    def act(self, obs: np.ndarray) -> int:
        """The task's policy's action."""
        return self.policies[self.task].act(obs)


class SequencePolicy(Policy):
    """A searched action sequence per task, played step by step (e.g. Optuna's best trial)."""

    def __init__(self, sequences: Mapping[str, Sequence[int]], name: str = "optuna") -> None:
        self.sequences, self.name = {k: list(v) for k, v in sequences.items()}, name
        self.task, self.t = None, 0

    def begin_episode(self, task: str, seed: int | None = None) -> None:
        """Start the task's sequence from its first action."""
        if task not in self.sequences:
            raise KeyError(f"{self.name}: no sequence searched for task {task!r}")
        self.task, self.t = task, 0

    def act(self, obs: np.ndarray) -> int:
        """The sequence's next action (the last one repeats if the episode runs longer)."""
        seq = self.sequences[self.task]
        action = seq[min(self.t, len(seq) - 1)]
        self.t += 1
        return action
