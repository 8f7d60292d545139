"""Export a live adapter as a standard PEFT adapter folder, and load it back.

The folder is what ``PeftModel.save_pretrained`` writes (``adapter_config.json`` +
``adapter_model.safetensors``), with the task's classification head saved through PEFT's
``modules_to_save`` and per-layer ranks through ``rank_pattern``, plus ``lora_gym.json`` (task,
label names, base model, max length). It loads with
``PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base,
num_labels=n), folder)``; `load_adapter` does exactly that (and rebuilds the in-process
``tiny-bert`` base, which has no folder of its own).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lora_gym import lora
from lora_gym.models import TINY_MODEL, load_base


def _with_head(model: str, num_labels: int, label_names: tuple[str, ...]):
    """A copy of the base model with a fresh head of `num_labels` outputs."""
    base, _ = load_base(model)
    net = copy.deepcopy(base)
    net.classifier = nn.Linear(net.config.hidden_size, num_labels)
    net.num_labels = net.config.num_labels = num_labels
    net.config.id2label = dict(enumerate(label_names))
    net.config.label2id = {name: i for i, name in enumerate(label_names)}
    return net


def _lora_config(layers: dict[str, Any], target_modules: list[str], alpha_policy: str):
    from peft import LoraConfig

    first = next(iter(layers.values()))
    return LoraConfig(
        r=first.r[lora.ADAPTER], lora_alpha=first.lora_alpha[lora.ADAPTER],
        use_rslora=alpha_policy == "rslora", target_modules=target_modules, lora_dropout=0.0,
        modules_to_save=["classifier"],
        rank_pattern={name: layer.r[lora.ADAPTER] for name, layer in layers.items()},
        alpha_pattern={name: layer.lora_alpha[lora.ADAPTER] for name, layer in layers.items()})


@torch.no_grad()
def export_adapter(net: nn.Module, model: str, task, target_modules: list[str],
                   max_length: int, path: str | Path, alpha_policy: str = "fixed") -> Path:
    """Write the adapter and head of `net` (a model with injected LoRA layers) to `path`."""
    from peft import get_peft_model

    path = Path(path)
    layers = {name: m for name, m in net.named_modules() if m in lora.lora_layers(net)}
    fresh = _with_head(model, task.num_classes, task.label_names)
    peft_model = get_peft_model(fresh, _lora_config(layers, target_modules, alpha_policy))
    targets = {name: m for name, m in fresh.named_modules() if name in layers}
    for name, layer in layers.items():
        for part in ("lora_A", "lora_B"):
            getattr(targets[name], part)[lora.ADAPTER].weight.copy_(
                getattr(layer, part)[lora.ADAPTER].weight)
    fresh.classifier.modules_to_save[lora.ADAPTER].load_state_dict(net.classifier.state_dict())
    peft_model.save_pretrained(path)
    meta = {"model": model, "task": task.name, "label_names": list(task.label_names),
            "max_length": max_length}
    (path / "lora_gym.json").write_text(json.dumps(meta, indent=1))
    return path


def load_adapter(path: str | Path):
    """Load an exported adapter onto its base model: ``(PeftModel, tokenizer, meta)``."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    path = Path(path)
    meta = json.loads((path / "lora_gym.json").read_text())
    labels = tuple(meta["label_names"])
    _, tokenizer = load_base(meta["model"])
    if meta["model"] == TINY_MODEL:
        base = _with_head(TINY_MODEL, len(labels), labels)
    else:
        from lora_gym.models import model_dir

        base = AutoModelForSequenceClassification.from_pretrained(
            model_dir(meta["model"]), num_labels=len(labels), local_files_only=True)
    return PeftModel.from_pretrained(base, path).eval(), tokenizer, meta
