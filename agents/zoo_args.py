"""rl-baselines3-zoo style command-line helpers: ``key:value`` dictionaries."""

from __future__ import annotations

import argparse

from lora_gym.core.parsing import parse_env_kwargs


class StoreDict(argparse.Action):
    """argparse action turning ``key:value`` arguments into a dict (rl-zoo's convention).

    Values are read by `lora_gym.core.parsing.parse_value`: Python literals, or bare strings.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        """Store the parsed dict on the namespace."""
        try:
            setattr(namespace, self.dest, parse_env_kwargs(list(values or [])))
        except ValueError as err:
            parser.error(f"{option_string}: {err}")
