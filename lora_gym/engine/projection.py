"""Gradient projection of LoRA updates (seed 003): onto A's top singular subspace, and PCGrad.

* `project_to_subspace` (``grad_projection: subspace``): seed 003's ``projected_gradient_descent``
  computes ``P @ grad @ P`` with ``P = U_k U_kᵀ`` from the SVD of A, which is only defined for a
  square gradient; for A of shape (r, d_in) we read it as the projection onto A's top-k singular
  subspace, ``G ← U_k U_kᵀ G V_k V_kᵀ`` (A = U S Vᵀ, k = min(projection_dim, rank of A)). The
  update of A then stays in the span of its k strongest directions on both sides: with r <= k
  only the input side constrains it (A's rows move within their own span, a LoRA-FA-like update
  in which B does the learning).
* `pcgrad` (``grad_projection: pcgrad``): PCGrad (Yu et al., 2020) between the tasks' gradients
  on a shared adapter: each task's gradient loses its component along every other task's gradient
  it conflicts with (negative inner product), in a seeded random order; the results are summed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from lora_gym.engine.resize import ADAPTER


@torch.no_grad()
def subspace_projection(a: torch.Tensor, grad: torch.Tensor, dim: int) -> torch.Tensor:
    """``U_k U_kᵀ grad V_k V_kᵀ`` for ``a = U S Vᵀ`` (k = min(dim, numerical rank of a))."""
    u, s, vh = torch.linalg.svd(a.double(), full_matrices=False)
    keep = int(min(dim, int((s > s.max() * 1e-6).sum()) if s.numel() else 0))
    if keep == 0:
        return torch.zeros_like(grad)
    u, vh = u[:, :keep], vh[:keep]
    return (u @ (u.T @ grad.double() @ vh.T) @ vh).to(grad.dtype)


@torch.no_grad()
def project_to_subspace(layers: Iterable[nn.Module], dim: int,
                        adapter: str = ADAPTER) -> None:
    """Replace every LoRA layer's A gradient by its projection onto A's top-`dim` subspace."""
    for layer in layers:
        weight = layer.lora_A[adapter].weight
        if weight.grad is not None:
            weight.grad.copy_(subspace_projection(weight, weight.grad, dim))


def pcgrad(grads: Sequence[torch.Tensor], rng: np.random.Generator) -> torch.Tensor:
    """PCGrad's combined gradient of one flat gradient per task (module docstring).

    For each task i, in turn for every other task j (in an order drawn from `rng`): if
    ``g_i · g_j < 0``, ``g_i ← g_i − (g_i · g_j) / |g_j|² g_j``. Returns ``Σ_i g_i``.
    """
    projected = []
    for i, g in enumerate(grads):
        g = g.clone()
        for j in rng.permutation(len(grads)):
            if j == i:
                continue
            other = grads[j]
            dot = torch.dot(g, other)
            norm = torch.dot(other, other)
            if dot < 0 and norm > 0:
                g -= dot / norm * other
        projected.append(g)
    return torch.stack(projected).sum(0)
