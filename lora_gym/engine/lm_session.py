"""A live LoRA instruction-tuning session of a causal LM: seed 004's pipeline, trained in segments.

The session owns a private copy of a decoder language model (`load_lm`: ``tiny-llama`` built
in-process, or a local Hugging Face directory) with PEFT LoRA layers injected once
(``task_type="CAUSAL_LM"``, the family's attention projections, ``lora_dropout``). Each episode
(`start`) gives it a fresh adapter; each env step (`train` then `evaluate`) resizes the adapter if
the rank changed (ΔW kept, `lora_gym.engine.resize`), trains ``steps_per_action`` optimizer steps
of ``grad_accum`` micro-batches each, with the in-segment ``lr_schedule`` (warm-up + cosine by
default), and evaluates on the task's validation examples.

* Loss: next-token cross-entropy on the response tokens only (the prompt is labelled -100,
  `lora_gym.tasks.instructions.encode_example`), averaged over those tokens.
* Metrics (`LMMetrics`): ``accuracy`` is the next-token accuracy on response tokens (teacher
  forced), ``f1`` the exact-match rate (every response token of an example right), ``val_loss``
  the response-token loss and ``perplexity`` its exponential.
* Determinism: the batch order, the adapter's init and LoRA dropout draw from generators seeded
  by the episode seed (dropout through a private copy of torch's CPU RNG state).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lora_gym.core.errors import ConfigError
from lora_gym.core.lm_config import LM_MODELS, LMConfig
from lora_gym.core.metrics import LMMetrics
from lora_gym.engine import families
from lora_gym.engine import resize as lora
from lora_gym.engine.adapter import AdapterManager
from lora_gym.engine.models import embedded_model_dir, quiet_peft
from lora_gym.engine.monitor import GradientNorms, lora_stats
from lora_gym.engine.session import SegmentResult, new_optimizer, placement, schedule_lr
from lora_gym.tasks.instructions import (
    IGNORE_INDEX,
    LMTaskData,
    encode_examples,
    pad_batch,
)

LM_TARGETS: dict[str, tuple[str, ...]] = {
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "gpt2": ("c_attn", "c_proj"),
}
"""Default LoRA targets per decoder family: the attention projections (seed 004)."""


def _tiny_llama() -> tuple[Any, Any]:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir(), local_files_only=True)
    tokenizer.eos_token = tokenizer.sep_token  # BERT's [SEP] ends a response
    tokenizer.model_input_names = ["input_ids", "attention_mask"]  # no token_type_ids
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                         tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = LlamaForCausalLM(config)
    return net, tokenizer


@functools.lru_cache(maxsize=2)
def load_lm(model: str) -> tuple[Any, Any]:
    """``(causal LM, tokenizer)`` of a `model` setting, loaded once per process; callers copy it.

    Raises:
        ConfigError: `model` is neither in `LM_MODELS` nor a local model directory.
    """
    if model == "tiny-llama":
        net, tokenizer = _tiny_llama()
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(model).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(f"`model` must be one of {list(LM_MODELS)} or a local Hugging Face "
                              f"causal-LM directory with a config.json, got {model!r}")
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        net = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        if tokenizer.eos_token is None:
            raise ConfigError(f"model {model!r}: its tokenizer has no eos_token to end responses")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    net.eval()
    for param in net.parameters():
        param.requires_grad_(False)
    return net, tokenizer


class LMSession:
    """Live LoRA tuning of one causal LM, reused across episodes and tasks."""

    def __init__(self, config: LMConfig) -> None:
        from peft import LoraConfig, get_peft_model

        self.config = config
        self.device, self._amp = placement(config)
        base, self.tokenizer = load_lm(config.model)
        net = copy.deepcopy(base)
        self.family = families.family_of(net.config)
        if self.family.name not in LM_TARGETS:
            raise ConfigError(f"model {config.model!r} ({net.config.model_type}) is not a decoder "
                              f"family LoRATuneLM-v0 tunes; supported: {sorted(LM_TARGETS)}")
        self.targets = tuple(config.target_modules) or LM_TARGETS[self.family.name]
        self.lora_config = LoraConfig(
            task_type="CAUSAL_LM", r=config.ranks[0], lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout, target_modules=list(self.targets),
            fan_in_fan_out=self.family.fan_in_fan_out)
        try:
            with quiet_peft():
                self.model = get_peft_model(net, self.lora_config)
        except ValueError as err:
            raise ConfigError(f"`target_modules` {list(self.targets)} of model "
                              f"{config.model!r}: {err}") from None
        self.net = net
        net.to(self.device)
        if self._amp is not None:
            for param in net.parameters():
                if not param.requires_grad:
                    param.data = param.data.to(self._amp)
        self.adapter = AdapterManager(net, config)
        self._encoded: dict[str, tuple[list, list]] = {}
        self.task: LMTaskData | None = None
        self.rank = config.ranks[0]
        self._grads = GradientNorms()

    def _autocast(self):
        if self._amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._amp)

    # -- episode -----------------------------------------------------------------------------
    def start(self, task: LMTaskData, seed: int) -> LMMetrics:
        """Begin an episode on `task` with a fresh adapter (smallest rank); evaluate it."""
        self.task = task
        if task.name not in self._encoded:
            self._encoded[task.name] = tuple(
                encode_examples(part, self.tokenizer, self.config.max_length)
                for part in (task.train, task.val))
        self.train_split, self.val_split = self._encoded[task.name]
        self._generator = torch.Generator().manual_seed(seed)
        self._rng = np.random.default_rng(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._dropout_state = torch.get_rng_state()
        self._order = np.empty(0, dtype=np.int64)
        self.adapter.reset(self.config.ranks[0], self._generator)
        self.rank = self.config.ranks[0]
        self.optimizer = self._new_optimizer(carry_from=None)
        self._grads.clear()
        self.untrained = self.evaluate()
        return self.untrained

    def features(self) -> dict[str, float]:
        """Data features of the task: training size, mean prompt and response lengths."""
        prompt = [int((labels == IGNORE_INDEX).sum()) for _, labels in self.train_split]
        response = [int((labels != IGNORE_INDEX).sum()) for _, labels in self.train_split]
        return {"log10_train_size": math.log10(max(len(self.train_split), 1)),
                "mean_prompt_length": float(np.mean(prompt)) / self.config.max_length,
                "mean_response_length": float(np.mean(response)) / self.config.max_length,
                "untrained_token_accuracy": self.untrained.accuracy}

    # -- training ------------------------------------------------------------------------------
    def _new_optimizer(self, carry_from: torch.optim.Optimizer | None) -> torch.optim.Optimizer:
        return new_optimizer(self.net, self.config, carry_from)

    def set_rank(self, rank: int) -> None:
        """Change the rank keeping ΔW; the resized tensors get fresh optimizer moments."""
        if rank == self.rank:
            return
        self.adapter.resize(self.adapter.rank_map(rank), self._generator)
        self.rank = rank
        self.optimizer = self._new_optimizer(carry_from=self.optimizer)

    def _next_batch(self) -> list:
        size, n = self.config.batch_size, len(self.train_split)
        while len(self._order) < size:
            self._order = np.concatenate([self._order, self._rng.permutation(n)])
        batch, self._order = self._order[:size], self._order[size:]
        return [self.train_split[i] for i in batch]

    def _loss(self, encoded: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """``(mean response-token loss, logits, labels, tokens)`` of a batch of encoded examples."""
        ids, mask, labels = (torch.from_numpy(x).to(self.device)
                             for x in pad_batch(encoded, self.tokenizer.pad_token_id))
        with self._autocast():
            logits = self.net(input_ids=ids, attention_mask=mask).logits
        logits, labels = logits[:, :-1].float(), labels[:, 1:]  # token t predicts token t + 1
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                               ignore_index=IGNORE_INDEX)
        return loss, logits, labels, ids.numel()

    def train(self, rank: int, lr: float, steps: int) -> SegmentResult:
        """Resize to `rank`, then train `steps` optimizer steps (``grad_accum`` micro-batches)."""
        self.set_rank(rank)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        accum = self.config.grad_accum
        losses, tokens = [], 0
        self._grads.clear()
        self.net.train()  # LoRA dropout on (the base's own dropout too, as in HF's Trainer)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(self._dropout_state)
                for step in range(steps):
                    schedule_lr(self.optimizer, self.config, lr, step, steps)
                    total = 0.0
                    for _ in range(accum):
                        loss, _, _, n_tokens = self._loss(self._next_batch())
                        tokens += n_tokens
                        if not torch.isfinite(loss):
                            return SegmentResult(math.nan, tokens, diverged=True)
                        (loss / accum).backward()
                        total += loss.item() / accum
                    self._grads.add(self.adapter.layers)
                    if self.config.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    losses.append(total)
                self._dropout_state = torch.get_rng_state()
        finally:
            self.net.eval()
            self.optimizer.zero_grad(set_to_none=True)
        return SegmentResult(float(np.mean(losses)), tokens, diverged=False)

    def lora_stats(self) -> dict[str, dict[str, float]]:
        """Per LoRA layer: weight and last-segment gradient norms, effective rank of ΔW."""
        return lora_stats(self.adapter.layers, self._grads)

    # -- evaluation ----------------------------------------------------------------------------
    @torch.inference_mode()
    def evaluate(self, train_loss: float = math.nan) -> LMMetrics:
        """Response-token loss, perplexity, next-token accuracy and exact match on the val set."""
        order = np.argsort([len(ids) for ids, _ in self.val_split], kind="stable")
        loss_sum, correct, counted, exact = 0.0, 0, 0, 0
        for start in range(0, len(order), self.config.eval_batch_size):
            batch = [self.val_split[i] for i in order[start:start + self.config.eval_batch_size]]
            _, logits, labels, _ = self._loss(batch)
            keep = labels != IGNORE_INDEX
            token_loss = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none",
                                         ignore_index=IGNORE_INDEX)
            right = (logits.argmax(-1) == labels) & keep
            loss_sum += float(token_loss[keep].sum())
            correct += int(right.sum())
            counted += int(keep.sum())
            exact += int((right.sum(1) == keep.sum(1)).sum())
        if not math.isfinite(loss_sum):
            return LMMetrics.of(math.nan, math.nan, math.nan, train_loss)
        return LMMetrics.of(correct / counted, exact / len(order), loss_sum / counted, train_loss)

    # -- export ----------------------------------------------------------------------------------
    @torch.no_grad()
    def export(self, path: str | Path) -> Path:
        """Write the adapter as a PEFT ``CAUSAL_LM`` adapter folder (per-layer ranks included).

        It reloads with ``PeftModel.from_pretrained(base, path)`` (`load_lm_adapter`).
        """
        import json

        from peft import LoraConfig, get_peft_model

        path = Path(path)
        layers = self.adapter.layers  # name -> LoRA layer, found once at construction
        ranks = {name: m.lora_A[lora.ADAPTER].weight.shape[0] for name, m in layers.items()}
        fresh = copy.deepcopy(load_lm(self.config.model)[0])
        config = LoraConfig(task_type="CAUSAL_LM", r=self.rank, lora_alpha=self.config.lora_alpha,
                            lora_dropout=self.config.lora_dropout,
                            target_modules=list(self.targets), rank_pattern=ranks,
                            fan_in_fan_out=self.family.fan_in_fan_out)
        with quiet_peft():
            peft_model = get_peft_model(fresh, config)
        peft_model.peft_config[lora.ADAPTER].base_model_name_or_path = self.config.model
        targets = dict(fresh.named_modules())
        for name, layer in layers.items():
            for part in ("lora_A", "lora_B"):
                getattr(targets[name], part)[lora.ADAPTER].weight.copy_(
                    getattr(layer, part)[lora.ADAPTER].weight)
        peft_model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        meta = {"model": self.config.model, "task": self.task.name if self.task else None,
                "max_length": self.config.max_length, "task_type": "CAUSAL_LM"}
        (path / "lora_gym.json").write_text(json.dumps(meta, indent=1))
        return path


def load_lm_adapter(path: str | Path) -> tuple[Any, Any]:
    """``(PeftModel, tokenizer)`` of an exported causal-LM adapter, on its base model, offline."""
    import json

    from peft import PeftModel
    from transformers import AutoTokenizer

    path = Path(path)
    meta = json.loads((path / "lora_gym.json").read_text())
    base = copy.deepcopy(load_lm(meta["model"])[0])
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    with quiet_peft():
        return PeftModel.from_pretrained(base, path).eval(), tokenizer
