"""Deterministic compute cost of a fine-tune segment (never wall time).

The cost of a segment is proportional to the tokens it trains on (padding included, as the model
computes on it) times a rank factor:

    cost = tokens / ref_tokens * (1 + rank / ref_rank) / 2

The constant half stands for the frozen base model's forward and backward passes; the rank half for
the adapter's share (its parameters, gradients and optimizer state grow linearly with the rank).
``ref_tokens = steps_per_action * batch_size * max_length / 2`` (half-filled sequences) and
``ref_rank`` is the grid's median rank, so a default segment costs about 1.
"""

from __future__ import annotations

import statistics
from typing import Any


def reference_rank(ranks: tuple[int, ...]) -> float:
    """The rank at which the rank factor is 1 (median of the grid)."""
    return float(statistics.median(ranks))


def reference_tokens(config: Any) -> float:
    """The tokens of a default segment: ``steps_per_action * batch_size * max_length / 2``."""
    return config.steps_per_action * config.batch_size * config.max_length / 2


def rank_factor(rank: int, config: Any) -> float:
    """``(1 + rank / ref_rank) / 2``: 1 at the grid's median rank."""
    return (1.0 + rank / reference_rank(config.ranks)) / 2.0


def segment_cost(tokens: int, rank: int, config: Any) -> float:
    """Normalised compute cost of training `tokens` tokens at LoRA `rank`."""
    return tokens / reference_tokens(config) * rank_factor(rank, config)


def segment_tokens(cost: float, rank: int, config: Any) -> float:
    """The tokens a segment of `cost` at `rank` trained on (the inverse of `segment_cost`)."""
    return cost * reference_tokens(config) / rank_factor(rank, config)
