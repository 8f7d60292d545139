"""`make demo`: the main job -- train PPO on recorded fine-tunes, compare it, check it live.

1. Train PPO with ``lora-gym train`` (in-process) on `LoRATuneReplay-v0`, served from the
   table shipped for the config (by default: MiniLM on the default task set's ~100 task
   variants, recorded live with ``lora-gym record``), on the *train* tasks; evaluation during
   training runs on the *val* split (held-out variants of the training corpora). The demo scores
   the *final* model, trained 200k timesteps: both were chosen on the val split
   (``benchmarks/agent_selection.py``, results in ``benchmarks/results/``), so nothing here is
   chosen on the test split.
2. Score PPO against the baselines (`lora_gym.cli.compare`) on the held-out test tasks of
   the replay env: return, final accuracy, cost and segments used with bootstrap CIs, and the paired
   differences PPO - best-static and PPO - patience (steps off the table come from the
   surrogate; ``info["source"]`` counts them).
3. Run a few of PPO's and the default's episodes on the live `LoRATune-v0` and compare them with
   their replay (`lora_gym.policies.sim2real`), on the first test tasks whose resets the table
   holds: is what PPO learned on the table real? The table fraction of the replayed steps is
   printed, and sim-to-real is computed only over episodes with steps off the table (the others
   are a consistency check of the table).

    lora-gym demo [--config default] [--timesteps 200000] [--live-tasks 2]

The demo runs on the embedded default config, whose shipped table (``default``) holds random and
fixed-action episodes of every train and val task and the live benchmark's test episodes;
``--config legacy-v1`` runs it on the table of the default until 2026-12-04.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lora_gym_agents import train

from lora_gym.cli import compare
from lora_gym.core.actions import ActionGrid
from lora_gym.core.config import resolve_config
from lora_gym.core.parsing import int_at_least
from lora_gym.policies import FixedPolicy, SB3Policy

DEMO_CONFIG = "default"
"""The config of the shipped MiniLM table the demo replays (`lora_gym.replay.tables`)."""
EVALUATIONS = 80
"""``--eval-freq`` is timesteps / 80 per env: about 10 evaluations with the replay env's 8 envs."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=DEMO_CONFIG,
                   help=f"env config: a shipped name or a YAML path (default {DEMO_CONFIG}: the "
                        "config of the shipped MiniLM table)")
    p.add_argument("--store", default=None,
                   help="a recorded store to replay (default: the table shipped for the config)")
    p.add_argument("--timesteps", type=int_at_least(1), default=200_000,
                   help="PPO timesteps on the replay env")
    p.add_argument("--seeds", type=int_at_least(1), default=10,
                   help="evaluation seeds per test task")
    p.add_argument("--live-episodes", type=int_at_least(0), default=1,
                   help="live episodes per test task and policy for the sim-to-real check "
                        "(0 skips it)")
    p.add_argument("--live-tasks", type=int_at_least(1), default=2,
                   help="test tasks of the live check (the first ones of the split whose "
                        "resets the table holds)")
    p.add_argument("--out", default="runs/demo", help="output folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Train, compare, verify live; print each stage's result."""
    args = parse_args(argv)
    out = Path(args.out)
    kwargs = {"config": args.config, "store": args.store}
    env_kwargs = [f"{k}:'{v}'" for k, v in kwargs.items() if v is not None]
    env_kwargs = ["--env-kwargs", *env_kwargs] if env_kwargs else []
    print(f"== 1. PPO on LoRATuneReplay-v0 ({args.timesteps} steps)", flush=True)
    run = train.main(["--env", "LoRATuneReplay-v0", "-n", str(args.timesteps),
                      "-f", str(out / "logs"), "-P", "--verbose", "0",
                      "--eval-freq", str(max(args.timesteps // EVALUATIONS, 1)),
                      "--eval-episodes", "20", *env_kwargs])
    agent = run / "LoRATuneReplay-v0.zip"  # the final model (see the module docstring)

    print("\n== 2. PPO vs baselines on the held-out test tasks (replay)", flush=True)
    compare.main(["--env", "LoRATuneReplay-v0", *env_kwargs, "--seeds", str(args.seeds),
                  "--agent", f"ppo={agent}", "--out", str(out / "compare"), "--no-progress"])

    if args.live_episodes == 0:
        print("\n== 3. Live check skipped (--live-episodes 0)", flush=True)
        return
    print("\n== 3. Live check: the same episodes on LoRATune-v0", flush=True)
    from lora_gym.policies.sim2real import compare as sim2real
    from lora_gym.policies.sim2real import print_pairs

    config = resolve_config(args.config, task_split="test")
    grid = ActionGrid.of(config)
    policies = [SB3Policy.load(agent, name="ppo"), FixedPolicy.peft_default(grid)]
    tasks = list(replay_tasks(config, args.store))[:args.live_tasks]
    jobs = [(p, t, s) for p in policies for t in tasks for s in range(args.live_episodes)]
    pairs = sim2real(config, jobs, store=args.store)
    print_pairs(pairs)
    print(live_check_summary(pairs))


def replay_tasks(config, store: str | None) -> tuple[str, ...]:
    """The tasks of `config`'s split whose resets the table (or `store`) holds."""
    import gymnasium as gym

    env = gym.make("LoRATuneReplay-v0", config=config, store=store, disable_env_checker=True)
    return env.unwrapped.recorded_tasks


def live_check_summary(pairs) -> str:
    """What the live check shows: sim-to-real only over episodes the table does not fully hold.

    A replay episode whose every step is a table row replays the very live steps it is compared
    with: its agreement says the table is faithful (a consistency check), not that the simulator
    predicts fine-tunes it has not seen. Those with surrogate steps are the sim-to-real test.
    """
    from lora_gym.policies.sim2real import format_summary, summarise

    fraction = sum(p.table_fraction for p in pairs) / max(len(pairs), 1)
    lines = [f"table fraction of the replayed steps: {fraction:.3f} over {len(pairs)} episode(s)"]
    held = [p for p in pairs if p.table_fraction == 1.0]
    unseen = [p for p in pairs if p.table_fraction < 1.0]
    if held:
        lines.append(f"replay consistency check ({len(held)} episode(s) fully in the table): "
                     f"{format_summary(summarise(held))}")
    if unseen:
        lines.append(f"sim-to-real ({len(unseen)} episode(s) with steps off the table, served by "
                     f"the surrogate): {format_summary(summarise(unseen))}")
    else:
        lines.append("no episode left the table: this live check is a replay consistency check, "
                     "not a sim-to-real test")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
