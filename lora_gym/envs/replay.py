"""`LoRATuneReplay-v0`: `LoRATune-v0` served from recorded live steps, at table speed."""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Mapping
from contextlib import closing
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from lora_gym.core.actions import ActionGrid
from lora_gym.core.config import EnvConfig, resolve_config
from lora_gym.core.errors import LoRAGymWarning
from lora_gym.core.monitoring import with_monitor
from lora_gym.core.observation import (
    ObservationSpec,
    draw_episode_seed,
    reset_task,
    spec_bounds,
    spec_names,
    step_info,
)
from lora_gym.core.preferences import (
    draw_cost_weight,
    preference_spec,
    reward_config,
    with_preference,
)
from lora_gym.core.rewards import evaluate_reward, resolve_reward
from lora_gym.envs.common import check_action, render_line, stop_reward
from lora_gym.replay.index import Node, TableIndex, TableMiss
from lora_gym.replay.store import StepRecord, Store
from lora_gym.replay.surrogate import SURROGATE_KINDS
from lora_gym.replay.tables import resolve_store

MISS_POLICIES: tuple[str, ...] = ("raise", "live", "surrogate")
EPISODE_SEEDS: tuple[str, ...] = ("recorded", "live")
"""How ``reset(seed=s)`` picks an episode: one of the task's recorded episode seeds, or the seed
`LoRATune-v0` would draw (with ``miss="live"``: a live env that serves what it has recorded)."""

AGREE_RTOL, AGREE_ATOL = 1e-5, 1e-6
"""Tolerances under which a live re-run's (normalised) observation agrees with its table row.
Re-running a recorded step on the same code and versions can differ in the last float32 bit
(measured: 1.2e-7 in a validation loss); other code or library versions move it by far more."""


class LoRATuneReplayEnv(gym.Env[np.ndarray, np.int64]):
    """`LoRATune-v0` replayed from a store of recorded live steps: same MDP, microseconds a step.

    ## Description
    Every row of a store (`lora_gym.replay.store`) is the outcome of one real live step, keyed by
    (task, model, config hash, episode seed, action prefix); the live env is deterministic given
    that key. This env serves those outcomes: at reset it picks a recorded task and episode seed,
    and each step looks up the episode's action prefix plus the new action. Agents train on real
    fine-tune outcomes at table speed and are then checked on the live env (``lora-gym
    sim2real``). The whole table is loaded into an in-memory index (a dict and a tree of actions
    per episode) at construction; nothing touches SQLite, torch or pandas per step.

    ## Action Space
    Identical to `LoRATune-v0`: `Discrete(len(ranks) * len(learning_rates) + 1)`, action
    ``i * len(learning_rates) + j`` is ``(ranks[i], learning_rates[j])``, the last one *stop*
    (absent with ``stop_action: false``). Stop needs no recorded row: it trains nothing, so any
    table serves it, and its reward and observation are those the live env gives.

    ## Observation Space
    Identical to `LoRATune-v0` (16 normalised floats, see `LoRATuningEnv`); table steps return
    the recorded observation bit for bit.

    ## Rewards
    Recomputed at every step from the recorded metrics before and after the step and the recorded
    deterministic cost with this env's ``reward_fn`` (rewards are never stored), so any reward
    function, ``cost_weight`` or ``divergence_penalty`` works on the same table. A recorded
    divergence earns ``-divergence_penalty``.

    ## Misses
    A step whose key no row holds is handled by ``miss``:

    | miss      | what happens                                                              |
    |-----------|---------------------------------------------------------------------------|
    | raise     | `TableMiss` (a `LookupError`) naming the key                              |
    | live      | a live env with the same config replays the prefix for the episode seed,  |
    |           | runs the step and records it into ``store`` (never into a shipped table)  |
    | surrogate | a model fitted on the table predicts the metrics; the episode stays on it |

    The surrogate of a ``train`` or ``val`` env is fitted without the rows of the test split's
    tasks (an agent trained and selected on it has seen nothing of a test task); a ``test`` or
    ``all`` env fits it on every row.
    ``info["source"]`` says where each step came from: ``table``, ``live`` or ``surrogate``;
    ``env.unwrapped.source_counts`` counts them. ``info["uncertainty"]`` is 0.0 on table, live
    and stop steps and, on surrogate steps, the surrogate's standard deviation of the predicted
    accuracy change (``ensemble``: its members' spread, larger the farther the step is from
    recorded ones; ``knn``: the spread of the neighbours' recorded changes; see
    `lora_gym.replay.surrogate`). With ``pessimism`` κ > 0 a surrogate step's reward is lowered
    by κ·uncertainty, as model-based offline RL does (MOPO), so that an agent cannot profit from
    the surrogate's mistakes where it is unsure; the penalty is the reward component
    ``uncertainty_penalty`` (``-κ·uncertainty``) of ``info["reward_components"]``. Table steps
    are never penalised.

    ## Starting State
    A task of ``task_split`` that has recorded episodes is drawn with ``np_random`` (or given as
    ``options={"task": name}``), then one of its recorded episode seeds (or given exactly as
    ``options={"episode_seed": s}``; an unrecorded one is a miss, which only ``live`` serves).
    With ``episode_seeds="live"`` the task and episode seed are drawn exactly as `LoRATune-v0`
    draws them, so that with ``miss="live"`` the env is the live env with a cache: a reset seed
    gives the live env's episode, served from the store where recorded and run live (and
    recorded) where not.

    ## Episode End
    1. Termination: the agent chose *stop*.
    2. Termination: the recorded fine-tune diverged (the surrogate never predicts divergence).
    3. Truncation: ``episode_length`` segments were trained.

    ## Arguments
    ```python
    >>> import gymnasium as gym, lora_gym
    >>> env = gym.make("LoRATuneReplay-v0", config="tiny", miss="raise")
    >>> obs, info = env.reset(seed=0)
    >>> info["source"]
    'table'

    ```
    ``config`` and field overrides as for `LoRATune-v0` (outcome fields must match the table's:
    see `lora_gym.replay.store.config_hash`);
    ``store``: ``None`` (the table shipped for the config's
    model and task set: ``tiny`` for tiny-bert/tiny, ``default`` for minilm/default), a shipped
    table's name, or a store path; ``miss``: ``raise``, ``live`` or ``surrogate`` (default);
    ``surrogate``: ``ensemble`` (default) or ``knn`` (see `lora_gym.replay.surrogate`);
    ``pessimism``: κ >= 0 (default 0), the weight of the uncertainty penalty on surrogate steps
    (see Misses); ``episode_seeds``: ``recorded`` (default) or ``live`` (see Starting State).

    ## Registered Configurations
    * ``LoRATuneReplay-v0``: the embedded default served from the shipped default table.

    ## Version History
    * v0: Initial version, replaying `LoRATune-v0`.
    """

    metadata = {"render_modes": ["ansi"]}
    env_id = "LoRATuneReplay-v0"
    task_type = "classification"
    """The task type of the task sets it serves (`lora_gym.tasks.sets.TaskSet.require`)."""
    miss_policies: tuple[str, ...] = MISS_POLICIES

    def __init__(self, config: Any = None, render_mode: str | None = None,
                 store: str | os.PathLike | None = None, miss: str = "surrogate",
                 surrogate: str = "ensemble", pessimism: float = 0.0,
                 episode_seeds: str = "recorded",
                 **overrides: Any) -> None:
        self.config = self._resolve_config(config, overrides)
        for name, value, allowed in (("miss", miss, self.miss_policies),
                                     ("surrogate", surrogate, SURROGATE_KINDS),
                                     ("episode_seeds", episode_seeds, EPISODE_SEEDS),
                                     ("render_mode", render_mode, (None, "ansi"))):
            if value not in allowed:
                raise ValueError(f"`{name}` must be one of {list(allowed)}, got {value!r}")
        self.render_mode, self.miss, self.surrogate_kind = render_mode, miss, surrogate
        self.episode_seeds = episode_seeds
        self.pessimism = _check_pessimism(pessimism)
        self.grid = ActionGrid.of(self.config)
        self.action_space = spaces.Discrete(len(self.grid))
        spec = self._observation_spec()
        self.observation_space = spaces.Box(*spec_bounds(spec), dtype=np.float32)
        self.observation_names = spec_names(spec)
        self._reward_fn = resolve_reward(self.config.reward_fn)
        self.store_path, self._shipped = resolve_store(store, self.config)
        with closing(Store(self.store_path, readonly=True)) as db:
            self.index = TableIndex.load(db, self.config)
        self._task_names = self._recorded_tasks()
        self._T = self.config.episode_length
        self._delta_slot = self.observation_names.index("delta_accuracy")
        self._rewards: dict[Node, tuple[float, dict[str, float]]] = {}
        self.cost_weight = float("nan")  # this episode's λ (drawn at reset)
        self._reward_config = self.config
        self._node: Node | None = None
        self._off_table = False
        self._surrogate = self._live = None
        self.source_counts = {source: 0 for source in ("table", "live", "surrogate")}

    @staticmethod
    def _resolve_config(config: Any, overrides: dict[str, Any]) -> EnvConfig:
        return resolve_config(config, **overrides)

    def _observation_spec(self) -> ObservationSpec:
        return with_monitor(self.config.extra_observations) + preference_spec(self.config)

    @property
    def recorded_tasks(self) -> tuple[str, ...]:
        """The tasks of ``task_split`` whose resets the table holds, in task-set order."""
        return self._task_names

    def _recorded_tasks(self) -> tuple[str, ...]:
        from lora_gym.tasks.sets import load_task_set

        self.task_set = load_task_set(self.config.task_set).require(self.task_type, self.env_id)
        split = [t.name for t in self.task_set.tasks(self.config.task_split)]
        self._split_names = tuple(split)
        names = tuple(t for t in split if t in self.index.roots)
        if not names and self.episode_seeds == "recorded":
            raise LookupError(f"store {str(self.store_path)!r} has no episode of the "
                              f"{self.config.task_split!r} tasks {split}; it has "
                              f"{list(self.index.tasks())}")
        return names

    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a recorded episode (task and episode seed drawn or given); ``(obs, info)``."""
        super().reset(seed=seed)
        names = self._split_names if self.episode_seeds == "live" else self._task_names
        task, episode_seed = reset_task(options, names, self.np_random)
        self.task_set.get(task)  # an unknown name: ValueError listing the task set's names
        if episode_seed is None:
            episode_seed = self._draw_episode_seed(task)
        self._task, self._seed, self._off_table = task, episode_seed, False
        cost_weight = draw_cost_weight(self.config, options, self.np_random)
        if cost_weight != self.cost_weight:  # rewards are cached per node for one λ
            self._rewards.clear()
            self.cost_weight = cost_weight
            self._reward_config = reward_config(self.config, cost_weight)
        node, source = self.index.get(task, episode_seed, ()), "table"
        if node is None:
            node, source = self._miss(None, None), "live"
        self._node = node
        info = step_info(task, 0, node.rank, node.lr, node.metrics_info, node.cost_so_far,
                         episode_seed, source=source, uncertainty=0.0)
        return self._obs(node.obs), info

    def _draw_episode_seed(self, task: str) -> int:
        if self.episode_seeds == "live":  # the draws of LoRATune-v0's reset, in its order
            return draw_episode_seed(self.np_random)
        seeds = self.index.seeds(task)
        if not seeds:
            raise TableMiss(f"task {task!r} has no recorded episode in {str(self.store_path)!r}; "
                            f"recorded tasks: {list(self.index.tasks())}")
        return seeds[int(self.np_random.integers(len(seeds)))]

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Serve the step of ``prefix + (action,)`` from the table, or by the miss policy."""
        node = self._node
        check_action(action, self.action_space, node is not None)
        a = int(action)
        if self.grid.is_stop(a):
            return self._stop(node)
        child = None if self._off_table else node.children.get(a)
        source = "table"
        if child is None:
            child = self._miss(node, a)
            source = "surrogate" if self._off_table else "live"
        self.source_counts[source] += 1
        self._node = child
        cached = self._rewards.get(child)
        if cached is None:
            cached = self._reward(node, child)
            if source != "surrogate":
                self._rewards[child] = cached
        reward, components = cached
        if source == "surrogate" and self.pessimism > 0.0:
            penalty = -self.pessimism * child.uncertainty
            reward, components = reward + penalty, {**components, "uncertainty_penalty": penalty}
        t = len(child.prefix)
        terminated = child.diverged
        info = step_info(self._task, t, child.rank, child.lr, child.metrics_info,
                         child.cost_so_far, self._seed, cost=child.cost, diverged=child.diverged,
                         stopped=False, reward_components=dict(components), source=source,
                         uncertainty=child.uncertainty)
        return (self._obs(child.obs), reward, terminated, not terminated and t >= self._T, info)

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: one line describing the current state."""
        if self.render_mode != "ansi" or self._node is None:
            return None
        n = self._node
        return render_line(self._task, len(n.prefix), n.rank, n.lr, n.metrics, n.cost_so_far)

    def close(self) -> None:
        """Close the live fallback's env and store, if one was made."""
        if self._live is not None:
            if self._live.env.store is not None:
                self._live.env.store.close()
            self._live.env.close()
            self._live = None

    # -- helpers ---------------------------------------------------------------------------------
    def _stop(self, node: Node):
        """Stop: nothing trained or looked up; the live env's observation, reward and info."""
        reward, components = stop_reward(self._reward_fn, node.metrics, self._reward_config)
        obs = self._obs(node.obs)
        obs[self._delta_slot] = 0.0
        info = step_info(self._task, len(node.prefix), node.rank, node.lr, node.metrics_info,
                         node.cost_so_far, self._seed, cost=0.0, diverged=False, stopped=True,
                         reward_components=dict(components), source="table",
                         uncertainty=0.0)
        return obs, float(reward), True, False, info

    def _reward(self, prev: Node, cur: Node) -> tuple[float, dict[str, float]]:
        if cur.diverged:
            penalty = -self.config.divergence_penalty
            return penalty, {"divergence": penalty}
        return evaluate_reward(self._reward_fn, prev.metrics, cur.metrics, cur.cost,
                               self._reward_config)

    def _obs(self, recorded: np.ndarray) -> np.ndarray:
        """A recorded observation as this episode's (a copy; λ appended with a range)."""
        return with_preference(recorded.copy(), self.config, self.cost_weight)

    def _miss(self, node: Node | None, action: int | None) -> Node:
        """The node for a key no row holds (``node=None``: the episode's reset)."""
        prefix = () if node is None else (*node.prefix, action)
        if self.miss == "raise" or (self.miss == "surrogate" and node is None):
            raise TableMiss(
                f"no row for key (task={self._task!r}, model={self.index.model!r}, config_hash="
                f"{self.index.config_hash!r}, episode_seed={self._seed}, prefix={prefix}) in "
                f"store {str(self.store_path)!r} (miss={self.miss!r}); record it with "
                "`lora-gym record`, or make the env with miss='live' or miss='surrogate'")
        if self.miss == "surrogate":
            if self._surrogate is None:
                from lora_gym.replay.surrogate import Surrogate

                self._surrogate = Surrogate(self.index, self.config, self.surrogate_kind,
                                            self._held_out())
            child = self._surrogate.step(self._task, node, action, on_table=not self._off_table)
            self._off_table = True
            return child
        if self._live is None:
            from lora_gym.envs.live_replayer import LiveReplayer

            writer = None if self._shipped else Store(self.store_path)
            self._live = LiveReplayer(self.config, writer, self._add_live_record)
        self._live.advance(self._task, self._seed, () if node is None else node.prefix, action)
        found = self.index.get(self._task, self._seed, prefix)
        assert found is not None, "the live fallback recorded no row for the key"
        return found

    def _held_out(self) -> frozenset[str]:
        """Tasks the surrogate must not learn from: the test split, unless the env plays it."""
        if self.config.task_split in ("test", "all"):
            return frozenset()
        return frozenset(t.name for t in self.task_set.tasks("test"))

    def _add_live_record(self, rec: StepRecord) -> None:
        node = self.index.node(rec)
        known = self.index.get(rec.task, rec.episode_seed, rec.prefix)
        if known is not None and not np.allclose(known.obs, node.obs, rtol=AGREE_RTOL,
                                                 atol=AGREE_ATOL):
            warnings.warn(f"the live env disagrees with the table at task={rec.task!r}, "
                          f"episode_seed={rec.episode_seed}, prefix={rec.prefix}: the table was "
                          "recorded with other code or library versions; re-record it",
                          LoRAGymWarning, stacklevel=2)
        self.index.add(rec.task, rec.episode_seed, node)


def _check_pessimism(value: Any) -> float:
    """``pessimism`` as a float; a `ValueError` or `TypeError` naming it unless finite and >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`pessimism` must be a number >= 0, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"`pessimism` must be a finite number >= 0 (the weight of the "
                         f"uncertainty penalty on surrogate steps), got {value!r}")
    return float(value)
