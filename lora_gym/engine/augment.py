"""Data augmentation of training batches in hidden-state space (works with the prefix cache).

Both strategies act on the hidden states that enter the first layer a training batch runs
through (the first LoRA layer with the frozen-prefix cache, the embeddings' output without it),
so the cached activations stay valid and nothing is re-tokenised:

* ``hidden_noise``: add Gaussian noise of standard deviation ``strength`` times the batch's
  hidden-state standard deviation, on real (non-padding) tokens only;
* ``mixup``: manifold mixup (Verma et al., 2019): each example's hidden states are mixed with
  those of a random partner of the batch, ``m·h_i + (1−m)·h_j`` with m ~ Beta(α, α),
  α = ``strength``, over the union of their attention masks, and the loss mixes the two labels'
  cross-entropies with the same m.

Draws come from a generator seeded by the episode seed (apart from the batch order's, so the
batches are those of ``none``): episodes stay deterministic per seed.
Evaluation never augments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lora_gym.core.config import AUGMENTATIONS


@dataclass
class Augmented:
    """A training batch after augmentation: states, mask, and the loss's label mixture."""

    hidden: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    partner_labels: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    """Per-example weight m of `labels` (1 − m goes to `partner_labels`); None: no mixing."""

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the (mixed) labels."""
        if self.partner_labels is None:
            return F.cross_entropy(logits, self.labels)
        a = F.cross_entropy(logits, self.labels, reduction="none")
        b = F.cross_entropy(logits, self.partner_labels, reduction="none")
        return (self.weight * a + (1.0 - self.weight) * b).mean()


def augment(kind: str, strength: float, hidden: torch.Tensor, mask: torch.Tensor,
            labels: torch.Tensor, rng: np.random.Generator) -> Augmented:
    """Augment one batch (``hidden``: batch x tokens x features, ``mask``: batch x tokens).

    >>> rng = np.random.default_rng(0)
    >>> h, m, y = torch.ones(4, 3, 2), torch.ones(4, 3, dtype=torch.long), torch.arange(4)
    >>> torch.equal(augment("none", 0.2, h, m, y, rng).hidden, h)
    True
    >>> out = augment("mixup", 0.2, h, m, y, rng)
    >>> out.hidden.shape, bool(((out.weight >= 0) & (out.weight <= 1)).all())
    (torch.Size([4, 3, 2]), True)
    """
    if kind == "none":
        return Augmented(hidden, mask, labels)
    if kind == "hidden_noise":
        real = mask.unsqueeze(-1).to(hidden.dtype)
        scale = strength * hidden.detach().std()
        noise = torch.from_numpy(rng.standard_normal(tuple(hidden.shape), dtype=np.float32))
        return Augmented(hidden + scale * noise.to(hidden.device, hidden.dtype) * real, mask,
                         labels)
    if kind == "mixup":
        n = hidden.shape[0]
        partner = torch.from_numpy(rng.permutation(n)).to(hidden.device)
        weight = torch.from_numpy(rng.beta(strength, strength, size=n)).to(hidden.device,
                                                                            hidden.dtype)
        w = weight.view(n, 1, 1)
        mixed = w * hidden + (1.0 - w) * hidden[partner]
        return Augmented(mixed, torch.maximum(mask, mask[partner]), labels, labels[partner],
                         weight)
    raise ValueError(f"`augmentation` must be one of {list(AUGMENTATIONS)}, got {kind!r}")
