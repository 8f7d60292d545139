"""Task variants: class subsets, training sizes and label noise drawn from one source corpus.

A `Variant` is a seeded recipe that picks rows of a loaded corpus (its *pool*: the corpus's
training and validation rows); a `Family` (one entry of a task-set YAML) is the cartesian product
of variant axes and expands deterministically to named variants, e.g. ``20newsgroups/k4-n256-s3``
(4 classes, 256 training rows, seed 3) or ``tweet-sentiment/n64-noise20-s1`` (64 rows, 20% of the
training labels replaced by another class). A family with no axes is the corpus itself.

Selection rules (`select_rows`):

* classes: ``k`` classes drawn among the *eligible* ones, those with at least
  :data:`MIN_VAL_PER_CLASS` validation rows in the pool; unset keeps every class of the corpus;
* training rows: the first ``size`` rows of those classes in a seeded order (unset: all of
  them), of which the first ``min_train_per_class`` of every class are always kept; asking for
  more rows than the pool has (or a class with fewer than that) raises `TaskError`;
* noise: exactly ``round(noise * rows)`` training labels, chosen by the seed, are replaced by a
  uniformly drawn *other* class; validation labels are never noised;
* validation rows: the pool's validation rows of the chosen classes in a seeded order, at most
  ``max_val``, of which the first :data:`MIN_VAL_PER_CLASS` of every class (or all it has) are
  always kept, so rare classes are not capped away; fewer than :data:`MIN_VARIANT_VAL_ROWS`
  rows (or, for a class subset, fewer than :data:`MIN_VAL_PER_CLASS` of any chosen class)
  raises `TaskError`.

Validation rows come from the corpus's own held-out rows (its test file, or rows split off before
the training cap), never from training rows, so every variant's validation set is disjoint from
its training rows. Each draw has its own random stream, so variants of one seed and class count
share their validation rows and a smaller size's training rows are a subset of a larger one's.
Because a variant is a row selection of the pool, token ids and frozen-prefix activations are
computed once per corpus and shared (`lora_gym.engine.session`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lora_gym.core.errors import ConfigError, TaskError
from lora_gym.tasks.sources import stable_hash

MIN_VARIANT_VAL_ROWS = 64
"""Fewest validation rows a variant may have."""
MIN_VAL_PER_CLASS = 8
"""Fewest validation rows of each class a class subset may draw on (defines eligible classes)."""
MAX_NOISE = 0.5
"""Largest label-noise rate (beyond it the labels carry less signal than noise for 2 classes)."""


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@dataclass(frozen=True)
class Variant:
    """A seeded selection of a corpus's rows: which classes, how many training rows, what noise.

    Raises:
        ConfigError: A field has a bad type or value (the message names it).

    """

    corpus: str
    """Name of the source corpus (a task in the task set's ``corpora``)."""
    classes: int | None = None
    """Number of classes to keep (``k``, at least 2), or None for every class."""
    size: int | None = None
    """Number of training rows (``n``, at least 2), or None for every row of the kept classes."""
    noise: float = 0.0
    """Fraction of training labels replaced by another class, in [0, MAX_NOISE]."""
    seed: int = 0
    """Seed of the class, row and noise draws (non-negative)."""
    max_val: int = 256
    """Cap on validation rows (at least MIN_VARIANT_VAL_ROWS)."""

    def __post_init__(self) -> None:
        if isinstance(self.noise, int) and not isinstance(self.noise, bool):
            object.__setattr__(self, "noise", float(self.noise))
        self._check(isinstance(self.corpus, str) and bool(self.corpus.strip()), "corpus",
                    "must be a non-empty string")
        for key, low in (("classes", 2), ("size", 2)):
            value = getattr(self, key)
            self._check(value is None or (_is_int(value) and value >= low), key,
                        f"must be None or an integer >= {low}")
        ok = isinstance(self.noise, float) and 0.0 <= self.noise <= MAX_NOISE
        self._check(ok, "noise", f"must be a number in [0, {MAX_NOISE}]")
        self._check(_is_int(self.seed) and self.seed >= 0, "seed", "must be an integer >= 0")
        ok = _is_int(self.max_val) and self.max_val >= MIN_VARIANT_VAL_ROWS
        self._check(ok, "max_val", f"must be an integer >= {MIN_VARIANT_VAL_ROWS}")

    def _check(self, ok: bool, key: str, requirement: str) -> None:
        if not ok:
            raise ConfigError(f"Variant of {self.corpus!r}: `{key}` {requirement}, "
                              f"got {getattr(self, key)!r}")

    @property
    def is_identity(self) -> bool:
        """Whether the variant is the corpus itself (no class subset, size or noise)."""
        return self.classes is None and self.size is None and self.noise == 0.0

    @property
    def name(self) -> str:
        """``<corpus>/k<classes>-n<size>-noise<percent>-s<seed>`` (unset axes left out).

        The identity variant is named after its corpus.
        """
        if self.is_identity:
            return self.corpus
        parts = [f"k{self.classes}" if self.classes is not None else "",
                 f"n{self.size}" if self.size is not None else "",
                 f"noise{round(self.noise * 100)}" if self.noise else "", f"s{self.seed}"]
        return f"{self.corpus}/" + "-".join(p for p in parts if p)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Variant:
        """Build from a mapping of the fields (unknown keys raise `ConfigError`)."""
        return cls(**_checked_keys(cls, d, required=("corpus",)))

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Family:
    """A task-set entry ``{corpus, classes: [...], sizes: [...], noise: [...], seeds: [...]}``.

    It expands to the product of its axes (in the order classes, sizes, noise, seeds); an axis
    left out contributes one value (None, or noise 0.0, or seed 0).

    Raises:
        ConfigError: An axis is not a non-empty list of distinct values, or a value is invalid.

    """

    corpus: str
    """Name of the source corpus."""
    classes: tuple[int | None, ...] = (None,)
    """Class counts ``k``."""
    sizes: tuple[int | None, ...] = (None,)
    """Training sizes ``n``."""
    noise: tuple[float, ...] = (0.0,)
    """Label-noise rates."""
    seeds: tuple[int, ...] = (0,)
    """Seeds."""
    max_val: int = 256
    """Cap on every variant's validation rows."""

    def __post_init__(self) -> None:
        for key in ("classes", "sizes", "noise", "seeds"):
            value = getattr(self, key)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, key, value)
            ok = isinstance(value, tuple) and bool(value) and len(set(value)) == len(value)
            if not ok:
                raise ConfigError(f"family of {self.corpus!r}: `{key}` must be a non-empty list "
                                  f"of distinct values, got {value!r}")
        self.variants()  # validates every combination

    def variants(self) -> tuple[Variant, ...]:
        """The variants, in expansion order."""
        return tuple(Variant(self.corpus, k, n, p, s, self.max_val) for k, n, p, s in
                     itertools.product(self.classes, self.sizes, self.noise, self.seeds))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Family:
        """Build from one task-set entry (unknown keys raise `ConfigError` listing valid ones)."""
        return cls(**_checked_keys(cls, d, required=("corpus",)))


def _checked_keys(cls: type, d: Mapping[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(d, Mapping):
        raise ConfigError(f"a {cls.__name__} must be a mapping, got {type(d).__name__}: {d!r}")
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(str(k) for k in d if k not in valid)
    if unknown:
        raise ConfigError(f"{cls.__name__} {dict(d)!r}: unknown key(s) {unknown}; "
                          f"valid keys: {valid}")
    missing = [k for k in required if k not in d]
    if missing:
        raise ConfigError(f"{cls.__name__} {dict(d)!r}: missing required key(s) {missing}")
    return dict(d)


@dataclass(frozen=True)
class Selection:
    """The rows of a pool that make up a variant, with the variant's own label encoding."""

    classes: np.ndarray
    """Pool class indices kept, sorted; variant class ``i`` is pool class ``classes[i]``."""
    train_rows: np.ndarray
    """Indices of the pool's training rows."""
    train_labels: np.ndarray
    """Variant class of every training row (after noise)."""
    val_rows: np.ndarray
    """Indices of the pool's validation rows."""
    val_labels: np.ndarray
    """Variant class of every validation row (never noised)."""


def select_rows(name: str, variant: Variant, train_labels: np.ndarray, val_labels: np.ndarray,
                num_classes: int, min_train_per_class: int) -> Selection:
    """Pick a variant's rows from a pool's labels (see the module docstring for the rules).

    Args:
        name: The variant's task name (for messages).
        variant: The recipe.
        train_labels: Class index of every training row of the pool.
        val_labels: Class index of every validation row of the pool.
        num_classes: Number of classes of the pool.
        min_train_per_class: Fewest training rows of each class.

    Returns:
        The selected rows and their labels.

    Raises:
        TaskError: The pool has too few classes, training rows or validation rows for it.

    """
    streams = np.random.SeedSequence([variant.seed, stable_hash(variant.corpus)]).spawn(4)
    class_rng, train_rng, noise_rng, val_rng = (np.random.default_rng(s) for s in streams)
    if variant.classes is None:
        classes = np.arange(num_classes)
    else:
        counts = np.bincount(val_labels, minlength=num_classes)
        eligible = np.flatnonzero(counts >= MIN_VAL_PER_CLASS)
        if variant.classes > len(eligible):
            raise TaskError(
                f"task {name!r}: `classes` {variant.classes} exceeds the {len(eligible)} classes "
                f"of corpus {variant.corpus!r} with at least {MIN_VAL_PER_CLASS} validation rows"
            )
        classes = np.sort(class_rng.choice(eligible, size=variant.classes, replace=False))
    remap = np.full(num_classes, -1, dtype=np.int64)
    remap[classes] = np.arange(len(classes))
    train_rows = train_rng.permutation(np.flatnonzero(remap[train_labels] >= 0))
    if variant.size is not None:
        if variant.size > len(train_rows):
            raise TaskError(f"task {name!r}: `size` {variant.size} exceeds the {len(train_rows)} "
                            f"training rows of its classes in corpus {variant.corpus!r}")
        train_rows = _capped(train_rows, remap[train_labels], variant.size, min_train_per_class)
    fewest = int(np.bincount(remap[train_labels[train_rows]], minlength=len(classes)).min())
    if fewest < min_train_per_class:
        raise TaskError(f"task {name!r}: a class has {fewest} training rows, fewer than "
                        f"{min_train_per_class}; choose a larger `size` or other classes")
    labels = remap[train_labels[train_rows]]
    flips = noise_rng.permutation(len(labels))[: round(variant.noise * len(labels))]
    shift = noise_rng.integers(1, len(classes), size=len(flips))  # to a different class
    labels[flips] = (labels[flips] + shift) % len(classes)
    val_rows = _capped(val_rng.permutation(np.flatnonzero(remap[val_labels] >= 0)),
                       remap[val_labels], variant.max_val, MIN_VAL_PER_CLASS)
    val = remap[val_labels[val_rows]]
    smallest = int(np.bincount(val, minlength=len(classes)).min())
    if len(val_rows) < MIN_VARIANT_VAL_ROWS or (variant.classes is not None
                                        and smallest < MIN_VAL_PER_CLASS):
        raise TaskError(
            f"task {name!r}: {len(val_rows)} validation rows ({smallest} in its smallest class) "
            f"is below the minimum of {MIN_VARIANT_VAL_ROWS} rows and {MIN_VAL_PER_CLASS} per "
            "class; "
            f"raise `max_val` of corpus {variant.corpus!r} or choose other classes"
        )
    return Selection(classes, train_rows, labels, val_rows, val)


def _capped(order: np.ndarray, label_of: np.ndarray, cap: int, reserve: int) -> np.ndarray:
    """The first `cap` rows of `order`, always including each class's first `reserve` rows."""
    seen: dict[int, int] = {}
    reserved = np.zeros(len(order), dtype=bool)
    for i, label in enumerate(label_of[order].tolist()):
        seen[label] = seen.get(label, 0) + 1
        reserved[i] = seen[label] <= reserve
    room = cap - int(reserved.sum())
    return order[reserved | (np.cumsum(~reserved) <= room)][:cap]
