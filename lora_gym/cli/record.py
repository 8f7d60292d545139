r"""``lora-gym record``: record live episodes of policies into a store (resumable).

Rerunning the same command skips every episode already recorded::

    lora-gym record --config envs_configs/tiny.yaml --store runs/tiny.sqlite \\
        --policy random grid schedule --split all --seeds 10
"""

from __future__ import annotations

import argparse

from lora_gym.cli.args import add_run_arguments, jobs_from_args
from lora_gym.replay.recording import record


def main(argv: list[str] | None = None) -> None:
    """``lora-gym record``: record live episodes of policies into a store (resumable)."""
    parser = argparse.ArgumentParser(prog="lora-gym record", description=main.__doc__)
    parser.add_argument("--store", required=True, help="SQLite store to append to")
    add_run_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    config, jobs = jobs_from_args(args)
    counts = record(config, jobs, args.store, progress=not args.quiet)
    print(" ".join(f"{k}={v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
