"""Replay speed and surrogate accuracy, printed as a table.

    .venv/bin/python benchmarks/replay_speed.py [--config envs_configs/tiny.yaml] [--store PATH]

* index lookups/s: exact-hit ``TableIndex.records[key]`` lookups over every stored key;
* env steps/s through ``gym.make("LoRATuneReplay-v0")`` on one core (pinned), with and without
  Gymnasium's passive env checker, for fixed action 0 (on the table where ``--policy grid``
  recorded the reset's task, else the surrogate's: the printed share says which) and for random
  actions (table and surrogate mixed), resets included;
* the same for random actions with each surrogate kind (``--kinds``; random actions leave the
  table after a step or two, so most steps are the surrogate's).

The surrogate's accuracy (leave-one-task-out) and uncertainty: ``benchmarks/surrogate_fit.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy: one core for everything
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402
from contextlib import closing  # noqa: E402

import gymnasium as gym  # noqa: E402

import lora_gym  # noqa: E402, F401
from lora_gym.core.config import resolve_config  # noqa: E402
from lora_gym.replay.index import TableIndex  # noqa: E402
from lora_gym.replay.store import Store  # noqa: E402
from lora_gym.replay.surrogate import SURROGATE_KINDS  # noqa: E402
from lora_gym.replay.tables import resolve_store  # noqa: E402


def lookups_per_second(index: TableIndex, n: int = 2_000_000) -> float:
    keys = list(index.records)
    keys = (keys * (n // len(keys) + 1))[:n]
    get = index.records.__getitem__
    started = time.perf_counter()
    for key in keys:
        get(key)
    return n / (time.perf_counter() - started)


def steps_per_second(config, store, checker: bool, random_actions: bool,
                     n: int = 200_000, surrogate: str = "ensemble") -> tuple[float, float]:
    env = gym.make("LoRATuneReplay-v0", config=config, store=store, surrogate=surrogate,
                   disable_env_checker=not checker)
    env.reset(seed=0)
    env.action_space.seed(0)
    sample = env.action_space.sample
    steps, started = 0, time.perf_counter()
    while steps < n:
        _, _, terminated, truncated, _ = env.step(sample() if random_actions else 0)
        steps += 1
        if terminated or truncated:
            env.reset()
    rate = n / (time.perf_counter() - started)
    counts = env.unwrapped.source_counts
    return rate, counts["table"] / sum(counts.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="envs_configs/tiny.yaml")
    parser.add_argument("--store", default=None, help="default: the shipped table of the config")
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--kinds", nargs="*", default=list(SURROGATE_KINDS),
                        choices=SURROGATE_KINDS, help="surrogate kinds to time")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    config = resolve_config(args.config)
    path, _ = resolve_store(args.store, config)
    with closing(Store(path, readonly=True)) as db:
        index = TableIndex.load(db, config)
    print(f"table {path}: {len(index)} rows, {len(index.tasks())} tasks")
    print(f"{'measure':<46} {'value':>12}")
    print(f"{'index exact-hit lookups/s':<46} {lookups_per_second(index):>12,.0f}")
    for random_actions in (False, True):
        for checker in (False, True):
            rate, hit = steps_per_second(args.config, args.store, checker, random_actions,
                                         args.steps)
            label = (f"env steps/s, {'random' if random_actions else 'fixed-0'} actions, "
                     f"checker {'on' if checker else 'off'} ({hit:.0%} table)")
            print(f"{label:<46} {rate:>12,.0f}")
    for kind in args.kinds:
        rate, hit = steps_per_second(args.config, args.store, False, True, args.steps, kind)
        label = f"env steps/s, random actions, surrogate {kind} ({hit:.0%} table)"
        print(f"{label:<46} {rate:>12,.0f}")


if __name__ == "__main__":
    main()
