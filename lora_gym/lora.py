"""Weight-preserving LoRA rank changes on PEFT LoRA layers (grow with zero B, shrink by SVD).

For a PEFT ``LoraLayer`` the update is ``ΔW = s · B @ A`` with ``s = alpha / r``.

* **Grow** r -> r' > r: ``A' = [A; A_new]`` (new rows initialised like PEFT's default,
  Kaiming-uniform), ``B' = [B, 0] · s / s'`` so that ``s' · B' @ A' == s · B @ A`` exactly.
* **Shrink** r -> r'' <= r: ``s · B @ A = U Σ Vᵀ`` (truncated SVD), ``B'' = U_r'' √(Σ_r''/s'')``,
  ``A'' = √(Σ_r''/s'') V_r''ᵀ``, so ``s'' · B'' @ A'' = U_r'' Σ_r'' V_r''ᵀ``: ΔW loses only the
  dropped singular values (none when r'' = r).
"""

from __future__ import annotations

import math

import torch
from torch import nn

ADAPTER = "default"


def lora_layers(model: nn.Module) -> list[nn.Module]:
    """All PEFT LoRA layers of `model`, in module order."""
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer) and ADAPTER in m.lora_A]


def delta_weight(layer: nn.Module) -> torch.Tensor:
    """``s · B @ A`` of a LoRA layer, shape (out_features, in_features)."""
    a = layer.lora_A[ADAPTER].weight
    b = layer.lora_B[ADAPTER].weight
    return layer.scaling[ADAPTER] * (b @ a)


def _set_weights(layer: nn.Module, a: torch.Tensor, b: torch.Tensor, alpha: float) -> None:
    rank = a.shape[0]
    lin_a, lin_b = layer.lora_A[ADAPTER], layer.lora_B[ADAPTER]
    lin_a.weight = nn.Parameter(a.contiguous(), requires_grad=True)
    lin_b.weight = nn.Parameter(b.contiguous(), requires_grad=True)
    lin_a.out_features = lin_b.in_features = rank
    layer.r[ADAPTER] = rank
    layer.lora_alpha[ADAPTER] = alpha
    layer.scaling[ADAPTER] = alpha / rank


def init_a(rank: int, in_features: int, generator: torch.Generator) -> torch.Tensor:
    """PEFT's default A initialisation (Kaiming-uniform with a = √5), drawn from `generator`."""
    a = torch.empty(rank, in_features)
    nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
    return a


def reset_layer(layer: nn.Module, rank: int, alpha: float, generator: torch.Generator) -> None:
    """A fresh adapter: random A, zero B (ΔW = 0)."""
    in_f = layer.lora_A[ADAPTER].in_features
    out_f = layer.lora_B[ADAPTER].out_features
    _set_weights(layer, init_a(rank, in_f, generator), torch.zeros(out_f, rank), alpha)


@torch.no_grad()
def resize_layer(layer: nn.Module, rank: int, alpha: float, generator: torch.Generator) -> None:
    """Change a LoRA layer's rank keeping ΔW (grow: exactly; shrink: best rank-r approximation)."""
    a = layer.lora_A[ADAPTER].weight.detach()
    b = layer.lora_B[ADAPTER].weight.detach()
    old_rank, old_scale, new_scale = a.shape[0], layer.scaling[ADAPTER], alpha / rank
    if rank > old_rank:
        a_new = torch.cat([a, init_a(rank - old_rank, a.shape[1], generator)], dim=0)
        b_new = torch.cat([b * (old_scale / new_scale), b.new_zeros(b.shape[0], rank - old_rank)],
                          dim=1)
    else:
        u, s, vh = torch.linalg.svd((old_scale * (b @ a)).double(), full_matrices=False)
        root = (s[:rank] / new_scale).sqrt()  # split Σ/s'' evenly between B and A
        b_new = (u[:, :rank] * root).float()
        a_new = (root[:, None] * vh[:rank]).float()
    _set_weights(layer, a_new, b_new, alpha)


def reset_adapter(model: nn.Module, rank: int, alpha: float, generator: torch.Generator) -> None:
    """Reset every LoRA layer of `model` to a fresh adapter of `rank`."""
    for layer in lora_layers(model):
        reset_layer(layer, rank, alpha, generator)


def resize_adapter(model: nn.Module, rank: int, alpha: float, generator: torch.Generator) -> None:
    """Resize every LoRA layer of `model` to `rank`, keeping what it has learned."""
    for layer in lora_layers(model):
        resize_layer(layer, rank, alpha, generator)


def current_rank(model: nn.Module) -> int:
    """The (common) rank of the model's LoRA layers."""
    ranks = {layer.r[ADAPTER] for layer in lora_layers(model)}
    assert len(ranks) == 1, f"layers have different ranks {ranks}"
    return ranks.pop()
