"""Baseline policies that act through SB3's ``predict`` protocol.

Every policy here has ``predict(obs, state=None, episode_start=None, deterministic=True)``
returning ``(actions, state)``, so `agents.evaluate` (and SB3's ``evaluate_policy``) scores them
and a trained SB3 model alike. Policies that depend on the task (the per-task oracle, a searched
sequence) also have ``begin_episode(task)``, which the evaluation calls after each reset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from gymnasium import spaces

from lora_gym.spaces import OBSERVATION_NAMES, ActionGrid

_STEPS_LEFT = OBSERVATION_NAMES.index("steps_left")


class Policy:
    """Base class: a policy picks one action per observation (batched like SB3)."""

    name = "policy"

    def act(self, obs: np.ndarray) -> int:
        """The action for one observation."""
        raise NotImplementedError

    def begin_episode(self, task: str) -> None:
        """Called by the evaluation after each reset; most policies ignore the task."""

    def predict(self, observation: np.ndarray, state=None, episode_start=None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        """SB3's protocol: actions for a single observation or a batch of them."""
        obs = np.asarray(observation)
        if obs.ndim == 1:
            return np.array(self.act(obs)), None
        return np.array([self.act(o) for o in obs]), None


class FixedPolicy(Policy):
    """The same action at every step (e.g. PEFT's common default r=8, lr=1e-3)."""

    def __init__(self, action: int, name: str = "fixed") -> None:
        self.action, self.name = int(action), name

    @classmethod
    def peft_default(cls, grid: ActionGrid, rank: int = 8, lr: float = 1.0e-3) -> FixedPolicy:
        """r=8 and lr=1e-3, or the nearest pair on the grid."""
        r = min(grid.ranks, key=lambda x: abs(x - rank))
        l_ = min(grid.learning_rates, key=lambda x: abs(np.log(x / lr)))
        return cls(grid.encode(r, l_), name="default")

    def act(self, obs: np.ndarray) -> int:
        """The fixed action."""
        return self.action


class RandomPolicy(Policy):
    """Uniformly random actions from a seeded generator."""

    name = "random"

    def __init__(self, action_space: spaces.Discrete, seed: int = 0) -> None:
        self.n, self.rng = int(action_space.n), np.random.default_rng(seed)

    def act(self, obs: np.ndarray) -> int:
        """A random action."""
        return int(self.rng.integers(self.n))


class SchedulePolicy(Policy):
    """A hand-designed schedule: start at low rank and high lr, grow the rank, decay the lr.

    Progress ``p = 1 - steps_left`` (from the observation) moves the rank index up and the lr
    index down linearly over the episode.
    """

    name = "schedule"

    def __init__(self, grid: ActionGrid) -> None:
        self.grid = grid

    def act(self, obs: np.ndarray) -> int:
        """The scheduled action for the episode's progress."""
        progress = float(np.clip(1.0 - obs[_STEPS_LEFT], 0.0, 1.0))
        n_r, n_lr = len(self.grid.ranks), len(self.grid.learning_rates)
        rank = self.grid.ranks[min(int(progress * n_r), n_r - 1)]
        lr = self.grid.learning_rates[n_lr - 1 - min(int(progress * n_lr), n_lr - 1)]
        return self.grid.encode(rank, lr)


class TaskTablePolicy(Policy):
    """A fixed action per task, from a search (the per-task oracle) - an upper-bound baseline."""

    def __init__(self, actions: Mapping[str, int], name: str = "oracle") -> None:
        self.actions, self.name, self.task = dict(actions), name, None

    def begin_episode(self, task: str) -> None:
        """Look up the task's action."""
        if task not in self.actions:
            raise KeyError(f"{self.name}: no action searched for task {task!r}; "
                           f"known: {sorted(self.actions)}")
        self.task = task

    def act(self, obs: np.ndarray) -> int:
        """The task's action."""
        return self.actions[self.task]


class SequencePolicy(Policy):
    """A searched action sequence per task, played step by step (e.g. Optuna's best trial)."""

    def __init__(self, sequences: Mapping[str, Sequence[int]], name: str = "optuna") -> None:
        self.sequences, self.name = {k: list(v) for k, v in sequences.items()}, name
        self.task, self.t = None, 0

    def begin_episode(self, task: str) -> None:
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


class SB3Policy(Policy):
    """A trained Stable-Baselines3 model, with the observation normalisation it was trained with."""

    def __init__(self, model, obs_rms=None, clip_obs: float = 10.0, epsilon: float = 1e-8,
                 name: str = "ppo") -> None:
        self.model, self.obs_rms, self.name = model, obs_rms, name
        self.clip_obs, self.epsilon = clip_obs, epsilon

    @classmethod
    def load(cls, path: str, algo: str = "ppo", name: str | None = None) -> SB3Policy:
        """Load ``<run>/best_model.zip`` (or any zip) and the run's ``vecnormalize.pkl`` if any."""
        import pickle
        from pathlib import Path

        from agents.algos import ALGOS

        model = ALGOS[algo].load(path, device="cpu")
        stats = Path(path).parent / "vecnormalize.pkl"
        obs_rms, clip = None, 10.0
        if stats.is_file():
            with stats.open("rb") as f:
                vecnorm = pickle.load(f)
            obs_rms, clip = vecnorm.obs_rms, vecnorm.clip_obs
        return cls(model, obs_rms, clip_obs=clip, name=name or algo)

    def act(self, obs: np.ndarray) -> int:
        """The model's deterministic action."""
        if self.obs_rms is not None:
            obs = np.clip((obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon),
                          -self.clip_obs, self.clip_obs).astype(np.float32)
        action, _ = self.model.predict(obs, deterministic=True)
        return int(action)
