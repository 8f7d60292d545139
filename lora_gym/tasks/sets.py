"""Task sets: named train/val/test splits of tasks, declared in YAML (in the spirit of DACBench).

Shipped sets are ``default`` (`lora_gym/data/default_tasks.yaml`) and ``tiny``; any YAML path or
mapping works too::

    name: my-set
    corpora:                      # optional: source corpora that families draw rows from
      - {name: news, source: file, path: news.csv, max_train: 2000, max_val: 512}
    train:                        # the agent learns on these
      - {name: reviews, source: file, path: reviews.csv}   # a task spec (TaskSpec fields)
      - {corpus: news, classes: [2, 4], sizes: [64, 512], noise: [0.0, 0.2], seeds: [0, 1]}
    val:                          # optional: held out for model selection during training
      - {corpus: news, sizes: [128], seeds: [100]}
    test:                         # held out to evaluate the agent
      - {corpus: news}            # a family without axes: the corpus itself

An entry with ``corpus`` is a `lora_gym.tasks.variants.Family`, expanded in place to its variants
(named like ``news/k2-n64-s0``); an entry with ``type: causal_lm`` is a causal-LM task
(`lora_gym.tasks.instructions.LMTaskSpec`, for `LoRATuneLM-v0`); any other entry is a
`lora_gym.tasks.loading.TaskSpec` (``type: classification``, the default). A set holds tasks of one
type only; the shipped ``lm`` set (`lora_gym/data/lm_tasks.yaml`) is the causal-LM one.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from lora_gym.core.config import load_yaml
from lora_gym.core.errors import ConfigError
from lora_gym.tasks.instructions import LMTaskSpec
from lora_gym.tasks.loading import TaskSpec
from lora_gym.tasks.variants import Family

TASK_TYPES: tuple[str, ...] = ("classification", "causal_lm")
"""The task types (an entry's ``type``): sequence classification and causal language modelling."""
TASK_SPLITS: tuple[str, ...] = ("train", "val", "test")
"""The splits of a task set, in order."""
SPLITS: tuple[str, ...] = (*TASK_SPLITS, "all")
"""Arguments accepted by :meth:`TaskSet.tasks`."""
BUILTIN_TASK_SETS: tuple[str, ...] = ("default", "tiny", "legacy-v1", "lm")
"""Task sets shipped as ``lora_gym/data/<name>_tasks.yaml``."""


@dataclass(frozen=True)
class TaskSet:
    """A named distribution of tasks: train (to learn on), val (to select on), test (to report).

    Raises:
        ConfigError: A split holds something other than TaskSpecs, ``train`` is empty, or a
            task name occurs twice (names are unique across all splits).

    """

    name: str
    """Name of the task set."""
    train: tuple[TaskSpec, ...]
    """Tasks to train the agent on."""
    test: tuple[TaskSpec, ...] = ()
    """Held-out tasks to evaluate the agent on."""
    val: tuple[TaskSpec, ...] = ()
    """Held-out tasks to evaluate on during training (model selection); never the test tasks."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"TaskSet `name` must be a non-empty string, got {self.name!r}")
        for split in TASK_SPLITS:
            specs = tuple(getattr(self, split))
            object.__setattr__(self, split, specs)
            bad = [s for s in specs if not isinstance(s, TaskSpec | LMTaskSpec)]
            if bad:
                raise ConfigError(f"task set {self.name!r}: `{split}` holds non-TaskSpecs {bad!r}")
        if not self.train:
            raise ConfigError(f"task set {self.name!r}: `train` must hold at least one task")
        kinds = {_task_type(s) for s in self.tasks("all")}
        if len(kinds) > 1:
            raise ConfigError(f"task set {self.name!r} mixes task types {sorted(kinds)}; a set "
                              "holds one type (an env tunes one kind of model)")
        counts = Counter(s.name for s in self.tasks("all"))
        dups = sorted(n for n, c in counts.items() if c > 1)
        if dups:
            raise ConfigError(
                f"task set {self.name!r}: task name(s) {dups} occur more than once; "
                "names must be unique across train, val and test"
            )

    @property
    def task_type(self) -> str:
        """``"classification"`` or ``"causal_lm"`` (`TASK_TYPES`)."""
        return _task_type(self.train[0])

    def require(self, task_type: str, env_id: str) -> TaskSet:
        """This set if its tasks are of `task_type`, else a `ConfigError` naming the right env."""
        if self.task_type != task_type:
            other = "LoRATuneLM-v0" if self.task_type == "causal_lm" else "LoRATune-v0"
            raise ConfigError(f"task set {self.name!r} holds {self.task_type} tasks, which "
                              f"{env_id} cannot tune; use {other} (or a {task_type} task set)")
        return self

    def tasks(self, split: str = "all") -> tuple[TaskSpec, ...]:
        """Return the tasks of ``split``: one of :data:`SPLITS` (``"all"``: train, val, test).

        Raises:
            ValueError: ``split`` is not one of :data:`SPLITS`.

        """
        if split not in SPLITS:
            raise ValueError(f"task set split must be one of {list(SPLITS)}, got {split!r}")
        if split == "all":
            return self.train + self.val + self.test
        return getattr(self, split)

    def get(self, name: str) -> TaskSpec:
        """Return the task called ``name``.

        Raises:
            ValueError: No task has that name; the message lists the available names.

        """
        for spec in self.tasks("all"):
            if spec.name == name:
                return spec
        available = [s.name for s in self.tasks("all")]
        raise ValueError(f"task {name!r} is not in task set {self.name!r}; available: "
                         f"{available}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskSet:
        """Build a task set from ``{name, corpora?, train, val?, test?}`` (module docstring).

        Raises:
            ConfigError: Unknown or missing keys, or a bad entry (named by split and index).

        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"a TaskSet must be a mapping, got {type(d).__name__}: {d!r}")
        valid = ["name", "corpora", *TASK_SPLITS]
        unknown = sorted(str(k) for k in d if k not in valid)
        if unknown:
            raise ConfigError(f"TaskSet: unknown key(s) {unknown}; valid keys: {valid}")
        if "name" not in d or "train" not in d:
            raise ConfigError(f"TaskSet needs keys 'name' and 'train', got {sorted(map(str, d))}")
        corpora = {s.name: s for s in _specs(d, "corpora", {})}
        splits = {split: tuple(_specs(d, split, corpora)) for split in TASK_SPLITS}
        return cls(name=d["name"], **splits)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> TaskSet:
        """Read a task set from YAML; relative file/disk paths are taken from the YAML's folder.

        Raises:
            ConfigError: The file does not exist or its content is not a valid task set.

        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"task set file {str(path)!r} does not exist")
        data = load_yaml(path, "task set file")
        if isinstance(data, Mapping):
            data = {**data}
            for split in ("corpora", *TASK_SPLITS):
                if isinstance(data.get(split), list):
                    data[split] = [_resolve_path(e, path.parent) for e in data[split]]
        try:
            return cls.from_dict(data)
        except ConfigError as err:
            raise ConfigError(f"task set file {str(path)!r}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        """Return plain data that :meth:`from_dict` accepts."""
        return {
            "name": self.name,
            **{split: [s.to_dict() for s in getattr(self, split)] for split in TASK_SPLITS},
        }


def _specs(d: Mapping[str, Any], key: str, corpora: dict[str, TaskSpec]) -> list[TaskSpec]:
    """The task specs of list ``d[key]``, families expanded against ``corpora``."""
    entries = d.get(key) or []
    if not isinstance(entries, list | tuple):
        raise ConfigError(f"TaskSet {d['name']!r}: `{key}` must be a list, got {entries!r}")
    out: list[TaskSpec] = []
    for i, entry in enumerate(entries):
        try:
            if isinstance(entry, TaskSpec):
                out.append(entry)
            elif isinstance(entry, Mapping) and entry.get("type", TASK_TYPES[0]) not in TASK_TYPES:
                raise ConfigError(f"`type` must be one of {list(TASK_TYPES)}, got "
                                  f"{entry['type']!r}")
            elif isinstance(entry, Mapping) and entry.get("type") == "causal_lm":
                out.append(LMTaskSpec.from_dict(entry))
            elif isinstance(entry, Mapping) and "corpus" in entry and key != "corpora":
                out.extend(_expand(Family.from_dict(entry), corpora))
            else:
                if isinstance(entry, Mapping):
                    entry = {k: v for k, v in entry.items() if k != "type"}
                out.append(TaskSpec.from_dict(entry))
        except ConfigError as err:
            raise ConfigError(f"task set {d['name']!r}, {key}[{i}]: {err}") from err
    return out


def _expand(family: Family, corpora: dict[str, TaskSpec]) -> list[TaskSpec]:
    if family.corpus not in corpora:
        raise ConfigError(f"family `corpus` {family.corpus!r} is not in the task set's "
                          f"`corpora`: {sorted(corpora)}")
    base = corpora[family.corpus]
    return [dataclasses.replace(base, name=v.name, variant=v) for v in family.variants()]


def _task_type(spec: TaskSpec | LMTaskSpec) -> str:
    return "causal_lm" if isinstance(spec, LMTaskSpec) else "classification"


def _resolve_path(entry: object, base: Path) -> object:
    """Make the relative `path` of a file/disk/instruction task entry relative to ``base``."""
    if (isinstance(entry, Mapping)
            and entry.get("source") in ("file", "disk", "instructions", "conversations")
            and isinstance(entry.get("path"), str) and not Path(entry["path"]).is_absolute()):
        return {**entry, "path": str(base / entry["path"])}
    return entry


def load_task_set(ref: str | os.PathLike[str] | Mapping[str, Any] | TaskSet) -> TaskSet:
    """Resolve a task set from a built-in name, a YAML path, a mapping, or a TaskSet.

    Args:
        ref: a built-in name (:data:`BUILTIN_TASK_SETS`: ``"default"``, ``"tiny"``,
            ``"legacy-v1"``, ``"lm"``), a YAML file, a mapping for :meth:`TaskSet.from_dict`,
            or a TaskSet (returned as is).

    Returns:
        The task set.

    Raises:
        ConfigError: ``ref`` names neither a built-in set nor an existing file, or is invalid.
        TypeError: ``ref`` has another type.

    """
    if isinstance(ref, TaskSet):
        return ref
    if isinstance(ref, Mapping):
        return TaskSet.from_dict(ref)
    if isinstance(ref, str) and ref in BUILTIN_TASK_SETS:
        resource = resources.files("lora_gym").joinpath("data").joinpath(f"{ref}_tasks.yaml")
        with resources.as_file(resource) as path:
            return TaskSet.from_yaml(path)
    if isinstance(ref, str | os.PathLike):
        if Path(ref).is_file():
            return TaskSet.from_yaml(ref)
        raise ConfigError(
            f"task set {os.fspath(ref)!r} is neither a built-in name {list(BUILTIN_TASK_SETS)} "
            "nor an existing YAML file"
        )
    raise TypeError(
        f"load_task_set expects a name, YAML path, mapping or TaskSet, got {type(ref).__name__}"
    )
