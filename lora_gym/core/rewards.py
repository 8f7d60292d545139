"""Reward functions: plain callables in a name -> function registry.

A reward function has the signature ``fn(prev, cur, cost, config) -> float | Mapping[str, float]``
where ``prev`` and ``cur`` are the `Metrics` before and after the step, ``cost`` is the step's
deterministic compute cost (about 1 for a default step) and ``config`` the env's `EnvConfig`.
Returning a mapping names the reward's components (their sum is the reward); they are exposed in
``info["reward_components"]``. Register your own with ``@register_reward("name")`` or name it in a
config as ``"package.module:function"``.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any

from lora_gym.core.errors import RewardError
from lora_gym.core.metrics import Metrics

RewardFn = Callable[[Metrics, Metrics, float, Any], "float | Mapping[str, float]"]
REWARDS: dict[str, RewardFn] = {}


def register_reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator that registers a reward function under `name`."""

    def decorator(fn: RewardFn) -> RewardFn:
        if name in REWARDS and REWARDS[name] is not fn:
            raise RewardError(f"a reward function named {name!r} is already registered")
        REWARDS[name] = fn
        return fn

    return decorator


@register_reward("delta_acc_minus_cost")
def delta_acc_minus_cost(prev: Metrics, cur: Metrics, cost: float, config: Any
                         ) -> dict[str, float]:
    """Change of validation accuracy minus λ·cost (λ = ``config.cost_weight``)."""
    return {"delta_accuracy": cur.accuracy - prev.accuracy, "cost": -config.cost_weight * cost}


@register_reward("delta_f1_minus_cost")
def delta_f1_minus_cost(prev: Metrics, cur: Metrics, cost: float, config: Any) -> dict[str, float]:
    """Change of validation macro-F1 minus λ·cost; suits imbalanced tasks."""
    return {"delta_f1": cur.f1 - prev.f1, "cost": -config.cost_weight * cost}


@register_reward("delta_neg_loss_minus_cost")
def delta_neg_loss_minus_cost(prev: Metrics, cur: Metrics, cost: float, config: Any
                              ) -> dict[str, float]:
    """Fall of the validation loss minus λ·cost (`LoRATuneLM-v0`: the response-token loss)."""
    return {"delta_neg_loss": prev.val_loss - cur.val_loss, "cost": -config.cost_weight * cost}


@register_reward("delta_acc")
def delta_acc(prev: Metrics, cur: Metrics, cost: float, config: Any) -> float:
    """Change of validation accuracy only (compute is free)."""
    return cur.accuracy - prev.accuracy


def resolve_reward(ref: str | RewardFn) -> RewardFn:
    """Turn a registered name, a ``package.module:function`` string or a callable into a fn."""
    if callable(ref):
        return ref
    if not isinstance(ref, str):
        raise RewardError(
            f"`reward_fn` must be a name, 'module:function' or a callable, got {ref!r}")
    if ":" not in ref:
        if ref not in REWARDS:
            raise RewardError(f"unknown reward function {ref!r}; registered: {sorted(REWARDS)}, "
                              "or give 'package.module:function'")
        return REWARDS[ref]
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise RewardError(
            f"reward_fn {ref!r}: cannot import module {module_name!r} ({err})") from err
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise RewardError(f"reward_fn {ref!r}: module {module_name!r} has no callable {attr!r}")
    return fn


def evaluate_reward(fn: RewardFn, prev: Metrics, cur: Metrics, cost: float, config: Any
                    ) -> tuple[float, dict[str, float]]:
    """Call a reward function and return ``(reward, components)``.

    Raises:
        RewardError: `fn` returned something other than a float or a mapping of floats, or a
            non-finite value (NaN or inf) from finite metrics: it names the function.
    """
    out = fn(prev, cur, cost, config)
    try:
        if isinstance(out, Mapping):
            components = {str(k): float(v) for k, v in out.items()}
        else:
            components = {"reward": float(out)}
    except (TypeError, ValueError) as err:
        raise RewardError(f"reward function {reward_name(fn)} returned {out!r}; expected a float "
                          "or a mapping of named float components") from err
    reward = float(sum(components.values()))
    if not math.isfinite(reward):
        raise RewardError(f"reward function {reward_name(fn)} returned a non-finite reward "
                          f"{components} for prev={prev}, cur={cur}, cost={cost}; it must return "
                          "finite values (divergence is handled by the env)")
    return reward, components


def reward_name(fn: RewardFn) -> str:
    """``module:qualname`` of a reward function (its repr when it has no name)."""
    qualname = getattr(fn, "__qualname__", None)
    return f"{fn.__module__}:{qualname}" if qualname else repr(fn)
