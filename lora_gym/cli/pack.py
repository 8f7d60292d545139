r"""``lora-gym pack``: turn a recorded store into a shipped table (``.sqlite.xz`` + ``.meta.json``).

The meta file says what the table holds (config, rows, tasks, episode seeds per task), which
library versions recorded it, and the commands that regenerate it::

    lora-gym pack --store runs/default.sqlite --name default --config envs_configs/default.yaml \\
        --recorded-with "lora-gym record --policy random schedule --split all --seeds 3" ...

Several ``--store`` files (one per recording process or machine) are merged into one table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import lzma
import platform
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from lora_gym.core.config import resolve_config
from lora_gym.replay.store import Store, config_hash, library_versions, outcome_config
from lora_gym.replay.tables import TABLES_DIR


def git_commit() -> str:
    """The commit of this checkout, or ``unknown``."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def coverage(config, rows_per_task: dict[str, int]) -> dict[str, dict[str, int]]:
    """Per split of the config's task set: tasks recorded of all, and rows (steps and resets)."""
    from lora_gym.tasks.sets import load_task_set

    task_set = load_task_set(config.task_set)
    out = {}
    for split in ("train", "val", "test"):
        names = [t.name for t in task_set.tasks(split)]
        recorded = [n for n in names if n in rows_per_task]
        out[split] = {"tasks": len(names), "tasks_recorded": len(recorded),
                      "rows": sum(rows_per_task[n] for n in recorded)}
    return out


def pack(store: str | Path | Sequence[str | Path], name: str, config_ref: str | None,
         commands: list[str], description: str, tables_dir: Path = TABLES_DIR) -> dict:
    """Write ``<tables_dir>/<name>.sqlite.xz`` and ``<name>.meta.json``; returns the meta.

    `store` is one store, or several that are merged (`Store.merge`; none of them is changed).
    """
    if not isinstance(store, str | Path):
        stores = list(store)
        if len(stores) != 1:
            with tempfile.TemporaryDirectory() as tmp:
                merged = Path(tmp) / "merged.sqlite"
                with Store(merged) as db:
                    for path in stores:
                        db.merge(path)
                return pack(merged, name, config_ref, commands, description, tables_dir)
        store = stores[0]
    config = resolve_config(config_ref)
    chash = config_hash(config)
    target = tables_dir / f"{name}.sqlite.xz"
    with Store(store, readonly=True) as db:
        rows = db.conn.execute("SELECT COUNT(*), COUNT(DISTINCT task), "
                               "SUM(wall_time_s) FROM steps WHERE config_hash = ?",
                               (chash,)).fetchone()
        seeds = dict(db.conn.execute("SELECT task, COUNT(DISTINCT episode_seed) FROM steps "
                                     "WHERE config_hash = ? GROUP BY task", (chash,)))
        rows_per_task = dict(db.conn.execute("SELECT task, COUNT(*) FROM steps WHERE "
                                             "config_hash = ? GROUP BY task", (chash,)))
        others = db.conn.execute("SELECT COUNT(*) FROM steps WHERE config_hash != ?",
                                 (chash,)).fetchone()[0]
        if not rows[0]:
            raise LookupError(f"{store} has no rows of config {config_ref!r} (hash {chash})")
        if others:
            raise ValueError(f"{store} also holds {others} rows of other configs; a shipped "
                             "table holds one config")
        snapshot = target.with_suffix(".tmp")  # a consistent single-file copy (WAL folded in)
        with sqlite3.connect(snapshot) as dst:
            db.conn.backup(dst)
    with open(snapshot, "rb") as f, lzma.open(target, "wb", preset=9) as out:
        shutil.copyfileobj(f, out)
    snapshot.unlink()
    meta = {
        "table": name, "file": target.name, "description": description,
        "config": config_ref or "embedded default (envs_configs/default.yaml)",
        "model": config.model, "task_set": config.task_set, "config_hash": chash,
        "outcome_config": outcome_config(config), "rows": rows[0], "tasks": rows[1],
        "coverage": coverage(config, rows_per_task),
        "episode_seeds_per_task": seeds, "recording_wall_seconds": round(rows[2] or 0.0),
        "versions": {**library_versions(), "python": platform.python_version(),
                     "lora_gym_git_commit": git_commit()},
        "packed": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "regenerate": [*commands, f"lora-gym pack --store STORE --name {name} --config "
                       f"{config_ref or 'envs_configs/default.yaml'}"],
        "bytes": target.stat().st_size,
    }
    (tables_dir / f"{name}.meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: list[str] | None = None) -> None:
    """``lora-gym pack``: compress a store into a shipped table with its meta file."""
    parser = argparse.ArgumentParser(prog="lora-gym pack", description=main.__doc__)
    parser.add_argument("--store", required=True, nargs="+",
                        help="the recorded SQLite store(s); several are merged into one table")
    parser.add_argument("--name", required=True, help="table name (default, tiny, ...)")
    parser.add_argument("--config", default=None, help="env config YAML it was recorded with")
    parser.add_argument("--recorded-with", nargs="*", default=[], metavar="COMMAND",
                        help="the record commands, for the meta file's `regenerate`")
    parser.add_argument("--description", default="", help="one line on what the table is")
    parser.add_argument("--tables-dir", default=str(TABLES_DIR), help="where tables go")
    args = parser.parse_args(argv)
    meta = pack(args.store, args.name, args.config, args.recorded_with, args.description,
                Path(args.tables_dir))
    print(f"wrote {meta['file']}: {meta['rows']} rows, {meta['bytes'] / 1e6:.2f} MB; "
          f"coverage {meta['coverage']}")


if __name__ == "__main__":
    main()
