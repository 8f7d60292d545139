"""Command-line values shared by lora-gym's commands and the agents' tooling (``lora_gym_agents``).

argparse ``type``s that name their bound in the usage error, and the one ``key:value`` parser of
every ``--env-kwargs`` / ``-params`` option (rl-baselines3-zoo's syntax). Here in `core`, not in
`cli`, so that the tooling the `lora-gym` command loads never imports the command's package.
"""

from __future__ import annotations

import argparse
import ast
import math
from collections.abc import Callable
from typing import Any

import yaml


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number > 0, else a usage error naming it."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def int_at_least(low: int, special: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= `low` (or exactly `special`), else a usage error.

    The error (``argument --seeds: must be an integer >= 1, got '0'``) names the bound.
    """
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or (value < low and value != special):
            extra = "" if special is None else f" (or {special})"
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}{extra}, got {text!r}")
        return value

    parse.__name__ = f"int>={low}"
    return parse


def parse_value(text: str) -> Any:
    """One ``key:value`` value: a Python literal, else YAML (so bare strings need no quotes).

    rl-baselines3-zoo reads values as Python literals (``n_steps:64``, ``config:"'tiny.yaml'"``,
    ``ranks:[2,4]``); where that fails the text is read as YAML, which turns a bare string into
    itself (``config:envs_configs/tiny.yaml``, ``task:bbc-news``) and ``true``/``false``/``null``
    into a bool or None. Numbers are always Python's (``1e-3`` is a float, which YAML would read
    as a string). Nothing is executed.

    >>> [parse_value(v) for v in ("64", "1e-3", "'x'", "x/y.yaml", "[2, 4]", "true", "[a, b]")]
    [64, 0.001, 'x', 'x/y.yaml', [2, 4], True, ['a', 'b']]
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"value {text!r} is neither a Python literal nor YAML: quote strings, "
                         f"e.g. \"'{text}'\"") from err


def parse_env_kwargs(items: list[str]) -> dict[str, Any]:
    """``["episode_length:4", "config:tiny"]`` -> ``{"episode_length": 4, "config": "tiny"}``.

    The one parser of every command's ``key:value`` options (``--env-kwargs``, ``-params``);
    values as `parse_value` reads them.

    Raises:
        ValueError: an item is not ``key:value`` or its value cannot be read.
    """
    out = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise ValueError(f"expected key:value, got {item!r}")
        try:
            out[key] = parse_value(value)
        except ValueError as err:
            raise ValueError(f"{key}: {err}") from None
    return out


class StoreDict(argparse.Action):
    """argparse action turning ``key:value`` arguments into a dict (rl-baselines3-zoo's convention).

    Values are read by `parse_value`: Python literals, or bare strings.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        """Store the parsed dict on the namespace."""
        try:
            setattr(namespace, self.dest, parse_env_kwargs(list(values or [])))
        except ValueError as err:
            parser.error(f"{option_string}: {err}")
