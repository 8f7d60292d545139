"""Validation metrics of a fine-tuned classifier (`Metrics`) and of a causal LM (`LMMetrics`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metrics:
    """What one evaluation (and the training segment before it) measured."""

    accuracy: float
    f1: float
    """Macro-averaged F1 over all classes of the task."""
    val_loss: float
    train_loss: float = math.nan
    """Mean training loss of the segment; NaN before any training."""

    def to_dict(self) -> dict[str, float]:
        """Plain dict of the metrics."""
        return {"accuracy": self.accuracy, "f1": self.f1, "val_loss": self.val_loss,
                "train_loss": self.train_loss}

    @property
    def finite(self) -> bool:
        """Whether accuracy, F1 and validation loss are finite numbers."""
        return all(math.isfinite(v) for v in (self.accuracy, self.f1, self.val_loss))

    @classmethod
    def of(cls, accuracy: float, f1: float, val_loss: float, train_loss: float = math.nan
           ) -> Metrics:
        """The metrics of the four recorded values (a table row's; derived ones recomputed)."""
        return cls(accuracy, f1, val_loss, train_loss)


@dataclass(frozen=True)
class LMMetrics(Metrics):
    """A causal LM's `Metrics`: response next-token accuracy, and exact match as ``f1``."""

    perplexity: float = math.nan
    """``exp(val_loss)`` (clipped at exp(20)); NaN when the loss is not finite."""

    def to_dict(self) -> dict[str, float]:
        """Plain dict of the metrics, perplexity included."""
        return {**super().to_dict(), "perplexity": self.perplexity}

    @classmethod
    def of(cls, accuracy: float, f1: float, val_loss: float, train_loss: float = math.nan
           ) -> LMMetrics:
        """The metrics of the four values, perplexity computed from the validation loss."""
        perplexity = math.exp(min(val_loss, 20.0)) if math.isfinite(val_loss) else math.nan
        return cls(accuracy, f1, val_loss, train_loss, perplexity)


def classification_metrics(logits: np.ndarray, labels: np.ndarray, num_classes: int,
                           train_loss: float = math.nan) -> Metrics:
    """Accuracy, macro-F1 and cross-entropy of `logits` (n, c) against integer `labels` (n,)."""
    from sklearn.metrics import f1_score

    if not np.isfinite(logits).all():
        return Metrics(math.nan, math.nan, math.nan, train_loss)
    preds = logits.argmax(axis=1)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = float(-log_probs[np.arange(len(labels)), labels].mean())
    f1 = f1_score(labels, preds, labels=list(range(num_classes)), average="macro", zero_division=0)
    return Metrics(float((preds == labels).mean()), float(f1), loss, train_loss)
