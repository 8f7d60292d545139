"""The replay tables shipped with the package, and which store a replay env serves."""

from __future__ import annotations

import functools
import hashlib
import json
import lzma
import os
import shutil
from pathlib import Path
from typing import Any

from lora_gym.core.config import EnvConfig
from lora_gym.core.paths import cache_dir
from lora_gym.replay.index import RECORD_HINT
from lora_gym.replay.store import config_hash

TABLES_DIR = Path(__file__).parents[1] / "tables"
"""Where shipped tables live: ``<name>.sqlite`` or a compressed ``<name>.sqlite.xz``, each with
its ``<name>.meta.json`` (the config it was recorded under, its hash, its coverage)."""
SHIPPED_TABLES: tuple[str, ...] = ("default", "legacy-v1", "tiny")
"""The names of the tables shipped in the package."""


@functools.cache
def table_meta(name: str, tables_dir: Path = TABLES_DIR) -> dict[str, Any]:
    """The ``meta.json`` of a shipped table."""
    return json.loads((tables_dir / f"{name}.meta.json").read_text(encoding="utf-8"))


def shipped_table_name(config: EnvConfig) -> str:
    """The name of the shipped table recorded under `config` (same `config_hash`).

    Raises:
        LookupError: No shipped table was recorded under that config; the message lists the
            shipped tables and the config each replays.
    """
    key = config_hash(config)
    for name in SHIPPED_TABLES:
        if table_meta(name)["config_hash"] == key:
            return name
    shipped = ", ".join(f"{name!r} (config: {Path(table_meta(name)['config']).stem})"
                        for name in SHIPPED_TABLES)
    raise LookupError(f"no table is shipped for this config (model {config.model!r}, task_set "
                      f"{config.task_set!r}, config hash {key}); shipped tables: {shipped}: "
                      f"give that config (e.g. config: legacy-v1), or {RECORD_HINT}")


def resolve_store(store: str | os.PathLike | None, config: EnvConfig,
                  tables_dir: Path = TABLES_DIR) -> tuple[Path, bool]:
    """The SQLite file to serve and whether it is a shipped (read-only) table.

    Args:
        store: ``None`` (the table shipped for the config), a shipped table's name
            (``"default"``, ``"legacy-v1"``, ``"tiny"``), or the path of a store.
        config: The env's config.
        tables_dir: Folder of the shipped tables.

    Raises:
        FileNotFoundError: The store path or the shipped table is absent.
    """
    if store is None:
        store = shipped_table_name(config)
    if isinstance(store, str) and store in SHIPPED_TABLES:
        return _shipped_path(store, tables_dir), True
    path = Path(store)
    if not path.is_file():
        raise FileNotFoundError(f"`store` {os.fspath(store)!r} is not a file; give a store path "
                                f"or a shipped table name {list(SHIPPED_TABLES)}")
    return path, False


def _shipped_path(name: str, tables_dir: Path) -> Path:
    plain, packed = tables_dir / f"{name}.sqlite", tables_dir / f"{name}.sqlite.xz"
    if plain.is_file():
        return plain
    if not packed.is_file():
        raise FileNotFoundError(f"the shipped table {name!r} is not in this installation "
                                f"(looked for {str(plain)!r} and {str(packed)!r}); {RECORD_HINT}")
    digest = hashlib.sha256(packed.read_bytes()).hexdigest()[:16]
    target = cache_dir() / "tables" / f"{name}-{digest}.sqlite"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".partial-{os.getpid()}")
        with lzma.open(packed) as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst)
        partial.replace(target)  # atomic: a reader never sees half a file
    return target
