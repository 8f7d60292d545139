"""Text-classification tasks: a task spec (`TaskSpec`) and loading it into arrays (`TaskData`).

A spec with a `variant` (`lora_gym.tasks.variants`) is a row selection of its corpus: the corpus
is loaded once (its *pool*) and the variant's `TaskData` keeps a reference to it with the row
indices. Task sets (train/val/test splits of tasks, from YAML) are in `lora_gym.tasks.sets`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lora_gym.core.errors import ConfigError, TaskError
from lora_gym.tasks.features import knn_label_agreement
from lora_gym.tasks.sources import READERS, SYNTHETIC_TOPICS, read_source, stable_hash
from lora_gym.tasks.variants import Variant, select_rows

MIN_VAL_ROWS = 16
"""Fewest validation rows a task may have (an accuracy over fewer is too coarse to tune on)."""
MIN_TRAIN_PER_CLASS = 4
"""Fewest training rows each class of a task must have (before the ``max_train`` cap)."""
SOURCES: tuple[str, ...] = (*READERS, "synthetic")
"""Every known task source: those of `lora_gym.tasks.sources.READERS`, and ``synthetic``."""
COLUMN_SOURCES: tuple[str, ...] = ("orange", "file", "disk")
"""Sources whose column names the spec chooses; the others always yield `text` and `label`."""
PATH_SOURCES: tuple[str, ...] = (*COLUMN_SOURCES, "bundled")
"""Sources that need `path`; the others must leave it unset."""

_Rows = tuple[list[str], list[str]]


@dataclass(frozen=True)
class TaskSpec:
    """Where a text-classification task's data come from and how much of it to use.

    Limits, checked when the task loads (`load_task` raises `TaskError` below them): at least
    `MIN_VAL_ROWS` (16) validation rows and at least `MIN_TRAIN_PER_CLASS` (4) training rows of
    every class (before the ``max_train`` cap). Without a test file ``min(max_val, rows // 2)``
    rows go to validation, so a file needs at least 32 usable rows.

    Raises:
        ConfigError: A field has a bad type or value, or is set for a source that ignores it.

    """

    name: str
    """Unique task name."""
    source: str
    """One of :data:`SOURCES`."""
    path: str | None = None
    """orange/bundled: data set stem (``"reuters-r8"``); file: csv/tsv/json/jsonl/parquet;
    disk: folder."""
    text_column: str = "text"
    """Column holding the text (orange, file and disk only)."""
    label_column: str = "label"
    """Column holding the label (orange, file and disk only)."""
    labels: tuple[str, ...] | None = None
    """Keep only rows with these labels (chatterbot: the topics to read); None keeps all."""
    max_train: int = 2000
    """Cap on training rows, a seeded random subset."""
    max_val: int = 256
    """Size of the fixed validation subset (at most half the rows when split from training)."""
    num_classes: int = 4
    """Number of classes (synthetic only)."""
    num_examples: int = 400
    """Number of generated rows (synthetic only)."""
    variant: Variant | None = None
    """A row selection of the corpus the other fields describe (None: the whole corpus)."""

    def __post_init__(self) -> None:
        if isinstance(self.variant, Mapping):
            object.__setattr__(self, "variant", Variant.from_dict(self.variant))
        if isinstance(self.labels, list):
            object.__setattr__(self, "labels", tuple(self.labels))
        if isinstance(self.path, os.PathLike):
            object.__setattr__(self, "path", os.fspath(self.path))
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"TaskSpec `name` must be a non-empty string, got {self.name!r}")
        self._check(self.source in SOURCES, "source", f"must be one of {list(SOURCES)}")
        if self.source in PATH_SOURCES:
            ok = isinstance(self.path, str) and bool(self.path.strip())
            self._check(ok, "path", f"must be a non-empty string for source {self.source!r}")
        else:
            self._check(self.path is None, "path", f"must be unset for source {self.source!r}")
        for key, default in (("text_column", "text"), ("label_column", "label")):
            value = getattr(self, key)
            self._check(isinstance(value, str) and bool(value), key, "must be a non-empty string")
            fixed = self.source not in COLUMN_SOURCES and value != default
            self._check(not fixed, key, f"is fixed to {default!r} for source {self.source!r}")
        self._check(self.text_column != self.label_column, "label_column", "must differ from text")
        if self.labels is not None:
            ok = (isinstance(self.labels, tuple) and len(self.labels) >= 2
                  and all(isinstance(x, str) and x for x in self.labels)
                  and len(set(self.labels)) == len(self.labels))
            self._check(ok, "labels", "must be None or 2+ distinct strings (quote numbers)")
            self._check(self.source != "synthetic", "labels", "is not supported by 'synthetic'")
        for key in ("max_train", "max_val", "num_classes", "num_examples"):
            value = getattr(self, key)
            ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
            self._check(ok, key, "must be a positive integer")
        if self.source == "synthetic":
            top = len(SYNTHETIC_TOPICS)
            self._check(2 <= self.num_classes <= top, "num_classes", f"must be in [2, {top}]")
            ok = self.num_examples >= 2 * self.num_classes
            self._check(ok, "num_examples", "must be at least 2 * num_classes")
        else:
            for key in ("num_classes", "num_examples"):
                ok = getattr(self, key) == _DEFAULTS[key]
                self._check(ok, key, "is only used by source 'synthetic'")
        if self.variant is not None:
            self._check(isinstance(self.variant, Variant), "variant", "must be a Variant")
            ok = self.variant.name == self.name
            self._check(ok, "name", f"must be the variant's name {self.variant.name!r}")

    @property
    def corpus(self) -> str:
        """Name of the corpus the task's rows come from (its own name if not a variant)."""
        return self.variant.corpus if self.variant is not None else self.name

    def corpus_spec(self) -> TaskSpec:
        """The spec of the whole corpus (the spec itself if not a variant)."""
        if self.variant is None:
            return self
        return dataclasses.replace(self, name=self.variant.corpus, variant=None)

    def _check(self, ok: bool, key: str, requirement: str) -> None:
        if not ok:
            raise ConfigError(
                f"TaskSpec {self.name!r}: `{key}` {requirement}, got {getattr(self, key)!r}"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskSpec:
        """Build a spec from a plain mapping such as one entry of a task-set YAML.

        Raises:
            ConfigError: ``d`` is not a mapping, has unknown keys, or lacks ``name``/``source``.

        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"a TaskSpec must be a mapping, got {type(d).__name__}: {d!r}")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(str(k) for k in d if k not in valid)
        if unknown:
            raise ConfigError(
                f"TaskSpec {d.get('name')!r}: unknown key(s) {unknown}; valid keys: {valid}"
            )
        missing = [k for k in ("name", "source") if k not in d]
        if missing:
            raise ConfigError(f"TaskSpec {dict(d)!r}: missing required key(s) {missing}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as plain data (lists, not tuples) that :meth:`from_dict` accepts."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["labels"] = None if self.labels is None else list(self.labels)
        out["variant"] = None if self.variant is None else self.variant.to_dict()
        return out


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TaskSpec)}


@dataclass(frozen=True, eq=False)
class TaskData:
    """A loaded task: read-only train and validation texts with integer labels."""

    name: str
    """The task's name."""
    train_texts: tuple[str, ...]
    """Training texts, in a seeded random order."""
    train_labels: np.ndarray
    """int64 class indices of ``train_texts``, in ``[0, num_classes)``."""
    val_texts: tuple[str, ...]
    """Validation texts; none of them is also a training text."""
    val_labels: np.ndarray
    """int64 class indices of ``val_texts``."""
    label_names: tuple[str, ...]
    """Index -> original label string, sorted (numerically when every label is an integer)."""
    n_train_available: int
    """Training rows available before the ``max_train`` cap (a variant: its training rows)."""
    pool: TaskData | None = None
    """A variant's corpus: its rows are ``pool`` rows ``train_rows`` and ``val_rows``."""
    train_rows: np.ndarray | None = None
    """A variant's training rows, as indices of ``pool.train_texts``."""
    val_rows: np.ndarray | None = None
    """A variant's validation rows, as indices of ``pool.val_texts``."""

    def __post_init__(self) -> None:
        for part, texts, labels in (("train", self.train_texts, self.train_labels),
                                    ("val", self.val_texts, self.val_labels)):
            if labels.dtype != np.int64 or labels.shape != (len(texts),):
                raise TaskError(f"task {self.name!r}: {part} labels must be int64, one per text")
            if labels.size and (labels.min() < 0 or labels.max() >= len(self.label_names)):
                raise TaskError(f"task {self.name!r}: {part} labels out of range")

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.label_names)

    @functools.cached_property
    def label_agreement(self) -> float:
        """Nearest-neighbour label agreement of the training rows (`knn_label_agreement`)."""
        return knn_label_agreement(self.train_texts, self.train_labels)


def load_task(spec: TaskSpec, seed: int = 0) -> TaskData:
    """Load a task's train and validation data; the result is fixed by ``(spec, seed)``.

    Rows with an empty (or whitespace-only) text or a missing label are dropped, texts are
    stripped, texts seen with two different labels are dropped and repeated texts kept once.
    Validation rows come from the source's test file if it has one (``max_val`` of them, minus
    texts also in training and labels absent from training), else ``min(max_val, rows // 2)``
    rows are split off before training rows are capped at ``max_train``. A spec with a `variant`
    loads its corpus (``spec.corpus_spec()``) and selects rows of it. Results are cached
    in-process and their arrays are read-only.

    Args:
        spec: The task.
        seed: Non-negative seed of the splits (and of the data of a synthetic task).

    Returns:
        The task's data.

    Raises:
        TaskError: The data are missing or unusable (bad path or column, one class, no text),
            or below the limits (see `TaskSpec`).
        TaskSourceUnavailable: The package that carries the data is not installed.

    """
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"load_task expects a TaskSpec, got {type(spec).__name__}: {spec!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"load_task `seed` must be a non-negative integer, got {seed!r}")
    if spec.variant is not None:
        return _load_variant(spec, _load_task_cached(spec.corpus_spec(), int(seed)))
    return _load_task_cached(spec, int(seed))


@functools.lru_cache(maxsize=256)
def _load_variant(spec: TaskSpec, pool: TaskData) -> TaskData:
    """A variant's data: rows of `pool` chosen by `lora_gym.tasks.variants.select_rows`."""
    assert spec.variant is not None
    sel = select_rows(spec.name, spec.variant, pool.train_labels, pool.val_labels,
                      pool.num_classes, MIN_TRAIN_PER_CLASS)
    for array in (sel.train_rows, sel.train_labels, sel.val_rows, sel.val_labels):
        array.setflags(write=False)
    return TaskData(
        name=spec.name,
        train_texts=tuple(pool.train_texts[i] for i in sel.train_rows),
        train_labels=sel.train_labels,
        val_texts=tuple(pool.val_texts[i] for i in sel.val_rows),
        val_labels=sel.val_labels,
        label_names=tuple(pool.label_names[i] for i in sel.classes),
        n_train_available=len(sel.train_rows),
        pool=pool, train_rows=sel.train_rows, val_rows=sel.val_rows,
    )


@functools.lru_cache(maxsize=32)
def _load_task_cached(spec: TaskSpec, seed: int) -> TaskData:
    raw = read_source(spec, seed)
    texts, labels = _dedupe(_filter_labels(spec, _clean(spec, raw.train, "train")))
    names = _sorted_labels(set(labels))
    if len(names) < 2:
        raise TaskError(f"task {spec.name!r}: needs at least 2 classes, found {names}")
    rng = np.random.default_rng([seed, stable_hash(spec.name)])
    if raw.test is None:
        n_val = min(spec.max_val, len(texts) // 2)
        order = rng.permutation(len(texts))
        val: _Rows = ([texts[i] for i in order[:n_val]], [labels[i] for i in order[:n_val]])
        pool = order[n_val:]
    else:
        val = _dedupe(_keep_rows(_clean(spec, raw.test, "test"), set(names), set(texts)))
        order = np.arange(len(val[0])) if raw.ordered else rng.permutation(len(val[0]))
        order = order[: spec.max_val]
        val = ([val[0][i] for i in order], [val[1][i] for i in order])
        pool = np.arange(len(texts)) if raw.ordered else rng.permutation(len(texts))
    index = {name: i for i, name in enumerate(names)}
    train_idx = pool[: spec.max_train]
    _check_size(spec, names, [labels[i] for i in pool], len(val[0]))
    return TaskData(
        name=spec.name,
        train_texts=tuple(texts[i] for i in train_idx),
        train_labels=_encode([labels[i] for i in train_idx], index),
        val_texts=tuple(val[0]),
        val_labels=_encode(val[1], index),
        label_names=tuple(names),
        n_train_available=len(pool),
    )


def _check_size(spec: TaskSpec, names: list[str], train_labels: list[str], n_val: int) -> None:
    """Raise `TaskError` below `MIN_VAL_ROWS` validation rows or `MIN_TRAIN_PER_CLASS` per class."""
    if n_val < MIN_VAL_ROWS:
        raise TaskError(f"task {spec.name!r}: {n_val} validation row(s), need at least "
                        f"{MIN_VAL_ROWS} (an accuracy on fewer says little); without a test file "
                        "min(max_val, rows // 2) rows are split off for validation: give more "
                        f"labelled rows or a larger `max_val` (now {spec.max_val})")
    counts = {name: train_labels.count(name) for name in names}
    few = {name: n for name, n in sorted(counts.items()) if n < MIN_TRAIN_PER_CLASS}
    if few:
        raise TaskError(f"task {spec.name!r}: class(es) with fewer than {MIN_TRAIN_PER_CLASS} "
                        f"training rows: {few}; give more rows of them, or drop them with "
                        "`labels`")


def _label_str(value: object) -> str | None:
    """Return a label as a string, or None when missing (None, NaN, blank); 2.0 gives ``"2"``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _preview(values: Sequence[str], limit: int = 20) -> str:
    shown = list(values[:limit])
    return f"{shown}" if len(values) <= limit else f"{shown} ... ({len(values)} in all)"


def _clean(spec: TaskSpec, ds: Any, part: str) -> _Rows:
    """Take the text and label columns of a ``datasets.Dataset``; drop empty texts/labels."""
    columns = list(ds.column_names)
    for key in ("text_column", "label_column"):
        if getattr(spec, key) not in columns:
            raise TaskError(
                f"task {spec.name!r}: `{key}` {getattr(spec, key)!r} is not a column of the "
                f"{part} data; available columns: {columns}"
            )
    rows = ds.select_columns([spec.text_column, spec.label_column]).to_dict()
    texts: list[str] = []
    labels: list[str] = []
    n_text = 0
    for raw_text, raw_label in zip(rows[spec.text_column], rows[spec.label_column], strict=True):
        text = "" if raw_text is None else str(raw_text).strip()
        label = _label_str(raw_label)
        n_text += bool(text)
        if text and label is not None:
            texts.append(text)
            labels.append(label)
    if not n_text:
        raise TaskError(
            f"task {spec.name!r}: all {len(ds)} texts in `text_column` {spec.text_column!r} "
            f"of the {part} data are empty"
        )
    if not texts:
        raise TaskError(
            f"task {spec.name!r}: every row with text has an empty `label_column` "
            f"{spec.label_column!r} in the {part} data"
        )
    return texts, labels


def _filter_labels(spec: TaskSpec, rows: _Rows) -> _Rows:
    """Keep only the rows whose label is in ``spec.labels`` (all rows when it is None)."""
    if spec.labels is None:
        return rows
    present = set(rows[1])
    absent = [x for x in spec.labels if x not in present]
    if absent:
        raise TaskError(
            f"task {spec.name!r}: `labels` value(s) {absent} do not occur in `label_column` "
            f"{spec.label_column!r}; present labels: {_preview(_sorted_labels(present))}"
        )
    return _keep_rows(rows, set(spec.labels), set())


def _keep_rows(rows: _Rows, labels: set[str], drop_texts: set[str]) -> _Rows:
    kept = [(t, y) for t, y in zip(*rows, strict=True) if y in labels and t not in drop_texts]
    return [t for t, _ in kept], [y for _, y in kept]


def _dedupe(rows: _Rows) -> _Rows:
    """Keep each text once, in first-seen order; drop texts seen with different labels."""
    first: dict[str, str] = {}
    conflicted: set[str] = set()
    for text, label in zip(*rows, strict=True):
        if first.setdefault(text, label) != label:
            conflicted.add(text)
    kept = [t for t in first if t not in conflicted]
    return kept, [first[t] for t in kept]


def _sorted_labels(names: set[str]) -> list[str]:
    """Sort label names, numerically when every name is an integer."""
    try:
        return sorted(names, key=int)
    except ValueError:
        return sorted(names)


def _encode(labels: list[str], index: dict[str, int]) -> np.ndarray:
    out = np.array([index[y] for y in labels], dtype=np.int64)
    out.setflags(write=False)
    return out
