"""In-segment learning-rate schedules: the factor applied to the lr at each optimizer step."""

from __future__ import annotations

import math

LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine", "warmup_cosine")
"""``constant``: the chosen lr at every step; ``cosine``: decays from lr towards 0 over the
segment; ``warmup_cosine``: rises linearly over the first `warmup_steps` steps, then decays."""


def warmup_steps(steps: int, fraction: float) -> int:
    """Warm-up steps of a ``warmup_cosine`` segment: round(fraction·steps), at least 1."""
    return min(steps, max(1, round(fraction * steps)))


def lr_factor(schedule: str, step: int, steps: int, warmup_fraction: float = 0.1) -> float:
    """Factor of the segment's lr at optimizer step `step` (0-based) of `steps`.

    ``cosine``: ``0.5·(1 + cos(π·t/K))`` (1 at the first step, near 0 at the last);
    ``warmup_cosine``: ``(t+1)/(W+1)`` for the first W steps (never 0), then the cosine over the
    remaining ``K - W`` steps (as seed 004's warm-up + cosine trainer, within one segment).

    Raises:
        ValueError: unknown `schedule`.
    """
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / steps))
    if schedule == "warmup_cosine":
        warm = warmup_steps(steps, warmup_fraction)
        if step < warm:
            return (step + 1) / (warm + 1)
        return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(steps - warm, 1)))
    raise ValueError(f"`lr_schedule` must be one of {list(LR_SCHEDULES)}, got {schedule!r}")
