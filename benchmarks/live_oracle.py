r"""The per-task oracle on live fine-tunes, against the agent and best-static (issue 23).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/live_oracle.py --store STORE \
        --agent benchmarks/results/agents/issue23-long-s0/best_model.zip [--seeds 0] [--tasks ...]

For every (test task, reset seed) whose **full live fixed-action sweep** the store holds
(recorded with ``lora-gym record --policy grid --split test``: every action of the grid trained
to the end of the episode), the oracle is the best (action, segments) pair *for that very
episode*: the fixed action played for T segments, then stop -- chosen in hindsight on the episode
it is scored on, so an upper bound of any static schedule. The agent and best-static (rank 4,
lr 3e-3, 3 segments: the train-split choice of the live benchmark) are replayed from the same
store with ``miss="raise"``: every step they take must be a recorded live step.

Prints per episode and on average: return, final accuracy and cost of the three, and the agent's
final accuracy as a share of the oracle's.

``--score-seeds 1 2`` adds the **out-of-sample** per-task oracle: each task's oracle (action,
segments), chosen on the swept seed, is played live (``miss="live"``: recorded into ``--store``)
on the other reset seeds, next to the agent and best-static on the same episodes -- what a
per-task static choice is worth on a fresh fine-tune of the same task, without the seed noise
that the in-hindsight oracle picks.
"""

from __future__ import annotations

import argparse
import statistics

import gymnasium as gym

import lora_gym  # noqa: F401
from lora_gym.core.config import resolve_config
from lora_gym.policies import SB3Policy
from lora_gym.policies.runner import run_episode
from lora_gym.replay.index import TableMiss
from lora_gym.replay.recording import episode_seed

BEST_STATIC = (4, 3.0e-3, "none", 3)
"""(rank, lr, augmentation, segments) of the live benchmark's best-static (chosen on train)."""


def fixed_returns(env, task: str, seed: int, action: int,
                  segments: int | None = None) -> list[tuple[float, float, float]]:
    """``(return, final accuracy, cost)`` after 1..T segments of `action` (stop right after);
    T = `segments`, default the episode length."""
    _, info = env.reset(options={"task": task, "episode_seed": episode_seed(seed)})
    ret, out = 0.0, []
    for _ in range(segments or env.unwrapped.config.episode_length):
        _, reward, terminated, _, info = env.step(action)
        ret += reward
        acc = info["metrics"]["accuracy"]
        out.append((ret, 0.0 if acc is None else acc, info["cost_so_far"]))
        if terminated:
            break
    return out


def means(rows) -> list[tuple[float, float, float]]:
    """Per method (column of `rows`), the mean ``(return, final accuracy, cost)``."""
    return [tuple(statistics.fmean(r[i][j] for r in rows) for j in range(3))
            for i in range(len(rows[0]))]


def cells(triples) -> str:
    """``return / accuracy / cost`` table cells of several methods."""
    return " | ".join(f"{x[0]:.3f} / {x[1]:.3f} / {x[2]:.2f}" for x in triples)


def main(argv: list[str] | None = None) -> None:
    """Score the oracle, the agent and best-static on every fully swept episode."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True)
    p.add_argument("--agent", required=True)
    p.add_argument("--algo", default="ppo")
    p.add_argument("--config", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--tasks", nargs="*", default=None, help="default: every test task")
    p.add_argument("--best-static", default=",".join(map(str, BEST_STATIC)),
                   help="best-static as rank,lr,augmentation,segments (chosen on train)")
    p.add_argument("--score-seeds", type=int, nargs="*", default=[],
                   help="play each task's oracle choice live on these reset seeds")
    args = p.parse_args(argv)
    config = resolve_config(args.config, task_split="test")
    env = gym.make("LoRATuneReplay-v0", config=config, store=args.store, miss="raise",
                   disable_env_checker=True)
    base = env.unwrapped
    tasks = args.tasks or list(base.recorded_tasks)
    grid = base.grid
    actions = [a for a in range(len(grid)) if not grid.is_stop(a)]
    agent = SB3Policy.load(args.agent, args.algo, name="agent")
    rank, lr, aug, segments = args.best_static.split(",")
    rank, lr, segments = int(rank), float(lr), int(segments)
    static_action = next(a for a in actions if grid.decode(a) == (rank, lr)
                         and grid.augmentation_of(a) == aug)
    rows, choice = [], {}
    for task in tasks:
        for seed in args.seeds:
            try:
                sweeps = {a: fixed_returns(env, task, seed, a) for a in actions}
            except TableMiss:
                continue  # not fully swept: skipped
            action, t = max(((a, t) for a, runs in sweeps.items() for t in range(len(runs))),
                            key=lambda p: sweeps[p[0]][p[1]][0])
            oracle = sweeps[action][t]
            static = sweeps[static_action][min(segments, len(sweeps[static_action])) - 1]
            try:
                res = run_episode(env, agent, task, seed, episode_seed=episode_seed(seed))
            except TableMiss:
                continue
            rows.append((task, seed, oracle, static,
                         (res.episode_return, res.final_accuracy, res.total_cost)))
            choice[task] = (action, t + 1)  # (action, segments): played on --score-seeds
    if not rows:
        raise SystemExit(f"no fully swept episode of {tasks} x seeds {args.seeds} in the store")
    print(f"{len(rows)} episode(s) with a full live fixed-action sweep ({len(actions)} actions x "
          f"up to {config.episode_length} segments), λ = {config.cost_weight}\n")
    print("| task | seed | oracle ret / acc / cost | best-static | agent | agent acc / oracle |")
    print("|---|---|---|---|---|---|")
    for task, seed, o, s, a in rows:
        print(f"| {task} | {seed} | {cells((o, s, a))} | {a[1] / o[1]:.3f} |")
    mean = means([r[2:] for r in rows])
    print(f"| **mean** | | {cells(mean)} | {mean[2][1] / mean[0][1]:.3f} |")
    if args.score_seeds:
        out_of_sample(config, args.store, agent, choice, static_action, segments, args.score_seeds)


def out_of_sample(config, store: str, agent, choice: dict, static_action: int, segments: int,
                  seeds: list[int]) -> None:
    """Each task's oracle choice, the agent and best-static played live on other reset seeds."""
    env = gym.make("LoRATuneReplay-v0", config=config, store=store, miss="live",
                   disable_env_checker=True)
    grid = env.unwrapped.grid
    print(f"\nOut of sample: each task's oracle (action, segments) from the swept seed, played on "
          f"reset seeds {seeds} (live where the store lacks a step)\n")
    print("| task | seed | oracle choice | oracle ret / acc / cost | best-static | agent |")
    print("|---|---|---|---|---|---|")
    rows = []
    for task, (action, n) in choice.items():
        for seed in seeds:
            o = fixed_returns(env, task, seed, action, n)[-1]
            s = fixed_returns(env, task, seed, static_action, segments)[-1]
            res = run_episode(env, agent, task, seed, episode_seed=episode_seed(seed))
            a = (res.episode_return, res.final_accuracy, res.total_cost)
            rows.append((o, s, a))
            rank, lr = grid.decode(action)
            print(f"| {task} | {seed} | r{rank}, lr {lr:g}, {grid.augmentation_of(action)}, "
                  f"{n} seg | {cells((o, s, a))} |")
    mean = means(rows)
    print(f"| **mean** | | | {cells(mean)} |")
    print(f"\nagent final accuracy / out-of-sample oracle's: {mean[2][1] / mean[0][1]:.3f} at "
          f"{mean[2][2] / mean[0][2]:.2f}x its cost; best-static {mean[1][1] / mean[0][1]:.3f} at "
          f"{mean[1][2] / mean[0][2]:.2f}x; env sources {env.unwrapped.source_counts}")


if __name__ == "__main__":
    main()
