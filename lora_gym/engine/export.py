"""Export a live adapter as a standard PEFT adapter folder, and load it back.

The folder is what ``PeftModel.save_pretrained`` writes (``adapter_config.json`` +
``adapter_model.safetensors``), with the task's classification head saved through PEFT's
``modules_to_save`` and per-layer ranks and alphas through ``rank_pattern`` / ``alpha_pattern``
(``use_rslora`` for ``alpha_policy: rslora``; with ``lora_dtype: int8`` the int8 round trip of A
and B, which evaluation ran, plus the int8 tensors in `INT8_FILE`), plus ``lora_gym.json`` (task,
label names, base model, max length), ``config.json`` (the base model's config with the task's
``id2label`` / ``label2id``) and a filled model card ``README.md`` (`lora_gym.engine.model_card`:
task, labels, validation metrics, tuning trajectory, loading code). ``base_model_name_or_path``
is portable: the hub id ``sentence-transformers/all-MiniLM-L6-v2`` for the embedded MiniLM
(`lora_gym.engine.models.HUB_IDS`), so the folder loads anywhere with
``PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base,
num_labels=n), folder)``. `load_adapter` does exactly that offline, mapping the hub id back to
the embedded local copy (and rebuilding the in-process ``tiny-bert`` base).

PiSSA / OLoRA adapters live on a residual base; they are exported as the equivalent plain LoRA
on the original base (see `_factors`), so the folder loads on the unmodified model like any other.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lora_gym.core.config import SVD_INITS, EnvConfig
from lora_gym.engine import families
from lora_gym.engine import resize as lora
from lora_gym.engine.model_card import model_card
from lora_gym.engine.models import (
    HUB_IDS,
    TINY_MODEL,
    load_base,
    portable_name,
    quiet_peft,
    set_pad_token,
    setting_of,
)
from lora_gym.engine.quantize import int8_lora, quantize_tensor


def _with_head(model: str, num_labels: int, label_names: tuple[str, ...]):
    """A copy of the base model with a fresh head of `num_labels` outputs."""
    base, _ = load_base(model)
    net = copy.deepcopy(base)
    family = families.family_of(net.config)
    families.reset_head(net, family, num_labels, net.config.initializer_range,
                        torch.Generator().manual_seed(0))
    net.num_labels = net.config.num_labels = num_labels
    net.config.id2label = dict(enumerate(label_names))
    net.config.label2id = {name: i for i, name in enumerate(label_names)}
    return net


def _lora_config(factors: dict[str, tuple], config: EnvConfig, family: families.Family):
    from peft import LoraConfig

    ranks = {name: a.shape[0] for name, (a, _, _) in factors.items()}
    alphas = {name: alpha for name, (_, _, alpha) in factors.items()}
    first = next(iter(factors))
    return LoraConfig(
        r=ranks[first], lora_alpha=alphas[first], use_rslora=config.alpha_policy == "rslora",
        target_modules=list(config.target_modules), lora_dropout=0.0,
        modules_to_save=family.modules_to_save, rank_pattern=ranks, alpha_pattern=alphas,
        fan_in_fan_out=family.fan_in_fan_out)


def _factors(layer: nn.Module, original: torch.Tensor, config: EnvConfig
             ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(A, B, lora_alpha)`` of a standard LoRA on the original base weight equal to the layer.

    Random inits: the live A and B. PiSSA / OLoRA: the exact change ``W_res + s·B@A - W`` of the
    weight, factored by SVD at its numerical rank (at most 2r after a plain fine-tune), as PEFT's
    ``path_initial_model_for_weight_conversion`` turns such adapters into plain LoRA.
    """
    a, b = layer.lora_A[lora.ADAPTER].weight, layer.lora_B[lora.ADAPTER].weight
    if config.init not in SVD_INITS:
        return a, b, layer.lora_alpha[lora.ADAPTER]
    residual = layer.get_base_layer().weight.double()
    change = residual + layer.scaling[lora.ADAPTER] * (b.double() @ a.double()) - original.double()
    u, sigma, vh = torch.linalg.svd(change, full_matrices=False)
    tol = 1e-6 * torch.linalg.matrix_norm(original.double(), ord=2)
    rank = max(1, int((sigma > tol).sum()))
    root = (sigma[:rank] / lora.scaling(rank, config.lora_alpha, config.alpha_policy)).sqrt()
    alpha = 2.0 * rank if config.alpha_policy == "2r" else config.lora_alpha
    return (root[:, None] * vh[:rank]).float(), (u[:, :rank] * root).float(), alpha


@torch.no_grad()
def export_adapter(net: nn.Module, config: EnvConfig, task, path: str | Path,
                   history: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Write the adapter and head of `net` (a session's model, built from `config`) to `path`.

    `history` is the episode's trajectory for the model card (one row per evaluation: step,
    rank, lr, accuracy, f1, val_loss, cost_so_far).
    """
    from peft import get_peft_model

    path = Path(path)
    found = set(map(id, lora.lora_layers(net)))  # once, not per module
    layers = {name: m for name, m in net.named_modules() if id(m) in found}
    fresh = _with_head(config.model, task.num_classes, task.label_names)
    originals = {name: m.weight for name, m in fresh.named_modules() if name in layers}
    int8 = config.lora_dtype == "int8"
    with int8_lora(layers) if int8 else contextlib.nullcontext():  # what evaluation ran
        factors = {name: tuple(x.detach().clone() if torch.is_tensor(x) else x
                               for x in _factors(layer, originals[name], config))
                   for name, layer in layers.items()}
    family = families.family_of(fresh.config)
    with quiet_peft():
        peft_model = get_peft_model(fresh, _lora_config(factors, config, family))
    base = portable_name(config.model)  # get_peft_model set the local path: name it portably
    peft_model.peft_config[lora.ADAPTER].base_model_name_or_path = base
    targets = {name: m for name, m in fresh.named_modules() if name in layers}
    for name, (a, b, _) in factors.items():
        targets[name].lora_A[lora.ADAPTER].weight.copy_(a)
        targets[name].lora_B[lora.ADAPTER].weight.copy_(b)
    for name in family.modules_to_save:  # the trained head, whole
        getattr(fresh, name).modules_to_save[lora.ADAPTER].load_state_dict(
            getattr(net, name).state_dict())
    peft_model.save_pretrained(path)
    fresh.config.save_pretrained(path)  # config.json: id2label / label2id of the task
    meta = {"model": config.model, "task": task.name, "label_names": list(task.label_names),
            "max_length": config.max_length, "init": config.init,
            "alpha_policy": config.alpha_policy, "lora_dtype": config.lora_dtype}
    if int8:
        meta["int8_file"] = _save_int8(factors, path / INT8_FILE)
    (path / "lora_gym.json").write_text(json.dumps(meta, indent=1))
    card = model_card(meta, base, history, hub_base=config.model in HUB_IDS)
    (path / "README.md").write_text(card)  # replaces PEFT's empty template
    return path


INT8_FILE = "adapter_model.int8.safetensors"
"""With ``lora_dtype: int8``: every A and B as int8 plus its scale (``<layer>.lora_A`` and
``<layer>.lora_A.scale``), next to PEFT's fp32 file holding their exact round trip."""


def _save_int8(factors: dict[str, tuple], path: Path) -> str:
    from safetensors.torch import save_file

    tensors = {}
    for name, (a, b, _) in factors.items():
        for part, w in (("lora_A", a), ("lora_B", b)):
            q, scale = quantize_tensor(w)
            tensors[f"{name}.{part}"] = q.contiguous()
            tensors[f"{name}.{part}.scale"] = torch.tensor([scale], dtype=torch.float32)
    save_file(tensors, str(path))
    return path.name


def load_adapter(path: str | Path):
    """Load an exported adapter onto its base model: ``(PeftModel, tokenizer, meta)``."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    path = Path(path)
    meta = json.loads((path / "lora_gym.json").read_text())
    labels = tuple(meta["label_names"])
    setting = setting_of(json.loads((path / "adapter_config.json").read_text())
                         .get("base_model_name_or_path") or meta["model"])
    _, tokenizer = load_base(setting)
    if setting == TINY_MODEL:
        base = _with_head(TINY_MODEL, len(labels), labels)
    else:
        from lora_gym.engine.models import model_dir

        base = AutoModelForSequenceClassification.from_pretrained(
            model_dir(setting), num_labels=len(labels), local_files_only=True,
            ignore_mismatched_sizes=True,  # a checkpoint's own head: replaced by the adapter's
            id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
        set_pad_token(base, tokenizer)  # a decoder: padded as in training
    with quiet_peft():
        return PeftModel.from_pretrained(base, path).eval(), tokenizer, meta
