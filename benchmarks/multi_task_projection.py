r"""Multi-task LoRA and gradient projection (seed 003): accuracy after 1, 2, 4 segments.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/multi_task_projection.py \
        [--seeds 0 1 2] [--settings independent subspace shared shared-pcgrad] [--json OUT]
    .venv/bin/python benchmarks/multi_task_projection.py --report A.json B.json  # merge, print

Live `LoRATuneMultiTask-v0` episodes on the embedded default (MiniLM) over fixed triples of
**train** tasks (never test), chosen before any result: every episode trains all three tasks at
rank 4, lr 3e-3 (best-static's pair) for 4 segments, and the mean accuracy over the triple is
read after segments 1, 2 and 4. Settings:

* ``independent``: a task-specific adapter per task (``grad_projection: none``);
* ``subspace``: the same with seed 003's projection onto A's top-4 singular subspace;
* ``shared``: plus a shared adapter (rank 4) trained on the sum of the tasks' gradients;
* ``shared-pcgrad``: the shared adapter's update combined by PCGrad.

Prints one row per setting (mean over triples × seeds) and the paired difference to
``independent`` with a 95% bootstrap CI over the (triple, seed) episodes.
"""

from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np

import lora_gym  # noqa: F401 - registers the ids

TRIPLES: tuple[tuple[str, str, str], ...] = (
    ("tweet-sentiment/n256-s0", "amazon-snippets/n512-s0", "nyt-editorials/n256-s0"),
    ("health-tweets/k4-n256-s0", "tweet-sentiment/n1000-noise30-s1",
     "amazon-snippets/n128-noise20-s0"),
    ("nyt-editorials/n1000-noise20-s0", "health-tweets/k8-n512-noise20-s0",
     "tweet-sentiment/n256-s0"),
)
SETTINGS: dict[str, dict] = {
    "independent": {},
    "subspace": {"grad_projection": "subspace"},
    "shared": {"shared_adapter": True},
    "shared-pcgrad": {"shared_adapter": True, "grad_projection": "pcgrad"},
}
READ_AFTER = (1, 2, 4)


def run_episode(env: gym.Env, tasks: tuple[str, ...], seed: int, segments: int) -> list[float]:
    """Mean accuracy over the tasks at reset and after every segment."""
    _, info = env.reset(seed=seed, options={"tasks": list(tasks), "episode_seed": seed})
    accs = [info["metrics"]["accuracy"]]
    base = env.unwrapped
    i, j = base.config.ranks.index(4), base.config.learning_rates.index(3.0e-3)
    action = np.array([i] * base.k + [j] + ([0] if base.config.stop_action else []))
    for _ in range(segments):
        _, _, terminated, _, info = env.step(action)
        accs.append(info["metrics"]["accuracy"] if not terminated else float("nan"))
    return accs


def bootstrap_ci(xs: np.ndarray, rng: np.random.Generator, n: int = 10_000) -> tuple[float, ...]:
    means = rng.choice(xs, size=(n, len(xs))).mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main(argv: list[str] | None = None) -> None:
    """Run every setting on every (triple, seed) and print the tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--config", default=None, help="env config (default: the embedded one)")
    p.add_argument("--json", default=None, help="write every episode's accuracies here")
    p.add_argument("--report", nargs="+", default=None, metavar="JSON",
                   help="only print the tables of --json files (settings merged, in order)")
    args = p.parse_args(argv)
    segments = max(READ_AFTER)
    results: dict[str, dict[str, list[float]]] = {}
    if args.report:
        for path in args.report:
            with open(path) as f:
                results.update(json.load(f))
        args.settings = list(results)
        args.seeds = sorted({int(k.rsplit("@", 1)[1]) for k in next(iter(results.values()))})
    for name in [] if args.report else args.settings:
        env = gym.make("LoRATuneMultiTask-v0", config=args.config, episode_length=segments,
                       **SETTINGS[name])
        results[name] = {f"{'|'.join(t)}@{s}": run_episode(env, t, s, segments)
                         for t in TRIPLES for s in args.seeds}
        env.close()
        print(f"{name}: done", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    keys = list(next(iter(results.values())))
    print(f"\n{len(TRIPLES)} train-task triples x seeds {args.seeds} = {len(keys)} episodes; "
          "rank 4, lr 3e-3 for every task; mean accuracy over the triple")
    print("| setting | reset | after 1 | after 2 | after 4 | Δ vs independent after 4 [95% CI] |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    ref = np.array([results[args.settings[0]][k] for k in keys])
    for name, runs in results.items():
        acc = np.array([runs[k] for k in keys])
        cells = " | ".join(f"{acc[:, t].mean():.3f}" for t in (0, *READ_AFTER))
        diff = acc[:, segments] - ref[:, segments]
        lo, hi = bootstrap_ci(diff, rng)
        delta = "-" if name == args.settings[0] else f"{diff.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]"
        print(f"| {name} | {cells} | {delta} |")


if __name__ == "__main__":
    main()
