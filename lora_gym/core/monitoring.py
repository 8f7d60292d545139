"""Optional observation entries summarising the LoRA layers' statistics (seed 002's monitoring).

The live env measures, per LoRA layer, the weight norms of A and B, the segment's gradient norms
and the effective rank of ΔW (`lora_gym.engine.monitor`) and puts them in ``info["lora_stats"]``.
The config's ``extra_observations`` appends summaries of them to the observation, after the
env's own entries; the store records the whole observation, so a replay serves them too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from lora_gym.core.observation import OBSERVATION_SPEC, ObservationSpec

NORM_CAP = 10.0
"""Gradient and ΔW norms are clipped to [0, NORM_CAP] in the observation."""
MONITOR_SPEC: ObservationSpec = (
    ("mean_grad_norm", 0.0, NORM_CAP),
    ("effective_rank", 0.0, 1.0),
    ("delta_w_norm", 0.0, NORM_CAP),
)
"""``mean_grad_norm``: mean over LoRA layers of the last segment's mean gradient norm of (A, B)
(before clipping; 0 at reset); ``effective_rank``: mean over layers of the smallest k holding 90%
of ΔW's energy (Σσ²), divided by the largest rank of the grid; ``delta_w_norm``: mean Frobenius
norm of ΔW = s·B·A over layers."""
MONITOR_NAMES: tuple[str, ...] = tuple(name for name, _, _ in MONITOR_SPEC)


def monitor_spec(names: Iterable[str]) -> ObservationSpec:
    """The `MONITOR_SPEC` entries of `names`, in the order given."""
    entries = dict((name, (name, low, high)) for name, low, high in MONITOR_SPEC)
    return tuple(entries[name] for name in names)


def with_monitor(names: Iterable[str]) -> ObservationSpec:
    """The spec of `LoRATune-v0` (and its replay) with the `names` entries appended."""
    return OBSERVATION_SPEC + monitor_spec(names)


def carried_monitor(obs: np.ndarray, names: Iterable[str]) -> dict[str, float]:
    """The `names` entries of an observation of `with_monitor(names)` (a surrogate carries them)."""
    start = len(OBSERVATION_SPEC)
    return {name: float(obs[start + i]) for i, name in enumerate(names)}


def monitor_values(lora_stats: Mapping[str, Mapping[str, float]], max_rank: int
                   ) -> dict[str, float]:
    """The `MONITOR_SPEC` values from ``info["lora_stats"]`` (layer name -> statistics)."""
    layers = list(lora_stats.values()) or [{}]

    def mean(key: str) -> float:
        return sum(s.get(key, 0.0) for s in layers) / len(layers)

    return {"mean_grad_norm": mean("grad_norm"),
            "effective_rank": mean("effective_rank") / max_rank,
            "delta_w_norm": mean("delta_w_norm")}
