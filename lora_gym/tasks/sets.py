"""Task sets: a named train/test split of tasks, declared in YAML (in the spirit of DACBench).

Shipped sets are ``default`` (`lora_gym/data/default_tasks.yaml`) and ``tiny``; any YAML path or
mapping with ``name``, ``train`` and ``test`` lists of task specs 
(`lora_gym.tasks.loading.TaskSpec`)
works too.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from lora_gym.core.config import load_yaml
from lora_gym.core.errors import ConfigError
from lora_gym.tasks.loading import TaskSpec

SPLITS: tuple[str, ...] = ("train", "test", "all")
"""Arguments accepted by :meth:`TaskSet.tasks`."""
BUILTIN_TASK_SETS: tuple[str, ...] = ("default", "tiny")
"""Task sets shipped as ``lora_gym/data/<name>_tasks.yaml``."""


@dataclass(frozen=True)
class TaskSet:
    """A named distribution of tasks with a train split (to learn on) and a test split.

    Raises:
        ConfigError: A split holds something other than TaskSpecs, ``train`` is empty, or a
            task name occurs twice (names are unique across both splits).

    """

    name: str
    """Name of the task set."""
    train: tuple[TaskSpec, ...]
    """Tasks to train the agent on."""
    test: tuple[TaskSpec, ...] = ()
    """Held-out tasks to evaluate the agent on."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"TaskSet `name` must be a non-empty string, got {self.name!r}")
        for split in ("train", "test"):
            specs = tuple(getattr(self, split))
            object.__setattr__(self, split, specs)
            bad = [s for s in specs if not isinstance(s, TaskSpec)]
            if bad:
                raise ConfigError(f"task set {self.name!r}: `{split}` holds non-TaskSpecs {bad!r}")
        if not self.train:
            raise ConfigError(f"task set {self.name!r}: `train` must hold at least one task")
        counts = Counter(s.name for s in self.train + self.test)
        dups = sorted(n for n, c in counts.items() if c > 1)
        if dups:
            raise ConfigError(
                f"task set {self.name!r}: task name(s) {dups} occur more than once; "
                "names must be unique across train and test"
            )

    def tasks(self, split: str = "all") -> tuple[TaskSpec, ...]:
        """Return the tasks of ``split``: ``"train"``, ``"test"`` or ``"all"`` (train, then test).

        Raises:
            ValueError: ``split`` is not one of :data:`SPLITS`.

        """
        if split not in SPLITS:
            raise ValueError(f"task set split must be one of {list(SPLITS)}, got {split!r}")
        return self.train + self.test if split == "all" else getattr(self, split)

    def get(self, name: str) -> TaskSpec:
        """Return the task called ``name``.

        Raises:
            ValueError: No task has that name; the message lists the available names.

        """
        for spec in self.train + self.test:
            if spec.name == name:
                return spec
        available = [s.name for s in self.train + self.test]
        raise ValueError(f"task {name!r} is not in task set {self.name!r}; available: "
                         f"{available}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskSet:
        """Build a task set from ``{name: ..., train: [task, ...], test: [task, ...]}``.

        Raises:
            ConfigError: Unknown or missing keys, or a bad task entry (named by split and index).

        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"a TaskSet must be a mapping, got {type(d).__name__}: {d!r}")
        valid = ["name", "train", "test"]
        unknown = sorted(str(k) for k in d if k not in valid)
        if unknown:
            raise ConfigError(f"TaskSet: unknown key(s) {unknown}; valid keys: {valid}")
        if "name" not in d or "train" not in d:
            raise ConfigError(f"TaskSet needs keys 'name' and 'train', got {sorted(map(str, d))}")
        splits: dict[str, list[TaskSpec]] = {}
        for split in ("train", "test"):
            entries = d.get(split) or []
            if not isinstance(entries, list | tuple):
                raise ConfigError(
                    f"TaskSet {d['name']!r}: `{split}` must be a list, got {entries!r}"
                )
            splits[split] = []
            for i, entry in enumerate(entries):
                try:
                    spec = entry if isinstance(entry, TaskSpec) else TaskSpec.from_dict(entry)
                except ConfigError as err:
                    raise ConfigError(f"task set {d['name']!r}, {split}[{i}]: {err}") from err
                splits[split].append(spec)
        return cls(name=d["name"], train=tuple(splits["train"]), test=tuple(splits["test"]))

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
            for split in ("train", "test"):
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
            "train": [s.to_dict() for s in self.train],
            "test": [s.to_dict() for s in self.test],
        }


def _resolve_path(entry: object, base: Path) -> object:
    """Make the relative `path` of a file/disk task entry relative to ``base``."""
    if (isinstance(entry, Mapping) and entry.get("source") in ("file", "disk")
            and isinstance(entry.get("path"), str) and not Path(entry["path"]).is_absolute()):
        return {**entry, "path": str(base / entry["path"])}
    return entry


def load_task_set(ref: str | os.PathLike[str] | Mapping[str, Any] | TaskSet) -> TaskSet:
    """Resolve a task set from a built-in name, a YAML path, a mapping, or a TaskSet.

    Args:
        ref: ``"default"`` or ``"tiny"`` (see :data:`BUILTIN_TASK_SETS`), a YAML file, a mapping
            for :meth:`TaskSet.from_dict`, or a TaskSet (returned as is).

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
