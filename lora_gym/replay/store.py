"""Durable SQLite store of live env steps (one row per step), keyed by what fixes its outcome.

A row's key is ``(task, model, config_hash, episode_seed, prefix)``: the task, the base model, the
hash of the config fields that change outcomes (`config_hash`), the episode seed the live env drew
at reset, and the tuple of actions taken so far in the episode (``()`` for the reset row). The live
env is deterministic given that key, so a row is a reusable fact. Rows hold observations, metrics
and the deterministic cost -- never the reward, which a replay recomputes with any reward function.

The file is in WAL mode and every `Store.add` commits (``synchronous=FULL``), so a killed run loses
no completed step; inserts are ``INSERT OR IGNORE``, so a rerun appends without duplicates.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import sqlite3
import time
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lora_gym.core.config import VARIANT_CONFIGS, EnvConfig
from lora_gym.core.errors import StoreError
from lora_gym.core.lm_config import LMConfig

SCHEMA_VERSION = 1
OUTCOME_ENV_ID = "LoRATune-v0"
"""The live env whose outcomes rows of an `EnvConfig` hold; part of the hash, so a v1 env gets
new keys."""
LM_OUTCOME_ENV_ID = "LoRATuneLM-v0"
"""The live env whose outcomes rows of an `LMConfig` hold (their own keys: another hash)."""
EXCLUDED_FIELDS: tuple[str, ...] = (
    "reward_fn", "cost_weight", "divergence_penalty", "report_wall_time", "torch_threads", "extra",
    "task_split", "stop_action",
)
"""Config fields left out of `config_hash`: they change rewards, logging or threads, or (for
``task_split``) only which task a reset samples, never the outcome of a given task and seed."""
VERSIONED_PACKAGES: tuple[str, ...] = ("torch", "transformers", "peft")
METRIC_NAMES: tuple[str, ...] = ("accuracy", "f1", "val_loss", "train_loss")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS configs (
    config_hash TEXT PRIMARY KEY, model TEXT NOT NULL, task_set TEXT NOT NULL,
    config TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS steps (
    task TEXT NOT NULL, model TEXT NOT NULL, config_hash TEXT NOT NULL,
    episode_seed INTEGER NOT NULL, prefix TEXT NOT NULL, step INTEGER NOT NULL,
    obs BLOB NOT NULL, accuracy REAL, f1 REAL, val_loss REAL, train_loss REAL,
    rank INTEGER NOT NULL, lr REAL, cost REAL NOT NULL, cost_so_far REAL NOT NULL,
    diverged INTEGER NOT NULL, wall_time_s REAL NOT NULL,
    torch_version TEXT NOT NULL, transformers_version TEXT NOT NULL, peft_version TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (task, model, config_hash, episode_seed, prefix)) WITHOUT ROWID;
"""
_STEP_COLUMNS = ("task", "model", "config_hash", "episode_seed", "prefix", "step", "obs",
                 *METRIC_NAMES, "rank", "lr", "cost", "cost_so_far", "diverged", "wall_time_s")


LEGACY_DEFAULTS: dict[str, Any] = {
    "alpha_policy": "fixed", "init": "kaiming", "layer_groups": 2,
    "scopes": ["top-1", "top-2", "all"], "lr_schedule": "constant", "lr_warmup": 0.1,
    "extra_observations": [], "base_dtype": "float32", "steps_choices": [],
    "augmentation": "none", "augmentation_strength": 0.2, "augmentation_choices": [],
    "device": "cpu", "dtype": "float32", "lora_dtype": "float32",
    "multi_task_k": 3, "shared_adapter": False, "shared_rank": 4, "grad_projection": "none",
    "projection_dim": 4,
}
"""Fields added after tables were recorded, with the value every older row was computed with:
left out of `config_hash` while they equal it, so existing tables keep their hashes (frozen
here: a later change of `EnvConfig`'s defaults must not change the key of an older table)."""
NEW_FIELD_DEFAULTS: tuple[str, ...] = tuple(LEGACY_DEFAULTS)
TASK_SET_HASH_NAMES: dict[str, str] = {"legacy-v1": "default"}
"""Built-in task sets renamed after tables were recorded on them, with the name their rows were
keyed under: ``legacy-v1`` is the default task set until 2026-12-04, verbatim. (Today's default
set shares only the tweet-sentiment variants with it, with the same names and rows, and has no
other task of the same name, so no row can be served to a task it was not recorded on.)"""


def live_env_id(config: EnvConfig | LMConfig) -> str:
    """The live env a config's rows are outcomes of: ``LoRATune-v0`` or ``LoRATuneLM-v0``."""
    return LM_OUTCOME_ENV_ID if isinstance(config, LMConfig) else OUTCOME_ENV_ID


def outcome_config(config: EnvConfig | LMConfig) -> dict[str, Any]:
    """The config fields that change a step's outcome, with numbers normalised (2 -> 2.0).

    An `LMConfig`'s start with ``env_id: LoRATuneLM-v0``, so its rows never share a key with a
    classification config's.
    """
    hints = typing.get_type_hints(type(config))
    items = config.to_dict()
    legacy = LEGACY_DEFAULTS if isinstance(config, EnvConfig) else {}
    if isinstance(config, EnvConfig):
        for name, kind in VARIANT_CONFIGS.items():  # keyed flat, as before they were composed
            hints.update(typing.get_type_hints(kind))
            items.update(items.pop(name))
    out: dict[str, Any] = {"env_id": live_env_id(config)}
    for name, value in items.items():
        if name == "device":  # the device type keys a table (cuda:0 and cuda:1 compute alike)
            if value == "auto":
                import torch

                value = config.device_name(torch.cuda.is_available())
            value = value.partition(":")[0]
        if name in EXCLUDED_FIELDS or (name in legacy and value == legacy[name]):
            continue
        if name == "task_set" and isinstance(value, str):
            value = TASK_SET_HASH_NAMES.get(value, value)
        if hints[name] is float:
            value = float(value)
        elif typing.get_args(hints[name])[:1] == (float,):
            value = [float(v) for v in value]
        out[name] = value
    return out


def config_hash(config: EnvConfig | LMConfig) -> str:
    """16 hex digits of SHA-256 over the sorted JSON of `outcome_config`."""
    text = json.dumps(outcome_config(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that compute outcomes (read without importing them)."""
    out = {}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def encode_prefix(prefix: tuple[int, ...]) -> str:
    """``(3, 0, 5)`` -> ``"3,0,5"``; ``()`` -> ``""``."""
    return ",".join(str(int(a)) for a in prefix)


def decode_prefix(text: str) -> tuple[int, ...]:
    """Inverse of `encode_prefix`."""
    return tuple(int(a) for a in text.split(",")) if text else ()


@dataclass(frozen=True)
class StepRecord:
    """One recorded live step (or reset, with ``prefix == ()``); NaN metrics are stored as NULL."""

    task: str
    model: str
    config_hash: str
    episode_seed: int
    prefix: tuple[int, ...]
    obs: np.ndarray
    accuracy: float
    f1: float
    val_loss: float
    train_loss: float
    rank: int
    lr: float | None
    """``None`` at reset (no action taken yet)."""
    cost: float
    cost_so_far: float
    diverged: bool
    wall_time_s: float = 0.0

    @property
    def step(self) -> int:
        """Number of actions taken (0 for the reset row)."""
        return len(self.prefix)

    @classmethod
    def from_row(cls, row: tuple) -> StepRecord:
        """Build a record from a row selected with `Store.ROW_SELECT` (NULL metrics -> NaN)."""
        (task, model, chash, seed, prefix, _step, obs, acc, f1, vl, tl, rank, lr, cost, csf,
         diverged, wall) = row
        nan = math.nan
        return cls(task, model, chash, int(seed), decode_prefix(prefix),
                   np.frombuffer(obs, dtype=np.float32),
                   nan if acc is None else acc, nan if f1 is None else f1,
                   nan if vl is None else vl, nan if tl is None else tl,
                   int(rank), lr, cost, csf, bool(diverged), wall)


class Store:
    """A SQLite file of `StepRecord` rows (created on first write).

    Args:
        path: The SQLite file.
        readonly: Open an existing file without writing (an immutable shipped table included).

    Raises:
        FileNotFoundError: `readonly` and the file does not exist.
        StoreError: The file is not a SQLite database (corrupt, or another kind of file), is a
            SQLite database of something else, or has another schema version; the message names
            the path and the cause. A foreign file is never written to.
    """

    ROW_SELECT = f"SELECT {', '.join(_STEP_COLUMNS)} FROM steps"

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(f"store {str(self.path)!r} does not exist")
            self.conn = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True)
            self._check_schema(must_exist=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=60.0)
        self._check_schema(must_exist=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        with self.conn:
            self.conn.executescript(_SCHEMA)
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                              (str(SCHEMA_VERSION),))
        self._versions = tuple(library_versions()[name] for name in VERSIONED_PACKAGES)
        self._known_configs: set[str] = set()

    def _check_schema(self, must_exist: bool) -> None:
        """Raise `StoreError` unless the file is a store of this schema (or, to write, empty)."""
        where = f"store {str(self.path)!r}"
        try:
            tables = {name for (name,) in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = None
            if "meta" in tables:
                row = self.conn.execute(
                    "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                version = row[0] if row else None
        except sqlite3.DatabaseError as err:
            self.conn.close()
            raise StoreError(f"{where} is not a SQLite database or is corrupt ({err}); give "
                             "the path of a store written by `lora-gym record`, or a new "
                             "path") from None
        if not tables and not must_exist:
            return  # a new (or empty) file: the schema is created next
        if not {"meta", "steps", "configs"} <= tables:
            self.conn.close()
            raise StoreError(f"{where} is a SQLite database but not a lora-gym store (tables "
                             f"{sorted(tables)}; a store has meta, configs and steps); give "
                             "another path, this file is left untouched")
        if version != str(SCHEMA_VERSION):
            self.conn.close()
            raise StoreError(f"{where} has schema version {version!r}, this lora-gym reads "
                             f"version {SCHEMA_VERSION}: re-record it, or use the lora-gym "
                             "version that wrote it")

    def register_config(self, config: EnvConfig | LMConfig) -> str:
        """Store the outcome fields of `config` under its hash (once); returns the hash."""
        chash = config_hash(config)
        if chash not in self._known_configs:
            text = json.dumps(outcome_config(config), sort_keys=True)
            with self.conn:
                self.conn.execute("INSERT OR IGNORE INTO configs VALUES (?, ?, ?, ?, ?)",
                                  (chash, config.model, config.task_set, text, time.time()))
            self._known_configs.add(chash)
        return chash

    def add(self, record: StepRecord) -> bool:
        """Insert one row and commit; returns False when its key was already present."""
        if self.readonly:
            raise PermissionError(f"store {str(self.path)!r} was opened read-only")
        obs = np.ascontiguousarray(record.obs, dtype=np.float32).tobytes()
        values = (record.task, record.model, record.config_hash, int(record.episode_seed),
                  encode_prefix(record.prefix), record.step, obs, record.accuracy, record.f1,
                  record.val_loss, record.train_loss, int(record.rank), record.lr,
                  float(record.cost), float(record.cost_so_far), int(record.diverged),
                  float(record.wall_time_s), *self._versions, time.time())
        marks = ", ".join("?" * len(values))
        with self.conn:
            cursor = self.conn.execute(f"INSERT OR IGNORE INTO steps VALUES ({marks})", values)
        return cursor.rowcount == 1

    def merge(self, other: str | Path) -> int:
        """Copy every row of the store `other` that this one lacks (its configs too).

        Returns the number of step rows added; rows are keyed, so merging twice adds nothing.

        Raises:
            StoreError: `other` is not a store of this schema version.

        """
        if self.readonly:
            raise PermissionError(f"store {str(self.path)!r} was opened read-only")
        with Store(other, readonly=True):  # checks that it is a store of this schema
            pass
        before = self.count()
        self.conn.execute("ATTACH DATABASE ? AS other", (str(Path(other).resolve()),))
        try:
            with self.conn:
                self.conn.execute("INSERT OR IGNORE INTO configs SELECT * FROM other.configs")
                self.conn.execute("INSERT OR IGNORE INTO steps SELECT * FROM other.steps")
        finally:
            self.conn.execute("DETACH DATABASE other")
        return self.count() - before

    def rows(self, model: str, chash: str) -> Iterator[tuple]:
        """Raw rows (`ROW_SELECT` columns) of one (model, config hash), shortest prefix first."""
        sql = f"{self.ROW_SELECT} WHERE model = ? AND config_hash = ? ORDER BY step"
        return self.conn.execute(sql, (model, chash))

    def configs(self) -> list[dict[str, Any]]:
        """The stored configs with their row counts (to explain a config that has no rows)."""
        sql = ("SELECT c.config_hash, c.model, c.task_set, c.config, COUNT(s.task) FROM configs c "
               "LEFT JOIN steps s ON s.config_hash = c.config_hash GROUP BY c.config_hash")
        return [{"config_hash": h, "model": m, "task_set": t, "config": json.loads(c), "rows": n}
                for h, m, t, c, n in self.conn.execute(sql)]

    def count(self) -> int:
        """Number of step rows."""
        return int(self.conn.execute("SELECT COUNT(*) FROM steps").fetchone()[0])

    def close(self) -> None:
        """Close; a writer leaves one self-contained file (WAL folded in, rollback journal mode).

        While another connection has the file open it stays in WAL mode, which is also fine.
        """
        if not self.readonly:
            try:
                self.conn.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.OperationalError:
                pass  # another connection is open: the WAL stays, the next writer reuses it
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
