"""SB3 callbacks for LoRA-tuning runs."""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

PER_LAYER_EXCLUDE = ("stdout", "log", "json", "csv")
"""Logger formats that per-layer statistics skip (they go to TensorBoard only)."""


class LoRAInfoCallback(BaseCallback):
    """Log every env step's accuracy, rank, lr, cost and reward components to TensorBoard.

    Values are averaged over the steps between two logger dumps (``lora/...``); episode ends log
    the final accuracy and the episode's total cost (``episode/...``). The live env's per-layer
    ``info["lora_stats"]`` (weight and gradient norms, effective rank of ΔW) go to
    ``lora_stats/<statistic>/<layer>`` (TensorBoard only: SB3's stdout, log and csv formats
    would truncate the long per-layer keys into duplicates) and their means over layers to
    ``lora_stats/<statistic>`` (every format).
    A per-layer rank (a tuple, `LoRATunePerLayer-v0`) logs its mean as ``lora/rank`` and each
    group's as ``lora/rank_g<i>``; ``lora/trainable_rank`` is logged where the env reports it.
    """

    def _on_step(self) -> bool:
        for info, done in zip(self.locals["infos"], self.locals["dones"], strict=True):
            metrics = info.get("metrics")
            if metrics is None:
                continue
            if metrics["accuracy"] is not None:
                self.logger.record_mean("lora/accuracy", metrics["accuracy"])
                self.logger.record_mean("lora/f1", metrics["f1"])
            self._record_rank(info["rank"])
            if "trainable_rank" in info:
                self.logger.record_mean("lora/trainable_rank", info["trainable_rank"])
            if info["lr"] is not None:  # None: stopped before any segment
                self.logger.record_mean("lora/lr", info["lr"])
            self.logger.record_mean("lora/cost", info.get("cost", 0.0))
            for name, value in info.get("reward_components", {}).items():
                self.logger.record_mean(f"lora/reward_{name}", value)
            self._record_lora_stats(info.get("lora_stats", {}))
            if done:
                self.logger.record_mean("episode/final_accuracy", metrics["accuracy"] or 0.0)
                self.logger.record_mean("episode/total_cost", info["cost_so_far"])
                self.logger.record_mean("episode/diverged", float(info.get("diverged", False)))
        return True

    def _record_lora_stats(self, stats: dict[str, dict[str, float]]) -> None:
        for layer, values in stats.items():
            short = layer.removeprefix("bert.encoder.")
            for key, value in values.items():
                self.logger.record_mean(f"lora_stats/{key}/{short}", value,
                                        exclude=PER_LAYER_EXCLUDE)
        for key in next(iter(stats.values()), {}):
            mean = sum(values[key] for values in stats.values()) / len(stats)
            self.logger.record_mean(f"lora_stats/{key}", mean)

    def _record_rank(self, rank: int | tuple[int, ...]) -> None:
        if isinstance(rank, tuple | list):
            for group, value in enumerate(rank):
                self.logger.record_mean(f"lora/rank_g{group}", value)
            rank = float(np.mean(rank))
        self.logger.record_mean("lora/rank", rank)
