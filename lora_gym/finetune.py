"""A live LoRA fine-tune session: one model, reset in place per episode, trained in segments.

The session owns a private copy of the base model (loaded once per process by `lora_gym.models`)
with PEFT LoRA layers injected once. Each episode (`start`) gives it a fresh task-sized
classification head and a fresh adapter; each env step (`train` then `evaluate`) resizes the
adapter if the rank changed, trains K optimizer steps and evaluates on the fixed validation subset.

Conventions:
* The model always runs with dropout disabled (``eval()`` mode): the base is frozen, the LoRA
  dropout is 0, so a training step is a deterministic function of the batch and the weights.
* Optimizer (AdamW): when the rank changes, the moments of the resized LoRA tensors are reset
  (the tensors are new); the head's moments are carried over.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lora_gym import lora
from lora_gym.config import EnvConfig
from lora_gym.metrics import Metrics, classification_metrics
from lora_gym.models import load_base
from lora_gym.spaces import TaskFeatures

if TYPE_CHECKING:
    from lora_gym.tasks import TaskData


@dataclass(frozen=True)
class EncodedSplit:
    """Token ids of a split, unpadded, with labels."""

    ids: tuple[np.ndarray, ...]
    labels: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """Token count of every example."""
        return np.array([len(x) for x in self.ids])


@dataclass(frozen=True)
class SegmentResult:
    """What one training segment did."""

    train_loss: float
    tokens: int
    """Tokens the model computed on (padding included)."""
    diverged: bool


def encode(texts: tuple[str, ...], labels: np.ndarray, tokenizer, max_length: int) -> EncodedSplit:
    """Tokenise once, truncating to `max_length`, without padding."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return EncodedSplit(tuple(np.asarray(x, dtype=np.int64) for x in ids), labels)


def collate(split: EncodedSplit, idx: np.ndarray, pad_id: int
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad the examples `idx` to the longest of them: ``(input_ids, attention_mask, labels)``."""
    width = max(len(split.ids[i]) for i in idx)
    ids = np.full((len(idx), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(idx), width), dtype=np.int64)
    for row, i in enumerate(idx):
        n = len(split.ids[i])
        ids[row, :n] = split.ids[i]
        mask[row, :n] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(split.labels[idx])


class FineTuneSession:
    """Live LoRA fine-tuning of one base model, reused across episodes and tasks."""

    def __init__(self, config: EnvConfig) -> None:
        from peft import LoraConfig, get_peft_model

        if config.torch_threads:
            torch.set_num_threads(config.torch_threads)
        self.config = config
        base, self.tokenizer = load_base(config.model)
        net = copy.deepcopy(base)
        peft_config = LoraConfig(r=config.ranks[0], lora_alpha=config.lora_alpha,
                                 target_modules=list(config.target_modules), lora_dropout=0.0,
                                 layers_to_transform=self._lora_layer_ids(net.config),
                                 layers_pattern="layer" if config.top_layers else None)
        self.model = get_peft_model(net, peft_config)
        self.net = net  # the injected model itself: forward without the PEFT wrapper
        if not lora.lora_layers(net):
            raise ValueError(f"`target_modules` {list(config.target_modules)} match no linear "
                             f"module of model {config.model!r}")
        self._encoded: dict[str, tuple[EncodedSplit, EncodedSplit]] = {}
        self.task: TaskData | None = None
        self.features: TaskFeatures | None = None

    def _lora_layer_ids(self, model_config) -> list[int] | None:
        k = self.config.top_layers
        if k is None:
            return None
        n = model_config.num_hidden_layers
        if k > n:
            raise ValueError(f"`lora_layers` top-{k} exceeds the model's {n} layers")
        return list(range(n - k, n))

    # -- episode -----------------------------------------------------------------------------
    def start(self, task: TaskData, seed: int) -> Metrics:
        """Begin an episode on `task`: fresh head and adapter (smallest rank), evaluate untrained."""
        self.task = task
        self.train_split, self.val_split = self._encode(task)
        self._generator = torch.Generator().manual_seed(seed)
        self._rng = np.random.default_rng(seed)
        self._order = np.empty(0, dtype=np.int64)
        hidden = self.net.config.hidden_size
        head = nn.Linear(hidden, task.num_classes)
        with torch.no_grad():
            head.weight.normal_(0.0, self.net.config.initializer_range, generator=self._generator)
            head.bias.zero_()
        self.net.classifier = head
        self.net.num_labels = task.num_classes
        lora.reset_adapter(self.net, self.config.ranks[0], self.config.lora_alpha,
                           self._generator)
        self.rank = self.config.ranks[0]
        self.optimizer = self._new_optimizer(carry_from=None)
        metrics = self.evaluate()
        self.features = self._features(task, metrics.accuracy)
        return metrics

    def _encode(self, task: TaskData) -> tuple[EncodedSplit, EncodedSplit]:
        if task.name not in self._encoded:
            args = (self.tokenizer, self.config.max_length)
            self._encoded[task.name] = (encode(task.train_texts, task.train_labels, *args),
                                        encode(task.val_texts, task.val_labels, *args))
        return self._encoded[task.name]

    def _features(self, task: TaskData, untrained_accuracy: float) -> TaskFeatures:
        counts = np.bincount(task.train_labels, minlength=task.num_classes)
        p = counts[counts > 0] / counts.sum()
        entropy = float(-(p * np.log(p)).sum() / math.log(task.num_classes))
        lengths = self.train_split.lengths / self.config.max_length
        return TaskFeatures(train_size=task.n_train_available, num_classes=task.num_classes,
                            label_entropy=entropy, mean_length=float(lengths.mean()),
                            p90_length=float(np.percentile(lengths, 90)),
                            untrained_accuracy=untrained_accuracy)

    # -- training ------------------------------------------------------------------------------
    def _new_optimizer(self, carry_from: torch.optim.Optimizer | None) -> torch.optim.Optimizer:
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.config.learning_rates[0],
                                weight_decay=self.config.weight_decay)
        if carry_from is not None:
            for p in params:
                if p in carry_from.state:
                    opt.state[p] = carry_from.state[p]
        return opt

    def set_rank(self, rank: int) -> None:
        """Change the adapter's rank, keeping ΔW (see `lora_gym.lora`)."""
        if rank == self.rank:
            return
        lora.resize_adapter(self.net, rank, self.config.lora_alpha, self._generator)
        self.rank = rank
        self.optimizer = self._new_optimizer(carry_from=self.optimizer)

    def _next_batch(self) -> np.ndarray:
        size = self.config.batch_size
        n = len(self.train_split.labels)
        while len(self._order) < size:  # epochs of seeded permutations
            self._order = np.concatenate([self._order, self._rng.permutation(n)])
        batch, self._order = self._order[:size], self._order[size:]
        return batch

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Classifier logits of a padded batch."""
        return self.net(input_ids=input_ids, attention_mask=attention_mask).logits

    def train(self, rank: int, lr: float, steps: int) -> SegmentResult:
        """Resize to `rank`, then train `steps` optimizer steps at learning rate `lr`."""
        self.set_rank(rank)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        pad_id = self.tokenizer.pad_token_id
        losses, tokens = [], 0
        for _ in range(steps):
            ids, mask, labels = collate(self.train_split, self._next_batch(), pad_id)
            tokens += ids.numel()
            loss = F.cross_entropy(self.logits(ids, mask), labels)
            if not torch.isfinite(loss):
                return SegmentResult(math.nan, tokens, diverged=True)
            loss.backward()
            if self.config.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
        return SegmentResult(float(np.mean(losses)), tokens, diverged=False)

    # -- evaluation ----------------------------------------------------------------------------
    @torch.inference_mode()
    def evaluate(self, train_loss: float = math.nan) -> Metrics:
        """Accuracy, macro-F1 and loss on the task's fixed validation subset."""
        split = self.val_split
        order = np.argsort(split.lengths, kind="stable")  # similar lengths -> little padding
        logits = np.empty((len(order), self.task.num_classes), dtype=np.float32)
        pad_id = self.tokenizer.pad_token_id
        for start in range(0, len(order), self.config.eval_batch_size):
            idx = order[start:start + self.config.eval_batch_size]
            ids, mask, _ = collate(split, idx, pad_id)
            logits[idx] = self.logits(ids, mask).float().numpy()
        return classification_metrics(logits, split.labels, self.task.num_classes, train_loss)
