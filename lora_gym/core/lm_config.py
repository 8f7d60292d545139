"""Typed, validated configuration of the causal-LM environment `LoRATuneLM-v0` (YAML <-> dataclass).

Seed 004's settings of LoRA instruction tuning: ``task_type=CAUSAL_LM`` on a decoder model, the
attention projections as target modules, ``lora_dropout``, gradient accumulation and a warm-up +
cosine schedule inside every segment. The (rank, lr) grid, episode, reward and device fields mean
what they mean in `lora_gym.core.config.EnvConfig`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_gym.core.config import (
    ALPHA_POLICIES,
    INITS,
    RANDOM_INITS,
    YamlConfig,
    _check_choice,
    check_common,
    resolve_as,
    resolve_device,
)
from lora_gym.core.errors import ConfigError
from lora_gym.core.schedules import LR_SCHEDULES

LM_MODELS: tuple[str, ...] = ("tiny-llama",)
"""Built-in causal LMs: ``tiny-llama``, a 2-layer hidden-64 Llama with random weights built
in-process from its config (vocabulary: the embedded MiniLM tokenizer's) -- it shows the
mechanics, not a language model's quality. Any other value is a local Hugging Face directory."""


@dataclass(frozen=True)
class LMConfig(YamlConfig):
    """Everything that defines a `LoRATuneLM-v0` environment (defaults: `envs_configs/lm.yaml`)."""

    model: str = "tiny-llama"
    """``tiny-llama`` (`LM_MODELS`) or the path of a local causal-LM directory (Llama, Qwen2,
    Mistral, GPT-2 families)."""
    task_set: str = "lm"
    """A task set of ``type: causal_lm`` tasks: ``lm`` (shipped) or a YAML path."""
    task_split: str = "train"
    ranks: tuple[int, ...] = (1, 4, 16)
    learning_rates: tuple[float, ...] = (3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2)
    episode_length: int = 6
    stop_action: bool = True
    steps_per_action: int = 10
    """Optimizer steps per env step (each accumulates ``grad_accum`` micro-batches)."""
    batch_size: int = 8
    """Examples per micro-batch."""
    grad_accum: int = 2
    """Micro-batches whose gradients are summed into one optimizer step (seed 004)."""
    max_length: int = 128
    """Tokens per example (prompt + response + EOS), truncated from the right."""
    eval_batch_size: int = 32
    target_modules: tuple[str, ...] = ()
    """Modules that get LoRA; empty: the family's attention projections (``q_proj, k_proj,
    v_proj, o_proj`` for Llama-style models, ``c_attn, c_proj`` for GPT-2)."""
    lora_alpha: float = 16.0
    alpha_policy: str = "fixed"
    """How the LoRA scaling depends on the rank (`EnvConfig.alpha_policy`)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input during training (seed 004); evaluation runs without it."""
    init: str = "kaiming"
    """How A starts (B starts at zero): one of the random inits of `EnvConfig.init`."""
    lr_schedule: str = "warmup_cosine"
    """In-segment schedule of the chosen lr: ``constant``, ``cosine`` or ``warmup_cosine``."""
    lr_warmup: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    reward_fn: str | Callable[..., Any] = "delta_acc_minus_cost"
    """Default: Δ next-token accuracy on response tokens − λ·cost (``accuracy`` is that
    accuracy here); ``delta_neg_loss_minus_cost`` rewards Δ(−validation loss) instead."""
    cost_weight: float = 0.01
    """λ of the reward (one value: no preference-conditioned range in this env)."""
    divergence_penalty: float = 1.0
    torch_threads: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_common(self, ("episode_length", "steps_per_action", "batch_size", "grad_accum",
                            "max_length", "eval_batch_size"))
        if self.max_length < 2:
            raise ConfigError(f"`max_length` must be >= 2 (a prompt token and a response "
                              f"token), got {self.max_length}")
        _check_choice("alpha_policy", self.alpha_policy, ALPHA_POLICIES)
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"`lora_dropout` must be in [0, 1), got {self.lora_dropout!r}")
        if self.init not in RANDOM_INITS:
            hint = f" ({self.init!r} is a classification-env init)" if self.init in INITS else ""
            raise ConfigError(f"`init` must be one of {list(RANDOM_INITS)}, got "
                              f"{self.init!r}{hint}")
        _check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if not 0.0 <= self.lr_warmup < 1.0:
            raise ConfigError(f"`lr_warmup` must be in [0, 1), got {self.lr_warmup!r}")

    def device_name(self, cuda_available: bool) -> str:
        """`device` resolved (see `lora_gym.core.config.resolve_device`)."""
        return resolve_device(self.device, self.dtype, cuda_available)


def resolve_lm_config(config: str | Path | Mapping | LMConfig | None = None, **overrides: Any
                      ) -> LMConfig:
    """An `LMConfig` from a YAML path, a shipped config's name (``lm``), a mapping or None."""
    return resolve_as(LMConfig, config, overrides)
