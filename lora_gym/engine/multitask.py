"""K live fine-tunes over one frozen base: seed 003's multi-task LoRA, trained in segments.

`MultiTaskSession` holds one `FineTuneSession` per task, built with ``share_base=True``: their
frozen weights are the same tensors (one base in memory), each has its own LoRA adapter (its own
rank, resized keeping ΔW), classification head, optimizer and batch order. With
``shared_adapter: true`` a second PEFT adapter (``shared``, rank ``shared_rank``) sits on the same
modules of every task's model -- the same ``lora_A`` / ``lora_B`` modules, so one set of weights --
and is active next to the task's own: task k's model computes ``W x + ΔW_k x + ΔW_shared x``.

A segment trains every task ``steps`` optimizer steps, interleaved: at each step each task
back-propagates one batch of its own and steps its own adapter and head; the shared adapter then
takes one step on the tasks' gradients combined by ``grad_projection``: their sum (``none`` or
``subspace``) or PCGrad's (``pcgrad``, `lora_gym.engine.projection.pcgrad`). With ``subspace``
every A gradient (the tasks' and the shared one) is projected onto A's top singular subspace
before its step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from lora_gym.core.config import EnvConfig
from lora_gym.core.metrics import Metrics
from lora_gym.engine import resize as lora
from lora_gym.engine.models import quiet_peft
from lora_gym.engine.projection import pcgrad, project_to_subspace
from lora_gym.engine.session import FineTuneSession, schedule_lr

SHARED = "shared"
"""The PEFT adapter name of the shared adapter."""


@dataclass(frozen=True)
class MultiSegmentResult:
    """What one multi-task segment did: per task, its mean training loss and tokens."""

    train_losses: tuple[float, ...]
    tokens: tuple[int, ...]
    diverged: bool


class MultiTaskSession:
    """One fine-tune per task over one frozen base, optionally with a shared adapter."""

    def __init__(self, config: EnvConfig) -> None:
        self.config = config
        k = config.multi_task.multi_task_k
        self.sessions = [FineTuneSession(config, share_base=True) for _ in range(k)]
        self.shared_params: list[torch.nn.Parameter] = []
        self._shared_layers: list[torch.nn.Module] = []
        if config.multi_task.shared_adapter:
            self._add_shared_adapter()
        self.shared_optimizer: torch.optim.Optimizer | None = None

    def _add_shared_adapter(self) -> None:
        """The ``shared`` adapter on every task's model, with the first model's weights."""
        from peft import LoraConfig

        first = self.sessions[0]
        cfg = first.model.peft_config[lora.ADAPTER]
        shared = LoraConfig(r=self.config.multi_task.shared_rank, lora_alpha=cfg.lora_alpha,
                            target_modules=cfg.target_modules, lora_dropout=0.0,
                            layers_to_transform=cfg.layers_to_transform,
                            layers_pattern=cfg.layers_pattern, fan_in_fan_out=cfg.fan_in_fan_out)
        for session in self.sessions:
            with quiet_peft():
                session.model.add_adapter(SHARED, shared)
        for name, layer in first.adapter.layers.items():
            for session in self.sessions[1:]:
                other = session.adapter.layers[name]
                other.lora_A[SHARED] = layer.lora_A[SHARED]
                other.lora_B[SHARED] = layer.lora_B[SHARED]
            self._shared_layers.append(layer)
        for session in self.sessions:
            session.model.base_model.set_adapter([lora.ADAPTER, SHARED])
            session.net.to(session.device)
        self.shared_params = [p for layer in self._shared_layers
                              for p in (layer.lora_A[SHARED].weight, layer.lora_B[SHARED].weight)]
        excluded = frozenset(map(id, self.shared_params))
        for session in self.sessions:
            session.optimizer_excludes = excluded

    @property
    def base_tensors(self) -> int:
        """Distinct frozen tensors over all tasks' models (one base: the count of one model)."""
        return len({p.data_ptr() for s in self.sessions for p in s.net.parameters()
                    if not p.requires_grad})

    # -- episode ---------------------------------------------------------------------------------
    def start(self, tasks, seeds: list[int]) -> list[Metrics]:
        """Begin an episode: task k on session k with its seed; the shared adapter re-drawn.

        The shared adapter is reset first (B = 0), so every task starts from the frozen base.
        """
        if self.shared_params:
            generator = torch.Generator().manual_seed(int(seeds[0]) + 1)
            with torch.no_grad():
                for layer in self._shared_layers:
                    a = layer.lora_A[SHARED].weight
                    fresh = torch.empty(a.shape, dtype=a.dtype)
                    torch.nn.init.kaiming_uniform_(fresh, a=math.sqrt(5), generator=generator)
                    a.copy_(fresh)
                    layer.lora_B[SHARED].weight.zero_()
            self.shared_optimizer = torch.optim.AdamW(
                self.shared_params, lr=self.config.learning_rates[0],
                weight_decay=self.config.weight_decay)
        self._rng = np.random.default_rng([int(seeds[0]), 2])  # PCGrad's orders
        return [s.start(task, seed) for s, task, seed in zip(self.sessions, tasks, seeds,
                                                             strict=True)]

    @property
    def ranks(self) -> tuple[int, ...]:
        """Every task adapter's rank."""
        return tuple(int(s.rank) for s in self.sessions)

    def train(self, ranks: tuple[int, ...], lr: float, steps: int) -> MultiSegmentResult:
        """Resize task k to ``ranks[k]``, then train every task `steps` steps at `lr`."""
        for session, rank in zip(self.sessions, ranks, strict=True):
            session.set_rank(rank)
            session.clear_grad_norms()
        losses: list[list[float]] = [[] for _ in self.sessions]
        tokens = [0] * len(self.sessions)
        kind = self.config.augmentation
        for step in range(steps):
            shared_grads = []
            for k, session in enumerate(self.sessions):
                session.set_lr(lr, step, steps)
                loss, n_tokens = session.backward(kind)
                tokens[k] += n_tokens
                if loss is None:
                    return MultiSegmentResult((math.nan,) * len(ranks), tuple(tokens), True)
                losses[k].append(loss)
                if self.shared_params:
                    shared_grads.append(self._take_shared_grads())
                session.optimizer_step()
            if self.shared_params:
                self._shared_step(shared_grads, lr, step, steps)
        return MultiSegmentResult(tuple(float(np.mean(x)) for x in losses), tuple(tokens), False)

    def _take_shared_grads(self) -> torch.Tensor:
        """The shared adapter's gradient of the last backward, flat; the grads zeroed."""
        flat = torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel())
                          for p in self.shared_params])
        for p in self.shared_params:
            p.grad = None
        return flat

    def _shared_step(self, grads: list[torch.Tensor], lr: float, step: int, steps: int) -> None:
        if self.config.grad_projection == "pcgrad":
            combined = pcgrad(grads, self._rng)
        else:
            combined = torch.stack(grads).sum(0)
        offset = 0
        for p in self.shared_params:
            p.grad = combined[offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        if self.config.grad_projection == "subspace":
            project_to_subspace(self._shared_layers, self.config.projection_dim, SHARED)
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.shared_params, self.config.max_grad_norm)
        schedule_lr(self.shared_optimizer, self.config, lr, step, steps)
        self.shared_optimizer.step()
        self.shared_optimizer.zero_grad(set_to_none=True)

    def evaluate(self, train_losses: tuple[float, ...]) -> list[Metrics]:
        """Every task's validation metrics (its model: base + its adapter [+ shared] + head)."""
        return [s.evaluate(loss) for s, loss in zip(self.sessions, train_losses, strict=True)]
