"""rl-baselines3-zoo style command-line helpers: ``key:value`` dictionaries."""

from __future__ import annotations

import argparse
import ast


def parse_kv(items: list[str]) -> dict:
    """Parse ``["key:value", ...]``; values are Python literals (``n_steps:64``, ``x:"'text'"``).

    Like rl-zoo's ``StoreDict``, but values are read with `ast.literal_eval` (no code execution).
    """
    out = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected key:value, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError) as err:
            raise argparse.ArgumentTypeError(
                f"{key}: value {value!r} is not a Python literal; quote strings, e.g. "
                f"{key}:\"'{value}'\"") from err
    return out


class StoreDict(argparse.Action):
    """argparse action turning ``key:value`` arguments into a dict (rl-zoo's convention)."""

    def __call__(self, parser, namespace, values, option_string=None):
        """Store the parsed dict on the namespace."""
        try:
            setattr(namespace, self.dest, parse_kv(list(values or [])))
        except argparse.ArgumentTypeError as err:
            parser.error(f"{option_string}: {err}")
