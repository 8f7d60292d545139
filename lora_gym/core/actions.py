"""The discrete action grid of the LoRA-tuning environment: (rank, learning rate) pairs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class ActionGrid:
    """A discrete grid of (rank, lr) pairs, then optionally *stop*.

    Action ``i * len(lrs) + j`` is (r_i, lr_j); with ``stop``, action ``len(ranks) * len(lrs)``
    (the last one) ends the episode without training. Appending stop keeps every pair's index,
    so recorded action prefixes stay valid with or without it.

    >>> grid = ActionGrid((2, 4), (1.0e-4, 1.0e-3), stop=True)
    >>> grid.decode(3), grid.stop_action, len(grid)
    ((4, 0.001), 4, 5)
    """

    ranks: tuple[int, ...]
    learning_rates: tuple[float, ...]
    stop: bool = False

    def __len__(self) -> int:
        return self.n_pairs + int(self.stop)

    @property
    def n_pairs(self) -> int:
        """Number of (rank, lr) actions (every action but stop)."""
        return len(self.ranks) * len(self.learning_rates)

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
        i, j = divmod(int(action), len(self.learning_rates))
        return self.ranks[i], self.learning_rates[j]

    def encode(self, rank: int, lr: float) -> int:
        """The action index of a (rank, learning rate) pair of the grid."""
        if rank not in self.ranks or lr not in self.learning_rates:
            raise ValueError(f"({rank}, {lr}) is not in the grid: ranks {list(self.ranks)}, "
                             f"learning rates {list(self.learning_rates)}")
        return self.ranks.index(rank) * len(self.learning_rates) + self.learning_rates.index(lr)

    @classmethod
    def of(cls, config) -> ActionGrid:
        """The grid of an `EnvConfig` (ranks, learning rates, stop action)."""
        return cls(tuple(config.ranks), tuple(config.learning_rates), bool(config.stop_action))

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
