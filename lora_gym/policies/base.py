"""Basic policies for `LoRATune-v0` and the registry of every policy, name -> factory.

Every policy has SB3's ``predict(obs, state=None, episode_start=None, deterministic=True)``, so
one evaluation (`lora_gym.policies.evaluate`) scores them and an SB3 model alike, and
``act(obs) -> int`` for a single observation. ``begin_episode(task, seed)`` is called after every
reset; it makes each policy deterministic per episode -- its actions are fixed by (policy, task,
reset seed) -- which lets ``lora-gym record`` tell from a store alone whether an episode is
already recorded.

`POLICIES` maps a name to a factory ``(PolicyContext) -> list[Policy]``, like `REWARDS`: the
basic ones are registered here, the search-based ones (best-static, oracle, Optuna) by
`lora_gym.policies.search`. ``lora-gym record``, ``compare`` and the benchmarks all build policies
from it.
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lora_gym.core.actions import ActionGrid
from lora_gym.core.observation import OBSERVATION_NAMES
from lora_gym.core.preferences import default_cost_weight

SB3_ALGOS: tuple[str, ...] = ("ppo", "a2c", "dqn")
"""The Stable-Baselines3 algorithms lora-gym trains and loads (the one list; the class of each is
``stable_baselines3.<NAME>``)."""
_STEPS_LEFT = OBSERVATION_NAMES.index("steps_left")
_DELTA = OBSERVATION_NAMES.index("delta_accuracy")
_VAL_LOSS = OBSERVATION_NAMES.index("val_loss")
_TRAIN_LOSS = OBSERVATION_NAMES.index("train_loss")


def step_of(obs: np.ndarray, episode_length: int) -> int:
    """The number of segments trained so far, read from the observation's ``steps_left``."""
    return round((1.0 - float(obs[_STEPS_LEFT])) * episode_length)


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
    """The same action at every step; with `segments`, stop after that many segments.

    A static configuration is a (rank, lr, number of segments) triple once the env has a stop
    action; ``segments=None`` trains for the whole episode. The action is an int, or an array for
    the `MultiDiscrete` variants.
    """

    def __init__(self, action: int | np.ndarray, name: str | None = None,
                 segments: int | None = None, grid: ActionGrid | None = None,
                 episode_length: int | None = None) -> None:
        self.action = np.asarray(action) if np.ndim(action) else int(action)
        if segments is not None and (grid is None or grid.stop_action is None
                                     or episode_length is None):
            raise ValueError("a FixedPolicy with `segments` needs a grid with a stop action and "
                             "the episode length")
        self.segments, self.grid, self.T = segments, grid, episode_length
        suffix = "" if segments is None else f"x{segments}"
        self.name = name or f"fixed-{action}{suffix}"

    @classmethod
    def peft_default(cls, grid: ActionGrid) -> FixedPolicy:
        """PEFT's common default r=8, lr=1e-3 (or the nearest grid pair) on `LoRATune-v0`."""
        return cls(grid.encode(*nearest_pair(grid)), name="default")

    def act(self, obs: np.ndarray) -> int | np.ndarray:
        """The fixed action, or stop once `segments` segments are trained."""
        if self.segments is not None and step_of(obs, self.T) >= self.segments:
            return self.grid.stop_action
        return self.action


class RandomPolicy(Policy):
    """Uniform (rank, lr) actions (never stop); `begin_episode` reseeds from (reset seed, task).

    The same reset seed and task give the same actions, so recorded episodes can be replayed.
    """

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


class PatiencePolicy(Policy):
    """A fixed (rank, lr) that stops once accuracy stops improving (seed 002's patience rule).

    After each segment it reads the last accuracy change from the observation; when that change
    is below `threshold` for `patience` segments in a row it stops. The default threshold is the
    reward's break-even: with ``Δacc − λ·cost`` and a segment costing about 1, a segment that
    gains less than λ loses return. Without a stop action it trains the whole episode.
    """

    name = "patience"

    def __init__(self, action: int, grid: ActionGrid, episode_length: int, threshold: float,
                 patience: int = 1, name: str | None = None) -> None:
        if patience < 1:
            raise ValueError(f"`patience` must be >= 1, got {patience!r}")
        self.action, self.grid, self.T = int(action), grid, episode_length
        self.threshold, self.patience = float(threshold), int(patience)
        self.name = name or self.name
        self._flat = 0

    def act(self, obs: np.ndarray) -> int:
        """The fixed action, or stop after `patience` segments gaining less than `threshold`."""
        t = step_of(obs, self.T)
        if t == 0:
            self._flat = 0
            return self.action
        self._flat = self._flat + 1 if float(obs[_DELTA]) < self.threshold else 0
        if self.grid.stop_action is not None and self._flat >= self.patience:
            return self.grid.stop_action
        return self.action


class RankControllerPolicy(Policy):
    """Seed 002's heuristic rank manager: grow the rank on stagnation, shrink it on overfitting.

    It starts at the smallest rank with a fixed lr and reads only the observation after each
    segment. **Stagnation**: the accuracy gain (``delta_accuracy``) stays below `threshold` for
    `patience` segments in a row -> the next larger rank of the grid (at the largest rank it stops,
    when the env has a stop action). **Overfitting**: the validation loss rose while the training
    loss fell, `patience` segments in a row -> the next smaller rank. Either change restarts both
    counts; a rank change keeps what was learned (the env's weight-preserving resize).
    """

    name = "rank-controller"

    def __init__(self, lr: float, grid: ActionGrid, episode_length: int, threshold: float = 0.01,
                 patience: int = 1, name: str | None = None) -> None:
        if patience < 1:
            raise ValueError(f"`patience` must be >= 1, got {patience!r}")
        self.lr, self.grid, self.T = lr, grid, episode_length
        self.threshold, self.patience = float(threshold), int(patience)
        self.name = name or self.name
        self.begin_episode("")

    def begin_episode(self, task: str, seed: int | None = None) -> None:
        """Back to the smallest rank, counts and loss history cleared."""
        self.rank_index, self._flat, self._overfit = 0, 0, 0
        self._losses: tuple[float, float] | None = None  # (val, train) after the last segment

    def act(self, obs: np.ndarray) -> int:
        """The (rank, lr) action after applying the stagnation and overfitting rules."""
        if step_of(obs, self.T) == 0:
            self.begin_episode("")
            return self._action()
        losses = (float(obs[_VAL_LOSS]), float(obs[_TRAIN_LOSS]))
        before, self._losses = self._losses, losses
        overfit = before is not None and losses[0] > before[0] and losses[1] < before[1]
        self._overfit = self._overfit + 1 if overfit else 0
        self._flat = self._flat + 1 if float(obs[_DELTA]) < self.threshold else 0
        if self._overfit >= self.patience and self.rank_index > 0:
            self._change(-1)
        elif self._flat >= self.patience:
            if self.rank_index == len(self.grid.ranks) - 1:
                if self.grid.stop_action is not None:
                    return self.grid.stop_action
            else:
                self._change(+1)
        return self._action()

    def _change(self, step: int) -> None:
        self.rank_index += step
        self._flat = self._overfit = 0

    def _action(self) -> int:
        return self.grid.encode(self.grid.ranks[self.rank_index], self.lr)


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
        t = step_of(obs, self.T)
        p = min(t / (self.T - 1), 1.0) if self.T > 1 else 1.0
        rank = self.grid.ranks[round(p * (len(self.grid.ranks) - 1))]
        lr = self.grid.learning_rates[round((1.0 - p) * (len(self.grid.learning_rates) - 1))]
        return self.grid.encode(rank, lr)


class SB3Policy(Policy):
    """A trained Stable-Baselines3 model acting deterministically.

    Observations are normalised as in training when the run's ``vecnormalize.pkl`` (written by
    train_agent.py next to the zip) is found.
    """

    def __init__(self, model, vecnormalize=None, name: str = "ppo") -> None:
        self.model, self.vecnormalize, self.name = model, vecnormalize, name

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
        vecnormalize = None
        if stats.is_file():
            with stats.open("rb") as f:
                vecnormalize = pickle.load(f)  # a VecNormalize without its venv: stats only
            vecnormalize.training = False
        return cls(model, vecnormalize, name=name or algo)

    def act(self, obs: np.ndarray) -> int | np.ndarray:
        """The model's deterministic action (an array for `MultiDiscrete` action spaces)."""
        if self.vecnormalize is not None:
            obs = self.vecnormalize.normalize_obs(obs)
        action, _ = self.model.predict(obs, deterministic=True)
        return action if np.ndim(action) else int(action)


@dataclass(frozen=True)
class PolicyContext:
    """What a policy factory may use to build its policies."""

    grid: ActionGrid
    episode_length: int
    cost_weight: float = 0.01
    """λ of the reward (the patience rule's default threshold)."""
    seed: int = 0
    env: Any = None
    """An env to search on (search-based baselines only)."""
    tasks: tuple[str, ...] = ()
    """The evaluation tasks (the per-task oracle and Optuna search them)."""
    seeds: tuple[int, ...] = ()
    """The evaluation seeds (the oracle searches with them: an upper bound)."""
    progress: bool = False
    cache: dict[str, Any] = field(default_factory=dict, compare=False)
    """Searches shared between factories (e.g. the training-task grid search)."""
    static_search: Callable[[PolicyContext], Any] | None = field(default=None, compare=False)
    """The search that finds best-static's action on the training tasks and leaves it in
    ``cache["static_action"]`` (`lora_gym.policies.search.train_grid`); None: no search."""

    def static_action(self) -> int | None:
        """Best-static's action, searched once (whichever factory asks first), then cached.

        None when the context has no `static_search` and no cached action: the factories that
        build on it (patience, rank-controller) then use PEFT's default pair.
        """
        if "static_action" not in self.cache and self.static_search is not None:
            self.static_search(self)
        return self.cache.get("static_action")

    @classmethod
    def of(cls, config: Any, **kwargs: Any) -> PolicyContext:
        """The context of an `EnvConfig` (grid, episode length, λ).

        λ is ``cost_weight`` if given, else the config's (a range's geometric mean).
        """
        kwargs.setdefault("cost_weight", default_cost_weight(config))
        return cls(ActionGrid.of(config), config.episode_length, **kwargs)


PolicyFactory = Callable[[PolicyContext], list[Policy]]
POLICIES: dict[str, PolicyFactory] = {}
"""Every policy name -> its factory."""


def register_policy(name: str) -> Callable[[PolicyFactory], PolicyFactory]:
    """Decorator: register a policy factory under `name`."""
    def wrap(factory: PolicyFactory) -> PolicyFactory:
        if name in POLICIES:
            raise ValueError(f"policy {name!r} is already registered")
        POLICIES[name] = factory
        return factory
    return wrap


def make_policies(names: list[str], ctx: PolicyContext, agent: str | None = None,
                  algo: str = "ppo") -> list[Policy]:
    """The policies of the registered `names` (``grid`` expands to many), plus `agent` if given.

    Raises:
        ValueError: A name is not registered, or no policy is chosen.
    """
    unknown = sorted(set(names) - set(POLICIES))
    if unknown:
        raise ValueError(f"unknown policy {unknown}; registered: {sorted(POLICIES)}")
    out = [p for name in names for p in POLICIES[name](ctx)]
    if agent is not None:
        out.append(SB3Policy.load(agent, algo))
    if not out:
        raise ValueError("no policy chosen: give --policy and/or --agent")
    return out


@register_policy("default")
def _default(ctx: PolicyContext) -> list[Policy]:
    """PEFT's common default r=8, lr=1e-3 for the whole episode."""
    return [FixedPolicy.peft_default(ctx.grid)]


@register_policy("random")
def _random(ctx: PolicyContext) -> list[Policy]:
    """Uniform (rank, lr) actions."""
    return [RandomPolicy(ctx.grid.n_pairs, seed=ctx.seed)]


@register_policy("grid")
def _grid(ctx: PolicyContext) -> list[Policy]:
    """One fixed policy per (rank, lr) pair, each for the whole episode."""
    return [FixedPolicy(a) for a in range(ctx.grid.n_pairs)]


@register_policy("schedule")
def _schedule(ctx: PolicyContext) -> list[Policy]:
    """Grow the rank and decay the lr over the episode."""
    return [SchedulePolicy(ctx.grid, ctx.episode_length)]


@register_policy("patience")
def _patience(ctx: PolicyContext) -> list[Policy]:
    """The patience rule on best-static's action (`PolicyContext.static_action`) or the default.

    Best-static's action carries its steps choice; the default pair trains ``steps_per_action``.
    """
    action = ctx.static_action()
    if action is None:
        action = ctx.grid.encode(*nearest_pair(ctx.grid))
    return [PatiencePolicy(action, ctx.grid, ctx.episode_length,
                           threshold=ctx.cost_weight)]


@register_policy("rank-controller")
def _rank_controller(ctx: PolicyContext) -> list[Policy]:
    """Seed 002's rank manager at best-static's lr (`PolicyContext.static_action`) or 1e-3."""
    action = ctx.static_action()
    _, lr = nearest_pair(ctx.grid) if action is None else ctx.grid.decode(action)
    return [RankControllerPolicy(lr, ctx.grid, ctx.episode_length, threshold=ctx.cost_weight)]
