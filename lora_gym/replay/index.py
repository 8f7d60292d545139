"""In-memory index of a store's rows: a flat dict and a tree of actions per episode seed."""

from __future__ import annotations

import numpy as np

from lora_gym.core.config import EnvConfig
from lora_gym.core.lm_config import LMConfig
from lora_gym.core.metrics import LMMetrics, Metrics
from lora_gym.core.monitoring import with_monitor
from lora_gym.core.observation import LM_OBSERVATION_SPEC, finite_or_none, spec_names
from lora_gym.replay.store import METRIC_NAMES, StepRecord, Store, config_hash, outcome_config

RECORD_HINT = ("record one with `lora-gym record --config CONFIG --store PATH --policy random "
               "grid schedule --split all --seeds N` and pass store=PATH")

Key = tuple[str, int, tuple[int, ...]]
"""(task, episode_seed, action prefix); an index holds one (model, config hash)."""


class TableMiss(LookupError):
    """A replay env was asked for a (task, episode seed, action prefix) that no row holds."""


class Node:
    """One step's outcome: what the env shows after the actions of ``prefix``.

    ``uncertainty`` is 0 for recorded steps and the surrogate's uncertainty for predicted ones.
    """

    __slots__ = ("prefix", "obs", "metrics", "metrics_info", "rank", "lr", "cost",
                 "cost_so_far", "diverged", "children", "uncertainty")

    def __init__(self, prefix: tuple[int, ...], obs: np.ndarray, metrics: Metrics, rank: int,
                 lr: float | None, cost: float, cost_so_far: float, diverged: bool,
                 uncertainty: float = 0.0) -> None:
        self.prefix = prefix
        self.obs = obs
        self.metrics = metrics
        self.metrics_info = finite_or_none(metrics.to_dict())
        self.rank, self.lr, self.cost, self.cost_so_far = rank, lr, cost, cost_so_far
        self.diverged = diverged
        self.children: dict[int, Node] = {}
        self.uncertainty = uncertainty

    @classmethod
    def from_record(cls, rec: StepRecord, metrics_type: type[Metrics] = Metrics) -> Node:
        """A node of a `StepRecord` (its obs made read-only; metrics of `metrics_type`)."""
        obs = np.array(rec.obs, dtype=np.float32)
        obs.setflags(write=False)
        metrics = metrics_type.of(*(float(getattr(rec, name)) for name in METRIC_NAMES))
        diverged = rec.diverged or (bool(rec.prefix) and not metrics.finite)  # non-finite: diverged
        return cls(rec.prefix, obs, metrics, rec.rank, rec.lr, rec.cost, rec.cost_so_far,
                   diverged)


class TableIndex:
    """All rows of one (model, config hash): a flat dict and, per episode, a tree of actions."""

    def __init__(self, model: str, chash: str, metrics_type: type[Metrics] = Metrics) -> None:
        self.model, self.config_hash = model, chash
        self.metrics_type = metrics_type
        """What a row's metrics are (`LMMetrics` for a causal-LM config's rows)."""
        self.records: dict[Key, Node] = {}
        self.roots: dict[str, dict[int, Node]] = {}
        self._seed_lists: dict[str, tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self.records)

    def get(self, task: str, seed: int, prefix: tuple[int, ...]) -> Node | None:
        """The node of a key, or None."""
        return self.records.get((task, seed, prefix))

    def add(self, task: str, seed: int, node: Node) -> Node:
        """Insert a node (the existing one wins on a repeated key) and link it to its parent."""
        key = (task, seed, node.prefix)
        if key in self.records:
            return self.records[key]
        self.records[key] = node
        if not node.prefix:
            self.roots.setdefault(task, {})[seed] = node
            self._seed_lists.pop(task, None)
        else:
            parent = self.records.get((task, seed, node.prefix[:-1]))
            if parent is not None:
                parent.children[node.prefix[-1]] = node
        return node

    def tasks(self) -> tuple[str, ...]:
        """Tasks with at least one recorded reset, sorted."""
        return tuple(sorted(self.roots))

    def seeds(self, task: str) -> tuple[int, ...]:
        """Recorded episode seeds of a task, sorted."""
        if task not in self._seed_lists:
            self._seed_lists[task] = tuple(sorted(self.roots.get(task, {})))
        return self._seed_lists[task]

    def nodes(self) -> list[tuple[str, int, Node]]:
        """Every (task, episode_seed, node)."""
        return [(task, seed, node) for (task, seed, _), node in self.records.items()]

    def node(self, rec: StepRecord) -> Node:
        """The node of a record of this index's config."""
        return Node.from_record(rec, self.metrics_type)

    @classmethod
    def load(cls, store: Store, config: EnvConfig | LMConfig) -> TableIndex:
        """Read every row of `config` (its model and hash) from `store`; raises if there is none.

        Raises:
            LookupError: The store has no row for this config; the message lists the configs it
                has and the fields in which they differ from this one.
            ValueError: The rows hold observations of another layout (an older version).
        """
        lm = isinstance(config, LMConfig)
        index = cls(config.model, config_hash(config), LMMetrics if lm else Metrics)
        for row in store.rows(index.model, index.config_hash):
            rec = StepRecord.from_row(row)
            index.add(rec.task, rec.episode_seed, index.node(rec))
        if not index.records:
            raise LookupError(_no_rows_message(store, config, index.config_hash))
        size = len(next(iter(index.records.values())).obs)
        names = spec_names(LM_OBSERVATION_SPEC if lm else with_monitor(config.extra_observations))
        if size != len(names):
            raise ValueError(
                f"store {str(store.path)!r} was recorded with {size}-entry observations; this "
                f"version's have {len(names)} ({', '.join(names)}): "
                f"re-record it ({RECORD_HINT})")
        return index


def _no_rows_message(store: Store, config: EnvConfig | LMConfig, chash: str) -> str:
    mine = outcome_config(config)
    lines = [f"store {str(store.path)!r} has no rows for model {config.model!r} and config hash "
             f"{chash!r}."]
    for other in store.configs():
        theirs = other["config"]
        diff = {k: (theirs.get(k), mine.get(k)) for k in sorted(set(theirs) | set(mine))
                if theirs.get(k) != mine.get(k)}
        lines.append(f"  it has {other['rows']} rows of config {other['config_hash']} "
                     f"(model {other['model']!r}), differing in (stored, yours): {diff}")
    if len(lines) == 1:
        lines.append("  it holds no rows at all.")
    lines.append(f"Use the stored config's values, or {RECORD_HINT}.")
    return "\n".join(lines)
