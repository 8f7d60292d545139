"""The accuracy-cost trade-off as the user's choice: λ drawn per episode, observed, rewarded.

A config's ``cost_weight`` is either one λ or a range ``[lo, hi]``. With a range, every reset
draws λ log-uniformly from it (after the task and the episode seed, so the draws of a scalar
config are unchanged), the observation gains a last entry ``log10_cost_weight``, and the reward
function receives a config whose ``cost_weight`` is that λ: one policy, conditioned on λ, serves
every trade-off (a preference-conditioned policy). ``reset(options={"cost_weight": λ})`` fixes λ
for an episode, with a range or without one (then the observation has no λ entry).

λ changes rewards only, never a fine-tune's outcome: it stays out of the table key, recorded
observations never hold it, and a replay env appends it like the live env.

>>> import numpy as np
>>> from lora_gym.core.config import EnvConfig
>>> config = EnvConfig(model="tiny-bert", task_set="tiny", cost_weight=(0.001, 0.1))
>>> lam = draw_cost_weight(config, None, np.random.default_rng(0))
>>> 0.001 <= lam <= 0.1, preference_spec(config)
(True, (('log10_cost_weight', -4.0, 1.0),))
>>> reward_config(config, 0.01).cost_weight
0.01
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

LOG_LAMBDA_BOUNDS = (-4.0, 1.0)
"""Bounds of the ``log10_cost_weight`` entry (λ from 1e-4 to 10; values outside are clipped)."""
PREFERENCE_SPEC: tuple[tuple[str, float, float], ...] = (("log10_cost_weight",
                                                          *LOG_LAMBDA_BOUNDS),)


def is_range(config: Any) -> bool:
    """Whether the config's ``cost_weight`` is a range (λ drawn per episode)."""
    return isinstance(config.cost_weight, tuple)


def preference_spec(config: Any) -> tuple[tuple[str, float, float], ...]:
    """The observation entries λ adds: ``log10_cost_weight`` with a range, none without."""
    return PREFERENCE_SPEC if is_range(config) else ()


def default_cost_weight(config: Any) -> float:
    """The config's one λ: the scalar, or a range's geometric mean (what a λ-free caller uses)."""
    if is_range(config):
        lo, hi = config.cost_weight
        return math.sqrt(lo * hi)
    return float(config.cost_weight)


def draw_cost_weight(config: Any, options: Mapping[str, Any] | None,
                     rng: np.random.Generator) -> float:
    """λ of an episode: the ``cost_weight`` option, else drawn from the range, else the scalar.

    Raises:
        ValueError: The option is not a finite number > 0 (a λ-conditioned observation needs its
            logarithm) or, without a range, >= 0.
    """
    given = (options or {}).get("cost_weight")
    if given is not None:
        return check_cost_weight(given, positive=is_range(config))
    if is_range(config):
        lo, hi = config.cost_weight
        return float(10.0 ** rng.uniform(math.log10(lo), math.log10(hi)))
    return float(config.cost_weight)


def check_cost_weight(value: Any, positive: bool = True) -> float:
    """A per-episode λ as a float; `ValueError` unless finite and > 0 (>= 0 if not positive)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"reset option `cost_weight` must be a finite number {bound}, "
                         f"got {value!r}")
    return float(value)


def reward_config(config: Any, cost_weight: float) -> Any:
    """The config the reward function sees: `config` with ``cost_weight`` = this episode's λ."""
    if config.cost_weight == cost_weight:
        return config
    return dataclasses.replace(config, cost_weight=cost_weight)


def preference_values(config: Any, cost_weight: float) -> dict[str, float]:
    """The λ entry of an observation (empty without a range)."""
    return {"log10_cost_weight": math.log10(cost_weight)} if is_range(config) else {}


def with_preference(obs: np.ndarray, config: Any, cost_weight: float) -> np.ndarray:
    """`obs` followed by its λ entry (clipped to `LOG_LAMBDA_BOUNDS`), or `obs` itself."""
    if not is_range(config):
        return obs
    value = min(max(math.log10(cost_weight), LOG_LAMBDA_BOUNDS[0]), LOG_LAMBDA_BOUNDS[1])
    return np.append(obs, np.float32(value)).astype(np.float32)
