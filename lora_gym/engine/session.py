"""A live LoRA fine-tune session: one model, reset in place per episode, trained in segments.

The session owns a private copy of the base model (loaded once per process by
`lora_gym.engine.models`)
with PEFT LoRA layers injected once. Each episode (`start`) gives it a fresh task-sized
classification head and a fresh adapter; each env step (`train` then `evaluate`) resizes the
adapter if the rank changed, trains K optimizer steps and evaluates on the fixed validation subset.

Conventions:
* The model always runs with dropout disabled (``eval()`` mode): the base is frozen, the LoRA
  dropout is 0, so a training step is a deterministic function of the batch and the weights.
* Optimizer (AdamW) over the trainable parameters: when a rank changes, the moments of the
  resized LoRA tensors are reset (the tensors are new) and the others' are carried over; when the
  trainable scope changes (`set_active`), newly trainable tensors start with fresh moments (and
  AdamW's bias correction from step 1), frozen ones leave the optimizer and lose theirs.
* LoRA layers, per-layer ranks, trainable scope and the base weights PiSSA/OLoRA rewrite are held
  by an `AdapterManager` (`lora_gym.engine.adapter`).

Speed (none of it changes what is computed, beyond float rounding):
* token ids come from a disk cache, batches are padded to their longest example
  (`lora_gym.engine.encoding`); evaluation runs in inference mode on length-sorted batches;
* with ``lora_layers: top-<k>`` and ``prefix_cache`` (BERT-style models), the frozen lower layers
  run once per task and training and evaluation run only the top k layers
  (`lora_gym.engine.prefix_cache`);
* the untrained model's pooled validation outputs are cached per corpus: a fresh adapter has
  B = 0, so the untrained model is the frozen base, whatever the episode's seed; only the fresh
  head (which depends on the seed) is applied to them at every reset;
* a task variant (`lora_gym.tasks.variants`) is a row selection of its corpus: token ids,
  prefix activations and untrained outputs are computed for the corpus once and selected;
* ``base_dtype: int8`` runs the frozen Linear layers int8-quantised in the prefix computation and
  in evaluation (`lora_gym.engine.quantize`); training runs them in fp32;
* ``torch_threads: 0`` gives each of ``$LORA_GYM_N_ENVS`` (default 1) processes an equal share
  of the cores (`resolve_threads`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function

from lora_gym.core.config import SVD_INITS, EnvConfig
from lora_gym.core.errors import ConfigError, LoRAGymWarning
from lora_gym.core.metrics import Metrics, classification_metrics
from lora_gym.core.observation import TaskFeatures
from lora_gym.core.schedules import lr_factor
from lora_gym.engine import families, prefix_cache
from lora_gym.engine import resize as lora
from lora_gym.engine.adapter import AdapterManager, layer_index
from lora_gym.engine.augment import augment
from lora_gym.engine.encoding import EncodedSplit, collate, encode, encode_task, task_fingerprint
from lora_gym.engine.models import load_base, quiet_peft
from lora_gym.engine.monitor import GradientNorms, lora_stats
from lora_gym.engine.projection import project_to_subspace
from lora_gym.engine.quantize import int8_base, int8_lora, quantize_frozen_linears

if TYPE_CHECKING:
    from lora_gym.tasks.loading import TaskData

__all__ = ["EncodedSplit", "FineTuneSession", "SegmentResult", "collate", "encode",
           "resolve_threads"]

N_ENVS_ENV = "LORA_GYM_N_ENVS"
"""Environment variable: how many env processes share this machine's cores (for threads: 0)."""


@dataclass(frozen=True)
class SegmentResult:
    """What one training segment did."""

    train_loss: float
    tokens: int
    """Tokens the model computed on (padding included)."""
    diverged: bool


def available_cpus() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_threads(setting: int) -> int:
    """Torch intra-op threads for ``torch_threads = setting``.

    A positive setting is used as is; 0 means auto: ``max(1, cores // n)``, where n is
    ``$LORA_GYM_N_ENVS`` (set by launchers of n env processes) or 1.
    """
    if setting > 0:
        return setting
    raw = os.environ.get(N_ENVS_ENV, "1")
    n = int(raw) if raw.strip().isdigit() else 0
    if n < 1:
        raise ConfigError(f"`{N_ENVS_ENV}` must be an integer >= 1, got {raw!r}")
    return max(1, available_cpus() // n)


def placement(config) -> tuple[torch.device, torch.dtype | None]:
    """Set the torch threads (``torch_threads``); return ``(device, autocast dtype or None)``."""
    torch.set_num_threads(resolve_threads(config.torch_threads))
    device = torch.device(config.device_name(torch.cuda.is_available()))
    return device, None if config.dtype == "float32" else getattr(torch, config.dtype)


def new_optimizer(net: nn.Module, config, carry_from: torch.optim.Optimizer | None,
                  exclude: frozenset[int] = frozenset()) -> torch.optim.Optimizer:
    """AdamW over `net`'s trainable parameters, with the moments `carry_from` held for them.

    Tensors new since `carry_from` (a resized LoRA factor, a newly unfrozen module) start fresh;
    parameters whose ``id`` is in `exclude` (another optimizer's) are left out.
    """
    params = [p for p in net.parameters() if p.requires_grad and id(p) not in exclude]
    opt = torch.optim.AdamW(params, lr=config.learning_rates[0], weight_decay=config.weight_decay)
    if carry_from is not None:
        for p in params:
            if p in carry_from.state:
                opt.state[p] = carry_from.state[p]
    return opt


def schedule_lr(optimizer: torch.optim.Optimizer, config, lr: float, step: int,
                steps: int) -> None:
    """Set `optimizer`'s lr for `step` of a `steps`-step segment at `lr` (``lr_schedule``)."""
    factor = lr_factor(config.lr_schedule, step, steps, config.lr_warmup)
    for group in optimizer.param_groups:
        group["lr"] = lr * factor


class FineTuneSession:
    """Live LoRA fine-tuning of one base model, reused across episodes and tasks."""

    def __init__(self, config: EnvConfig, share_base: bool = False) -> None:
        from peft import LoraConfig, get_peft_model

        self.config = config
        self.device, self._amp = placement(config)
        base, self.tokenizer = load_base(config.model)
        if share_base and (config.init in SVD_INITS or self._amp is not None):
            raise ConfigError(f"sessions that share the frozen base need an init that leaves it "
                              f"alone (not {list(SVD_INITS)}) and `dtype` float32, got init "
                              f"{config.init!r}, dtype {config.dtype!r}")
        # share_base: the frozen tensors are the process's loaded base itself (never written:
        # see the check above), so K sessions hold one base; heads are replaced at every start
        memo = {id(p): p for p in base.parameters()} if share_base else {}
        net = copy.deepcopy(base, memo)
        self.family = families.family_of(net.config)
        pattern = self.family.layers_pattern if config.top_layers else None
        peft_config = LoraConfig(r=config.ranks[0], lora_alpha=config.lora_alpha,
                                 target_modules=list(config.target_modules), lora_dropout=0.0,
                                 layers_to_transform=self._lora_layer_ids(net),
                                 layers_pattern=pattern,
                                 fan_in_fan_out=self.family.fan_in_fan_out)
        no_match = (f"`target_modules` {list(config.target_modules)} match no linear module of "
                    f"model {config.model!r} ({self.family.name} family: its attention's are "
                    f"{list(self.family.targets)})")
        try:
            with quiet_peft():
                self.model = get_peft_model(net, peft_config)
        except ValueError as err:  # PEFT's own "target modules not found"
            raise ValueError(f"{no_match}: {err}") from None
        self.net = net  # the injected model itself: forward without the PEFT wrapper
        if not lora.lora_layers(net):
            raise ValueError(no_match)
        net.to(self.device)
        if self._amp is not None:  # the frozen base in bf16/fp16; adapters and head stay fp32
            for param in net.parameters():
                if not param.requires_grad:
                    param.data = param.data.to(self._amp)
        self.adapter = AdapterManager(net, config)
        self._int8 = quantize_frozen_linears(net) if config.base_dtype == "int8" else {}
        """Int8 stand-ins of the frozen Linear layers for prefix and evaluation (else empty)."""
        self._bert_like = prefix_cache.supports(net)
        self.prefix_layer = self._prefix_layer(net)
        """First layer run on cached activations (``None``: every layer runs)."""
        self._prefix = prefix_cache.PrefixCache() if self.prefix_layer is not None else None
        self._states: dict[str, prefix_cache.PrefixStates] | None = None
        self._encoded: dict[str, tuple[EncodedSplit, EncodedSplit]] = {}
        self._untrained: dict[str, torch.Tensor] = {}  # corpus key -> pooled val outputs of base
        self.task: TaskData | None = None
        self.features: TaskFeatures | None = None
        self._grads = GradientNorms()
        self.optimizer_excludes: frozenset[int] = frozenset()
        """Ids of trainable parameters another optimizer steps (a shared adapter's)."""

    def _lora_layer_ids(self, net: nn.Module) -> list[int] | None:
        k = self.config.top_layers
        if k is None:
            return None
        n = len(self.family.stack(net))
        if k > n:
            raise ValueError(f"`lora_layers` top-{k} exceeds the model's {n} layers")
        return list(range(n - k, n))

    def _prefix_layer(self, net: nn.Module) -> int | None:
        k = self.config.top_layers
        n = len(self.family.stack(net))
        if not self.config.prefix_cache or k is None or k >= n:
            return None
        why = None if self._bert_like else families.check_prefix_support(net, self.family)
        if why is not None:
            warnings.warn(f"`prefix_cache` cannot start model {self.config.model!r} at a middle "
                          f"layer ({why}); it runs every layer", LoRAGymWarning, stacklevel=3)
            return None
        first = n - k  # the cache is only valid if nothing below is trained
        assert all(layer_index(name) >= first for name in self.adapter.layers), \
            f"LoRA below layer {first}"
        return first

    def _autocast(self):
        """Mixed precision on CUDA with ``dtype`` bf16/fp16; a no-op in float32."""
        if self._amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._amp)

    def _to_device(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(x.to(self.device) for x in tensors)

    # -- episode -----------------------------------------------------------------------------
    def start(self, task: TaskData, seed: int) -> Metrics:
        """Begin an episode on `task`: fresh head and adapter (smallest rank); evaluate it."""
        self.task = task
        pool = task.pool if task.pool is not None else task
        key = task_fingerprint(pool)
        pool_train, pool_val = self._encode(pool, key)
        pool_states = None
        if self._prefix is not None:
            pool_states = self._prefix.get(key, lambda: self._compute_prefix(pool_train, pool_val))
        self.train_split, self.val_split, self._states = pool_train, pool_val, pool_states
        if task.pool is not None:  # a variant: its rows of the corpus, its own labels
            rows = {"train": (task.train_rows, task.train_labels),
                    "val": (task.val_rows, task.val_labels)}
            self.train_split = pool_train.select(*rows["train"])
            self.val_split = pool_val.select(*rows["val"])
            if pool_states is not None:
                self._states = {k: pool_states[k].select(*rows[k]) for k in rows}
        self._generator = torch.Generator().manual_seed(seed)
        self._rng = np.random.default_rng(seed)
        self._augment_rng = np.random.default_rng([seed, 1])  # leaves the batch order alone
        self._order = np.empty(0, dtype=np.int64)
        families.reset_head(self.net, self.family, task.num_classes,
                            self.net.config.initializer_range, self._generator)
        self.net.num_labels = task.num_classes
        self.adapter.reset(self.config.ranks[0], self._generator)
        self.rank: int | tuple[int, ...] = self.config.ranks[0]
        self.optimizer = self._new_optimizer(carry_from=None)
        self._grads.clear()
        metrics = self._evaluate_untrained(key, pool_val, pool_states, task.val_rows)
        self.features = self._features(task, metrics.accuracy)
        return metrics

    def _encode(self, task: TaskData, key: str) -> tuple[EncodedSplit, EncodedSplit]:
        if key not in self._encoded:
            self._encoded[key] = encode_task(task, self.tokenizer, self.config.max_length,
                                             task_key=key)
        return self._encoded[key]

    def _compute_prefix(self, train: EncodedSplit, val: EncodedSplit
                        ) -> dict[str, prefix_cache.PrefixStates]:
        args = (self.tokenizer.pad_token_id, self.prefix_layer, self.config.eval_batch_size)
        run = None
        if not self._bert_like:
            def run(ids, mask):
                return families.capture(self.net, self.family, ids, mask, self.prefix_layer)
        with int8_base(self.net, self._int8), self._autocast():
            return {split: prefix_cache.compute_prefix(self.net, data, *args, run=run,
                                                       device=self.device)
                    for split, data in (("train", train), ("val", val))}

    def _features(self, task: TaskData, untrained_accuracy: float) -> TaskFeatures:
        counts = np.bincount(task.train_labels, minlength=task.num_classes)
        p = counts[counts > 0] / counts.sum()
        entropy = float(-(p * np.log(p)).sum() / math.log(task.num_classes))
        lengths = self.train_split.lengths / self.config.max_length
        return TaskFeatures(train_size=task.n_train_available, num_classes=task.num_classes,
                            label_entropy=entropy, mean_length=float(lengths.mean()),
                            p90_length=float(np.percentile(lengths, 90)),
                            untrained_accuracy=untrained_accuracy,
                            label_agreement=task.label_agreement)

    # -- forward passes --------------------------------------------------------------------------
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Classifier logits of a padded batch (the full model, every layer)."""
        return self.net(input_ids=input_ids, attention_mask=attention_mask).logits

    def _head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net.classifier(self.net.dropout(pooled))

    def _outputs(self, which: str, idx: np.ndarray, pooled: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(outputs, labels, tokens)`` of examples `idx` of split `which` ("train" or "val").

        Outputs are the pooled features if `pooled` (BERT-style models only), else the logits.
        """
        states = self._states[which] if self._states is not None else None
        split = self.train_split if which == "train" else self.val_split
        return self._split_outputs(states, split, idx, pooled)

    def _split_outputs(self, states: prefix_cache.PrefixStates | None, split: EncodedSplit,
                       idx: np.ndarray, pooled: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
        """`_outputs` of examples `idx` of `split` (run from `states` if given)."""
        if states is not None:
            hidden, mask, labels = states.batch(idx)
            if not self._bert_like:
                logits = families.forward_from(self.net, self.family, hidden, mask,
                                               self.prefix_layer, self.tokenizer.pad_token_id)
                return logits, labels, mask.numel()
            out = prefix_cache.top_pooled(self.net, hidden, mask, self.prefix_layer)
            return (out if pooled else self._head(out)), labels, mask.numel()
        ids, mask, labels = self._to_device(*collate(split, idx, self.tokenizer.pad_token_id))
        if not self._bert_like:
            return self.logits(ids, mask), labels, ids.numel()
        out = prefix_cache.top_pooled(self.net, self.net.bert.embeddings(input_ids=ids), mask, 0)
        return (out if pooled else self._head(out)), labels, ids.numel()

    # -- training ------------------------------------------------------------------------------
    def _new_optimizer(self, carry_from: torch.optim.Optimizer | None) -> torch.optim.Optimizer:
        return new_optimizer(self.net, self.config, carry_from, self.optimizer_excludes)

    def set_rank(self, rank: int | tuple[int, ...]) -> None:
        """Change the rank keeping ΔW (`lora_gym.engine.resize`): one for all, or per group."""
        if rank == self.rank:
            return
        self.adapter.resize(self.adapter.rank_map(rank), self._generator)
        self.rank = rank
        self.optimizer = self._new_optimizer(carry_from=self.optimizer)

    def set_active(self, names) -> None:
        """Make exactly the LoRA layers `names` trainable, the others frozen (module docstring)."""
        if self.adapter.set_active(names):
            self.optimizer = self._new_optimizer(carry_from=self.optimizer)

    def _next_batch(self) -> np.ndarray:
        size = self.config.batch_size
        n = len(self.train_split.labels)
        while len(self._order) < size:  # epochs of seeded permutations
            self._order = np.concatenate([self._order, self._rng.permutation(n)])
        batch, self._order = self._order[:size], self._order[size:]
        return batch

    def train(self, rank: int | tuple[int, ...], lr: float, steps: int,
              augmentation: str | None = None) -> SegmentResult:
        """Resize to `rank`, then train `steps` optimizer steps at learning rate `lr`.

        The lr follows the config's in-segment ``lr_schedule`` (constant by default); every
        batch is augmented with `augmentation` (default: the config's ``augmentation``).
        """
        kind = self.config.augmentation if augmentation is None else augmentation
        self.set_rank(rank)
        losses, tokens = [], 0
        self.clear_grad_norms()
        for step in range(steps):
            self.set_lr(lr, step, steps)
            loss, n_tokens = self.backward(kind)
            tokens += n_tokens
            if loss is None:
                return SegmentResult(math.nan, tokens, diverged=True)
            self.optimizer_step()
            losses.append(loss)
        return SegmentResult(float(np.mean(losses)), tokens, diverged=False)

    def clear_grad_norms(self) -> None:
        """Forget the gradient norms gathered so far (`lora_stats` reports one segment's)."""
        self._grads.clear()

    def set_lr(self, lr: float, step: int, steps: int) -> None:
        """The optimizer's lr at `step` of a `steps`-step segment at `lr` (``lr_schedule``)."""
        schedule_lr(self.optimizer, self.config, lr, step, steps)

    def backward(self, kind: str) -> tuple[float | None, int]:
        """Loss and gradients of the next training batch: ``(loss, tokens)``.

        The loss is None (and nothing is back-propagated) when it is not finite.
        """
        with record_function("lora_gym.forward"), self._autocast():
            loss, n_tokens = self._train_loss(self._next_batch(), kind)
        if not torch.isfinite(loss):
            return None, n_tokens
        with record_function("lora_gym.backward"):
            loss.backward()
            self._grads.add(self.adapter.layers)
        return loss.item(), n_tokens

    def optimizer_step(self) -> None:
        """Project (``grad_projection: subspace``), clip and apply the gradients; zero them."""
        if self.config.grad_projection == "subspace":
            project_to_subspace(self.adapter.layers.values(), self.config.projection_dim)
        with record_function("lora_gym.optimizer"):
            if self.config.max_grad_norm:
                params = [p for g in self.optimizer.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

    def _train_loss(self, idx: np.ndarray, kind: str) -> tuple[torch.Tensor, int]:
        """The training loss of batch `idx` (augmented by `kind`) and its token count."""
        if kind == "none":
            logits, labels, n_tokens = self._outputs("train", idx, False)
            return F.cross_entropy(logits, labels), n_tokens
        if self._states is not None:
            hidden, mask, labels = self._states["train"].batch(idx)
            layer = self.prefix_layer
        else:
            ids, mask, labels = self._to_device(*collate(self.train_split, idx,
                                                         self.tokenizer.pad_token_id))
            layer = 0
            hidden = (self.net.bert.embeddings(input_ids=ids) if self._bert_like
                      else families.capture(self.net, self.family, ids, mask, 0))
        batch = augment(kind, self.config.augmentation_strength, hidden, mask, labels,
                        self._augment_rng)
        if not self._bert_like:
            logits = families.forward_from(self.net, self.family, batch.hidden, batch.mask,
                                           layer, self.tokenizer.pad_token_id)
            return batch.loss(logits), mask.numel()
        pooled = prefix_cache.top_pooled(self.net, batch.hidden, batch.mask, layer)
        return batch.loss(self._head(pooled)), mask.numel()

    def lora_stats(self) -> dict[str, dict[str, float]]:
        """Per LoRA layer: weight and last-segment gradient norms, effective rank of ΔW.

        See `lora_gym.engine.monitor`.
        """
        return lora_stats(self.adapter.layers, self._grads)

    # -- evaluation ----------------------------------------------------------------------------
    @torch.inference_mode()
    def evaluate(self, train_loss: float = math.nan) -> Metrics:
        """Accuracy, macro-F1 and loss on the task's fixed validation subset."""
        states = self._states["val"] if self._states is not None else None
        with record_function("lora_gym.forward"):
            outputs = self._val_outputs(self._bert_like, states, self.val_split)
        return self._metrics(outputs, train_loss)

    @torch.inference_mode()
    def _evaluate_untrained(self, key: str, pool_val: EncodedSplit,
                            pool_states: dict[str, prefix_cache.PrefixStates] | None,
                            rows: np.ndarray | None) -> Metrics:
        """Evaluate a fresh adapter from the corpus's cached base outputs (rows: a variant's)."""
        if not self._bert_like:
            return self.evaluate()
        outputs = self._untrained.get(key)
        if outputs is None:
            states = pool_states["val"] if pool_states is not None else None
            with record_function("lora_gym.forward"):
                outputs = self._untrained[key] = self._val_outputs(True, states, pool_val)
        if rows is not None:
            outputs = outputs[torch.tensor(rows)]
        return self._metrics(outputs, math.nan)

    def _metrics(self, outputs: torch.Tensor, train_loss: float) -> Metrics:
        logits = self._head(outputs.float()) if self._bert_like else outputs
        return classification_metrics(logits.float().cpu().numpy(), self.val_split.labels,
                                      self.task.num_classes, train_loss)

    def _val_outputs(self, pooled: bool, states: prefix_cache.PrefixStates | None,
                     split: EncodedSplit) -> torch.Tensor:
        """Pooled features (or logits) of every example of `split`, in example order."""
        order = np.argsort(split.lengths, kind="stable")  # similar lengths together
        parts = []
        lora_int8 = int8_lora(self.adapter.layers) if self.config.lora_dtype == "int8" else \
            contextlib.nullcontext()
        with int8_base(self.net, self._int8), lora_int8, self._autocast():  # int8: quantised
            for start in range(0, len(order), self.config.eval_batch_size):
                idx = order[start:start + self.config.eval_batch_size]
                parts.append(self._split_outputs(states, split, idx, pooled)[0])
        by_length = torch.cat(parts)
        out = torch.empty_like(by_length)
        out[torch.from_numpy(order)] = by_length
        return out
