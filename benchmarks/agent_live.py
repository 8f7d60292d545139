r"""Does the trained agent beat static configurations on *real* fine-tunes? A live benchmark.

    .venv/bin/python benchmarks/agent_live.py --agent runs/demo/ppo.zip --store runs/live.sqlite \
        [--config envs_configs/default.yaml] [--seeds 3] [--optuna-trials 16]

On the test split, live, every method plays the same (task, reset seed) episodes:

* the agent (an SB3 zip), PEFT's default r=8/lr=1e-3, random (rank, lr);
* best-static: the (rank, lr, segments) triple with the best mean return over the *train*
  tasks, searched on the replay env (the simulator the agent trained on: selection never looks
  at the test split); patience: best-static's (rank, lr) with the patience stopping rule;
  rank-controller: seed 002's grow-on-stagnation / shrink-on-overfitting rule at that lr;
* Optuna TPE over action sequences with ``--optuna-trials`` live episodes per test task (its
  own search seed), then its best sequence.

``--agents NAME=ZIP ...`` adds agents (each paired with best-static and patience);
``--methods best-static patience`` plays only those baselines; ``--first-seed 3 --seeds 3``
plays reset seeds 3-5 (more episodes for the same tasks); ``--split val`` plays the val split
live, to choose between agents without looking at the test split.

Every live step goes through `LoRATuneReplay-v0` with ``miss="live"`` on ``--store`` (which
starts as a copy of the shipped table): steps already recorded are served from it and the rest
run live and are recorded, so a rerun is cheap. The benchmark prints:

1. per method: return, final accuracy, cost and segments used, with 95% bootstrap CIs;
2. the paired difference agent − best-static (and − patience) in return, with its CI;
3. sim-to-real: every live episode replayed on the simulator (by default the shipped table
   holding, of the benchmark's tasks, only their resets: every test step comes from the
   surrogate, a simulator that has not seen these fine-tunes): Spearman ρ of returns and MAE of
   final accuracy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
from lora_gym_agents.improve import init_store

import lora_gym  # noqa: F401
from lora_gym.core.config import resolve_config
from lora_gym.policies import PolicyContext, SB3Policy, make_policies, report
from lora_gym.policies.evaluate import evaluate
from lora_gym.policies.runner import run_episode
from lora_gym.policies.search import train_grid
from lora_gym.policies.sim2real import EpisodePair, format_summary, summarise
from lora_gym.replay.recording import episode_seed

BASELINES = ("default", "random", "best-static", "patience", "rank-controller")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agent", required=True, help="the trained SB3 zip (vecnormalize.pkl beside)")
    p.add_argument("--algo", default="ppo", help="its algorithm")
    p.add_argument("--store", required=True, help="store that records every live step")
    p.add_argument("--config", default=None, help="env config YAML (default: the embedded one)")
    p.add_argument("--simulator", default=None,
                   help="store of the simulator for sim-to-real (default: the shipped table with "
                        "only the resets of the benchmark's tasks, none of their steps)")
    p.add_argument("--seeds", type=int, default=3, help="reset seeds per test task")
    p.add_argument("--first-seed", type=int, default=0, help="reset seeds start here")
    p.add_argument("--optuna-trials", type=int, default=16, help="live Optuna episodes per task")
    p.add_argument("--tasks", nargs="*", default=None, help="only these test tasks")
    p.add_argument("--split", default="test", choices=("test", "val"),
                   help="the split played live (val: to choose between agents, never test)")
    p.add_argument("--agents", nargs="*", default=[], metavar="NAME=ZIP",
                   help="more agents, each compared to best-static and patience")
    p.add_argument("--methods", nargs="*", default=list(BASELINES), choices=BASELINES,
                   help="the baselines to play (best-static and patience at least)")
    p.add_argument("--out", default="results/agent_live", help="output folder")
    args = p.parse_args(argv)
    if args.seeds < 1 or args.first_seed < 0:
        p.error(f"--seeds must be >= 1 and --first-seed >= 0, got {args.seeds}, "
                f"{args.first_seed}")
    if args.optuna_trials < 0:
        p.error(f"--optuna-trials must be >= 0, got {args.optuna_trials}")
    if not {"best-static", "patience"} <= set(args.methods):
        p.error(f"--methods must include best-static and patience, got {args.methods}")
    names = [a.partition("=")[0] for a in args.agents]
    if any("=" not in a for a in args.agents) or set(names) & {"agent", *BASELINES, "optuna"}:
        p.error(f"--agents takes NAME=ZIP items whose names are not a method's, got {args.agents}")
    return args


def build_policies(args, config, live, tasks: list[str], seeds: list[int]) -> dict:
    """The agent and the baselines; searches on train tasks run on the simulator."""
    simulator = gym.make("LoRATuneReplay-v0", config=config.replace(task_split="train"),
                         store=args.simulator, miss="surrogate", disable_env_checker=True)
    ctx = PolicyContext.of(config, env=simulator, tasks=tuple(tasks), seeds=tuple(seeds),
                           static_search=train_grid)
    policies = {name: make_policies([name], ctx)[0] for name in args.methods}
    if args.optuna_trials > 0:
        live_ctx = PolicyContext.of(config, env=live, tasks=tuple(tasks), seeds=tuple(seeds))
        trials = live_ctx.grid.n_pairs
        if args.optuna_trials != trials:  # the registry's budget is one episode per grid pair
            raise SystemExit(f"--optuna-trials must equal the grid's {trials} (rank, lr) pairs")
        policies["optuna"] = make_policies(["optuna"], live_ctx)[0]
    policies["agent"] = SB3Policy.load(args.agent, args.algo, name="agent")
    for item in args.agents:
        name, _, path = item.partition("=")
        policies[name] = SB3Policy.load(path, args.algo, name=name)
    for name, policy in policies.items():
        policy.name = name
    return policies


def unseen_simulator(config, live_store: Path, tasks: list[str], path: Path) -> Path:
    """The shipped table with, of the benchmark's `tasks`, only their resets, at `path`.

    A simulator that knows each test task's untrained state (its features and first metrics) but
    none of its fine-tuned steps (even once the shipped table holds them): every replayed step
    comes from the surrogate, so agreement with the live episodes measures what the simulator
    predicts for tasks it has not seen trained.
    """
    import sqlite3

    from lora_gym.replay.store import config_hash

    path.unlink(missing_ok=True)
    init_store(path, config)
    marks = ",".join("?" * len(tasks))
    with sqlite3.connect(path) as db:
        db.execute(f"DELETE FROM steps WHERE prefix != '' AND task IN ({marks})", tasks)
        db.execute("ATTACH DATABASE ? AS live", (f"file:{live_store}?mode=ro",))
        db.execute(f"INSERT OR IGNORE INTO steps SELECT * FROM live.steps WHERE prefix = '' AND "
                   f"config_hash = ? AND task IN ({marks})", (config_hash(config), *tasks))
    return path


def sim_to_real(config, simulator: str | None, policies: dict, results) -> dict:
    """Replay every live episode on the simulator; Spearman ρ of returns, MAE of accuracy."""
    env = gym.make("LoRATuneReplay-v0", config=config, store=simulator, miss="surrogate",
                   disable_env_checker=True)
    pairs = []
    for real in results:
        rep = run_episode(env, policies[real.method], real.task, real.seed,
                          episode_seed=episode_seed(real.seed))
        pairs.append(EpisodePair.of(real.method, real.task, real.seed, rep, real))
    return summarise(pairs)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    config = resolve_config(args.config, task_split=args.split)
    init_store(Path(args.store), config)
    live = gym.make("LoRATuneReplay-v0", config=config, store=args.store, miss="live",
                    episode_seeds="live", disable_env_checker=True)
    tasks = args.tasks or [t.name for t in live.unwrapped.task_set.tasks(args.split)]
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    policies = build_policies(args, config, live, tasks, seeds)
    results = evaluate(live, policies, tasks, seeds)
    summary = report.summarise(results, None)
    paired = report.paired_differences(results, ["agent", *(a.partition("=")[0]
                                                            for a in args.agents)])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    simulator = args.simulator or str(unseen_simulator(config, Path(args.store), tasks,
                                                       out / "simulator.sqlite"))
    s2r = sim_to_real(config, simulator, policies, results)
    table = f"{report.markdown_table(summary)}\n\n{report.paired_table(paired)}"
    text = (f"{len(tasks)} {args.split} task(s) {tasks} x {len(seeds)} seed(s), live "
            f"(store {args.store}; sources {live.unwrapped.source_counts})\n\n{table}\n\n"
            f"sim-to-real over {s2r['episodes']} episodes: {format_summary(s2r)}")
    print(text)
    (out / "agent_live.md").write_text(text + "\n")
    payload = {"tasks": tasks, "seeds": seeds, "summary": summary, "paired": paired,
               "sim_to_real": s2r, "episodes": [r.to_dict() for r in results]}
    (out / "agent_live.json").write_text(json.dumps(payload, indent=1))
    return payload


if __name__ == "__main__":
    main()
