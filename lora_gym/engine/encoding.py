"""Tokenised task splits: encode once (cached on disk), pad batches to their longest example.

The token ids of a task depend only on its texts, the tokenizer and ``max_length``; they are
cached under ``$LORA_GYM_CACHE/tokens`` (default ``~/.cache/lora_gym/tokens``) in one ``.npz`` per
task, keyed by a hash of exactly these inputs, and written atomically (temporary file, then
``os.replace``), so concurrent processes may share the cache (a task variant selects rows of its
corpus's encoding, `EncodedSplit.select`). An unwritable cache directory only
costs the re-tokenisation (a `LoRAGymWarning` says so).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lora_gym.core.errors import LoRAGymWarning
from lora_gym.core.paths import CACHE_ENV, cache_dir

if TYPE_CHECKING:
    import torch

    from lora_gym.tasks.loading import TaskData

"""Environment variable naming the cache directory (default ``~/.cache/lora_gym``)."""
FORMAT_VERSION = 1
"""Bumped whenever the cached arrays change meaning; part of every key."""


@dataclass(frozen=True)
class EncodedSplit:
    """Token ids of a split, unpadded, with labels."""

    ids: tuple[np.ndarray, ...]
    labels: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """Token count of every example."""
        return np.array([len(x) for x in self.ids])

    def select(self, rows: np.ndarray, labels: np.ndarray) -> EncodedSplit:
        """The examples `rows` with new `labels` (the id arrays are shared, not copied)."""
        return EncodedSplit(tuple(self.ids[i] for i in rows), labels)


def encode(texts: tuple[str, ...], labels: np.ndarray, tokenizer, max_length: int) -> EncodedSplit:
    """Tokenise once, truncating to `max_length`, without padding."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return EncodedSplit(tuple(np.asarray(x, dtype=np.int64) for x in ids), labels)


def collate(split: EncodedSplit, idx: np.ndarray, pad_id: int
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad the examples `idx` to the longest of them: ``(input_ids, attention_mask, labels)``."""
    import torch

    width = max(len(split.ids[i]) for i in idx)
    ids = np.full((len(idx), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(idx), width), dtype=np.int64)
    for row, i in enumerate(idx):
        n = len(split.ids[i])
        ids[row, :n] = split.ids[i]
        mask[row, :n] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(split.labels[idx])


# -- disk cache ------------------------------------------------------------------------------
def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of everything that decides a tokenizer's ids (vocabulary, normaliser, specials)."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    h.update(str(getattr(tokenizer, "truncation_side", "right")).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # without the truncation/padding state that calls leave behind
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        h.update(json.dumps(state, sort_keys=True).encode())
    else:  # a slow tokenizer: its vocabulary and settings
        h.update(repr(sorted(tokenizer.get_vocab().items())).encode())
        h.update(repr(sorted((k, repr(v)) for k, v in tokenizer.init_kwargs.items())).encode())
    return h.hexdigest()


def task_fingerprint(task: TaskData) -> str:
    """A hash of a task's name, texts and labels (what its encodings and activations depend on)."""
    h = hashlib.sha256(task.name.encode())
    for part in (task.train_texts, task.val_texts):
        h.update(str(len(part)).encode())
        for text in part:
            h.update(text.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
    h.update(np.ascontiguousarray(task.train_labels).tobytes())
    h.update(np.ascontiguousarray(task.val_labels).tobytes())
    return h.hexdigest()


def cache_path(task: TaskData, tokenizer: Any, max_length: int, task_key: str | None = None
               ) -> Path:
    """Where the encoding of `task` by `tokenizer` at `max_length` is cached.

    `task_key` is ``task_fingerprint(task)`` if the caller already has it.
    """
    task_key = task_key or task_fingerprint(task)
    key = hashlib.sha256(f"v{FORMAT_VERSION}|{task_key}|"
                         f"{tokenizer_fingerprint(tokenizer)}|{max_length}".encode()).hexdigest()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in task.name)[:60]
    return cache_dir() / "tokens" / f"{safe}-{key[:24]}.npz"


def encode_task(task: TaskData, tokenizer: Any, max_length: int, task_key: str | None = None
                ) -> tuple[EncodedSplit, EncodedSplit]:
    """``(train, val)`` encodings of `task`, read from the disk cache or computed and stored."""
    path = cache_path(task, tokenizer, max_length, task_key)
    splits = ((task.train_texts, task.train_labels), (task.val_texts, task.val_labels))
    cached = _read(path, [len(texts) for texts, _ in splits])
    if cached is not None:
        return tuple(EncodedSplit(ids, labels)  # type: ignore[return-value]
                     for ids, (_, labels) in zip(cached, splits, strict=True))
    encoded = tuple(encode(texts, labels, tokenizer, max_length) for texts, labels in splits)
    _write(path, encoded)
    return encoded  # type: ignore[return-value]


def _read(path: Path, sizes: list[int]) -> list[tuple[np.ndarray, ...]] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            out = []
            for name, size in zip(("train", "val"), sizes, strict=True):
                flat = data[f"{name}_ids"].astype(np.int64)
                offsets = data[f"{name}_offsets"]
                if len(offsets) != size + 1 or offsets[-1] != len(flat):
                    return None
                out.append(tuple(flat[a:b] for a, b in zip(offsets[:-1], offsets[1:],
                                                           strict=True)))
    except (OSError, ValueError, KeyError) as err:
        warnings.warn(f"ignoring unreadable token cache {path}: {err}", LoRAGymWarning,
                      stacklevel=3)
        return None
    return out


def _write(path: Path, splits: tuple[EncodedSplit, ...]) -> None:
    arrays = {}
    for name, split in zip(("train", "val"), splits, strict=True):
        lengths = split.lengths
        arrays[f"{name}_ids"] = (np.concatenate(split.ids).astype(np.int32) if len(split.ids)
                                 else np.zeros(0, np.int32))
        arrays[f"{name}_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as err:
        warnings.warn(f"cannot write the token cache {path} ({err}); set {CACHE_ENV} to a "
                      "writable directory to tokenise each task only once", LoRAGymWarning,
                      stacklevel=3)
