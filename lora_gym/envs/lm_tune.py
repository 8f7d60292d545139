"""`LoRATuneLM-v0`: live LoRA instruction tuning of a causal language model as a Gymnasium MDP."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from lora_gym.core.actions import ActionGrid
from lora_gym.core.cost import segment_cost
from lora_gym.core.lm_config import LMConfig, resolve_lm_config
from lora_gym.core.metrics import LMMetrics
from lora_gym.core.observation import (
    LM_OBSERVATION_SPEC,
    build_observation,
    draw_episode_seed,
    finite_or_none,
    reset_task,
    spec_bounds,
    spec_names,
    step_info,
)
from lora_gym.core.rewards import evaluate_reward, resolve_reward
from lora_gym.envs.common import LiveTuningEnv, check_action, stop_reward


class LoRATuneLMEnv(LiveTuningEnv):
    """Tune live LoRA instruction tuning of a causal LM: every step trains and evaluates it.

    ## Description
    An episode is one LoRA fine-tune of a decoder language model (default: ``tiny-llama``, a
    random 2-layer Llama built in-process, which shows the mechanics; any local Llama / Qwen2 /
    Mistral / GPT-2 directory via ``model``) on one instruction or dialogue task of a
    ``causal_lm`` task set (default ``lm``: chatterbot-corpus conversations and instruction
    triples made from the bundled labelled corpora). Only the response tokens are learned (the
    prompt is masked). At every step the agent picks a (LoRA rank, learning rate) pair; the env
    changes the rank *keeping what the adapter learned*, trains ``steps_per_action`` optimizer
    steps of ``grad_accum`` micro-batches with ``lora_dropout`` and a warm-up + cosine schedule,
    and evaluates on the task's validation examples (`lora_gym.engine.lm_session`).

    ## Action Space
    `Discrete(len(ranks) * len(learning_rates) + 1)`: action ``i * len(learning_rates) + j``
    trains at ``(ranks[i], learning_rates[j])``; the last action is *stop* (absent with
    ``stop_action: false``). Default: ranks 1, 4, 16 × lr 3e-4, 1e-3, 3e-3, 1e-2 = 12 + stop.

    ## Observation Space
    `Box(low, high, (13,), float32)`; names in ``env.unwrapped.observation_names``:

    | Num | Observation              | Min | Max |
    |-----|--------------------------|-----|-----|
    | 0   | val_token_accuracy       | 0   | 1   |
    | 1   | val_exact_match          | 0   | 1   |
    | 2   | val_loss                 | 0   | 10  |
    | 3   | train_loss               | 0   | 10  |
    | 4   | delta_accuracy           | -1  | 1   |
    | 5   | cost_so_far              | 0   | 10  |
    | 6   | steps_left               | 0   | 1   |
    | 7   | rank_position            | 0   | 1   |
    | 8   | lr_position              | 0   | 1   |
    | 9   | log10_train_size         | 0   | 7   |
    | 10  | mean_prompt_length       | 0   | 1   |
    | 11  | mean_response_length     | 0   | 1   |
    | 12  | untrained_token_accuracy | 0   | 1   |

    Token accuracy is the next-token accuracy on response tokens (teacher forced); exact match
    the share of validation examples whose every response token is right; losses are the mean
    response-token cross-entropy, clipped to 10 (a diverged loss reads 10; perplexity is in
    ``info["metrics"]``); ``cost_so_far`` is the cumulative cost / ``episode_length``; lengths
    are token counts / ``max_length``.

    ## Rewards
    By default ``Δ token accuracy − λ·cost`` (``delta_acc_minus_cost`` reading the token accuracy,
    λ = ``cost_weight``); ``reward_fn: delta_neg_loss_minus_cost`` rewards the fall of the
    validation loss instead; any registered name, ``package.module:function`` or callable works.
    The cost of a step is its tokens over a default step's (``steps_per_action × batch_size ×
    grad_accum × max_length / 2``) times the rank factor of `lora_gym.core.cost`. A diverged step
    (NaN/inf loss) ends the episode with ``−divergence_penalty``; *stop* ends it with the reward
    of a free step that changes nothing.

    ## Starting State
    A task drawn uniformly from ``task_split`` (or ``options["task"]``), a fresh adapter at the
    smallest rank (B = 0: the untrained model) evaluated once.

    ## Episode End
    Terminated on *stop* or divergence; truncated after ``episode_length`` training steps.

    ## Arguments
    ``gym.make("LoRATuneLM-v0", config=None | "lm" | path | dict | LMConfig, **overrides)``.
    """

    env_id = "LoRATuneLM-v0"
    task_type = "causal_lm"

    def __init__(self, config: Any = None, render_mode: str | None = None, **overrides: Any):
        self.config: LMConfig = resolve_lm_config(config, **overrides)
        self._init_live(render_mode)
        c = self.config
        self.grid = ActionGrid.of(c)
        self.action_space = spaces.Discrete(len(self.grid))
        self.observation_space = spaces.Box(*spec_bounds(LM_OBSERVATION_SPEC), dtype=np.float32)
        self.observation_names = spec_names(LM_OBSERVATION_SPEC)
        self._reward_fn = resolve_reward(c.reward_fn)

    def _make_session(self):
        from lora_gym.engine.lm_session import LMSession

        return LMSession(self.config)

    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a fine-tune on a (sampled or given) task; returns ``(obs, info)``."""
        super().reset(seed=seed)
        from lora_gym.tasks.instructions import load_lm_task

        if options and "cost_weight" in options:
            raise ValueError("LoRATuneLM-v0 has one `cost_weight`; reset option 'cost_weight' "
                             "is not supported")
        names = [t.name for t in self.task_set.tasks(self.config.task_split)]
        name, episode_seed = reset_task(options, names, self.np_random)
        self._episode_seed = (episode_seed if episode_seed is not None
                              else draw_episode_seed(self.np_random))
        self.task = load_lm_task(self.task_set.get(name))
        self._metrics = self.session.start(self.task, self._episode_seed)
        self._features = self.session.features()
        self._t, self._cost, self._rank, self._lr = 0, 0.0, self.session.rank, None
        self._delta = 0.0
        return self._observation(), self._info()

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Resize to the action's rank, train at its lr, evaluate (class docstring)."""
        check_action(action, self.action_space, self._t is not None)
        if self.grid.is_stop(int(action)):
            self._delta = 0.0
            reward, components = stop_reward(self._reward_fn, self._metrics, self.config)
            info = self._info(cost=0.0, diverged=False,
                              stopped=True, reward_components=components)
            return self._observation(), reward, True, False, info
        rank, lr = self.grid.decode(int(action))
        prev = self._metrics
        segment = self.session.train(rank, lr, self.config.steps_per_action)
        cost = segment_cost(segment.tokens / self.config.grad_accum, rank, self.config)
        self._t += 1
        self._cost += cost
        self._rank, self._lr = rank, lr
        diverged = segment.diverged
        if not diverged:
            self._metrics = self.session.evaluate(segment.train_loss)
            diverged = not (self._metrics.finite and math.isfinite(self._metrics.train_loss))
        if diverged:
            self._metrics = LMMetrics.of(math.nan, math.nan, math.nan, math.nan)
            reward, components = -self.config.divergence_penalty, {
                "divergence": -self.config.divergence_penalty}
        else:
            reward, components = evaluate_reward(self._reward_fn, prev, self._metrics, cost,
                                                 self.config)
        self._delta = 0.0 if diverged else self._metrics.accuracy - prev.accuracy
        truncated = not diverged and self._t >= self.config.episode_length
        info = self._info(cost=cost, diverged=diverged,
                          stopped=False, reward_components=components,
                          lora_stats=self.session.lora_stats())
        return self._observation(), float(reward), diverged, truncated, info

    def save_adapter(self, path) -> Any:
        """Write the current adapter as a PEFT ``CAUSAL_LM`` adapter folder (`LMSession.export`)."""
        if self._t is None:
            raise gym.error.ResetNeeded("call reset() before save_adapter(): there is no adapter")
        return self.session.export(path)

    def _observation(self) -> np.ndarray:
        m, c = self._metrics, self.config
        values = {"val_token_accuracy": m.accuracy, "val_exact_match": m.f1,
                  "val_loss": m.val_loss, "train_loss": 0.0 if self._t == 0 else m.train_loss,
                  "delta_accuracy": self._delta, "cost_so_far": self._cost / c.episode_length,
                  "steps_left": 1.0 - self._t / c.episode_length,
                  "rank_position": self.grid.rank_position(self._rank),
                  "lr_position": 0.0 if self._lr is None else self.grid.lr_position(self._lr),
                  **self._features}
        return build_observation(values, LM_OBSERVATION_SPEC)

    def _info(self, **extra: Any) -> dict[str, Any]:
        return step_info(self.task.name, self._t, self._rank, self._lr,
                         finite_or_none(self._metrics.to_dict()), self._cost, self._episode_seed,
                         **extra)
