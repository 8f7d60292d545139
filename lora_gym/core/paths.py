"""Where lora-gym keeps files it can rebuild: token caches and unpacked shipped tables."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "LORA_GYM_CACHE"
"""Environment variable naming the cache root (unset or empty: ``~/.cache/lora_gym``)."""


def cache_dir() -> Path:
    """The cache root: ``$LORA_GYM_CACHE`` if set and not empty, else ``~/.cache/lora_gym``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "lora_gym"


def configs_dir() -> Path:
    """The shipped YAML configs (the checkout's ``envs_configs/``).

    A wheel carries them as ``lora_gym/envs_configs/`` (``package-dir`` in ``pyproject.toml``);
    a checkout or an editable install reads the top-level folder itself.
    """
    here = Path(__file__).resolve().parent.parent
    packaged = here / "envs_configs"
    return packaged if packaged.is_dir() else here.parent / "envs_configs"


def shipped_config(name: str) -> Path:
    """The shipped config file called `name` (``tiny`` -> ``envs_configs/tiny.yaml``).

    Raises:
        ValueError: No shipped config has that name; the message lists the names.
    """
    names = sorted(p.stem for p in configs_dir().glob("*.yaml"))
    if name not in names:
        raise ValueError(f"no shipped config named {name!r}; shipped configs are {names} "
                         f"(or give the path of a YAML file)")
    return configs_dir() / f"{name}.yaml"
