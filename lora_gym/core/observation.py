"""Observation layout of the LoRA-tuning environment: names, bounds, task features (no torch)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lora_gym.core.metrics import Metrics

LOSS_CAP = 10.0
"""Losses are clipped to [0, LOSS_CAP] in the observation (a diverged loss reads as the cap)."""
COST_CAP = 10.0
"""The cumulative cost per episode step is clipped to [0, COST_CAP]."""

# (name, low, high) of each observation entry, in order; the env docstring's table mirrors it.
OBSERVATION_SPEC: tuple[tuple[str, float, float], ...] = (
    ("val_accuracy", 0.0, 1.0),
    ("val_macro_f1", 0.0, 1.0),
    ("val_loss", 0.0, LOSS_CAP),
    ("train_loss", 0.0, LOSS_CAP),
    ("delta_accuracy", -1.0, 1.0),
    ("cost_so_far", 0.0, COST_CAP),
    ("steps_left", 0.0, 1.0),
    ("rank_position", 0.0, 1.0),
    ("lr_position", 0.0, 1.0),
    ("log10_train_size", 0.0, 7.0),
    ("log2_num_classes", 0.0, 10.0),
    ("label_entropy", 0.0, 1.0),
    ("mean_length", 0.0, 1.0),
    ("p90_length", 0.0, 1.0),
    ("untrained_accuracy", 0.0, 1.0),
    ("knn_label_agreement", 0.0, 1.0),
)
ObservationSpec = tuple[tuple[str, float, float], ...]

_SHARED = {name: (name, low, high) for name, low, high in OBSERVATION_SPEC}
LM_OBSERVATION_SPEC: ObservationSpec = (
    ("val_token_accuracy", 0.0, 1.0),
    ("val_exact_match", 0.0, 1.0),
    *(_SHARED[name] for name in ("val_loss", "train_loss", "delta_accuracy", "cost_so_far",
                                 "steps_left", "rank_position", "lr_position",
                                 "log10_train_size")),
    ("mean_prompt_length", 0.0, 1.0),
    ("mean_response_length", 0.0, 1.0),
    ("untrained_token_accuracy", 0.0, 1.0),
)
"""The causal-LM env's observation entries, in order (`LoRATuneLM-v0`'s docstring)."""


@functools.cache
def spec_names(spec: ObservationSpec) -> tuple[str, ...]:
    """The entry names of an observation spec, in order (cached)."""
    return tuple(name for name, _, _ in spec)


@functools.cache
def spec_bounds(spec: ObservationSpec) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` float32 arrays of an observation spec (cached, read-only)."""
    low = np.array([low for _, low, _ in spec], dtype=np.float32)
    high = np.array([high for _, _, high in spec], dtype=np.float32)
    low.setflags(write=False)
    high.setflags(write=False)
    return low, high


OBSERVATION_NAMES: tuple[str, ...] = spec_names(OBSERVATION_SPEC)
OBS_LOW, OBS_HIGH = spec_bounds(OBSERVATION_SPEC)
TASK_FEATURE_NAMES: tuple[str, ...] = OBSERVATION_NAMES[
    OBSERVATION_NAMES.index("log10_train_size"):]
"""The entries that describe the task (constant over an episode), after the progress entries."""
_TASK_SLOTS = slice(OBSERVATION_NAMES.index(TASK_FEATURE_NAMES[0]), len(OBSERVATION_NAMES))


@dataclass(frozen=True)
class TaskFeatures:
    """Data meta-features of a task, constant over an episode."""

    train_size: int
    num_classes: int
    label_entropy: float
    """Entropy of the training label distribution divided by log(num_classes), in [0, 1]."""
    mean_length: float
    """Mean token length of training examples divided by ``max_length``."""
    p90_length: float
    """90th-percentile token length divided by ``max_length``."""
    untrained_accuracy: float
    label_agreement: float
    """Nearest-neighbour label agreement of the training rows (`lora_gym.tasks.features`)."""


def state_values(metrics: Metrics, delta_accuracy: float, cost_so_far: float, step: int,
                 episode_length: int, rank_position: float, lr_position: float
                 ) -> dict[str, float]:
    """The progress entries of an observation (everything but the task's meta-features).

    ``train_loss`` reads 0 at reset (nothing trained yet); ``cost_so_far`` is the cumulative
    cost divided by the episode length; ``steps_left`` is the fraction of the episode left.
    """
    return {"val_accuracy": metrics.accuracy, "val_macro_f1": metrics.f1,
            "val_loss": metrics.val_loss, "train_loss": 0.0 if step == 0 else metrics.train_loss,
            "delta_accuracy": delta_accuracy,
            "cost_so_far": min(cost_so_far / episode_length, COST_CAP),
            "steps_left": 1.0 - step / episode_length,
            "rank_position": rank_position, "lr_position": lr_position}


def feature_values(features: TaskFeatures) -> dict[str, float]:
    """The task meta-feature entries of an observation (names in `TASK_FEATURE_NAMES`)."""
    return {
        "log10_train_size": math.log10(max(features.train_size, 1)),
        "log2_num_classes": math.log2(max(features.num_classes, 1)),
        "label_entropy": features.label_entropy,
        "mean_length": features.mean_length,
        "p90_length": features.p90_length,
        "untrained_accuracy": features.untrained_accuracy,
        "knn_label_agreement": features.label_agreement,
    }


def carried_features(obs: np.ndarray) -> dict[str, float]:
    """The task meta-feature entries of an earlier observation of the same episode."""
    return dict(zip(TASK_FEATURE_NAMES, obs[_TASK_SLOTS].tolist(), strict=True))


def build_observation(values: Mapping[str, float],
                      spec: ObservationSpec = OBSERVATION_SPEC) -> np.ndarray:
    """The one place observations are made: finite, clipped to the documented bounds.

    `values` holds `state_values`, `feature_values` (or `carried_features`) and the variants'
    own entries; `spec` is `OBSERVATION_SPEC`, or for the variants it followed by their entries.
    """
    names = spec_names(spec)
    low, high = spec_bounds(spec)
    obs = np.array([values[name] for name in names], dtype=np.float64)
    if not np.isfinite(obs).all():
        # A diverged fine-tune yields NaN/inf metrics: losses read as the cap, scores as 0.
        obs = np.nan_to_num(obs, nan=0.0, posinf=LOSS_CAP, neginf=0.0)
        for i, name in enumerate(names):  # val_loss, train_loss (and a multi-task env's _<k>)
            if name.startswith(("val_loss", "train_loss")) and not math.isfinite(values[name]):
                obs[i] = LOSS_CAP
    return np.minimum(np.maximum(obs, low, out=obs), high, out=obs).astype(np.float32)


def finite_or_none(values: Mapping[str, float]) -> dict[str, float | None]:
    """NaN never equals itself; infos use None for "not measured" so that they compare equal."""
    return {k: (float(v) if math.isfinite(v) else None) for k, v in values.items()}


def step_info(task: str, step: int, rank: Any, lr: float | None, metrics: Mapping[str, Any],
              cost_so_far: float, episode_seed: int, **extra: Any) -> dict[str, Any]:
    """The ``info`` dict of a reset or step, the same for the live and the replay env.

    `metrics` is a `finite_or_none` dict; step infos add ``cost``, ``diverged`` and
    ``reward_components`` through `extra`, the replay env its ``source``.
    """
    return {"task": task, "step": step, "rank": rank, "lr": lr, "metrics": dict(metrics),
            "cost_so_far": cost_so_far, "episode_seed": episode_seed, **extra}


RESET_OPTIONS: tuple[str, ...] = ("cost_weight", "episode_seed", "task")
"""The ``options`` every env's ``reset`` accepts."""


def draw_episode_seed(rng) -> int:
    """The episode seed a reset draws from the env's ``np_random``.

    The one derivation: the live env, the replay env's ``episode_seeds="live"`` and the recorder
    all use it.
    """
    return int(rng.integers(2**31 - 1))


def reset_task(options: Mapping[str, Any] | None, names: Sequence[str],
               rng: np.random.Generator) -> tuple[str, int | None]:
    """The task of a reset (given, or drawn from `names` with `rng`) and the given episode seed.

    Raises:
        ValueError: An option is not one of `RESET_OPTIONS`.
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(RESET_OPTIONS))
    if unknown:
        raise ValueError(f"unknown reset option(s) {unknown}; valid options are "
                         f"{list(RESET_OPTIONS)}")
    task = options.get("task") or names[int(rng.integers(len(names)))]
    seed = options.get("episode_seed")
    return task, None if seed is None else int(seed)
