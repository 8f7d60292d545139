"""The ``lora-gym`` command (also ``python -m lora_gym``): one entry point, one subcommand each.

Each subcommand is a module with a ``main(argv)`` function, imported only when it runs, so that
``lora-gym --help`` is instant::

    lora-gym record --store runs/mine.sqlite --policy random --seeds 2
    lora-gym compare --help
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("lora_gym.cli.demo", "the main job: PPO on the table, compared, checked live"),
    "train": ("lora_gym_agents.train", "train an SB3 agent (rl-baselines3-zoo's train.py flags)"),
    "improve": ("lora_gym_agents.improve", "train on replay, run live and record, refit, retrain"),
    "compare": ("lora_gym.cli.compare", "score baselines and trained agents on the test tasks"),
    "record": ("lora_gym.cli.record", "record live episodes of policies into a store"),
    "sim2real": ("lora_gym.cli.sim2real", "a policy's episodes on the replay vs the live env"),
    "pack": ("lora_gym.cli.pack", "pack a recorded store into a shipped table"),
    "recommend": ("lora_gym.cli.recommend", "tune a LoRA on your own labelled file"),
    "live-demo": ("lora_gym.cli.live_demo", "a few live episodes, every step printed"),
}
"""Subcommand name -> (module holding its ``main(argv)``, one-line help)."""


def usage() -> str:
    """The top-level help text."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return ("usage: lora-gym COMMAND [--help] ...\n\ncommands:\n" + "\n".join(lines)
            + "\n\n`lora-gym COMMAND --help` explains each.")


def main(argv: list[str] | None = None) -> int:
    """Run the subcommand named by ``argv[0]`` with the rest of the arguments."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"lora-gym: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    result = module.main(argv[1:])
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
