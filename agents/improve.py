r"""``lora-gym improve``: train on replay, run the agent live, record, refit, retrain (Dyna/DAgger).

A simulator fitted on a few recorded trajectories is wrong where the agent goes. Each round:

1. train PPO (``lora-gym train``, in-process) on `LoRATuneReplay-v0` served from ``--store`` with
   ``miss=surrogate`` (the surrogate is fitted on the store as it is now), warm-started from the
   previous round's model;
2. run the trained agent on the *train* tasks, first on replay (what the simulator predicts),
   then live, recording every live step into the store (so the next round's table holds the
   agent's own trajectories and its surrogate is refit on them);
3. print the round's sim-to-real: Spearman ρ of replay vs live returns and MAE of the final
   accuracy.

A finished round leaves ``<out>/round_<r>/summary.json`` and is skipped on a rerun; an episode
already recorded is not run live again (its recorded steps replay exactly), so a killed run
resumes where it stopped by running the same command::

    lora-gym improve --store runs/improve.sqlite --rounds 3 --timesteps 20000 \
        --tasks-per-round 8 --episodes 2 --out runs/improve
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
from lora_gym_agents import train as trainer

from lora_gym.core.actions import ActionGrid
from lora_gym.core.config import EnvConfig, resolve_config
from lora_gym.policies import Policy, SB3Policy
from lora_gym.policies.recording import episode_recorded
from lora_gym.policies.runner import run_episode
from lora_gym.policies.sim2real import EpisodePair, format_summary, summarise
from lora_gym.replay.index import TableIndex
from lora_gym.replay.recording import RecordingWrapper, episode_seed
from lora_gym.replay.store import Store
from lora_gym.replay.tables import resolve_store

SEED_STRIDE = 1000
"""Round r's live episodes use reset seeds ``r * SEED_STRIDE + i``: new episodes every round."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="lora-gym improve", description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True,
                   help="store to train on and record into (created from the shipped table)")
    p.add_argument("--config", default=None, help="env config YAML (default: the embedded one)")
    p.add_argument("--rounds", type=int, default=3, help="train-run-record rounds")
    p.add_argument("--timesteps", type=int, default=20_000, help="PPO timesteps per round")
    p.add_argument("--tasks-per-round", type=int, default=8,
                   help="train tasks run live per round (drawn per round, seeded)")
    p.add_argument("--episodes", type=int, default=1, help="live episodes per task and round")
    p.add_argument("--seed", type=int, default=0, help="seed of the task draws and of PPO")
    p.add_argument("--params", nargs="*", default=[], metavar="KEY:VALUE",
                   help="PPO hyperparameter overrides, passed to lora-gym train -params")
    p.add_argument("--out", default="runs/improve", help="output folder")
    args = p.parse_args(argv)
    for name in ("rounds", "timesteps", "tasks_per_round", "episodes"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def init_store(store: Path, config: EnvConfig) -> None:
    """Start `store` as a copy of the table shipped for `config`, unless it exists."""
    if not store.exists():
        shipped, _ = resolve_store(None, config)
        store.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shipped, store)


def train(args: argparse.Namespace, round_dir: Path, previous: Path | None) -> Path:
    """PPO on the replay env of the store; returns the model zip (skips a finished run)."""
    model = round_dir / "model.zip"
    if model.is_file():
        return model
    logs = round_dir / "logs"
    shutil.rmtree(logs, ignore_errors=True)  # an unfinished run restarts from the last round
    kwargs = [f"store:'{args.store}'"] + ([f"config:'{args.config}'"] if args.config else [])
    cmd = ["--env", "LoRATuneReplay-v0", "-n", str(args.timesteps), "-f", str(logs),
           "--verbose", "0", "--eval-freq", "-1", "--seed", str(args.seed), "--env-kwargs", *kwargs]
    if args.params:
        cmd += ["-params", *args.params]
    if previous is not None:
        cmd += ["-i", str(previous)]
    run = trainer.main(cmd)
    shutil.copyfile(run / "LoRATuneReplay-v0.zip", model)
    if (run / "vecnormalize.pkl").is_file():
        shutil.copyfile(run / "vecnormalize.pkl", round_dir / "vecnormalize.pkl")
    return model


def run_round(config: EnvConfig, store: Path, policy: Policy, tasks: list[str],
              seeds: list[int]) -> list[EpisodePair]:
    """Each (task, seed): the replay episode (predicted), then the live one, recorded.

    The resets are recorded live first: a replay episode starts from a recorded reset.
    """
    pairs = []
    with Store(store) as db:
        live = RecordingWrapper(gym.make("LoRATune-v0", config=config, disable_env_checker=True),
                                db)
        index = TableIndex.load(db, config)
        for task in tasks:
            for seed in seeds:
                if index.get(task, episode_seed(seed), ()) is None:
                    live.reset(seed=seed, options={"task": task})

        def replay_env(miss: str) -> gym.Env:
            return gym.make("LoRATuneReplay-v0", config=config, store=str(store), miss=miss,
                            disable_env_checker=True)

        predicted, exact = replay_env("surrogate"), replay_env("raise")
        stop = ActionGrid.of(config).stop_action
        for task in tasks:
            for seed in seeds:
                rep = run_episode(predicted, policy, task, seed, episode_seed=episode_seed(seed))
                if episode_recorded(index, policy, task, seed, config.episode_length, stop):
                    real = run_episode(exact, policy, task, seed, episode_seed=episode_seed(seed))
                else:
                    real = run_episode(live, policy, task, seed)
                pairs.append(EpisodePair.of(policy.name, task, seed, rep, real))
    return pairs


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the rounds; returns each round's sim-to-real summary."""
    args = parse_args(argv)
    config = resolve_config(args.config)
    store, out = Path(args.store), Path(args.out)
    init_store(store, config)
    from lora_gym.tasks.sets import load_task_set

    train_tasks = [t.name for t in load_task_set(config.task_set).tasks("train")]
    summaries, previous = [], None
    for r in range(args.rounds):
        round_dir = out / f"round_{r}"
        done = round_dir / "summary.json"
        round_dir.mkdir(parents=True, exist_ok=True)
        model = train(args, round_dir, previous)
        previous = model
        if done.is_file():
            summaries.append(json.loads(done.read_text()))
            continue
        rng = np.random.default_rng([args.seed, r])
        k = min(args.tasks_per_round, len(train_tasks))
        tasks = sorted(rng.choice(train_tasks, size=k, replace=False).tolist())
        seeds = [r * SEED_STRIDE + i for i in range(args.episodes)]
        policy = SB3Policy.load(model, name=f"ppo-round{r}")
        pairs = run_round(config.replace(task_split="train"), store, policy, tasks, seeds)
        stats = summarise(pairs)
        print(f"round {r}: {format_summary(stats)}", flush=True)
        summary = {"round": r, **stats, "tasks": tasks, "seeds": seeds}
        done.write_text(json.dumps(summary, indent=1))
        summaries.append(summary)
    return summaries


if __name__ == "__main__":
    main()
