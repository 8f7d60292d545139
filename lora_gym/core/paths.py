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
