"""Typed, validated configuration of the LoRA-tuning environment (YAML <-> dataclass)."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Self

import yaml

from lora_gym.core.errors import ConfigError
from lora_gym.core.monitoring import MONITOR_NAMES
from lora_gym.core.schedules import LR_SCHEDULES

_LORA_LAYERS_HELP = "'all' or 'top-<k>' with k >= 1 (e.g. 'top-2')"
RANDOM_INITS: tuple[str, ...] = ("kaiming", "gaussian", "orthogonal", "xavier", "layer_adaptive")
"""Inits that draw A at random and start B at zero (ΔW = 0; see `lora_gym.engine.resize.init_a`)."""
SVD_INITS: tuple[str, ...] = ("pissa", "olora")
"""Inits taken from the base weight (PEFT's ``init_lora_weights``); the base becomes a residual."""
INITS: tuple[str, ...] = RANDOM_INITS + SVD_INITS
BASE_DTYPES: tuple[str, ...] = ("float32", "int8")
"""How the frozen base computes outside training (see `lora_gym.engine.quantize`)."""
LORA_DTYPES: tuple[str, ...] = ("float32", "int8")
"""How LoRA's A and B are evaluated and exported (`lora_gym.engine.quantize.int8_lora`)."""
GRAD_PROJECTIONS: tuple[str, ...] = ("none", "subspace", "pcgrad")
"""`EnvConfig.grad_projection` values (`lora_gym.engine.projection`)."""
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")
"""`EnvConfig.dtype` values: the dtype the frozen base runs in (adapters and head stay fp32)."""
ALPHA_POLICIES: tuple[str, ...] = ("fixed", "rslora", "2r")
"""How the LoRA scaling depends on the rank (see `lora_gym.engine.resize.scaling`)."""
AUGMENTATIONS: tuple[str, ...] = ("none", "hidden_noise", "mixup")
"""Training-batch augmentations in hidden-state space (see `lora_gym.engine.augment`)."""


class YamlConfig:
    """YAML and dict round trips of a frozen config dataclass, validated by its ``__post_init__``.

    Subclasses (`EnvConfig`, `lora_gym.core.lm_config.LMConfig`) are frozen dataclasses whose
    ``__post_init__`` raises `ConfigError` naming the bad field and its allowed values.
    """

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build a config from a mapping (e.g. parsed YAML); unknown keys raise `ConfigError`."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(valid), key=repr)  # keys of any type, e.g. 0 and ""
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; valid keys are {valid}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Self:
        """Load a config from a YAML file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        data = load_yaml(path, "config file") or {}
        try:
            return cls.from_dict(data)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        """A YAML-safe dict (a callable reward is written as ``module:qualname``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if callable(value):
                value = f"{value.__module__}:{value.__qualname__}"
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, YamlConfig):  # a composed config: its own mapping
                value = value.to_dict()
            out[f.name] = value
        return out

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (validated like any other config)."""
        return type(self).from_dict({**dataclasses.asdict(self), **changes})


@dataclass(frozen=True)
class PerLayerConfig(YamlConfig):
    """`LoRATunePerLayer-v0`'s settings, composed into `EnvConfig.per_layer` (PEFT-style)."""

    layer_groups: int = 2
    """The LoRA layers, in depth order, form this many contiguous groups of near-equal size, each
    with its own rank (at most the number of layers carrying LoRA)."""

    def __post_init__(self) -> None:
        _check_types(self)
        if self.layer_groups < 1:
            raise ConfigError(f"`layer_groups` must be >= 1, got {self.layer_groups!r}")


@dataclass(frozen=True)
class ScopeConfig(YamlConfig):
    """`LoRATuneScope-v0`'s settings, composed into `EnvConfig.scope`."""

    scopes: tuple[str, ...] = ("top-1", "top-2", "all")
    """Trainable scopes the agent chooses from (episodes start in the first): ``<layers>`` or
    ``<layers>:<module>+<module>...``; layers ``all`` (every layer carrying LoRA) or ``top-<k>``
    (k at most the k of `EnvConfig.lora_layers`), modules among `EnvConfig.target_modules`
    (default: all of them); checked against those by `EnvConfig.parse_scope`."""

    def __post_init__(self) -> None:
        _check_types(self)
        if not self.scopes:
            raise ConfigError("`scopes` must name at least one scope, got ()")


@dataclass(frozen=True)
class MultiTaskConfig(YamlConfig):
    """`LoRATuneMultiTask-v0`'s settings (seed 003), composed into `EnvConfig.multi_task`."""

    multi_task_k: int = 3
    """Tasks tuned together in one episode, each with its own adapter and head."""
    shared_adapter: bool = False
    """Also train one adapter shared by the K tasks (its rank: `shared_rank`), on every task's
    batches, next to the task-specific ones."""
    shared_rank: int = 4
    """Rank of the shared adapter."""

    def __post_init__(self) -> None:
        _check_types(self)
        if self.multi_task_k < 1:
            raise ConfigError(f"`multi_task_k` must be >= 1, got {self.multi_task_k!r}")
        if self.shared_rank < 1:
            raise ConfigError(f"`shared_rank` must be >= 1, got {self.shared_rank!r}")


@dataclass(frozen=True)
class EnvConfig(YamlConfig):
    """Everything that defines a `LoRATune-v0` environment.

    The defaults are the embedded default and equal `envs_configs/default.yaml` (a test checks it).
    """

    model: str = "minilm"
    """Base model: ``minilm`` (the embedded all-MiniLM-L6-v2), ``tiny-bert`` (a tiny random BERT
    built in-process, for tests), or the path of a local Hugging Face model directory."""
    task_set: str = "default"
    """Task set: ``default`` or ``tiny`` (shipped in the package) or the path of a task-set YAML."""
    task_split: str = "train"
    """Which tasks ``reset`` samples from: ``train``, ``val``, ``test`` or ``all``."""
    ranks: tuple[int, ...] = (1, 4, 16)
    """LoRA ranks the agent can choose from (strictly increasing); episodes start at the first."""
    learning_rates: tuple[float, ...] = (3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2, 3.0e-2)
    """Learning rates the agent can choose from (strictly increasing)."""
    episode_length: int = 8
    """Most fine-tune segments per episode; the episode is truncated after them."""
    stop_action: bool = True
    """Add a final *stop* action that ends the episode without training (``false``: exactly
    the (rank, lr) grid)."""
    steps_per_action: int = 20
    """Optimizer steps trained after each action (K)."""
    steps_choices: tuple[int, ...] = ()
    """Training steps as a choice (seed 000): optimizer steps an action can train, strictly
    increasing and including `steps_per_action` (the steps of the baselines' segments); every
    (rank, lr) pair of the grid is offered with each. Empty (default): every action trains
    `steps_per_action` steps."""
    batch_size: int = 32
    """Training batch size."""
    max_length: int = 64
    """Tokens per example after truncation (batches are padded to their longest example)."""
    eval_batch_size: int = 128
    """Batch size of validation passes."""
    target_modules: tuple[str, ...] = ("query", "value")
    """Names of the linear modules LoRA adapts (PEFT ``target_modules``)."""
    lora_layers: str = "top-2"
    """Which transformer layers carry LoRA: ``all`` or ``top-<k>`` (the last k layers)."""
    lora_alpha: float = 16.0
    """LoRA alpha; the update is scaled by ``lora_alpha / rank`` (see `alpha_policy`)."""
    alpha_policy: str = "fixed"
    """How the scaling s of ΔW = s·B·A depends on the rank r: ``fixed`` (s = lora_alpha / r,
    PEFT's default), ``rslora`` (s = lora_alpha / √r) or ``2r`` (alpha = 2r: s = 2 at every rank).
    Rank changes keep ΔW intact under every policy (B is rescaled when s changes); the policy sets
    the scale of what the newly added directions learn."""
    init: str = "kaiming"
    """How adapters start: ``kaiming``, ``gaussian``, ``orthogonal``, ``xavier`` or
    ``layer_adaptive`` (random A scaled by the base layer's weight statistics; zero B: ΔW = 0) or
    ``pissa``, ``olora`` (PEFT's ``init_lora_weights``: A and B from the SVD / QR of the base
    weight, which becomes the residual W - s·B·A, so the model's output is unchanged; the base
    weights are restored at every reset, and growing the rank moves the residual's next
    directions into the adapter)."""
    per_layer: PerLayerConfig = field(default_factory=lambda: PerLayerConfig())
    """`LoRATunePerLayer-v0`'s own settings (`PerLayerConfig`; the flat key ``layer_groups`` of
    older configs still loads into it)."""
    scope: ScopeConfig = field(default_factory=lambda: ScopeConfig())
    """`LoRATuneScope-v0`'s own settings (`ScopeConfig`; the flat key ``scopes`` still loads)."""
    multi_task: MultiTaskConfig = field(default_factory=lambda: MultiTaskConfig())
    """`LoRATuneMultiTask-v0`'s own settings (`MultiTaskConfig`; flat keys load too)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    augmentation: str = "none"
    """Augmentation of every training batch (seed 000's 数据增强策略; `lora_gym.engine.augment`):
    ``none``, ``hidden_noise`` (Gaussian noise on the hidden states entering the first layer a
    batch runs, i.e. the first LoRA layer with the prefix cache) or ``mixup`` (manifold mixup of
    those states and of the labels). BERT-style models only; evaluation is never augmented."""
    augmentation_choices: tuple[str, ...] = ("none", "hidden_noise")
    """Augmentation as a choice of the action (seed 000): augmentations an action can train
    with, among `augmentation`'s values and including `augmentation` (what the baselines'
    segments use); every (rank, lr[, steps]) of the grid is offered with each. Empty: every
    action trains with `augmentation`. Default ``[none, hidden_noise]``: the headroom sweep's
    rule, see ``envs_configs/default.yaml``."""
    augmentation_strength: float = 0.2
    """``hidden_noise``: noise std as a fraction of the hidden states' std; ``mixup``: α of the
    Beta(α, α) mixing weight."""
    lr_schedule: str = "constant"
    """Learning rate within each segment (`lora_gym.core.schedules`): ``constant`` (the chosen lr
    at every step), ``cosine`` (decays from it towards 0) or ``warmup_cosine`` (linear warm-up
    over `lr_warmup` of the segment's steps, then cosine decay)."""
    lr_warmup: float = 0.1
    """``lr_schedule: warmup_cosine``: fraction of each segment's steps that warm up (>= 1 step)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clipping threshold (0 disables clipping)."""
    grad_projection: str = "none"
    """Projection of the LoRA gradients before each optimizer step (seed 003,
    `lora_gym.engine.projection`): ``none``; ``subspace`` (A's gradient projected onto A's top
    `projection_dim` singular subspace, ``U_k U_kᵀ G V_k V_kᵀ``); ``pcgrad`` (PCGrad between the
    tasks' gradients on the shared adapter: `LoRATuneMultiTask-v0` with ``shared_adapter``)."""
    projection_dim: int = 4
    """``subspace``: the k of the top-k singular subspace (at most the rank)."""
    reward_fn: str | Callable[..., Any] = "delta_acc_minus_cost"
    """Reward function: a registered name, ``package.module:function``, or a callable."""
    cost_weight: float | tuple[float, ...] = 0.01
    """λ: weight of the compute cost in the default reward; or a range ``[lo, hi]`` (0 < lo < hi)
    from which every episode draws λ log-uniformly, observed as ``log10_cost_weight`` (a
    preference-conditioned policy; `lora_gym.core.preferences`)."""
    divergence_penalty: float = 1.0
    """Reward is ``-divergence_penalty`` when a fine-tune diverges (non-finite loss)."""
    torch_threads: int = 0
    """Torch intra-op threads for this env's process; 0 means auto: the machine's cores divided
    by ``$LORA_GYM_N_ENVS`` (env processes sharing it, default 1), at least 1."""
    prefix_cache: bool = True
    """With ``lora_layers: top-<k>``, run the frozen lower layers once per task and train and
    evaluate only the top k (same results up to float rounding; BERT-style models only)."""
    extra_observations: tuple[str, ...] = ()
    """Summaries of the LoRA layers' statistics appended to the observation (after the env's own
    entries), among ``mean_grad_norm``, ``effective_rank``, ``delta_w_norm``
    (`lora_gym.core.monitoring`); empty by default (the observation is unchanged)."""
    base_dtype: str = "float32"
    """``int8`` quantises the frozen Linear layers (PyTorch dynamic quantisation, CPU) for the
    frozen-prefix computation and evaluation; training runs them in fp32 (seed 003). Not with
    the base-rewriting inits ``pissa`` / ``olora``."""
    lora_dtype: str = "float32"
    """``int8`` (seed 003's INT8 LoRA increments): A and B are evaluated and exported quantised per
    tensor with a dynamic scale (`lora_gym.engine.quantize.int8_lora`); training stays fp32."""
    device: str = "cpu"
    """Where the model runs: ``cpu``, ``cuda``, ``cuda:N``, or ``auto`` (CUDA when available,
    else the CPU). Tensors cross to the CPU only for metrics and the store. Default ``cpu``: a
    table's key includes the device type, so the default's shipped CPU tables serve it anywhere."""
    dtype: str = "float32"
    """The frozen base model's dtype: ``float32``, or ``bfloat16`` / ``float16`` on CUDA (mixed
    precision: the forward runs under autocast, LoRA adapters and the head train in fp32)."""
    report_wall_time: bool = False
    """Put ``wall_time_s`` into ``info``. Off by default: infos are part of the seeded-determinism
    contract that Gymnasium's ``check_env`` verifies, and wall time is never reproducible."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Free-form settings passed to custom reward functions (e.g. their own weights)."""

    def __post_init__(self) -> None:
        check_common(self, ("episode_length", "steps_per_action", "batch_size", "max_length",
                            "eval_batch_size"))
        if self.steps_choices:
            _check_increasing("steps_choices", self.steps_choices, positive=True)
            if self.steps_per_action not in self.steps_choices:
                raise ConfigError(f"`steps_choices` must include `steps_per_action` "
                                  f"({self.steps_per_action}), got {list(self.steps_choices)}")
        if not self.target_modules:
            raise ConfigError("`target_modules` must name at least one module, got ()")
        self.top_layers  # noqa: B018 - validates `lora_layers`
        _check_choice("alpha_policy", self.alpha_policy, ALPHA_POLICIES)
        _check_choice("augmentation", self.augmentation, AUGMENTATIONS)
        if self.augmentation_choices:
            for kind in self.augmentation_choices:
                _check_choice("augmentation_choices", kind, AUGMENTATIONS)
            if len(set(self.augmentation_choices)) < len(self.augmentation_choices):
                raise ConfigError(f"`augmentation_choices` must not repeat a name, got "
                                  f"{list(self.augmentation_choices)}")
            if self.augmentation not in self.augmentation_choices:
                raise ConfigError(f"`augmentation_choices` must include `augmentation` "
                                  f"({self.augmentation!r}), got "
                                  f"{list(self.augmentation_choices)}")
        if not (self.augmentation_strength > 0 and math.isfinite(self.augmentation_strength)):
            raise ConfigError(f"`augmentation_strength` must be a finite number > 0, got "
                              f"{self.augmentation_strength!r}")
        _check_choice("init", self.init, INITS)
        _check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _check_choice("base_dtype", self.base_dtype, BASE_DTYPES)
        _check_choice("lora_dtype", self.lora_dtype, LORA_DTYPES)
        _check_choice("grad_projection", self.grad_projection, GRAD_PROJECTIONS)
        if self.projection_dim < 1:
            raise ConfigError(f"`projection_dim` must be >= 1, got {self.projection_dim!r}")
        if self.base_dtype == "int8" and self.init in SVD_INITS:
            raise ConfigError(f"`base_dtype` int8 needs an init that leaves the base weights "
                              f"alone, not `init` {self.init!r} (one of {list(SVD_INITS)})")
        if self.dtype != "float32" and self.base_dtype == "int8":
            raise ConfigError("`base_dtype` int8 (a CPU quantisation) needs `dtype` float32")
        for name in self.extra_observations:
            _check_choice("extra_observations", name, MONITOR_NAMES)
        if len(set(self.extra_observations)) < len(self.extra_observations):
            raise ConfigError(f"`extra_observations` must not repeat a name, got "
                              f"{list(self.extra_observations)}")
        if not 0.0 <= self.lr_warmup < 1.0:
            raise ConfigError(f"`lr_warmup` must be in [0, 1), got {self.lr_warmup!r}")
        for scope in self.scope.scopes:
            self.parse_scope(scope)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnvConfig:
        """Build a config from a mapping; unknown keys raise `ConfigError`.

        The variants' settings come as nested mappings (``per_layer: {layer_groups: 2}``) or as
        the flat keys of older configs (``layer_groups: 2``), which win over the nested ones.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
        data = dict(data)
        for name, kind in VARIANT_CONFIGS.items():
            nested = data.get(name, {})
            if isinstance(nested, kind):
                nested = dataclasses.asdict(nested)
            if not isinstance(nested, Mapping):
                raise ConfigError(f"`{name}` must be a mapping with keys "
                                  f"{[f.name for f in fields(kind)]}, got {nested!r}")
            flat = {f.name: data.pop(f.name) for f in fields(kind) if f.name in data}
            try:
                data[name] = kind.from_dict({**nested, **flat})
            except ConfigError as err:
                raise ConfigError(f"`{name}`: {err}") from None
        return super().from_dict(data)

    def device_name(self, cuda_available: bool) -> str:
        """`device` resolved (``auto``: ``cuda`` when `cuda_available`, else ``cpu``).

        Raises:
            ConfigError: a CUDA device is asked for and CUDA is not available, or `dtype` is not
                float32 on the CPU that ``auto`` resolved to.

        """
        return resolve_device(self.device, self.dtype, cuda_available)

    @property
    def top_layers(self) -> int | None:
        """The k of ``lora_layers: top-<k>``, or ``None`` for ``all``."""
        k = _top_k(self.lora_layers)
        if k is False:
            raise ConfigError(
                f"`lora_layers` must be {_LORA_LAYERS_HELP}, got {self.lora_layers!r}")
        return k

    def parse_scope(self, scope: str) -> tuple[int | None, tuple[str, ...]]:
        """``(k, modules)`` of a ``scope.scopes`` entry: k of ``top-<k>`` (``None``: every layer).

        Raises:
            ConfigError: the entry is malformed or names a module outside `target_modules`.
        """
        layers, _, modules = scope.partition(":")
        names = tuple(modules.split("+")) if modules else self.target_modules
        k = _top_k(layers)
        if k is False or not names or not set(names) <= set(self.target_modules):
            raise ConfigError(f"`scopes` entries must be '<layers>' or '<layers>:<module>+...' "
                              f"with layers {_LORA_LAYERS_HELP} and modules among "
                              f"{list(self.target_modules)}, got {scope!r}")
        return k, names


VARIANT_CONFIGS: dict[str, type[YamlConfig]] = {"per_layer": PerLayerConfig, "scope": ScopeConfig,
                                                 "multi_task": MultiTaskConfig}
"""`EnvConfig` fields that hold a variant env's own config, by field name."""


def check_common(config: Any, sizes: tuple[str, ...]) -> None:
    """The checks every env config shares: field types, split, grid, sizes, λ, non-negatives.

    `sizes` names the integer fields that must be >= 1.
    """
    _check_types(config)
    _check_choice("task_split", config.task_split, ("train", "val", "test", "all"))
    _check_increasing("ranks", config.ranks, positive=True)
    _check_increasing("learning_rates", config.learning_rates, positive=True)
    for name in sizes:
        if getattr(config, name) < 1:
            raise ConfigError(f"`{name}` must be >= 1, got {getattr(config, name)!r}")
    _check_cost_weight(config.cost_weight)
    for name in ("lora_alpha", "divergence_penalty", "weight_decay", "max_grad_norm",
                 "torch_threads"):
        value = getattr(config, name)
        if value < 0 or not math.isfinite(value):
            raise ConfigError(f"`{name}` must be a finite number >= 0, got {value!r}")
    check_device(config.device, config.dtype)


def check_device(device: str, dtype: str) -> None:
    """Validate a config's ``device`` and ``dtype`` fields (`ConfigError` naming the bad one)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ConfigError(f"`device` must be auto, cpu, cuda or cuda:N, got {device!r}")
    _check_choice("dtype", dtype, DTYPES)
    if dtype != "float32" and device == "cpu":
        raise ConfigError(f"`dtype` {dtype!r} needs a CUDA `device`; on the CPU the "
                          "engine runs float32 (use base_dtype: int8 to speed up the CPU)")


def resolve_device(device: str, dtype: str, cuda_available: bool) -> str:
    """``device`` resolved (``auto``: ``cuda`` when `cuda_available`, else ``cpu``).

    Raises:
        ConfigError: a CUDA device is asked for and CUDA is not available, or `dtype` is not
            float32 on the CPU that ``auto`` resolved to.
    """
    name = device
    if name == "auto":
        name = "cuda" if cuda_available else "cpu"
    if name.startswith("cuda") and not cuda_available:
        raise ConfigError(f"`device` {device!r}: CUDA is not available here; use "
                          "device: cpu or auto")
    if name == "cpu" and dtype != "float32":
        raise ConfigError(f"`dtype` {dtype!r} needs CUDA; `device` {device!r} "
                          "resolved to the CPU")
    return name


def load_yaml(path: Path, what: str) -> Any:
    """Parse a YAML file; a syntax error or unreadable text is a `ConfigError` naming the file.

    Args:
        path: The file.
        what: What the file is, for the message (``"config file"``, ``"task set file"``).
    """
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{what} {str(path)!r}: YAML syntax error{where}: {problem}") from None
    except (UnicodeDecodeError, OSError) as err:
        raise ConfigError(f"{what} {str(path)!r} cannot be read as UTF-8 text: {err}") from None


def resolve_config(config: str | Path | Mapping | EnvConfig | None = None, **overrides: Any
                   ) -> EnvConfig:
    """Turn what ``gym.make`` received into an `EnvConfig`.

    Args:
        config: a YAML path, the name of a shipped config (``tiny``, ``default``: a name without
            ``/`` or a ``.yaml``/``.yml`` suffix, see `lora_gym.core.paths.shipped_config`), a
            mapping, an `EnvConfig`, or ``None`` for the embedded default.
        **overrides: fields that replace the config's values.
    """
    return resolve_as(EnvConfig, config, overrides)


def resolve_as(kind: type[YamlConfig], config: Any, overrides: Mapping[str, Any]) -> Any:
    """`config` as a `kind` (see `resolve_config`), with `overrides` applied.

    `config` is a YAML path, a shipped config's name, a mapping, a `kind`, or ``None`` (the
    defaults of `kind`).
    """
    if config is None:
        base = kind()
    elif isinstance(config, kind):
        base = config
    elif isinstance(config, Mapping):
        base = kind.from_dict(config)
    elif isinstance(config, str) and is_config_name(config):
        from lora_gym.core.paths import shipped_config

        try:
            base = kind.from_yaml(shipped_config(config))
        except ValueError as err:
            raise ConfigError(f"`config`: {err}") from None
    elif isinstance(config, str | Path):
        base = kind.from_yaml(config)
    else:
        raise ConfigError(f"`config` must be a YAML path, a dict or an {kind.__name__}, got "
                          f"{config!r}")
    return base.replace(**overrides) if overrides else base


def is_config_name(text: str) -> bool:
    """Whether `text` names a shipped config (``tiny``) rather than a path (``my/tiny.yaml``)."""
    return "/" not in text and "\\" not in text and not text.endswith((".yaml", ".yml"))


def _top_k(layers: str) -> int | None | bool:
    """The k of ``top-<k>``, None for ``all``, False when `layers` is neither."""
    if layers == "all":
        return None
    prefix, _, k = layers.partition("-")
    return int(k) if prefix == "top" and k.isdigit() and int(k) >= 1 else False


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"`{name}` must be one of {list(allowed)}, got {value!r}")


def _check_cost_weight(value: float | tuple[float, ...]) -> None:
    if isinstance(value, tuple):
        if len(value) != 2 or not (0 < value[0] < value[1] and math.isfinite(value[1])):
            raise ConfigError(f"`cost_weight` must be a finite number >= 0 or a range [lo, hi] "
                              f"with 0 < lo < hi, got {list(value)}")
    elif value < 0 or not math.isfinite(value):
        raise ConfigError(f"`cost_weight` must be a finite number >= 0 or a range [lo, hi], "
                          f"got {value!r}")


def _check_increasing(name: str, values: tuple, positive: bool) -> None:
    if not values:
        raise ConfigError(f"`{name}` must not be empty")
    if positive and any(v <= 0 or not math.isfinite(v) for v in values):
        raise ConfigError(f"`{name}` must hold finite positive values, got {list(values)}")
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ConfigError(f"`{name}` must be strictly increasing, got {list(values)}")


def _check_types(config: EnvConfig) -> None:
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        value = getattr(config, f.name)
        if not _matches(value, hints[f.name]):
            raise ConfigError(f"`{f.name}` must be of type {_type_name(hints[f.name])}, "
                              f"got {value!r} ({type(value).__name__})")


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is tuple:
        (item, _ellipsis) = typing.get_args(hint)
        return isinstance(value, tuple) and all(_matches(v, item) for v in value)
    if origin is not None and origin.__module__ == "collections.abc":
        return isinstance(value, origin)
    if hint is float:  # ints are acceptable floats; bools are not numbers here
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("collections.abc.", "")
