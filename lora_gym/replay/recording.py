r"""Record live `LoRATune-v0` steps into a store: a recording wrapper and ``lora-gym record``.

``lora-gym record`` runs policies over a task split x seeds on
the live env and records every step; episodes whose every step is already stored are skipped
without running, so an interrupted run is resumed by running the same command again::

    lora-gym record --config envs_configs/tiny.yaml --store runs/tiny.sqlite \\
        --policy random grid schedule --split all --seeds 10
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import yaml
from gymnasium.utils import seeding

from lora_gym.core.config import EnvConfig, resolve_config
from lora_gym.core.observation import ActionGrid
from lora_gym.policies import POLICY_KINDS, SB3_ALGOS, Policy, make_policies
from lora_gym.replay.index import Node, TableIndex
from lora_gym.replay.store import StepRecord, Store, config_hash


class RecordingWrapper(gym.Wrapper):
    """Record every reset and step of a live `LoRATuningEnv` as a `StepRecord`.

    Args:
        env: A live env (possibly wrapped); its ``unwrapped.config`` fixes the key.
        store: Where rows go (each committed at once), or None to only call `on_record`.
        on_record: Called with every record made.
    """

    def __init__(self, env: gym.Env, store: Store | None = None,
                 on_record: Callable[[StepRecord], None] | None = None) -> None:
        super().__init__(env)
        self.store, self.on_record = store, on_record
        config: EnvConfig = env.unwrapped.config
        self._model, self._hash = config.model, config_hash(config)
        if store is not None:
            store.register_config(config)
        self._prefix: tuple[int, ...] = ()
        self._episode: tuple[str, int] | None = None

    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None):
        """Reset the env and record the reset row (empty action prefix)."""
        started = time.perf_counter()
        obs, info = self.env.reset(seed=seed, options=options)
        self._episode, self._prefix = (info["task"], int(info["episode_seed"])), ()
        self._record(obs, info, time.perf_counter() - started, cost=0.0, diverged=False)
        return obs, info

    def step(self, action):
        """Step the env and record the step under the episode's action prefix."""
        started = time.perf_counter()
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._prefix = (*self._prefix, int(action))
        self._record(obs, info, time.perf_counter() - started, cost=info["cost"],
                     diverged=info["diverged"])
        return obs, reward, terminated, truncated, info

    def _record(self, obs: np.ndarray, info: dict, wall: float, cost: float,
                diverged: bool) -> None:
        assert self._episode is not None
        m = {k: (np.nan if v is None else float(v)) for k, v in info["metrics"].items()}
        rec = StepRecord(self._episode[0], self._model, self._hash, self._episode[1],
                         self._prefix, np.asarray(obs, dtype=np.float32), m["accuracy"], m["f1"],
                         m["val_loss"], m["train_loss"], int(info["rank"]), info["lr"],
                         float(cost), float(info["cost_so_far"]), bool(diverged), wall)
        if self.store is not None:
            self.store.add(rec)
        if self.on_record is not None:
            self.on_record(rec)


def episode_seed(reset_seed: int) -> int:
    """The episode seed `LoRATuningEnv.reset(seed=s, options={"task": ...})` draws."""
    return int(seeding.np_random(reset_seed)[0].integers(2**31 - 1))


class _SeedDraw:
    """Stands in for ``np_random`` for one reset so that the env draws a chosen episode seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def integers(self, *args: Any, **kwargs: Any) -> int:
        return self.seed


class LiveReplayer:
    """A live env that catches up to any (task, episode seed, action prefix), recording all."""

    def __init__(self, config: EnvConfig, store: Store | None,
                 on_record: Callable[[StepRecord], None]) -> None:
        from lora_gym.envs.lora_tune import LoRATuningEnv

        self.env = RecordingWrapper(LoRATuningEnv(config), store, on_record)
        self.at: tuple[str, int, tuple[int, ...]] | None = None

    def advance(self, task: str, seed: int, prefix: tuple[int, ...], action: int | None) -> None:
        """Bring the live env to ``prefix`` of the episode (task, seed) and take `action`.

        ``action=None`` only resets. The env is deterministic, so replaying the prefix from a
        reset with the same episode seed reproduces the recorded state.
        """
        if self.at != (task, seed, prefix):
            live = self.env.unwrapped
            saved, live.np_random = live.np_random, _SeedDraw(seed)
            try:
                _, info = self.env.reset(options={"task": task})
            finally:
                live.np_random = saved
            if info["episode_seed"] != seed:
                raise RuntimeError(f"the live env drew episode seed {info['episode_seed']} "
                                   f"instead of {seed}: its reset no longer draws one integer")
            for a in prefix:
                self.env.step(a)
            self.at = (task, seed, prefix)
        if action is not None:
            self.env.step(action)
            self.at = (task, seed, (*prefix, int(action)))


def episode_recorded(index: TableIndex | None, policy: Policy, task: str, reset_seed: int,
                     episode_length: int) -> bool:
    """Whether every step `policy` takes in this episode is in `index` (walked, nothing run)."""
    node: Node | None = None if index is None else index.get(task, episode_seed(reset_seed), ())
    policy.begin_episode(task, reset_seed)
    for _ in range(episode_length):
        if node is None or node.diverged:
            break
        node = node.children.get(policy.act(node.obs))
    return node is not None


def parse_env_kwargs(items: list[str]) -> dict[str, Any]:
    """``["episode_length:4", "ranks:[2,4]"]`` -> ``{"episode_length": 4, "ranks": [2, 4]}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise ValueError(f"--env-kwargs items must be key:value, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``record`` and ``sim2real``: config, policies, tasks, seeds."""
    parser.add_argument("--config", default=None, help="env config YAML (default: embedded)")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY:VALUE",
                        help="config overrides, values parsed as YAML (e.g. episode_length:4)")
    parser.add_argument("--policy", nargs="*", default=["random"], choices=POLICY_KINDS,
                        help="policies to run; grid runs every fixed action")
    parser.add_argument("--agent", default=None, help="a trained SB3 agent .zip to run as well")
    parser.add_argument("--algo", default="ppo", choices=SB3_ALGOS, help="the agent's algorithm")
    parser.add_argument("--split", default="train", choices=("train", "test", "all"),
                        help="which tasks of the task set")
    parser.add_argument("--tasks", nargs="*", default=None,
                        help="only these tasks of the split (default: all of them)")
    parser.add_argument("--seeds", type=int, default=1, help="reset seeds 0..N-1 per task")


def jobs_from_args(args: argparse.Namespace) -> tuple[EnvConfig, list[tuple[Policy, str, int]]]:
    """The config and the (policy, task, reset seed) episodes the arguments ask for."""
    from lora_gym.tasks.sets import load_task_set

    config = resolve_config(args.config, **parse_env_kwargs(args.env_kwargs))
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    grid = ActionGrid(config.ranks, config.learning_rates)
    policies = make_policies(args.policy, grid, config.episode_length, args.agent, args.algo)
    tasks = [t.name for t in load_task_set(config.task_set).tasks(args.split)]
    if args.tasks:
        unknown = sorted(set(args.tasks) - set(tasks))
        if unknown:
            raise ValueError(f"--tasks {unknown} are not {args.split!r} tasks of task set "
                             f"{config.task_set!r}: {tasks}")
        tasks = [t for t in tasks if t in args.tasks]
    return config, [(p, t, s) for p in policies for t in tasks for s in range(args.seeds)]


def record(config: EnvConfig, jobs: list[tuple[Policy, str, int]], store_path: str,
           progress: bool = True) -> dict[str, int]:
    """Run the episodes of `jobs` not yet fully in the store; returns episode and row counts."""
    from tqdm import tqdm

    with Store(store_path) as store:
        try:
            index: TableIndex | None = TableIndex.load(store, config)
        except LookupError:
            index = None
        T = config.episode_length
        pending = [(p, t, s) for p, t, s in jobs if not episode_recorded(index, p, t, s, T)]
        env = RecordingWrapper(gym.make("LoRATune-v0", config=config,
                                        disable_env_checker=True), store)
        before = store.count()
        bar = tqdm(total=len(pending) * T, unit="step", disable=not progress, file=sys.stderr,
                   desc=f"record {len(pending)} episodes ({len(jobs) - len(pending)} done)")
        for policy, task, seed in pending:
            obs, info = env.reset(seed=seed, options={"task": task})
            if info["episode_seed"] != episode_seed(seed):
                raise RuntimeError(f"reset seed {seed} gave episode seed {info['episode_seed']}, "
                                   f"not the expected {episode_seed(seed)}")
            policy.begin_episode(task, seed)
            for t in range(T):
                obs, _, terminated, truncated, _ = env.step(policy.act(obs))
                bar.update(1)
                if terminated or truncated:
                    bar.update(T - 1 - t)
                    break
        bar.close()
        return {"episodes": len(jobs), "run": len(pending), "skipped": len(jobs) - len(pending),
                "new_rows": store.count() - before, "rows": store.count()}


def main(argv: list[str] | None = None) -> None:
    """``lora-gym record``: record live episodes of policies into a store (resumable)."""
    parser = argparse.ArgumentParser(prog="lora-gym record", description=main.__doc__)
    parser.add_argument("--store", required=True, help="SQLite store to append to")
    add_run_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    config, jobs = jobs_from_args(args)
    counts = record(config, jobs, args.store, progress=not args.quiet)
    print(" ".join(f"{k}={v}" for k, v in counts.items()))


def cli(argv: list[str] | None = None) -> None:
    """The ``lora-gym`` console script: ``lora-gym {record,sim2real,pack} ...``."""
    from lora_gym.cli import pack, sim2real

    argv = sys.argv[1:] if argv is None else argv
    commands = {"record": main, "sim2real": sim2real.main, "pack": pack.main}
    if not argv or argv[0] not in commands:
        sys.exit(f"usage: lora-gym {{{','.join(commands)}}} [--help] ...; got {argv[:1]}")
    commands[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
