"""Arguments shared by the commands that run policies over tasks and seeds (record, sim2real)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from lora_gym.core.config import EnvConfig, resolve_config
from lora_gym.core.lm_config import LMConfig, resolve_lm_config
from lora_gym.core.parsing import int_at_least, parse_env_kwargs
from lora_gym.policies import POLICIES, SB3_ALGOS, Policy, PolicyContext, make_policies

if TYPE_CHECKING:
    from lora_gym.policies.distributed import ClusterOptions

LIVE_ENV_IDS: tuple[str, ...] = ("LoRATune-v0", "LoRATuneLM-v0")
"""The live envs whose episodes ``record`` runs (their rows are keyed apart)."""


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``record`` and ``sim2real``: config, policies, tasks, seeds."""
    parser.add_argument("--env", default="LoRATune-v0", choices=LIVE_ENV_IDS,
                        help="the live env whose episodes run (its config: --config)")
    parser.add_argument("--config", default=None,
                        help="env config YAML or shipped name (default: the env's embedded one)")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY:VALUE",
                        help="config overrides as key:value (Python literals or bare strings, e.g. "
                             "episode_length:4 config:tiny)")
    parser.add_argument("--policy", nargs="*", default=["random"], choices=sorted(POLICIES),
                        help="registered policies to run; grid runs every fixed (rank, lr)")
    parser.add_argument("--agent", default=None, help="a trained SB3 agent .zip to run as well")
    parser.add_argument("--algo", default="ppo", choices=SB3_ALGOS, help="the agent's algorithm")
    parser.add_argument("--split", default="train", choices=("train", "val", "test", "all"),
                        help="which tasks of the task set")
    parser.add_argument("--tasks", nargs="*", default=None,
                        help="only these tasks of the split (default: all of them)")
    parser.add_argument("--seeds", type=int_at_least(1), default=1,
                        help="reset seeds 0..N-1 per task (>= 1)")


def jobs_from_args(args: argparse.Namespace
                   ) -> tuple[EnvConfig | LMConfig, list[tuple[Policy, str, int]]]:
    """The config and the (policy, task, reset seed) episodes the arguments ask for."""
    from lora_gym.tasks.sets import load_task_set

    resolve = resolve_lm_config if args.env == "LoRATuneLM-v0" else resolve_config
    config = resolve(args.config, **parse_env_kwargs(args.env_kwargs))
    policies = make_policies(args.policy, PolicyContext.of(config), args.agent, args.algo)
    tasks = [t.name for t in load_task_set(config.task_set).tasks(args.split)]
    if args.tasks:
        unknown = sorted(set(args.tasks) - set(tasks))
        if unknown:
            raise ValueError(f"--tasks {unknown} are not {args.split!r} tasks of task set "
                             f"{config.task_set!r}: {tasks}")
        tasks = [t for t in tasks if t in args.tasks]
    return config, [(p, t, s) for p in policies for t in tasks for s in range(args.seeds)]


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend serial|ray`` and where the Ray workers run (`ClusterOptions`)."""
    parser.add_argument("--backend", default="serial", choices=("serial", "ray"),
                        help="run the live episodes here, one by one, or on Ray workers")
    parser.add_argument("--address", default=None,
                        help="Ray: 'auto' (the cluster of `ray start`) or ray://host:10001 "
                             "(default: $RAY_ADDRESS if set, else start a local Ray)")
    parser.add_argument("--num-workers", type=int_at_least(1), default=2,
                        help="Ray: worker actors (>= 1)")
    parser.add_argument("--worker-cpus", type=float, default=1.0,
                        help="Ray: CPUs (and torch threads) per worker")
    parser.add_argument("--worker-gpus", type=float, default=0.0,
                        help="Ray: GPUs reserved per worker")


def cluster_options(args: argparse.Namespace) -> ClusterOptions | None:
    """The `ClusterOptions` of `add_backend_arguments`' arguments, or None for ``serial``."""
    if args.backend == "serial":
        return None
    from lora_gym.policies.distributed import ClusterOptions

    return ClusterOptions(address=args.address, num_workers=args.num_workers,
                          worker_cpus=args.worker_cpus, worker_gpus=args.worker_gpus)
