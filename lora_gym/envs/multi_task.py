"""`LoRATuneMultiTask-v0`: K tasks tuned together over one frozen base (seed 003, multi-task)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

from lora_gym.core.actions import ActionGrid
from lora_gym.core.config import EnvConfig, resolve_config
from lora_gym.core.cost import segment_cost
from lora_gym.core.metrics import Metrics
from lora_gym.core.observation import (
    OBSERVATION_SPEC,
    TASK_FEATURE_NAMES,
    ObservationSpec,
    build_observation,
    draw_episode_seed,
    feature_values,
    finite_or_none,
    spec_bounds,
    spec_names,
    state_values,
)
from lora_gym.core.preferences import (
    draw_cost_weight,
    preference_spec,
    preference_values,
    reward_config,
)
from lora_gym.core.rewards import evaluate_reward, resolve_reward
from lora_gym.envs.common import LiveTuningEnv, check_action, stop_reward

_BOUNDS = {name: (low, high) for name, low, high in OBSERVATION_SPEC}
TASK_ENTRIES: tuple[str, ...] = ("val_accuracy", "val_macro_f1", "val_loss", "train_loss",
                                 "delta_accuracy", "rank_position", *TASK_FEATURE_NAMES)
"""One task's block of the observation, in order (entry ``<name>_<k>`` for task k)."""
GLOBAL_ENTRIES: tuple[str, ...] = ("cost_so_far", "steps_left", "lr_position")
"""The entries after the K task blocks."""
MULTI_TASK_OPTIONS: tuple[str, ...] = ("tasks", "episode_seed", "cost_weight")


def multi_task_spec(k: int) -> ObservationSpec:
    """``(name, low, high)`` of the K task blocks, then the global entries."""
    blocks = tuple((f"{name}_{i}", *_BOUNDS[name]) for i in range(k) for name in TASK_ENTRIES)
    return blocks + tuple((name, *_BOUNDS[name]) for name in GLOBAL_ENTRIES)


def mean_metrics(metrics: list[Metrics]) -> Metrics:
    """The tasks' mean accuracy, F1, validation and training loss (what the reward sees)."""
    return Metrics(*(float(np.mean([getattr(m, name) for m in metrics]))
                     for name in ("accuracy", "f1", "val_loss", "train_loss")))


class LoRATuneMultiTaskEnv(LiveTuningEnv):
    """Tune K live LoRA fine-tunes at once: one frozen base, an adapter and head per task.

    ## Description
    Seed 003's multi-task LoRA as an MDP. An episode tunes ``multi_task_k`` (default 3) tasks of
    the split together over **one frozen base** (the K models share its tensors), each task with
    its own LoRA adapter and classification head (`lora_gym.engine.multitask`); with
    ``shared_adapter: true`` one more adapter (rank ``shared_rank``), shared by all K, trains on
    every task's batches next to the task-specific ones, its update combined across tasks by
    ``grad_projection`` (``pcgrad`` removes the components of conflicting task gradients).
    Every step sets a rank per task and one learning rate; each task's adapter is resized keeping
    ΔW, as in `LoRATune-v0`, and then every task trains ``steps_per_action`` interleaved steps.

    ## Action Space
    `MultiDiscrete([len(ranks)] * K + [len(learning_rates), 2])`: entry k < K is task k's rank
    index, then the learning-rate index, then *stop* (1 ends the episode without training,
    whatever the other entries say; absent with ``stop_action: false``).

    ## Observation Space
    `Box(low, high, (13 K + 3,), float32)`: for each task k a block of 13 entries named
    ``<entry>_<k>`` -- ``val_accuracy``, ``val_macro_f1``, ``val_loss``, ``train_loss``,
    ``delta_accuracy``, ``rank_position`` and the 7 task features of `LoRATune-v0`
    (``log10_train_size`` ... ``knn_label_agreement``), with `LoRATune-v0`'s bounds -- then:

    | Num     | Observation   | Min | Max |
    |---------|---------------|-----|-----|
    | 13 K    | cost_so_far   | 0   | 10  |
    | 13 K+1  | steps_left    | 0   | 1   |
    | 13 K+2  | lr_position   | 0   | 1   |

    With a ``cost_weight`` range, ``log10_cost_weight`` comes last. Names in
    ``env.unwrapped.observation_names``.

    ## Rewards
    ``reward_fn`` applied to the tasks' **mean** metrics: by default mean Δaccuracy − λ·cost,
    where cost is the sum over tasks of their segment costs (`lora_gym.core.cost`, at rank
    r_k + ``shared_rank`` with a shared adapter). A divergence of any task earns
    ``-divergence_penalty``; stop earns the reward of a free step that changes nothing.
    ``info["task_metrics"]`` has every task's metrics, ``info["metrics"]`` their mean,
    ``info["tasks"]`` the task names (``info["task"]`` joins them with ``+``), ``info["rank"]``
    their ranks.

    ## Starting State
    K distinct tasks drawn from ``task_split`` with ``np_random`` (or
    ``options={"tasks": [...]}``), an episode seed (``options={"episode_seed": s}``) from which
    every task's seed derives, fresh adapters at the smallest rank (and a fresh shared adapter),
    fresh heads; the first observation is their evaluation.

    ## Episode End
    Terminated on *stop* or a divergence; truncated after ``episode_length`` segments.

    ## Arguments
    ``gym.make("LoRATuneMultiTask-v0", config=..., multi_task_k=3, shared_adapter=False,
    shared_rank=4, grad_projection="none", **overrides)``: the arguments of `LoRATune-v0`; the
    grid's steps and augmentation choices are not offered (every task trains ``augmentation``).
    """

    env_id = "LoRATuneMultiTask-v0"

    def __init__(self, config: Any = None, render_mode: str | None = None, **overrides: Any):
        self.config: EnvConfig = resolve_config(config, **overrides)
        if self.config.augmentation_choices == EnvConfig().augmentation_choices:
            self.config = self.config.replace(augmentation_choices=())
        for name in ("steps_choices", "augmentation_choices"):
            if getattr(self.config, name):
                raise ValueError(f"`{name}` is a choice of LoRATune-v0's Discrete action; "
                                 f"{self.env_id} trains every task alike: leave it empty, got "
                                 f"{list(getattr(self.config, name))}")
        for name in ("extra_observations", "report_wall_time"):
            if getattr(self.config, name):
                raise ValueError(f"`{name}` is not supported by {self.env_id} (its observation "
                                 "and info are per task, without monitoring or wall time): "
                                 f"leave it at its default, got {getattr(self.config, name)!r}")
        mt = self.config.multi_task
        if self.config.grad_projection == "pcgrad" and not mt.shared_adapter:
            raise ValueError("`grad_projection` pcgrad combines the tasks' gradients on the "
                             "shared adapter: set `shared_adapter: true` (or use none/subspace)")
        self._init_live(render_mode)
        self.k = mt.multi_task_k
        self.grid = ActionGrid.of(self.config)
        n_ranks, n_lrs = len(self.config.ranks), len(self.config.learning_rates)
        stop = [2] if self.config.stop_action else []
        self.action_space = spaces.MultiDiscrete([n_ranks] * self.k + [n_lrs] + stop)
        self._spec = multi_task_spec(self.k) + preference_spec(self.config)
        self.observation_space = spaces.Box(*spec_bounds(self._spec), dtype=np.float32)
        self.observation_names = spec_names(self._spec)
        self._reward_fn = resolve_reward(self.config.reward_fn)

    def _make_session(self):
        from lora_gym.engine.multitask import MultiTaskSession

        return MultiTaskSession(self.config)

    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start K fine-tunes on (drawn or given) tasks; returns ``(obs, info)``."""
        super().reset(seed=seed)
        from lora_gym.tasks.loading import load_task

        options = dict(options or {})
        unknown = sorted(set(options) - set(MULTI_TASK_OPTIONS))
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; valid options are "
                             f"{list(MULTI_TASK_OPTIONS)}")
        names = [t.name for t in self.task_set.tasks(self.config.task_split)]
        tasks = options.get("tasks")
        if tasks is None:
            if len(names) < self.k:
                raise ValueError(f"`multi_task_k` {self.k} exceeds the {len(names)} tasks of "
                                 f"split {self.config.task_split!r}: {names}")
            tasks = [names[i] for i in self.np_random.choice(len(names), self.k, replace=False)]
        tasks = list(tasks)
        if len(tasks) != self.k or len(set(tasks)) != self.k:
            raise ValueError(f"reset option 'tasks' must name {self.k} distinct tasks "
                             f"(`multi_task_k`), got {tasks}")
        seed_option = options.get("episode_seed")
        self._episode_seed = (int(seed_option) if seed_option is not None
                              else draw_episode_seed(self.np_random))
        self.cost_weight = draw_cost_weight(self.config, options, self.np_random)
        self._reward_config = reward_config(self.config, self.cost_weight)
        self.tasks = [load_task(self.task_set.get(name)) for name in tasks]
        seeds = [int(np.random.default_rng([self._episode_seed, k]).integers(2**31 - 1))
                 for k in range(self.k)]
        self._task_metrics = self.session.start(self.tasks, seeds)
        self._t, self._cost, self._lr = 0, 0.0, None
        self._ranks = self.session.ranks
        self._deltas = [0.0] * self.k
        return self._observation(), self._info()

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Resize each task's adapter, train all K tasks a segment, evaluate (class docstring)."""
        check_action(action, self.action_space, self._t is not None)
        prev = self._task_metrics
        if self.config.stop_action and int(action[-1]) == 1:
            self._deltas = [0.0] * self.k
            reward, components = stop_reward(self._reward_fn, mean_metrics(prev),
                                             self._reward_config)
            info = self._info(cost=0.0, diverged=False, stopped=True,
                              reward_components=components)
            return self._observation(), reward, True, False, info
        ranks = tuple(self.config.ranks[int(i)] for i in action[:self.k])
        lr = self.config.learning_rates[int(action[self.k])]
        segment = self.session.train(ranks, lr, self.config.steps_per_action)
        shared = self.config.multi_task.shared_rank if self.session.shared_params else 0
        cost = sum(segment_cost(tokens, rank + shared, self.config)
                   for tokens, rank in zip(segment.tokens, ranks, strict=True))
        self._t += 1
        self._cost += cost
        self._ranks, self._lr = ranks, lr
        diverged = segment.diverged
        if not diverged:
            self._task_metrics = self.session.evaluate(segment.train_losses)
            diverged = not all(m.finite and math.isfinite(m.train_loss)
                               for m in self._task_metrics)
        if diverged:
            nan = math.nan
            self._task_metrics = [Metrics(nan, nan, nan, nan)] * self.k
            reward = -self.config.divergence_penalty
            components = {"divergence": reward}
            self._deltas = [0.0] * self.k
        else:
            reward, components = evaluate_reward(self._reward_fn, mean_metrics(prev),
                                                 mean_metrics(self._task_metrics), cost,
                                                 self._reward_config)
            self._deltas = [m.accuracy - p.accuracy
                            for m, p in zip(self._task_metrics, prev, strict=True)]
        truncated = not diverged and self._t >= self.config.episode_length
        info = self._info(cost=cost, diverged=diverged, stopped=False,
                          reward_components=components)
        return self._observation(), float(reward), diverged, truncated, info

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: one line per task."""
        if self.render_mode != "ansi" or self._t is None:
            return None
        return "\n".join(f"task={t.name} t={self._t} rank={r} lr={self._lr} "
                         f"acc={m.accuracy:.3f} loss={m.val_loss:.3f}"
                         for t, r, m in zip(self.tasks, self._ranks, self._task_metrics,
                                            strict=True))

    def _observation(self) -> np.ndarray:
        c = self.config
        lr_pos = self.grid.lr_position(self._lr) if self._lr is not None else 0.0
        values: dict[str, float] = {}
        for k, (m, session) in enumerate(zip(self._task_metrics, self.session.sessions,
                                             strict=True)):
            task = {**state_values(m, self._deltas[k], self._cost, self._t, c.episode_length,
                                   self.grid.rank_position(self._ranks[k]), lr_pos),
                    **feature_values(session.features)}
            values.update({f"{name}_{k}": task[name] for name in TASK_ENTRIES})
            values.update({name: task[name] for name in GLOBAL_ENTRIES})
        values.update(preference_values(c, self.cost_weight))
        return build_observation(values, self._spec)

    def _info(self, **extra: Any) -> dict[str, Any]:
        names = [t.name for t in self.tasks]
        mean = finite_or_none(mean_metrics(self._task_metrics).to_dict())
        return {"task": "+".join(names), "tasks": names, "step": self._t,
                "rank": tuple(self._ranks), "lr": self._lr, "metrics": mean,
                "task_metrics": [finite_or_none(m.to_dict()) for m in self._task_metrics],
                "cost_so_far": self._cost, "episode_seed": self._episode_seed, **extra}
