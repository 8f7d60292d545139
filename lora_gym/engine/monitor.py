"""Per-layer LoRA statistics (seed 002's monitoring): weight and gradient norms, effective rank.

`GradientNorms` accumulates the gradient norms of every LoRA layer's A and B over the optimizer
steps of a segment (measured after ``backward``, before clipping); `lora_stats` turns them and the
current weights into ``info["lora_stats"]``: for each layer ``a_norm``, ``b_norm`` (Frobenius),
``a_grad_norm``, ``b_grad_norm`` (the segment's means; 0 for a frozen layer or at reset),
``grad_norm`` (√(a² + b²) of those), ``delta_w_norm`` (‖s·B·A‖_F) and ``effective_rank`` (the
smallest k whose top-k singular values hold `ENERGY` of Σσ² of ΔW; 0 when ΔW = 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from lora_gym.engine.resize import ADAPTER

ENERGY = 0.9
"""Share of ΔW's energy (Σσ²) the effective rank holds."""


def singular_values(layer: nn.Module) -> torch.Tensor:
    """Singular values of ``ΔW = s·B·A`` from two thin QRs (an r x r SVD, never out x in)."""
    a = layer.lora_A[ADAPTER].weight.detach().double()
    b = layer.lora_B[ADAPTER].weight.detach().double()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return torch.full((a.shape[0],), math.nan, dtype=torch.float64)
    _, r_b = torch.linalg.qr(b)
    _, r_a = torch.linalg.qr(a.T)
    return torch.linalg.svdvals(layer.scaling[ADAPTER] * (r_b @ r_a.T))


def effective_rank(sigma: torch.Tensor, energy: float = ENERGY) -> int:
    """The smallest k whose top-k singular values hold `energy` of Σσ² (0 for all zeros)."""
    power = sigma.double() ** 2
    total = float(power.sum())
    if not 0.0 < total < math.inf:  # ΔW = 0, or a diverged (non-finite) adapter
        return 0
    share = torch.cumsum(power, 0) / total
    return int((share < energy - 1e-12).sum()) + 1


class GradientNorms:
    """Running sums of each layer's per-step gradient norms of A and B over one segment."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0

    def clear(self) -> None:
        """Start a new segment."""
        self.sums, self.steps = {}, 0

    @torch.no_grad()
    def add(self, layers: Mapping[str, nn.Module]) -> None:
        """Add the current gradients' norms (call after ``backward``, before clipping)."""
        self.steps += 1
        for name, layer in layers.items():
            grads = [layer.lora_A[ADAPTER].weight.grad, layer.lora_B[ADAPTER].weight.grad]
            if grads[0] is None or grads[1] is None:
                continue
            norms = torch.stack([g.norm() for g in grads]).double()
            self.sums[name] = self.sums[name] + norms if name in self.sums else norms

    def means(self, name: str) -> tuple[float, float]:
        """The segment's mean ``(‖∇A‖, ‖∇B‖)`` of a layer (zeros if it never had gradients)."""
        if name not in self.sums:
            return 0.0, 0.0
        a, b = (self.sums[name] / self.steps).tolist()
        return a, b


def lora_stats(layers: Mapping[str, nn.Module], grads: GradientNorms
               ) -> dict[str, dict[str, float]]:
    """``info["lora_stats"]``: each LoRA layer's statistics (module docstring)."""
    out = {}
    for name, layer in layers.items():
        sigma = singular_values(layer)
        a_grad, b_grad = grads.means(name)
        out[name] = {"rank": int(layer.r[ADAPTER]),
                     "a_norm": float(layer.lora_A[ADAPTER].weight.detach().norm()),
                     "b_norm": float(layer.lora_B[ADAPTER].weight.detach().norm()),
                     "a_grad_norm": a_grad, "b_grad_norm": b_grad,
                     "grad_norm": math.hypot(a_grad, b_grad),
                     "delta_w_norm": float(sigma.norm()),
                     "effective_rank": effective_rank(sigma)}
    return out
