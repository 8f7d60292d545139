r"""``lora-gym sim2real``: does a policy fare on the replay env as it fares on the live env?

Runs each (policy, task, reset seed) episode twice -- on `LoRATuneReplay-v0` (``miss=surrogate``)
and on the live `LoRATune-v0`, with the same episode seed -- and reports the Spearman correlation
of per-episode returns and the mean absolute error of the final accuracy::

    lora-gym sim2real --config envs_configs/tiny.yaml --policy random schedule --split all \\
        --seeds 3

With ``--backend ray`` the live episodes run on Ray workers (`lora_gym.policies.distributed`).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from lora_gym.cli.args import (
    add_backend_arguments,
    add_run_arguments,
    cluster_options,
    jobs_from_args,
)
from lora_gym.policies.sim2real import compare, format_summary, print_pairs, summarise
from lora_gym.replay.surrogate import SURROGATE_KINDS


def main(argv: list[str] | None = None) -> None:
    """``lora-gym sim2real``: compare a policy's episodes on the replay and the live env."""
    parser = argparse.ArgumentParser(prog="lora-gym sim2real", description=main.__doc__)
    parser.add_argument("--store", default=None,
                        help="store to replay (default: the table shipped for the config)")
    parser.add_argument("--surrogate", default="ensemble", choices=SURROGATE_KINDS,
                        help="surrogate for steps off the table")
    parser.add_argument("--record-live", default=None, metavar="STORE",
                        help="also record the live episodes into this store")
    parser.add_argument("--json", default=None, help="write the episodes and summary here")
    add_run_arguments(parser)
    add_backend_arguments(parser)
    args = parser.parse_args(argv)
    if args.env != "LoRATune-v0":
        parser.error(f"--env {args.env}: sim2real compares LoRATune-v0 with its surrogate-backed "
                     "replay; a causal-LM table has no surrogate (its replay serves misses live)")
    config, jobs = jobs_from_args(args)
    pairs = compare(config, jobs, args.store, args.surrogate, args.record_live,
                    cluster_options(args))
    print_pairs(pairs)
    summary = summarise(pairs)
    print(format_summary(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "episodes": [asdict(p) for p in pairs]}, f, indent=1)


if __name__ == "__main__":
    main()
