r"""Does what PPO learns on some corpora transfer to a corpus it never saw? Leave one corpus out.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/corpus_holdout.py \
        [--candidates agent task-blind] [--ppo-seeds 1] [--eval-seeds 5] [--out runs/holdout]

The val split holds new variants of the train corpora, so choosing an agent on val cannot see
what the test split measures: transfer to unseen corpora. This benchmark measures it on the
*train* split only (the test split is never touched): for every train corpus C, PPO (the
shipped setting of ``envs_configs/ppo.yml``, or a candidate's variant of it) trains on
`LoRATuneReplay-v0` restricted to the train tasks of the other corpora, and best-static is the
(rank, lr, segments) triple with the best mean return on those same tasks (search seed as
`lora_gym.policies.search`); both are then scored on the train tasks of C, replayed (recorded
steps from the table, the rest from the surrogate) with ``--eval-seeds`` reset seeds each.

Caveat: the surrogate serving the unrecorded steps is fitted on every train row, the held-out
corpus's included (it cannot be refitted per fold at table speed); the agent never trains on C's
tasks, but the simulator that scores it on C has seen C's recorded steps.

Prints, per candidate and held-out corpus, the paired difference agent − best-static in return
with its 95% bootstrap CI, and the pooled difference over all folds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import yaml
from lora_gym_agents.features import TASK_BLIND

import lora_gym  # noqa: F401
from lora_gym.core.config import resolve_config
from lora_gym.core.paths import configs_dir
from lora_gym.policies import PolicyContext, SB3Policy
from lora_gym.policies.evaluate import fixed_action_returns
from lora_gym.policies.report import bootstrap_ci
from lora_gym.policies.runner import run_episode
from lora_gym.policies.search import SEARCH_SEED, best_triple, static_policy

CANDIDATES: dict[str, dict] = {
    "agent": {},
    "task-blind": {"policy_kwargs": TASK_BLIND},
    "small-net": {"policy_kwargs": {"net_arch": [16]}},
    "short": {"n_timesteps": 50_000},
    "high-entropy": {"ent_coef": 0.05},
    "gamma1": {"gamma": 1.0},
}
"""Candidate -> overrides of ppo.yml's ``LoRATuneReplay-v0`` section (``policy_kwargs`` merged)."""


class TaskSubset(gym.Wrapper):
    """Resets only to the given tasks (drawn uniformly with the wrapper's own seeded generator)."""

    def __init__(self, env: gym.Env, tasks: list[str]) -> None:
        super().__init__(env)
        self.tasks, self._rng = list(tasks), np.random.default_rng(0)

    def reset(self, *, seed=None, options=None):
        """Reset to a task of the subset."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        task = self.tasks[self._rng.integers(len(self.tasks))]
        return self.env.reset(seed=seed, options={**(options or {}), "task": task})


def train_ppo(config, tasks: list[str], overrides: dict, seed: int, timesteps: int | None):
    """PPO with ppo.yml's replay hyperparameters plus `overrides` on `tasks`; an `SB3Policy`."""
    from lora_gym_agents.features import resolve_policy_kwargs
    from lora_gym_agents.train import SPECIAL_KEYS
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    hp = dict(yaml.safe_load((configs_dir() / "ppo.yml").read_text())["LoRATuneReplay-v0"])
    policy_kwargs = {**hp.get("policy_kwargs", {}), **overrides.get("policy_kwargs", {})}
    hp.update({k: v for k, v in overrides.items() if k != "policy_kwargs"})
    n = timesteps or int(hp["n_timesteps"])
    n_envs, normalize, policy = hp["n_envs"], hp["normalize"], hp["policy"]
    hp = {k: v for k, v in hp.items() if k not in SPECIAL_KEYS}
    hp["policy_kwargs"] = resolve_policy_kwargs(policy_kwargs)
    venv = make_vec_env(lambda: TaskSubset(gym.make("LoRATuneReplay-v0", config=config,
                                                    disable_env_checker=True), tasks),
                        n_envs=n_envs, seed=seed)
    venv = VecNormalize(venv, **{"norm_reward": False, **normalize})
    model = PPO(policy, venv, seed=seed, verbose=0, device="cpu", **hp)
    model.learn(n)
    venv.training = False
    return SB3Policy(model, venv, name="agent")


def main(argv: list[str] | None = None) -> dict:
    """Every fold, every candidate: train, score against best-static, print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candidates", nargs="+", default=["agent", "task-blind"],
                   choices=list(CANDIDATES))
    p.add_argument("--ppo-seeds", type=int, default=1)
    p.add_argument("--eval-seeds", type=int, default=5)
    p.add_argument("--timesteps", type=int, default=None, help="default: ppo.yml's")
    p.add_argument("--config", default=None, help="env config (default: the embedded one)")
    p.add_argument("--out", default="runs/holdout")
    args = p.parse_args(argv)

    config = resolve_config(args.config, task_split="train")
    env = gym.make("LoRATuneReplay-v0", config=config, disable_env_checker=True)
    base = env.unwrapped
    tasks = list(base.recorded_tasks)
    corpus = {t: t.split("/")[0] for t in tasks}
    corpora = sorted(set(corpus.values()))
    if len(corpora) < 2:
        raise SystemExit(f"leaving a corpus out needs >= 2 train corpora, got {corpora}")
    grid = fixed_action_returns(env, tasks, [SEARCH_SEED], progress=False)
    ctx = PolicyContext.of(base.config)
    seeds = list(range(args.eval_seeds))
    rows, pooled = [], {c: [] for c in args.candidates}
    for held in corpora:
        train = [t for t in tasks if corpus[t] != held]
        test = [t for t in tasks if corpus[t] == held]
        action, segments = best_triple(np.mean([grid[t] for t in train], axis=0), ctx.grid.stop)
        rank, lr = ctx.grid.decode(action)
        static = static_policy(ctx, action, segments, "best-static")
        ref = {(t, s): run_episode(env, static, t, s).episode_return for t in test for s in seeds}
        for cand in args.candidates:
            for ppo_seed in range(args.ppo_seeds):
                agent = train_ppo(config, train, CANDIDATES[cand], ppo_seed, args.timesteps)
                diffs = np.array([run_episode(env, agent, t, s).episode_return - ref[t, s]
                                  for t in test for s in seeds])
                lo, hi = bootstrap_ci(diffs)
                pooled[cand].extend(diffs.tolist())
                rows.append({"held_out": held, "candidate": cand, "ppo_seed": ppo_seed,
                             "best_static": f"r{rank}, lr {lr:g}, {segments} seg",
                             "mean": float(diffs.mean()), "lo": lo, "hi": hi,
                             "episodes": len(diffs)})
                print(f"{held}: {cand} seed {ppo_seed} − best-static {diffs.mean():+.3f} "
                      f"[{lo:+.3f}, {hi:+.3f}] ({len(diffs)} episodes)", flush=True)
    lines = ["| held-out corpus | candidate | PPO seed | best-static (other corpora) | "
             "agent − best-static [95% CI] | episodes |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['held_out']} | {r['candidate']} | {r['ppo_seed']} | "
                     f"{r['best_static']} | {r['mean']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] "
                     f"| {r['episodes']} |")
    for cand, diffs in pooled.items():
        lo, hi = bootstrap_ci(np.array(diffs))
        lines.append(f"| **all folds** | {cand} | | | {np.mean(diffs):+.3f} [{lo:+.3f}, "
                     f"{hi:+.3f}] | {len(diffs)} |")
    table = "\n".join(lines)
    print("\n" + table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "holdout.md").write_text(table + "\n")
    (out / "holdout.json").write_text(json.dumps(rows, indent=1))
    return {"rows": rows, "pooled": pooled}


if __name__ == "__main__":
    main()
