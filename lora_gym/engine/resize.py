"""Weight-preserving LoRA rank changes on PEFT LoRA layers (grow with zero B, shrink by SVD).

For a PEFT ``LoraLayer`` the update is ``ΔW = s · B @ A``; the scaling ``s`` follows an alpha
policy (`ALPHA_POLICIES`): ``fixed`` s = alpha / r (PEFT's default), ``rslora`` s = alpha / √r,
``2r`` alpha = 2r so s = 2 at every rank.

* **Grow** r -> r' > r: ``A' = [A; A_new]`` (new rows drawn with the init strategy, see
  `INIT_STRATEGIES`), ``B' = [B, 0] · s / s'`` so that ``s' · B' @ A' == s · B @ A`` exactly.
* **Shrink** r -> r'' <= r: ``s · B @ A = U Σ Vᵀ`` (truncated SVD), ``B'' = U_r'' √(Σ_r''/s'')``,
  ``A'' = √(Σ_r''/s'') V_r''ᵀ``, so ``s'' · B'' @ A'' = U_r'' Σ_r'' V_r''ᵀ``: ΔW loses only the
  dropped singular values (none when r'' = r). An adapter that never trained (B = 0) keeps its
  first r'' rows of A instead, so that it can still learn.

With the base-derived inits `SVD_INITS` (PEFT's PiSSA and OLoRA) the adapter holds part of the
base weight W and the base layer holds the residual ``W_res = W - s · B @ A``. There a resize keeps
the layer's weight ``W_res + s · B @ A`` exactly: growing moves the residual's next r' - r
directions (its top singular directions for PiSSA, its first QR columns for OLoRA) into the
adapter; shrinking folds the dropped singular directions of ``s · B @ A`` back into W_res.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lora_gym.core.config import ALPHA_POLICIES, RANDOM_INITS, SVD_INITS

__all__ = ["ADAPTER", "ALPHA_POLICIES", "INIT_STRATEGIES", "SVD_INITS", "current_rank",
           "delta_weight", "init_a", "lora_layers", "reset_adapter", "reset_layer",
           "resize_adapter", "resize_layer", "scaling"]

ADAPTER = "default"
INIT_STRATEGIES = RANDOM_INITS
"""How A (and new rows of A) is drawn; B starts at zero in every case, so ΔW starts at 0.
``kaiming``: PEFT's default Kaiming-uniform (a = √5); ``gaussian``: N(0, 1/r²) like PEFT's
``init_lora_weights="gaussian"``; ``orthogonal``: orthonormal rows (scaled to Kaiming's norm),
new rows orthogonal to the existing ones when the rank grows (rows beyond the layer's
in_features, which cannot be orthogonal, are Kaiming's); ``xavier``: N(0, 2/(in + out))
(seed 002's Xavier variant, whose B stays 0 here); ``layer_adaptive``: seed 002's statistics-
adaptive init, N(0, σ²) with σ = c · std(W) · ‖W‖₂ from the base weight W, c = 0.5 while the
rank is at most half of W's effective rank (singular values above 1% of the largest), else 0.2."""


def scaling(rank: int, alpha: float, policy: str = "fixed") -> float:
    """The LoRA scaling s of a rank under an alpha policy (see the module docstring)."""
    if policy == "fixed":
        return alpha / rank
    if policy == "rslora":
        return alpha / math.sqrt(rank)
    if policy == "2r":
        return 2.0
    raise ValueError(f"alpha policy must be one of {list(ALPHA_POLICIES)}, got {policy!r}")


def lora_layers(model: nn.Module) -> list[nn.Module]:
    """All PEFT LoRA layers of `model`, in module order."""
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer) and ADAPTER in m.lora_A]


def delta_weight(layer: nn.Module) -> torch.Tensor:
    """``s · B @ A`` of a LoRA layer, shape (out_features, in_features)."""
    a = layer.lora_A[ADAPTER].weight
    b = layer.lora_B[ADAPTER].weight
    return layer.scaling[ADAPTER] * (b @ a)


def _set_weights(layer: nn.Module, a: torch.Tensor, b: torch.Tensor, alpha: float,
                 policy: str) -> None:
    rank = a.shape[0]
    lin_a, lin_b = layer.lora_A[ADAPTER], layer.lora_B[ADAPTER]
    device = lin_a.weight.device  # adapters stay float32 whatever the base's dtype
    lin_a.weight = nn.Parameter(a.to(device, torch.float32).contiguous(), requires_grad=True)
    lin_b.weight = nn.Parameter(b.to(device, torch.float32).contiguous(), requires_grad=True)
    lin_a.out_features = lin_b.in_features = rank
    layer.r[ADAPTER] = rank
    layer.lora_alpha[ADAPTER] = 2.0 * rank if policy == "2r" else alpha
    layer.scaling[ADAPTER] = scaling(rank, alpha, policy)
    layer.use_rslora[ADAPTER] = policy == "rslora"


def init_a(rank: int, in_features: int, generator: torch.Generator, init: str = "kaiming",
           existing: torch.Tensor | None = None, base_weight: torch.Tensor | None = None
           ) -> torch.Tensor:
    """Draw `rank` new rows of A from `generator` with an init strategy (`INIT_STRATEGIES`).

    Args:
        rank: rows to draw.
        in_features: columns of A.
        generator: the seeded source of randomness.
        init: the strategy.
        existing: rows A already has (``orthogonal`` makes the new rows orthogonal to them).
        base_weight: the adapted layer's frozen weight (out, in): needed by ``xavier`` (its
            fan-out) and ``layer_adaptive`` (its statistics).
    """
    if init in ("xavier", "layer_adaptive"):
        if base_weight is None:
            raise ValueError(f"`init` {init!r} needs the base layer's weight")
        total = rank + (0 if existing is None else existing.shape[0])
        std = _scaled_std(init, base_weight.detach().float(), total)
        return torch.randn(rank, in_features, generator=generator) * std
    a = torch.empty(rank, in_features)
    nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
    if init == "kaiming":
        return a
    if init == "gaussian":
        total = rank + (0 if existing is None else existing.shape[0])
        return torch.randn(rank, in_features, generator=generator) / total
    if init == "orthogonal":  # at most in_features orthogonal rows; any beyond stay Kaiming
        k = min(rank, in_features - (0 if existing is None else existing.shape[0]))
        if k <= 0:
            return a
        norm = a.norm(dim=1).mean()
        basis = a[:k].T if existing is None else torch.cat([existing.T, a[:k].T], dim=1)
        q, _ = torch.linalg.qr(basis.double())  # Gram-Schmidt: later columns ⟂ earlier ones
        return torch.cat([(q[:, -k:].T * norm).float(), a[k:]])
    raise ValueError(f"`init` must be one of {list(INIT_STRATEGIES)}, got {init!r}")


def _scaled_std(init: str, weight: torch.Tensor, rank: int) -> float:
    """The std of A's entries for ``xavier`` and ``layer_adaptive`` (`INIT_STRATEGIES`)."""
    out_f, in_f = weight.shape
    if init == "xavier":
        return math.sqrt(2.0 / (in_f + out_f))
    sigma = torch.linalg.svdvals(weight.double())
    effective_rank = int((sigma > 0.01 * sigma[0]).sum())
    factor = 0.5 if rank <= effective_rank // 2 else 0.2
    return factor * float(weight.std()) * float(sigma[0])


def reset_layer(layer: nn.Module, rank: int, alpha: float, generator: torch.Generator,
                init: str = "kaiming", alpha_policy: str = "fixed") -> None:
    """Give a layer a fresh adapter: random A, zero B (ΔW = 0), or PEFT's PiSSA / OLoRA init.

    PiSSA and OLoRA (`SVD_INITS`) turn the base layer's weight into the residual; call them on the
    original base weight (the fine-tune session restores it at every reset).
    """
    in_f = layer.lora_A[ADAPTER].in_features
    out_f = layer.lora_B[ADAPTER].out_features
    if init not in SVD_INITS:
        a = init_a(rank, in_f, generator, init, base_weight=layer.get_base_layer().weight)
        _set_weights(layer, a, torch.zeros(out_f, rank), alpha, alpha_policy)
        return
    _check_svd_rank(rank, in_f, out_f, init)
    _set_weights(layer, torch.zeros(rank, in_f), torch.zeros(out_f, rank), alpha, alpha_policy)
    with torch.no_grad():
        if init == "pissa":
            layer.pissa_init(ADAPTER, "pissa")
        else:
            layer.olora_init(ADAPTER)


def _check_svd_rank(rank: int, in_f: int, out_f: int, init: str) -> None:
    if rank > min(in_f, out_f):
        raise ValueError(f"`init` {init!r} needs rank <= min(in, out) = {min(in_f, out_f)} for "
                         f"every adapted layer, got rank {rank}")


def _from_residual(layer: nn.Module, k: int, scale: float, init: str
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the residual's next `k` directions into new adapter factors ``(B_k, A_k)``.

    PiSSA: the top-k singular triplets of W_res split as PEFT does (√(σ/s) on each side); OLoRA:
    the first k columns of W_res's QR, as PEFT's ``olora_init``. ``W_res -= s · B_k @ A_k``.
    """
    weight = layer.get_base_layer().weight
    residual = weight.detach().double()
    if init == "pissa":
        u, sigma, vh = torch.linalg.svd(residual, full_matrices=False)
        root = (sigma[:k] / scale).sqrt()
        b_k, a_k = u[:, :k] * root, root[:, None] * vh[:k]
    else:
        q, r = torch.linalg.qr(residual)
        b_k, a_k = q[:, :k], r[:k]
    weight.data -= (scale * (b_k @ a_k)).to(weight.dtype)
    return b_k.float(), a_k.float()


@torch.no_grad()
def resize_layer(layer: nn.Module, rank: int, alpha: float, generator: torch.Generator,
                 init: str = "kaiming", alpha_policy: str = "fixed") -> None:
    """Change a LoRA layer's rank keeping ΔW (grow: exactly; shrink: best rank-r approximation).

    With `SVD_INITS` the layer's weight ``W_res + s · B @ A`` is kept exactly (module docstring).
    """
    a = layer.lora_A[ADAPTER].weight.detach()
    b = layer.lora_B[ADAPTER].weight.detach()
    old_rank, old_scale = a.shape[0], layer.scaling[ADAPTER]
    new_scale = scaling(rank, alpha, alpha_policy)
    if rank > old_rank:
        if init in SVD_INITS:
            _check_svd_rank(rank, a.shape[1], b.shape[0], init)
            new_b, new_rows = _from_residual(layer, rank - old_rank, new_scale, init)
        else:
            new_rows = init_a(rank - old_rank, a.shape[1], generator, init, existing=a.cpu(),
                              base_weight=layer.get_base_layer().weight).to(a.device)
            new_b = b.new_zeros(b.shape[0], rank - old_rank)
        a_new = torch.cat([a, new_rows], dim=0)
        b_new = torch.cat([b * (old_scale / new_scale), new_b], dim=1)
    elif not b.any():  # never trained: ΔW = 0 has no directions to keep, keep A's rows alive
        a_new, b_new = a[:rank].clone(), b[:, :rank].clone()
    else:
        delta = (old_scale * (b @ a)).double()
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        root = (s[:rank] / new_scale).sqrt()  # split Σ/s'' evenly between B and A
        b_new = (u[:, :rank] * root).float()
        a_new = (root[:, None] * vh[:rank]).float()
        if init in SVD_INITS:  # the dropped directions go back into the residual base weight
            weight = layer.get_base_layer().weight
            weight.data += (delta - new_scale * (b_new.double() @ a_new.double())).to(weight.dtype)
    _set_weights(layer, a_new, b_new, alpha, alpha_policy)


def reset_adapter(model: nn.Module, rank: int, alpha: float, generator: torch.Generator,
                  init: str = "kaiming", alpha_policy: str = "fixed") -> None:
    """Reset every LoRA layer of `model` to a fresh adapter of `rank`."""
    for layer in lora_layers(model):
        reset_layer(layer, rank, alpha, generator, init, alpha_policy)


def resize_adapter(model: nn.Module, rank: int, alpha: float, generator: torch.Generator,
                   init: str = "kaiming", alpha_policy: str = "fixed") -> None:
    """Resize every LoRA layer of `model` to `rank`, keeping what it has learned."""
    for layer in lora_layers(model):
        resize_layer(layer, rank, alpha, generator, init, alpha_policy)


def current_rank(model: nn.Module) -> int:
    """The (common) rank of the model's LoRA layers."""
    ranks = {layer.r[ADAPTER] for layer in lora_layers(model)}
    assert len(ranks) == 1, f"layers have different ranks {ranks}"
    return ranks.pop()
