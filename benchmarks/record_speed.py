"""Recording speed on the tiny config: serial vs 1 and 2 Ray workers, and the single writer.

    .venv/bin/python benchmarks/record_speed.py [--seeds 16] [--rows 3000]

* live env steps/s of `random` episodes over the tiny task set (3 tasks x ``--seeds`` reset
  seeds, 3 steps each), recorded (a) serially in this process (`play_episode` on one
  `RecordingWrapper`, as `lora_gym.replay.recording.record` does) and (b) on a local Ray with 1
  and 2 fresh `EpisodeWorker` actors (``RayPool.run("record")``, as ``record --backend ray``
  does), each row committed by this process as it streams in. Every runner first plays one
  episode of each task (model built, task caches filled: not timed); the start-up of the Ray
  workers (processes up, actors answering) is timed apart. ``torch_threads: 1``, so a worker
  uses one core, and 2 cores cap the ratio of 2 workers at about 2. On a machine shared with
  other jobs the speed drifts from minute to minute, so the runners alternate over ``--rounds``
  rounds (new seeds each round, rotated order) and the medians of the rates and of the
  per-round ratios to serial are printed;
* the single writer's ceiling: `Store.add` rows/s (one commit per row, ``synchronous=FULL``, WAL)
  into a fresh file next to the others.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import lora_gym  # noqa: F401
from lora_gym.core.config import resolve_config
from lora_gym.core.observation import OBSERVATION_NAMES
from lora_gym.policies import RandomPolicy
from lora_gym.policies.distributed import ClusterOptions, RayPool
from lora_gym.policies.recording import play_episode
from lora_gym.replay.recording import RecordingWrapper
from lora_gym.replay.store import StepRecord, Store, config_hash

CONFIG = resolve_config(Path(__file__).resolve().parents[1] / "envs_configs" / "tiny.yaml")
TASKS = ("synth-a", "synth-b", "synth-c")


def jobs(seeds: range) -> list:
    n_actions = len(CONFIG.ranks) * len(CONFIG.learning_rates)
    return [(RandomPolicy(n_actions), t, s) for t in TASKS for s in seeds]


WARM_UP = range(1000, 1001)
"""Reset seeds of the untimed episodes (one per task) that build the model and fill caches."""


class Serial:
    """This process recording with `play_episode` on one `RecordingWrapper` (as `record` does)."""

    def __init__(self, path: Path) -> None:
        import gymnasium as gym

        self.store = Store(path)
        self.env = RecordingWrapper(gym.make("LoRATune-v0", config=CONFIG,
                                             disable_env_checker=True), self.store)
        self.run(WARM_UP)

    def run(self, seeds: range) -> float:
        """Steps/s over the episodes of `seeds`."""
        started = time.perf_counter()
        for policy, task, seed in jobs(seeds):
            list(play_episode(self.env, policy, task, seed, CONFIG.episode_length))
        return len(TASKS) * len(seeds) * CONFIG.episode_length / (time.perf_counter() - started)


def on_ray(path: Path, seeds: range, workers: int) -> tuple[float, float]:
    """(start-up s, steps/s) of `workers` fresh actors recording the episodes into `path`."""
    import ray

    with Store(path) as store, RayPool(CONFIG, ClusterOptions(num_workers=workers)) as pool:
        store.register_config(CONFIG)
        started = time.perf_counter()
        pool.start(workers)
        startup = time.perf_counter() - started
        for gen in [w.record.remote(*job) for w in pool.workers for job in jobs(WARM_UP)]:
            for ref in gen:
                ray.get(ref)

        def write(_job: int, item) -> None:
            for row in item[0]:
                store.add(row)

        started = time.perf_counter()
        pool.run("record", jobs(seeds), write)
        steps = len(TASKS) * len(seeds) * CONFIG.episode_length
        return startup, steps / (time.perf_counter() - started)


def writer_rows_per_second(path: Path, n: int) -> float:
    """`Store.add` of `n` distinct rows into a fresh store (one commit each)."""
    obs = np.linspace(0, 1, len(OBSERVATION_NAMES), dtype=np.float32)
    chash = config_hash(CONFIG)
    records = [StepRecord("synth-a", CONFIG.model, chash, i, (1, 2), obs, 0.5, 0.5, 1.0, 1.0, 2,
                          1.0e-3, 0.1, 0.2, False, 0.01) for i in range(n)]
    with Store(path) as store:
        store.register_config(CONFIG)
        started = time.perf_counter()
        for rec in records:
            store.add(rec)
        return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16, help="reset seeds per task and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of serial, 1, 2 workers")
    parser.add_argument("--rows", type=int, default=3000, help="rows for the writer benchmark")
    args = parser.parse_args()
    import ray

    folder = Path(tempfile.mkdtemp(prefix="record_speed_"))
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}; "
          f"{len(TASKS) * args.seeds} episodes x {CONFIG.episode_length} steps per runner "
          f"and round, {args.rounds} rounds (new seeds each round, runners in rotated order)")
    serial = Serial(folder / "serial.sqlite")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    rates: dict[str, list[float]] = {"serial": [], "ray-1": [], "ray-2": []}
    startups: dict[str, list[float]] = {"ray-1": [], "ray-2": []}
    try:
        for r in range(args.rounds):
            seeds = range(r * args.seeds, (r + 1) * args.seeds)
            order = list(rates)[r % 3:] + list(rates)[:r % 3]
            for name in order:
                if name == "serial":
                    rates[name].append(serial.run(seeds))
                else:
                    n = int(name[-1])
                    startup, rate = on_ray(folder / f"{name}.sqlite", seeds, n)
                    startups[name].append(startup)
                    rates[name].append(rate)
            print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in rates.items())
                  + f" steps/s (load {os.getloadavg()[0]:.1f})")
    finally:
        ray.shutdown()
        serial.store.close()
    ratios = {k: [a / b for a, b in zip(v, rates["serial"], strict=True)] for k, v in rates.items()}
    print(f"{'runner':<8} {'start-up s':>10} {'steps/s':>8} {'ratio':>6}   (medians over rounds)")
    for name, values in rates.items():
        start = f"{np.median(startups[name]):.1f}" if name in startups else "-"
        print(f"{name:<8} {start:>10} {np.median(values):>8.2f} {np.median(ratios[name]):>6.2f}")
    rows = writer_rows_per_second(folder / "writer.sqlite", args.rows)
    print(f"single writer (Store.add, commit per row): {rows:.0f} rows/s")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
