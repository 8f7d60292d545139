"""Model families: where a sequence classifier keeps its layer stack, LoRA targets and head.

One small description per architecture, in the spirit of PEFT's per-architecture target-module
mapping, is all the engine needs to know about a model (`FineTuneSession`, the prefix cache,
per-layer ranks and scopes, resize, monitoring and export read it):

* ``layers``: the dotted path of the transformer layer stack (an ``nn.ModuleList``); a LoRA
  layer's depth is the index after its last component (``...encoder.layer.3.attention...`` -> 3);
* ``targets``: the default LoRA target modules (the attention's query and value projections);
* ``head``: the modules that make the classification head from the backbone's output. Every
  episode re-initialises them (seeded) and trains them; the last is sized to the task's classes;
* ``fan_in_fan_out``: the projections are GPT-2's ``Conv1D`` (PEFT's flag).

Decoders (GPT-2, Llama, ...) need nothing more: their Hugging Face classifiers pool the last
non-pad token, and `lora_gym.engine.models` sets a pad token where the tokenizer has none.

The engine runs an encoder of the BERT family through its own fast path (pooled outputs cached,
the last layer at the [CLS] position only); the other families run from the hidden states
entering any layer (`capture`, `forward_from`) for the frozen-prefix cache and the hidden-state
augmentations. Add a family by adding a `Family` to `FAMILIES`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from lora_gym.core.errors import ConfigError


@dataclass(frozen=True)
class Family:
    """How one architecture's sequence classifier is laid out (module docstring)."""

    name: str
    model_types: tuple[str, ...]
    """``config.model_type`` values of the family."""
    layers: str
    """Dotted path of the layer stack from the classifier, e.g. ``bert.encoder.layer``."""
    targets: tuple[str, ...]
    """Default LoRA target modules (query and value projections)."""
    head: tuple[str, ...]
    """Head modules, re-initialised and trained every episode; the last outputs the classes."""
    fan_in_fan_out: bool = False
    """The projections are GPT-2's ``Conv1D`` (weights stored in x out), PEFT's flag."""

    @property
    def layers_pattern(self) -> str:
        """The stack's attribute name, PEFT's ``layers_pattern`` (``layer``, ``h``, ``layers``)."""
        return self.layers.rsplit(".", 1)[-1]

    @property
    def modules_to_save(self) -> list[str]:
        """The head's top-level modules, saved whole with an exported adapter (PEFT's name)."""
        return list(dict.fromkeys(path.split(".")[0] for path in self.head))

    def stack(self, net: nn.Module) -> nn.ModuleList:
        """The model's layer stack."""
        return getattr(*_parent(net, self.layers))


def _parent(net: nn.Module, path: str) -> tuple[nn.Module, str]:
    """``(parent module, attribute)`` of the submodule at dotted `path`."""
    *parents, attr = path.split(".")
    return functools.reduce(getattr, parents, net), attr


FAMILIES: tuple[Family, ...] = (
    Family("bert", ("bert",), "bert.encoder.layer", ("query", "value"), ("classifier",)),
    Family("roberta", ("roberta", "xlm-roberta"), "roberta.encoder.layer", ("query", "value"),
           ("classifier.dense", "classifier.out_proj")),
    Family("distilbert", ("distilbert",), "distilbert.transformer.layer", ("q_lin", "v_lin"),
           ("pre_classifier", "classifier")),
    Family("deberta-v2", ("deberta-v2",), "deberta.encoder.layer", ("query_proj", "value_proj"),
           ("pooler.dense", "classifier")),
    Family("electra", ("electra",), "electra.encoder.layer", ("query", "value"),
           ("classifier.dense", "classifier.out_proj")),
    Family("gpt2", ("gpt2",), "transformer.h", ("c_attn",), ("score",), fan_in_fan_out=True),
    Family("llama", ("llama", "qwen2", "mistral"), "model.layers", ("q_proj", "v_proj"),
           ("score",)),
)
"""The supported families (README: "Model families")."""


def supported_model_types() -> list[str]:
    """Every supported ``config.model_type``."""
    return [t for f in FAMILIES for t in f.model_types]


def family_of(model_config) -> Family:
    """The family of a model config.

    Raises:
        ConfigError: an unsupported architecture (the message names it and lists the supported).

    """
    model_type = getattr(model_config, "model_type", None)
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise ConfigError(f"model type {model_type!r} ({', '.join(model_config.architectures or [])})"
                      f" is not supported; supported model types: {supported_model_types()} "
                      "(lora_gym.engine.families: add a Family to FAMILIES)")


def head_modules(net: nn.Module, family: Family) -> list[tuple[nn.Module, str, nn.Module]]:
    """``(parent, attribute, module)`` of every head module, in order."""
    return [(parent, attr, getattr(parent, attr))
            for parent, attr in (_parent(net, path) for path in family.head)]


def reset_head(net: nn.Module, family: Family, num_classes: int, std: float,
               generator: torch.Generator) -> None:
    """Fresh, trainable head modules; the last one sized to `num_classes`.

    Weights are drawn normal(0, std) from `generator` in the head's order, biases are zero;
    float32, on the model's device.
    """
    modules = head_modules(net, family)
    for i, (parent, attr, old) in enumerate(modules):
        out = num_classes if i == len(modules) - 1 else old.out_features
        new = nn.Linear(old.in_features, out, bias=old.bias is not None)
        with torch.no_grad():
            new.weight.normal_(0.0, std, generator=generator)
            if new.bias is not None:
                new.bias.zero_()
        setattr(parent, attr, new.to(old.weight.device))


class _Stop(Exception):
    """Raised by a capture hook to end a forward pass early."""


def _hidden_arg(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _with_hidden(args: tuple, kwargs: dict, hidden: torch.Tensor) -> tuple[tuple, dict]:
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


def check_prefix_support(net: nn.Module, family: Family) -> str | None:
    """Why the model cannot run from a middle layer's states (None: it can)."""
    if getattr(getattr(family_backbone(net, family), "encoder", None), "conv", None) is not None:
        return "a DeBERTa-v2 with a convolution after its first layer"
    layer_types = getattr(net.config, "layer_types", None)
    if layer_types and len(set(layer_types)) > 1:
        return f"layers of several attention types {sorted(set(layer_types))}"
    return None


def family_backbone(net: nn.Module, family: Family) -> nn.Module:
    """The backbone module (the first component of ``layers``)."""
    return getattr(net, family.layers.split(".", 1)[0])


def capture(net: nn.Module, family: Family, input_ids: torch.Tensor,
            attention_mask: torch.Tensor, layer: int) -> torch.Tensor:
    """The hidden states entering layer `layer` (0: the embeddings' output) of a padded batch."""
    seen: list[torch.Tensor] = []

    def hook(module, args, kwargs):
        seen.append(_hidden_arg(args, kwargs))
        raise _Stop

    handle = family.stack(net)[layer].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        net(input_ids=input_ids, attention_mask=attention_mask)
    except _Stop:
        pass
    finally:
        handle.remove()
    return seen[0]


@contextlib.contextmanager
def _layers_from(net: nn.Module, family: Family, layer: int) -> Iterator[nn.Module]:
    """The model with only layers ``layer:`` in its stack; yields the first of them."""
    parent, attr = _parent(net, family.layers)
    stack = getattr(parent, attr)
    if layer:
        setattr(parent, attr, nn.ModuleList(list(stack)[layer:]))
    try:
        yield stack[layer]
    finally:
        setattr(parent, attr, stack)


def forward_from(net: nn.Module, family: Family, hidden: torch.Tensor,
                 attention_mask: torch.Tensor, layer: int, pad_id: int) -> torch.Tensor:
    """Logits of the model run from `hidden`, the states entering layer `layer`.

    The model's own forward builds the attention mask, positions (rotary included) and pooling
    from `attention_mask`; the layers below `layer` are left out of the stack and the embeddings'
    output is replaced by `hidden` where it enters layer `layer`. Token ids only mark padding
    (pad id where the mask is 0), which is all a decoder's last-token pooling reads.
    """
    ids = torch.where(attention_mask.bool(), torch.full_like(attention_mask, int(pad_id == 0)),
                      torch.full_like(attention_mask, pad_id))

    def hook(module, args, kwargs):
        return _with_hidden(args, kwargs, hidden)

    with _layers_from(net, family, layer) as first:
        handle = first.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            return net(input_ids=ids, attention_mask=attention_mask).logits
        finally:
            handle.remove()
