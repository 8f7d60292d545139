"""Action grid and observation layout of the LoRA-tuning environment (pure, no torch)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ActionGrid:
    """A discrete grid of (rank, lr) pairs; action ``i * len(lrs) + j`` is (r_i, lr_j)."""

    ranks: tuple[int, ...]
    learning_rates: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.ranks) * len(self.learning_rates)

    def decode(self, action: int) -> tuple[int, float]:
        """The (rank, learning rate) of an action index."""
        if not 0 <= int(action) < len(self):
            raise ValueError(f"action must be in [0, {len(self)}), got {action!r}")
        i, j = divmod(int(action), len(self.learning_rates))
        return self.ranks[i], self.learning_rates[j]

    def encode(self, rank: int, lr: float) -> int:
        """The action index of a (rank, learning rate) pair of the grid."""
        if rank not in self.ranks or lr not in self.learning_rates:
            raise ValueError(f"({rank}, {lr}) is not in the grid: ranks {list(self.ranks)}, "
                             f"learning rates {list(self.learning_rates)}")
        return self.ranks.index(rank) * len(self.learning_rates) + self.learning_rates.index(lr)

    def pairs(self) -> list[tuple[int, float]]:
        """All (rank, lr) pairs in action order."""
        return list(itertools.product(self.ranks, self.learning_rates))

    def rank_position(self, rank: int) -> float:
        """The rank's index in the grid scaled to [0, 1]."""
        return _position(self.ranks.index(rank), len(self.ranks))

    def lr_position(self, lr: float) -> float:
        """The learning rate's index in the grid scaled to [0, 1]."""
        return _position(self.learning_rates.index(lr), len(self.learning_rates))


def _position(index: int, n: int) -> float:
    return index / (n - 1) if n > 1 else 0.0


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
)
ObservationSpec = tuple[tuple[str, float, float], ...]


def spec_names(spec: ObservationSpec) -> tuple[str, ...]:
    """The entry names of an observation spec, in order."""
    return tuple(name for name, _, _ in spec)


def spec_bounds(spec: ObservationSpec) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` float32 arrays of an observation spec."""
    return (np.array([low for _, low, _ in spec], dtype=np.float32),
            np.array([high for _, _, high in spec], dtype=np.float32))


OBSERVATION_NAMES: tuple[str, ...] = spec_names(OBSERVATION_SPEC)
OBS_LOW, OBS_HIGH = spec_bounds(OBSERVATION_SPEC)


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


def build_observation(values: dict[str, float], features: TaskFeatures,
                      spec: ObservationSpec = OBSERVATION_SPEC) -> np.ndarray:
    """The one place observations are made: finite, clipped to the documented bounds.

    `spec` is `OBSERVATION_SPEC`, or for the env variants it followed by their own entries.
    """
    raw = {
        **values,
        "log10_train_size": math.log10(max(features.train_size, 1)),
        "log2_num_classes": math.log2(max(features.num_classes, 1)),
        "label_entropy": features.label_entropy,
        "mean_length": features.mean_length,
        "p90_length": features.p90_length,
        "untrained_accuracy": features.untrained_accuracy,
    }
    names = spec_names(spec)
    low, high = spec_bounds(spec)
    obs = np.array([raw[name] for name in names], dtype=np.float64)
    # A diverged fine-tune yields NaN/inf metrics: losses read as the cap, scores as 0.
    obs = np.nan_to_num(obs, nan=0.0, posinf=LOSS_CAP, neginf=0.0)
    for name in ("val_loss", "train_loss"):
        if not math.isfinite(values.get(name, 0.0)):
            obs[names.index(name)] = LOSS_CAP
    return np.clip(obs, low, high).astype(np.float32)
