"""Effect of the curriculum on PPO trained on the replay env: with vs without, paired by seed.

For each training seed, PPO (``envs_configs/ppo.yml``'s ``LoRATuneReplay-v0`` hyperparameters)
trains ``--timesteps`` steps on the shipped default table twice: plainly, and with
``--curriculum`` (default ``envs_configs/curriculum_replay.yml``: one fixed task first, then
every training task). Each final model (never a model selected during training) then plays every
recorded episode seed of every *training* task deterministically; the table reports its mean
return and final accuracy there, and the paired difference curriculum − plain. The held-out test
tasks are scored once, as a final number only: nothing is selected on them.

    .venv/bin/python benchmarks/curriculum_effect.py [--timesteps 20000] [--seeds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import gymnasium as gym
import numpy as np
import yaml
from lora_gym_agents import train as train_agent
from lora_gym_agents.curriculum import load_curriculum

import lora_gym  # noqa: F401
from lora_gym.policies import SB3Policy
from lora_gym.policies.runner import run_episode

ROOT = Path(__file__).resolve().parents[1]
ENV = "LoRATuneReplay-v0"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timesteps", type=int, default=20000, help="PPO timesteps per run")
    p.add_argument("--seeds", type=int, default=3, help="training seeds (paired runs)")
    p.add_argument("--curriculum", default=str(ROOT / "envs_configs" / "curriculum_replay.yml"))
    p.add_argument("--switch", type=int, default=0,
                   help="move the curriculum's last stage to this timestep (0: as in the file)")
    return p.parse_args(argv)


def train(seed: int, timesteps: int, logs: Path, curriculum: str | None) -> Path:
    """One PPO run; returns its final model's zip."""
    argv = ["--env", ENV, "-n", str(timesteps), "--seed", str(seed), "-f", str(logs),
            "--eval-freq", "-1", "--verbose", "0"]
    if curriculum:
        argv += ["--curriculum", curriculum]
    with redirect_stdout(StringIO()):
        run_dir = train_agent.main(argv)
    return run_dir / f"{ENV}.zip"


def score(model: Path, split: str) -> tuple[float, float]:
    """Mean return and final accuracy over every recorded episode seed of the split's tasks."""
    env = gym.make(ENV, task_split=split)
    index = env.unwrapped.index
    policy = SB3Policy.load(model)
    results = [run_episode(env, policy, task, 0, episode_seed=s)
               for task in env.unwrapped._task_names for s in index.seeds(task)]
    return (statistics.mean(r.episode_return for r in results),
            statistics.mean(r.final_accuracy for r in results))


def main(argv: list[str] | None = None) -> None:
    """Train both conditions per seed, score them, print the table."""
    args = parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.switch:
            data = yaml.safe_load(Path(args.curriculum).read_text())
            data["stages"][-1]["at"] = args.switch
            args.curriculum = str(Path(tmp) / "curriculum.yml")
            Path(args.curriculum).write_text(yaml.safe_dump(data))
        stages = load_curriculum(args.curriculum)
        for seed in range(args.seeds):
            for name, curriculum in (("plain", None), ("curriculum", args.curriculum)):
                model = train(seed, args.timesteps, Path(tmp) / name, curriculum)
                (ret, acc), (test_ret, _) = score(model, "train"), score(model, "test")
                rows.append((seed, name, ret, acc, test_ret))
                print(f"seed {seed} {name:10s} train return {ret:.3f} final acc {acc:.3f} "
                      f"test return {test_ret:.3f}", flush=True)
    print(f"\nPPO, {args.timesteps} timesteps on {ENV} (shipped default table); final models; "
          f"{args.seeds} seeds; curriculum stages at {[s.at for s in stages]}\n")
    print("| method | train-task return (mean ± sd over seeds) | train final acc | test return |")
    print("|---|---|---|---|")
    for name in ("plain", "curriculum"):
        ret = [r[2] for r in rows if r[1] == name]
        acc = [r[3] for r in rows if r[1] == name]
        test = [r[4] for r in rows if r[1] == name]
        print(f"| {name} | {np.mean(ret):.3f} ± {np.std(ret):.3f} | {np.mean(acc):.3f} | "
              f"{np.mean(test):.3f} |")
    diffs = [c[2] - p[2] for p, c in zip(rows[::2], rows[1::2], strict=True)]
    print(f"\npaired curriculum − plain, train-task return: {np.mean(diffs):+.3f} "
          f"(per seed {', '.join(f'{d:+.3f}' for d in diffs)})")


if __name__ == "__main__":
    main()
