"""Sim-to-real: the same episodes on the replay env and on the live env, paired and summarised.

`compare` runs (policy, task, reset seed) jobs on `LoRATuneReplay-v0` (table, surrogate off it)
and on the live `LoRATune-v0` (here, or on Ray workers); `summarise` says how well the replay's
returns and accuracies predict the live ones. ``lora-gym sim2real`` is the command.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np

from lora_gym.core.config import EnvConfig
from lora_gym.policies.base import Policy
from lora_gym.policies.runner import EpisodeResult, run_episode
from lora_gym.replay.index import TableMiss
from lora_gym.replay.recording import RecordingWrapper, episode_seed
from lora_gym.replay.store import Store

if TYPE_CHECKING:
    from lora_gym.policies.distributed import ClusterOptions


@dataclass(frozen=True)
class EpisodePair:
    """One episode on the replay env and on the live env."""

    policy: str
    task: str
    seed: int
    replay_return: float
    live_return: float
    replay_final_accuracy: float
    live_final_accuracy: float
    table_fraction: float
    """Share of the replay episode's steps served from the table (the rest by the surrogate)."""

    @classmethod
    def of(cls, policy: str, task: str, seed: int, replay: EpisodeResult, live: EpisodeResult
           ) -> EpisodePair:
        """The pair of one episode's replay and live results."""
        sources = [step["source"] for step in replay.trajectory]
        return cls(policy, task, seed, replay.episode_return, live.episode_return,
                   final_accuracy(replay), final_accuracy(live),
                   sources.count("table") / max(len(sources), 1))


def compare(config: EnvConfig, jobs: list[tuple[Policy, str, int]], store: str | None,
            surrogate: str = "ensemble", record_to: str | None = None,
            cluster: ClusterOptions | None = None) -> list[EpisodePair]:
    """Run every job on both envs; episodes whose reset is not in the table are left out.

    The replay episodes run here; the live ones here too, or on Ray workers given `cluster`.
    """
    from lora_gym.envs.replay import LoRATuneReplayEnv

    replay = LoRATuneReplayEnv(config=config, store=store, miss="surrogate", surrogate=surrogate)
    for policy, _, _ in jobs:
        model = getattr(policy, "model", None)  # an SB3 agent: it must act in LoRATune-v0
        if model is not None and model.action_space != replay.action_space:
            raise ValueError(f"agent {policy.name!r} acts in {model.action_space}, but sim2real "
                             f"replays LoRATune-v0 ({replay.action_space}): only LoRATune-v0 "
                             "has recorded tables; check a LoRATunePerLayer-v0 or "
                             "LoRATuneScope-v0 agent live with `lora-gym compare --env ...`")
    replayed = []
    for policy, task, seed in jobs:
        try:
            rep = run_episode(replay, policy, task, seed, episode_seed=episode_seed(seed))
        except TableMiss:
            print(f"skipped {policy.name} {task} seed {seed}: its reset is not recorded",
                  file=sys.stderr)
            continue
        replayed.append(((policy, task, seed), rep))
    live_jobs = [job for job, _ in replayed]
    if cluster is None:
        lives = _run_live(config, live_jobs, record_to)
    else:
        from lora_gym.policies.distributed import evaluate_ray

        lives = evaluate_ray(config, live_jobs, cluster, record_to)
    return [EpisodePair.of(policy.name, task, seed, rep, real)
            for ((policy, task, seed), rep), real in zip(replayed, lives, strict=True)]


def _run_live(config: EnvConfig, jobs: list[tuple[Policy, str, int]],
              record_to: str | None) -> list[EpisodeResult]:
    live: gym.Env = gym.make("LoRATune-v0", config=config, disable_env_checker=True)
    writer = Store(record_to) if record_to else None
    if writer is not None:
        live = RecordingWrapper(live, writer)
    try:
        return [run_episode(live, policy, task, seed) for policy, task, seed in jobs]
    finally:
        if writer is not None:
            writer.close()


def final_accuracy(result: EpisodeResult) -> float:
    """An episode's final accuracy (NaN if it diverged)."""
    return math.nan if result.final_accuracy is None else float(result.final_accuracy)


def summarise(pairs: list[EpisodePair]) -> dict[str, float]:
    """Spearman rho (and p) of returns, MAE of final accuracy and of returns, table share."""
    from scipy.stats import spearmanr

    if not pairs:
        raise ValueError("no episode could be compared: record the resets of these tasks/seeds")
    r = np.array([p.replay_return for p in pairs])
    lv = np.array([p.live_return for p in pairs])
    rho, pval = (math.nan, math.nan)
    if len(pairs) > 1 and np.ptp(r) > 0 and np.ptp(lv) > 0:
        result = spearmanr(r, lv)
        rho, pval = float(result.statistic), float(result.pvalue)
    acc_err = [abs(p.replay_final_accuracy - p.live_final_accuracy) for p in pairs]
    return {"episodes": len(pairs), "spearman_returns": rho, "spearman_p": pval,
            "mae_final_accuracy": float(np.mean(acc_err)),
            "mae_return": float(np.mean(np.abs(r - lv))),
            "table_fraction": float(np.mean([p.table_fraction for p in pairs]))}


def format_summary(summary: dict[str, float]) -> str:
    """``key=value`` pairs of `summarise`'s result on one line."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in summary.items())


def print_pairs(pairs: list[EpisodePair]) -> None:
    """One line per episode pair."""
    print(f"{'policy':<12} {'task':<16} {'seed':>4} {'ret replay':>10} {'ret live':>9} "
          f"{'acc replay':>10} {'acc live':>9} {'table':>6}")
    for p in pairs:
        print(f"{p.policy:<12} {p.task:<16} {p.seed:>4} {p.replay_return:>10.4f} "
              f"{p.live_return:>9.4f} {p.replay_final_accuracy:>10.4f} "
              f"{p.live_final_accuracy:>9.4f} {p.table_fraction:>6.2f}")
