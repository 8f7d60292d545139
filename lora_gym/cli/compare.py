"""``lora-gym compare``: score baselines and trained agents on the held-out test tasks.

Every method plays the same (task, seed) episodes, each with at most the same fine-tune budget
(``episode_length`` segments of ``steps_per_action`` optimizer steps; a method may stop early,
and the table reports the segments it used). Static baselines are (rank, lr, segments) triples
when the env can stop. Search-based methods also spend search episodes, reported separately:
the oracle searches every static triple on the evaluation tasks and seeds (an upper bound),
best-static and patience search the training tasks, Optuna gets as many search episodes per
task as the grid has (rank, lr) pairs, on seeds disjoint from the evaluation seeds. Each trained
agent's return is compared with best-static's and patience's on the same episodes (paired
differences with bootstrap CIs). Writes ``results.json``, ``results.md`` and plots to ``--out``.

Every registered env id works: on the ``MultiDiscrete`` variants (`LoRATunePerLayer-v0`,
`LoRATuneScope-v0`) the baselines play their (rank, lr) grid actions uniformly (every layer
group at the rank; the widest scope; `lora_gym.envs.grid_actions`), and agents trained on the
variant play its own actions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym

import lora_gym  # noqa: F401 - registers the env ids
from lora_gym.core.parsing import StoreDict, int_at_least, positive_float
from lora_gym.envs.cost_weight import FixedCostWeight
from lora_gym.envs.grid_actions import grid_actions
from lora_gym.policies import POLICIES, PolicyContext, SB3Policy, make_policies, report
from lora_gym.policies.evaluate import evaluate, split_tasks
from lora_gym.policies.search import train_grid

METHODS = ("default", "random", "schedule", "patience", "rank-controller", "best-static", "oracle",
           "optuna")
"""The baselines run by default (registered policies, `lora_gym.policies.POLICIES`)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="lora-gym compare", description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--env", default="LoRATune-v0", help="environment id")
    p.add_argument("--env-kwargs", nargs="*", action=StoreDict, default={},
                   help="env keyword arguments, e.g. config:tiny (Python literals or bare "
                        "strings)")
    p.add_argument("--methods", nargs="*", default=list(METHODS),
                   help=f"registered baselines (default {list(METHODS)})")
    p.add_argument("--agent", nargs="*", default=[], metavar="NAME=PATH",
                   help="trained SB3 agents, e.g. ppo=logs/ppo/LoRATune-v0_1/best_model.zip")
    p.add_argument("--algo", default="ppo", help="algorithm of the --agent zips")
    p.add_argument("--split", default="test", choices=("train", "val", "test", "all"),
                   help="task split to evaluate on (default: the held-out test tasks)")
    p.add_argument("--seeds", type=int_at_least(1), default=5,
                   help="evaluation seeds per task (>= 1)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="first evaluation seed")
    p.add_argument("--out", default="results/compare", help="output folder")
    p.add_argument("--export-adapters", default=None, metavar="DIR",
                   help="live env: each method's best adapter per task to DIR/<method>/<task>")
    p.add_argument("--cost-weights", nargs="+", type=positive_float, default=None, metavar="LAMBDA",
                   help="compare at each λ (e.g. 0.001 0.003 0.01): every static baseline is "
                        "re-chosen for that λ, agents play it as their episodes' λ; results per "
                        "λ in OUT/lambda-<λ>/ and a Pareto plot (default: the config's λ)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p.parse_args(argv)


def build_policies(env, args, tasks: list[str], seeds: list[int],
                   cost_weight: float | None = None):
    """The requested policies by method name, the oracle's grid (for regret), search episodes."""
    extra = {} if cost_weight is None else {"cost_weight": cost_weight}
    ctx = PolicyContext.of(env.unwrapped.config, seed=args.seed, env=env, tasks=tuple(tasks),
                           seeds=tuple(seeds), progress=not args.no_progress,
                           static_search=train_grid, **extra)
    unknown = sorted(set(args.methods) - set(POLICIES))
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose among {sorted(POLICIES)}")
    policies, grid, search_episodes = {}, None, {}
    for method in args.methods:
        (policy,) = make_policies([method], ctx)
        policy.name = method
        policies[method] = policy
        if hasattr(policy, "search_episodes"):
            search_episodes[method] = policy.search_episodes
        grid = getattr(policy, "grid_returns", grid)
    for spec in args.agent:
        name, _, path = spec.rpartition("=")
        policies[name or args.algo] = SB3Policy.load(path, args.algo, name or None)
    return policies, grid, search_episodes


def main(argv: list[str] | None = None) -> dict:
    """Run the comparison (at each ``--cost-weights`` λ) and write its files.

    Returns the summary (with ``--cost-weights``: ``{λ: summary}``).
    """
    args = parse_args(argv)
    if args.env in lora_gym.MULTI_TASK_ENV_IDS:
        raise SystemExit(f"{args.env} tunes several tasks per episode and `lora-gym compare` "
                         "plays one task per episode: compare its settings with "
                         "benchmarks/multi_task_projection.py, or evaluate an agent with "
                         "train_agent.py's evaluation")
    env = grid_actions(gym.make(args.env, **args.env_kwargs))
    tasks = split_tasks(env, args.split)
    if not tasks:
        raise SystemExit(f"{args.env}: no {args.split!r} task can be played (a replay table "
                         "needs their recorded resets; record them with `lora-gym record`)")
    if args.cost_weights is None:
        return compare_at(env, args, tasks, None, Path(args.out))
    out = Path(args.out)
    summaries = {lam: compare_at(FixedCostWeight(env, lam), args, tasks, lam,
                                 out / f"lambda-{lam:g}") for lam in args.cost_weights}
    plot = report.pareto_plot(summaries, out / "pareto.png")
    table = report.per_lambda_table(summaries)
    (out / "results.md").write_text(table + "\n")
    print(f"\n{table}\n\nwrote {out / 'results.md'}, {plot}")
    return summaries


def compare_at(env, args, tasks: list[str], cost_weight: float | None, out: Path) -> dict:
    """One comparison at one λ (``None``: the env's own): every method, the same episodes."""
    started = time.perf_counter()
    seeds = list(range(args.seed, args.seed + args.seeds))
    policies, grid, search_episodes = build_policies(env, args, tasks, seeds, cost_weight)
    results = evaluate(env, policies, tasks, seeds, progress=not args.no_progress,
                       export_dir=args.export_adapters)
    summary = report.summarise(results, grid)
    paired = report.paired_differences(results, [name for name in policies
                                                 if name not in args.methods])
    out.mkdir(parents=True, exist_ok=True)
    table = report.markdown_table(summary)
    if paired:
        table += "\n\n" + report.paired_table(paired)
    lam = "" if cost_weight is None else f" at λ = {cost_weight:g}"
    header = (f"{args.env} {args.env_kwargs}{lam}: {len(tasks)} {args.split} task(s) {tasks} x "
              f"{len(seeds)} seed(s); search episodes {search_episodes}")
    (out / "results.md").write_text(f"{header}\n\n{table}\n")
    payload = {"env": args.env, "env_kwargs": args.env_kwargs, "cost_weight": cost_weight,
               "config": env.unwrapped.config.to_dict(), "tasks": tasks, "seeds": seeds,
               "search_episodes": search_episodes, "summary": summary, "paired": paired,
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
