r"""``lora-gym record``: record live episodes of policies into a store (resumable).

Rerunning the same command skips every episode already recorded::

    lora-gym record --config envs_configs/tiny.yaml --store runs/tiny.sqlite \\
        --policy random grid schedule --split all --seeds 10

With ``--backend ray`` the episodes run on Ray workers (`lora_gym.policies.distributed`) and this
process writes their rows as they stream in.
"""

from __future__ import annotations

import argparse

from lora_gym.cli.args import (
    add_backend_arguments,
    add_run_arguments,
    cluster_options,
    jobs_from_args,
)
from lora_gym.policies.recording import record


def main(argv: list[str] | None = None) -> None:
    """``lora-gym record``: record live episodes of policies into a store (resumable)."""
    parser = argparse.ArgumentParser(prog="lora-gym record", description=main.__doc__)
    parser.add_argument("--store", required=True, help="SQLite store to append to")
    add_run_arguments(parser)
    add_backend_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    config, jobs = jobs_from_args(args)
    options = cluster_options(args)
    if options is None:
        counts = record(config, jobs, args.store, progress=not args.quiet)
    else:
        from lora_gym.policies.distributed import record_ray

        counts = record_ray(config, jobs, args.store, options, progress=not args.quiet)
    print(" ".join(f"{k}={v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
