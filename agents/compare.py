"""`python -m agents.compare`: score baselines and trained agents on the held-out test tasks.

Every method plays the same (task, seed) episodes, each with the same fine-tune budget
(``episode_length`` segments of ``steps_per_action`` optimizer steps). Search-based methods also
spend search episodes, reported separately: the oracle searches every fixed action on the test
tasks with the evaluation seeds (an upper bound), best-static searches the training tasks, Optuna
gets as many search episodes per test task as the grid has actions, on seeds disjoint from the
evaluation seeds. Writes ``results.json``, ``results.md`` and PNG plots to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym

import lora_gym  # noqa: F401 - registers the env ids
from agents import baselines, report, search
from agents.evaluate import evaluate
from agents.zoo_args import StoreDict

METHODS = ("default", "random", "schedule", "best-static", "oracle", "optuna")
SEARCH_SEED = 10_000  # search episodes use seeds from here, disjoint from evaluation seeds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="lora-gym compare", description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--env", default="LoRATune-v0", help="environment id")
    p.add_argument("--env-kwargs", nargs="*", action=StoreDict, default={},
                   help="env keyword arguments, e.g. config:\"'envs_configs/tiny.yaml'\"")
    p.add_argument("--methods", nargs="+", default=list(METHODS),
                   help=f"baselines among {list(METHODS)}")
    p.add_argument("--agent", nargs="*", default=[], metavar="NAME=PATH",
                   help="trained SB3 agents, e.g. ppo=logs/ppo/LoRATune-v0_1/best_model.zip")
    p.add_argument("--algo", default="ppo", help="algorithm of the --agent zips")
    p.add_argument("--split", default="test", choices=("train", "test", "all"),
                   help="task split to evaluate on (default: the held-out test tasks)")
    p.add_argument("--seeds", type=int, default=5, help="evaluation seeds per task")
    p.add_argument("--seed", type=int, default=0, help="first evaluation seed")
    p.add_argument("--out", default="results/compare", help="output folder")
    p.add_argument("--export-adapters", default=None, metavar="DIR",
                   help="live env: each method's best adapter per task to DIR/<method>/<task>")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p.parse_args(argv)


def build_policies(env, args, tasks: list[str], seeds: list[int]):
    """The requested policies, and the grid search of the test tasks when the oracle is run."""
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose among {list(METHODS)}")
    grid_actions = env.unwrapped.grid
    show = not args.no_progress
    policies, grid, search_episodes = {}, None, {}
    search_seeds = [SEARCH_SEED + args.seed]
    for method in args.methods:
        if method == "default":
            policies[method] = baselines.FixedPolicy.peft_default(grid_actions)
        elif method == "random":
            policies[method] = baselines.RandomPolicy(len(grid_actions), seed=args.seed)
        elif method == "schedule":
            policies[method] = baselines.SchedulePolicy(
                grid_actions, env.unwrapped.config.episode_length)
        elif method == "best-static":
            train = [t.name for t in env.unwrapped.task_set.tasks("train")]
            policies[method] = search.best_static_transfer(env, train, search_seeds, show)
            search_episodes[method] = len(train) * len(grid_actions)
        elif method == "oracle":
            policies[method], grid = search.oracle(env, tasks, seeds, show)
            search_episodes[method] = len(tasks) * len(grid_actions) * len(seeds)
        elif method == "optuna":
            n_trials = len(grid_actions)
            policies[method] = search.optuna_sequences(env, tasks, search_seeds, n_trials,
                                                       args.seed, show)
            search_episodes[method] = len(tasks) * n_trials
    for spec in args.agent:
        name, _, path = spec.rpartition("=")
        policies[name or args.algo] = baselines.SB3Policy.load(path, args.algo, name or None)
    return policies, grid, search_episodes


def main(argv: list[str] | None = None) -> dict:
    """Run the comparison and write its files; returns the summary."""
    args = parse_args(argv)
    started = time.perf_counter()
    env = gym.make(args.env, **args.env_kwargs)
    tasks = [t.name for t in env.unwrapped.task_set.tasks(args.split)]
    seeds = list(range(args.seed, args.seed + args.seeds))
    policies, grid, search_episodes = build_policies(env, args, tasks, seeds)
    results = evaluate(env, policies, tasks, seeds, progress=not args.no_progress,
                       export_dir=args.export_adapters)
    summary = report.summarise(results, grid)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = report.markdown_table(summary)
    header = (f"{args.env} {args.env_kwargs}: {len(tasks)} {args.split} task(s) {tasks} x "
              f"{len(seeds)} seed(s); search episodes {search_episodes}")
    (out / "results.md").write_text(f"{header}\n\n{table}\n")
    payload = {"env": args.env, "env_kwargs": args.env_kwargs,
               "config": env.unwrapped.config.to_dict(), "tasks": tasks, "seeds": seeds,
               "search_episodes": search_episodes, "summary": summary,
               "grid_returns": {k: v.tolist() for k, v in (grid or {}).items()},
               "episodes": [r.to_dict() for r in results],
               "wall_time_s": time.perf_counter() - started}
    (out / "results.json").write_text(json.dumps(payload, indent=1))
    plots = report.plot(results, summary, out)
    print(f"{header}\n\n{table}\n\nwrote {out / 'results.json'}, {out / 'results.md'}, "
          f"{', '.join(p.name for p in plots)}")
    return summary


if __name__ == "__main__":
    main()
