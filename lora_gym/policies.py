"""Basic policies for `LoRATune-v0`: fixed, random, schedule and a trained SB3 agent.

Every policy has SB3's ``predict(obs, state=None, episode_start=None, deterministic=True)``, so
one evaluation (`agents.evaluate`) scores them and an SB3 model alike, and ``act(obs) -> int``
for a single observation. ``begin_episode(task, seed)`` is called after every reset; it makes each
policy deterministic per episode -- its actions are fixed by (policy, task, reset seed) -- which
lets ``lora-gym record`` tell from a store alone whether an episode is already recorded.
Search-based baselines (per-task oracle, Optuna) live in `agents.baselines`.
"""

from __future__ import annotations

import pickle
import zlib
from pathlib import Path

import numpy as np

from lora_gym.core.actions import ActionGrid
from lora_gym.core.observation import OBSERVATION_NAMES

POLICY_KINDS: tuple[str, ...] = ("default", "random", "grid", "schedule")
"""Built-in policy kinds of `make_policies`; ``grid`` expands to one fixed policy per action."""
SB3_ALGOS: tuple[str, ...] = ("ppo", "a2c", "dqn")
_STEPS_LEFT = OBSERVATION_NAMES.index("steps_left")


class Policy:
    """Base class: one action per observation, SB3's ``predict`` for batches."""

    name = "policy"

    def begin_episode(self, task: str, seed: int | None = None) -> None:
        """Reset per-episode state after a reset on `task` with reset seed `seed`."""

    def act(self, obs: np.ndarray) -> int:
        """The action for one observation."""
        raise NotImplementedError

    def predict(self, observation: np.ndarray, state=None, episode_start=None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        """SB3's protocol: actions for a single observation or a batch of them."""
        obs = np.asarray(observation)
        if obs.ndim == 1:
            return np.array(self.act(obs)), None
        return np.array([self.act(o) for o in obs]), None


def nearest_pair(grid: ActionGrid, rank: int = 8, lr: float = 1.0e-3) -> tuple[int, float]:
    """The grid's (rank, lr) nearest to PEFT's common default r=8 with lr=1e-3 (lr in log)."""
    return (min(grid.ranks, key=lambda x: abs(x - rank)),
            min(grid.learning_rates, key=lambda x: abs(np.log(x / lr))))


class FixedPolicy(Policy):
    """The same action at every step (an int, or an array for `MultiDiscrete` variants)."""

    def __init__(self, action: int | np.ndarray, name: str | None = None) -> None:
        self.action = np.asarray(action) if np.ndim(action) else int(action)
        self.name = name or f"fixed-{action}"

    @classmethod
    def peft_default(cls, grid: ActionGrid) -> FixedPolicy:
        """PEFT's common default r=8, lr=1e-3 (or the nearest grid pair) on `LoRATune-v0`."""
        return cls(grid.encode(*nearest_pair(grid)), name="default")

    def act(self, obs: np.ndarray) -> int | np.ndarray:
        """The fixed action."""
        return self.action


class RandomPolicy(Policy):
    """Uniform actions; `begin_episode` reseeds from (reset seed, task), so episodes repeat."""

    name = "random"

    def __init__(self, n_actions: int, seed: int = 0) -> None:
        self.n, self.rng = int(n_actions), np.random.default_rng(seed)

    def begin_episode(self, task: str, seed: int | None = None) -> None:
        """Reseed from ``(seed, crc32(task))`` (a ``None`` seed keeps the running stream)."""
        if seed is not None:
            self.rng = np.random.default_rng([seed, zlib.crc32(task.encode())])

    def act(self, obs: np.ndarray) -> int:
        """A random action."""
        return int(self.rng.integers(self.n))


class SchedulePolicy(Policy):
    """Start at the lowest rank and highest lr; grow the rank and decay the lr over the episode.

    At step t of T (read from the observation's ``steps_left``), progress p = t / (T - 1) picks
    rank index round(p * (R - 1)) and lr index round((1 - p) * (L - 1)).
    """

    name = "schedule"

    def __init__(self, grid: ActionGrid, episode_length: int) -> None:
        self.grid, self.T = grid, episode_length

    def act(self, obs: np.ndarray) -> int:
        """The scheduled action for the observation's step."""
        t = round((1.0 - float(obs[_STEPS_LEFT])) * self.T)
        p = min(t / (self.T - 1), 1.0) if self.T > 1 else 1.0
        rank = self.grid.ranks[round(p * (len(self.grid.ranks) - 1))]
        lr = self.grid.learning_rates[round((1.0 - p) * (len(self.grid.learning_rates) - 1))]
        return self.grid.encode(rank, lr)


class SB3Policy(Policy):
    """A trained Stable-Baselines3 model acting deterministically.

    Observations are normalised as in training when the run's ``vecnormalize.pkl`` (written by
    train_agent.py next to the zip) is found.
    """

    def __init__(self, model, obs_rms=None, clip_obs: float = 10.0, epsilon: float = 1e-8,
                 name: str = "ppo") -> None:
        self.model, self.obs_rms, self.name = model, obs_rms, name
        self.clip_obs, self.epsilon = clip_obs, epsilon

    @classmethod
    def load(cls, path: str | Path, algo: str = "ppo", name: str | None = None) -> SB3Policy:
        """Load an SB3 zip (e.g. ``<run>/best_model.zip``) and its run's ``vecnormalize.pkl``.

        Raises:
            ValueError: `algo` is not one of `SB3_ALGOS`.
            FileNotFoundError: `path` is not a file.
        """
        import stable_baselines3

        if algo not in SB3_ALGOS:
            raise ValueError(f"`algo` must be one of {list(SB3_ALGOS)}, got {algo!r}")
        if not Path(path).is_file():
            raise FileNotFoundError(f"agent {str(path)!r} is not a file (an SB3 .zip)")
        model = getattr(stable_baselines3, algo.upper()).load(str(path), device="cpu")
        stats = Path(path).parent / "vecnormalize.pkl"
        obs_rms, clip = None, 10.0
        if stats.is_file():
            with stats.open("rb") as f:
                vecnorm = pickle.load(f)
            obs_rms, clip = vecnorm.obs_rms, vecnorm.clip_obs
        return cls(model, obs_rms, clip_obs=clip, name=name or algo)

    def act(self, obs: np.ndarray) -> int | np.ndarray:
        """The model's deterministic action (an array for `MultiDiscrete` action spaces)."""
        if self.obs_rms is not None:
            obs = np.clip((obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon),
                          -self.clip_obs, self.clip_obs).astype(np.float32)
        action, _ = self.model.predict(obs, deterministic=True)
        return action if np.ndim(action) else int(action)


def make_policies(kinds: list[str], grid: ActionGrid, episode_length: int,
                  agent: str | None = None, algo: str = "ppo") -> list[Policy]:
    """The policies named by `kinds` (``grid`` expands to one per action), plus `agent` if given.

    Raises:
        ValueError: A kind is unknown, or no policy is chosen.
    """
    out: list[Policy] = []
    for kind in kinds:
        if kind == "default":
            out.append(FixedPolicy.peft_default(grid))
        elif kind == "random":
            out.append(RandomPolicy(len(grid)))
        elif kind == "grid":
            out.extend(FixedPolicy(a) for a in range(len(grid)))
        elif kind == "schedule":
            out.append(SchedulePolicy(grid, episode_length))
        else:
            raise ValueError(f"unknown policy {kind!r}; choose from {list(POLICY_KINDS)} "
                             "(or give an agent path)")
    if agent is not None:
        out.append(SB3Policy.load(agent, algo))
    if not out:
        raise ValueError("no policy chosen: give --policy and/or --agent")
    return out
