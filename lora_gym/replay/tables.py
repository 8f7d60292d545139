"""The replay tables shipped with the package, and which store a replay env serves."""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
from pathlib import Path

from lora_gym.core.config import EnvConfig
from lora_gym.core.paths import cache_dir
from lora_gym.replay.index import RECORD_HINT

TABLES_DIR = Path(__file__).parents[1] / "tables"
"""Where shipped tables live: ``<name>.sqlite`` or a compressed ``<name>.sqlite.xz``."""
SHIPPED_TABLES: dict[tuple[str, str], str] = {("minilm", "default"): "default",
                                              ("tiny-bert", "tiny"): "tiny"}
"""(model, task_set) of a config -> the name of the table shipped for it."""


def shipped_table_name(config: EnvConfig) -> str:
    """The name of the table shipped for a config's (model, task_set).

    Raises:
        LookupError: No table is shipped for that pair.
    """
    pair = (config.model, config.task_set)
    if pair not in SHIPPED_TABLES:
        raise LookupError(f"no table is shipped for model {config.model!r} and task_set "
                          f"{config.task_set!r} (shipped: {sorted(SHIPPED_TABLES)}); "
                          f"{RECORD_HINT}")
    return SHIPPED_TABLES[pair]


def resolve_store(store: str | os.PathLike | None, config: EnvConfig,
                  tables_dir: Path = TABLES_DIR) -> tuple[Path, bool]:
    """The SQLite file to serve and whether it is a shipped (read-only) table.

    Args:
        store: ``None`` (the table shipped for the config), a shipped table's name
            (``"default"``, ``"tiny"``), or the path of a store.
        config: The env's config.
        tables_dir: Folder of the shipped tables.

    Raises:
        FileNotFoundError: The store path or the shipped table is absent.
    """
    if store is None:
        store = shipped_table_name(config)
    if isinstance(store, str) and store in SHIPPED_TABLES.values():
        return _shipped_path(store, tables_dir), True
    path = Path(store)
    if not path.is_file():
        raise FileNotFoundError(f"`store` {os.fspath(store)!r} is not a file; give a store path "
                                f"or a shipped table name {sorted(SHIPPED_TABLES.values())}")
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
