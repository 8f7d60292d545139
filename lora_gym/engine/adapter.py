"""The session's module manager: every LoRA layer's group, rank and trainable state, base weights.

PEFT cannot add target modules to a live model, so every candidate module gets its LoRA layer
once, when the session is built (``lora_layers`` x ``target_modules``). The manager then decides,
per layer:

* its **rank** (one for all, or one per layer group; resized with
  `lora_gym.engine.resize.resize_layer`,
  which keeps ΔW);
* whether it is **active** (trainable). An inactive layer is frozen (``requires_grad=False``):
  one that never trained has B = 0 and so no effect on the output; one that trained and was
  deactivated keeps its learned ΔW, frozen. Activating or deactivating changes no weight, so the
  model's output is unchanged at that moment;
* the **base weights** of the adapted layers, kept for ``init: pissa | olora``, which turn them into
  residuals: every `reset` restores them before the new init.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from lora_gym.core.config import SVD_INITS, EnvConfig
from lora_gym.core.errors import ConfigError
from lora_gym.engine import resize as lora

_LAYER_INDEX = re.compile(r"\.(?:layer|layers|h)\.(\d+)\.")
"""A layer stack's numbered block in a module name (`lora_gym.engine.families`' ``layers``)."""


def layer_index(name: str) -> int:
    """The transformer layer a module name belongs to (``...layer.3.attention...`` -> 3).

    >>> layer_index("model.layers.11.self_attn.q_proj"), layer_index("transformer.h.0.attn.c_attn")
    (11, 0)
    """
    found = _LAYER_INDEX.search(name)
    if found is None:
        raise ConfigError(f"module {name!r} is in no numbered `.layer.<i>.`, `.layers.<i>.` or "
                          "`.h.<i>.` block: per-layer ranks and scopes need a layer stack")
    return int(found.group(1))


class AdapterManager:
    """The LoRA layers of one model, by name, with their groups, ranks and trainable state."""

    def __init__(self, net: nn.Module, config: EnvConfig) -> None:
        self.config = config
        found = set(map(id, lora.lora_layers(net)))
        self.layers: dict[str, nn.Module] = {
            name: m for name, m in net.named_modules() if id(m) in found}
        self.active: frozenset[str] = frozenset(self.layers)
        self.ranks: dict[str, int] = dict.fromkeys(self.layers, config.ranks[0])
        self._sizes = {name: m.in_features + m.out_features for name, m in self.layers.items()}
        self._base: dict[str, torch.Tensor] = {}
        if config.init in SVD_INITS:
            self._base = {name: m.get_base_layer().weight.detach().clone()
                          for name, m in self.layers.items()}
        self._depths: list[int] | None = None

    # -- structure -------------------------------------------------------------------------------
    @property
    def depths(self) -> list[int]:
        """The indices of the transformer layers that carry LoRA, in increasing order."""
        if self._depths is None:
            self._depths = sorted({layer_index(name) for name in self.layers})
        return self._depths

    def groups(self, n: int) -> list[list[str]]:
        """The LoRA layers split into `n` contiguous groups of whole transformer layers, bottom up.

        Raises:
            ConfigError: `n` exceeds the number of transformer layers carrying LoRA.
        """
        depths = self.depths
        if n > len(depths):
            raise ConfigError(f"`layer_groups` must be at most the {len(depths)} layers carrying "
                              f"LoRA (`lora_layers`), got {n}")
        bounds = [round(i * len(depths) / n) for i in range(n + 1)]
        return [[name for name in self.layers
                 if layer_index(name) in depths[bounds[g]:bounds[g + 1]]] for g in range(n)]

    def select(self, k: int | None, modules: Sequence[str]) -> frozenset[str]:
        """The LoRA layers of the top `k` transformer layers (``None``: all) matching `modules`.

        Modules match by name suffix, as PEFT's ``target_modules`` do.
        """
        depths = self.depths if k is None else self.depths[-k:]
        return frozenset(name for name in self.layers if layer_index(name) in depths
                         and any(name == m or name.endswith("." + m) for m in modules))

    def rank_map(self, rank: int | Sequence[int]) -> dict[str, int]:
        """Every layer's rank for one rank for all, or one per group (``groups(len(rank))``)."""
        if isinstance(rank, int):
            return dict.fromkeys(self.layers, rank)
        groups = self.groups(len(rank))
        return {name: r for group, r in zip(groups, rank, strict=True) for name in group}

    # -- state -----------------------------------------------------------------------------------
    def reset(self, rank: int, generator: torch.Generator) -> None:
        """Fresh adapters of `rank` in every layer, all active; base weights restored first."""
        cfg = self.config
        for name, layer in self.layers.items():
            if name in self._base:
                layer.get_base_layer().weight.data.copy_(self._base[name])
            lora.reset_layer(layer, rank, cfg.lora_alpha, generator, cfg.init, cfg.alpha_policy)
        self.ranks = dict.fromkeys(self.layers, rank)
        self.active = frozenset(self.layers)

    def resize(self, ranks: dict[str, int], generator: torch.Generator) -> bool:
        """Give layers new ranks (ΔW kept); returns whether anything changed."""
        cfg = self.config
        changed = [name for name, r in ranks.items() if r != self.ranks[name]]
        for name in changed:
            lora.resize_layer(self.layers[name], ranks[name], cfg.lora_alpha, generator, cfg.init,
                              cfg.alpha_policy)
            self.ranks[name] = ranks[name]
        self._apply_active()  # resized tensors are new parameters
        return bool(changed)

    def set_active(self, names: Iterable[str]) -> bool:
        """Make exactly the layers `names` trainable; returns whether the set changed."""
        names = frozenset(names)
        unknown = sorted(names - set(self.layers))
        if unknown:
            raise KeyError(f"no LoRA layer(s) {unknown}")
        changed, self.active = names != self.active, names
        self._apply_active()
        return changed

    def _apply_active(self) -> None:
        for name, layer in self.layers.items():
            for part in (layer.lora_A[lora.ADAPTER], layer.lora_B[lora.ADAPTER]):
                part.weight.requires_grad_(name in self.active)

    def trainable_rank(self) -> float:
        """Size-weighted mean rank over every candidate layer, inactive ones counting 0.

        ``Σ_active r_i (in_i + out_i) / Σ_all (in_i + out_i)``: proportional to the trainable LoRA
        parameters, and exactly r when every layer is active at rank r.
        """
        total = sum(self._sizes.values())
        return sum(self.ranks[n] * self._sizes[n] for n in self.active) / total
