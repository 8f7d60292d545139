"""The discrete action grid of the LoRA-tuning environment: (rank, learning rate) pairs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass


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
