"""The discrete action grid of the LoRA-tuning environment: (rank, lr[, steps][, augmentation])."""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class ActionGrid:
    """A discrete grid of (rank, lr) pairs with training-step and augmentation choices; *stop*.

    Without choices, action ``i * len(lrs) + j`` is (r_i, lr_j), trains ``base_steps`` with
    ``base_augmentation``; with them, action ``((i * len(lrs) + j) * n_steps + k) * n_aug + m``
    is (r_i, lr_j) training ``steps[k]`` steps augmented by ``augmentations[m]`` (the
    augmentation varies fastest; a dimension without choices has size 1). With ``stop``, the
    last action ends the episode without training. Appending stop keeps every other action's
    index, so recorded action prefixes stay valid with or without it.

    >>> grid = ActionGrid((2, 4), (1.0e-4, 1.0e-3), stop=True)
    >>> grid.decode(3), grid.stop_action, len(grid)
    ((4, 0.001), 4, 5)
    >>> grid = ActionGrid((2, 4), (1.0e-4, 1.0e-3), steps=(10, 20), base_steps=20)
    >>> grid.decode(3), grid.steps_of(3), grid.encode(4, 1.0e-4), len(grid)
    ((2, 0.001), 20, 5, 8)
    >>> grid = ActionGrid((2,), (1.0e-3, 1.0e-2), augmentations=("none", "mixup"))
    >>> grid.decode(3), grid.augmentation_of(3), grid.encode(2, 1.0e-2, augmentation="none")
    ((2, 0.01), 'mixup', 2)
    """

    ranks: tuple[int, ...]
    learning_rates: tuple[float, ...]
    stop: bool = False
    steps: tuple[int, ...] = ()
    """Optimizer steps an action can train (empty: every action trains ``base_steps``)."""
    base_steps: int = 0
    """The config's ``steps_per_action``: what `encode` picks when no steps are given."""
    augmentations: tuple[str, ...] = ()
    """Augmentations an action can train with (empty: every action uses ``base_augmentation``)."""
    base_augmentation: str = "none"
    """The config's ``augmentation``: what `encode` picks when none is given."""

    def __len__(self) -> int:
        return self.n_pairs + int(self.stop)

    @property
    def n_steps(self) -> int:
        """Number of training-step choices per (rank, lr) pair (1 without choices)."""
        return len(self.steps) or 1

    @property
    def n_aug(self) -> int:
        """Number of augmentation choices per (rank, lr, steps) (1 without choices)."""
        return len(self.augmentations) or 1

    @property
    def n_pairs(self) -> int:
        """Number of training actions: (rank, lr) pairs times step and augmentation choices."""
        return len(self.ranks) * len(self.learning_rates) * self.n_steps * self.n_aug

    @property
    def stop_action(self) -> int | None:
        """The index of the stop action, or None without one."""
        return self.n_pairs if self.stop else None

    def is_stop(self, action: int) -> bool:
        """Whether `action` is the stop action."""
        return self.stop and int(action) == self.n_pairs

    def decode(self, action: int) -> tuple[int, float]:
        """The (rank, learning rate) of a (rank, lr) action index."""
        if not 0 <= int(action) < self.n_pairs:
            what = " (the stop action has no rank or lr)" if self.is_stop(action) else ""
            raise ValueError(f"a (rank, lr) action must be in [0, {self.n_pairs}), "
                             f"got {action!r}{what}")
        i, j = divmod(int(action) // (self.n_steps * self.n_aug), len(self.learning_rates))
        return self.ranks[i], self.learning_rates[j]

    def steps_of(self, action: int) -> int:
        """The optimizer steps a training action trains."""
        self.decode(action)  # validates the index
        if not self.steps:
            return self.base_steps
        return self.steps[(int(action) // self.n_aug) % self.n_steps]

    def augmentation_of(self, action: int) -> str:
        """The augmentation a training action trains with."""
        self.decode(action)  # validates the index
        if not self.augmentations:
            return self.base_augmentation
        return self.augmentations[int(action) % self.n_aug]

    def encode(self, rank: int, lr: float, steps: int | None = None,
               augmentation: str | None = None) -> int:
        """The action index of (rank, lr) training `steps` with `augmentation`.

        They default to ``base_steps`` and ``base_augmentation``.
        """
        if rank not in self.ranks or lr not in self.learning_rates:
            raise ValueError(f"({rank}, {lr}) is not in the grid: ranks {list(self.ranks)}, "
                             f"learning rates {list(self.learning_rates)}")
        pair = self.ranks.index(rank) * len(self.learning_rates) + self.learning_rates.index(lr)
        index = pair * self.n_steps + _choice("steps", steps, self.steps, self.base_steps)
        return index * self.n_aug + _choice("augmentation", augmentation, self.augmentations,
                                            self.base_augmentation)

    @classmethod
    def of(cls, config) -> ActionGrid:
        """The grid of an `EnvConfig` (ranks, lrs, stop action, steps and augmentation choices).

        An `LMConfig` has no steps or augmentation choices: its grid is ranks × lrs (+ stop).
        """
        return cls(tuple(config.ranks), tuple(config.learning_rates), bool(config.stop_action),
                   tuple(getattr(config, "steps_choices", ())), int(config.steps_per_action),
                   tuple(getattr(config, "augmentation_choices", ())),
                   getattr(config, "augmentation", "none"))

    def pairs(self) -> list[tuple[int, float]]:
        """The (rank, lr) of every training action, in action order."""
        return [pair for pair in itertools.product(self.ranks, self.learning_rates)
                for _ in range(self.n_steps * self.n_aug)]

    def steps_position(self, steps: int) -> float:
        """The steps choice's index scaled to [0, 1] (0 without choices)."""
        return _position(self.steps.index(steps), len(self.steps)) if self.steps else 0.0

    def rank_position(self, rank: int) -> float:
        """The rank's index in the grid scaled to [0, 1]."""
        return _position(self.ranks.index(rank), len(self.ranks))

    def lr_position(self, lr: float) -> float:
        """The learning rate's index in the grid scaled to [0, 1]."""
        return _position(self.learning_rates.index(lr), len(self.learning_rates))


def _choice(name: str, value, choices: tuple, base) -> int:
    """The index of `value` (None: `base`) among `choices`; 0 when the grid has none."""
    value = base if value is None else value
    if not choices:
        if value != base:
            raise ValueError(f"this grid has no {name} choices: every action uses {name} "
                             f"{base!r}, got {name}={value!r}")
        return 0
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not a {name} choice of the grid: {list(choices)}")
    return choices.index(value)


def _position(index: int, n: int) -> float:
    return index / (n - 1) if n > 1 else 0.0
