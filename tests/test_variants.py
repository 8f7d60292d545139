"""Task variants: expansion, the default task set's splits, shared corpus caches, meta-features."""

import dataclasses
import json

import numpy as np
import pytest

from lora_gym.core.config import EnvConfig
from lora_gym.core.errors import ConfigError, TaskError
from lora_gym.engine import encoding, prefix_cache
from lora_gym.engine.session import FineTuneSession
from lora_gym.envs.lora_tune import LoRATuningEnv
from lora_gym.tasks.features import knn_label_agreement
from lora_gym.tasks.loading import MIN_TRAIN_PER_CLASS, TaskData, TaskSpec, load_task
from lora_gym.tasks.sets import TaskSet, load_task_set
from lora_gym.tasks.variants import MIN_VAL_PER_CLASS, MIN_VARIANT_VAL_ROWS, Variant
from tests.conftest import TINY as TINY_PATH
from tests.test_finetune import _cache_in_tmp, _keep_threads  # noqa: F401 - autouse fixtures

TINY = EnvConfig.from_yaml(TINY_PATH)
CORPUS = {"name": "topics", "source": "synthetic", "num_classes": 6, "num_examples": 1500,
          "max_val": 300}
FAMILY = {"corpus": "topics", "classes": [2, 4], "sizes": [64, 256], "noise": [0.0, 0.3],
          "seeds": [0, 1]}
VARIANT_SET = {"name": "fam", "corpora": [CORPUS], "train": [FAMILY],
               "val": [{"corpus": "topics", "sizes": [128], "seeds": [7]}],
               "test": [{"corpus": "topics"}]}


def test_families_expand_deterministically_to_unique_names():
    a, b = TaskSet.from_dict(VARIANT_SET), TaskSet.from_dict(VARIANT_SET)
    assert a == b and len(a.train) == 16
    names = [s.name for s in a.tasks("all")]
    assert len(set(names)) == len(names) == 18
    assert names[:3] == ["topics/k2-n64-s0", "topics/k2-n64-s1", "topics/k2-n64-noise30-s0"]
    assert [s.name for s in a.val] == ["topics/n128-s7"] and a.test[0].name == "topics"
    spec = a.get("topics/k4-n256-noise30-s1")
    assert spec.variant == Variant("topics", 4, 256, 0.3, 1) and spec.corpus == "topics"
    assert spec.corpus_spec() == TaskSpec.from_dict(CORPUS)
    assert TaskSet.from_dict(a.to_dict()) == a  # expanded specs round-trip
    x, y = load_task(spec), load_task(a.get("topics/k4-n256-noise30-s1"))
    assert x.train_texts == y.train_texts and np.array_equal(x.train_labels, y.train_labels)


@pytest.mark.parametrize(("entry", "match"), [
    ({"corpus": "topics", "sizes": [1]}, r"`size` must be None or an integer >= 2, got 1"),
    ({"corpus": "topics", "noise": [0.9]}, r"`noise` must be a number in \[0, 0.5\], got 0.9"),
    ({"corpus": "topics", "seeds": [1, 1]}, r"`seeds` must be a non-empty list of distinct"),
    ({"corpus": "topics", "max_val": 10}, r"`max_val` must be an integer >= 64, got 10"),
    ({"corpus": "topics", "colour": [1]}, r"unknown key\(s\) \['colour'\]; valid keys"),
    ({"corpus": "other"}, r"`corpus` 'other' is not in the task set's `corpora`: \['topics'\]"),
])
def test_family_errors_name_the_field(entry, match):
    with pytest.raises(ConfigError, match=r"'fam', train\[0\]: .*" + match):
        TaskSet.from_dict({**VARIANT_SET, "train": [entry]})


def test_variant_selection_rules():
    task_set = TaskSet.from_dict(VARIANT_SET)
    pool = load_task(task_set.get("topics"))
    assert pool.pool is not None and pool.num_classes == 6 and len(pool.val_texts) == 256
    clean, noisy = (load_task(task_set.get(f"topics/k4-n256{n}-s1")) for n in ("", "-noise30"))
    assert clean.train_texts == noisy.train_texts and clean.label_names == noisy.label_names
    small = load_task(task_set.get("topics/k4-n64-s1"))
    assert set(small.train_texts) < set(clean.train_texts) and small.val_texts == clean.val_texts
    assert np.bincount(small.train_labels).min() >= MIN_TRAIN_PER_CLASS
    assert np.mean(clean.train_labels != noisy.train_labels) == pytest.approx(0.3, abs=0.005)
    assert np.array_equal(clean.val_labels, noisy.val_labels)  # validation is never noised
    assert clean.num_classes == 4 and len(clean.train_texts) == 256
    assert not set(clean.val_texts) & set(clean.train_texts)
    assert MIN_VARIANT_VAL_ROWS <= len(clean.val_texts) <= 256
    assert np.bincount(clean.val_labels).min() >= MIN_VAL_PER_CLASS
    for data in (clean, noisy):  # rows of the pool, in the pool's label names
        base = data.pool
        assert tuple(base.train_texts[i] for i in data.train_rows) == data.train_texts
        assert tuple(base.val_texts[i] for i in data.val_rows) == data.val_texts
    too_big = TaskSet.from_dict({**VARIANT_SET, "train": [{"corpus": "topics", "sizes": [5000]}]})
    with pytest.raises(TaskError, match=r"`size` 5000 exceeds the 1200 training rows"):
        load_task(too_big.train[0])


def test_default_task_set_splits_and_every_task_loads():
    default = load_task_set("default")
    train, val, test = (default.tasks(s) for s in ("train", "val", "test"))
    assert len(train) >= 100 and len(val) >= 12 and len(test) >= 12
    source_of = {s.corpus: (s.source, s.path) for s in default.tasks("all")}
    test_corpora = {s.corpus for s in test}
    assert not test_corpora & {s.corpus for s in train + val}
    assert not {source_of[c] for c in test_corpora} & {source_of[s.corpus] for s in train + val}
    assert {s.corpus for s in test} == {"bbc-news", "chatterbot-topics", "sms-spam",
                                        "trec-questions", "movie-reviews"}
    assert not {s.name for s in val} & {s.name for s in train}
    for spec in default.tasks("all"):
        data = load_task(spec)
        assert len(data.val_texts) >= MIN_VARIANT_VAL_ROWS, spec.name
        if spec.variant is not None and spec.variant.classes is not None:
            assert np.bincount(data.val_labels).min() >= MIN_VAL_PER_CLASS, spec.name
    sizes = {len(load_task(s).train_texts) for s in train}
    assert min(sizes) == 64 and max(sizes) == 2000
    assert {s.variant.noise for s in train} >= {0.0, 0.2, 0.3}


def test_corpus_caches_are_computed_once_per_corpus(tmp_path, monkeypatch):
    calls = {"encode": 0, "prefix": 0}

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(encoding, "encode", counting("encode", encoding.encode))
    monkeypatch.setattr(prefix_cache, "compute_prefix",
                        counting("prefix", prefix_cache.compute_prefix))
    other = {**CORPUS, "name": "other", "num_classes": 3}
    task_set = TaskSet.from_dict({**VARIANT_SET, "corpora": [CORPUS, other],
                                  "test": [{"corpus": "other", "sizes": [64, 128]}]})
    session = FineTuneSession(dataclasses.replace(TINY, lora_layers="top-1"))
    assert session.prefix_layer == 1
    for spec in task_set.train[:3] + task_set.val:
        session.start(load_task(spec), seed=0)
    assert calls == {"encode": 2, "prefix": 2}  # the train and val rows of one corpus
    for spec in task_set.test:
        session.start(load_task(spec), seed=0)
    assert calls == {"encode": 4, "prefix": 4}
    # a variant's metrics equal those of the same rows loaded as a plain task
    variant = load_task(task_set.train[3])
    plain = dataclasses.replace(variant, name="plain", pool=None, train_rows=None, val_rows=None)
    first = session.start(variant, seed=3)
    assert session.start(plain, seed=3).accuracy == pytest.approx(first.accuracy)
    session.start(variant, seed=3)
    trained = session.train(2, 1e-2, 3), session.evaluate()
    session.start(plain, seed=3)
    assert session.train(2, 1e-2, 3).train_loss == pytest.approx(trained[0].train_loss, rel=1e-5)
    assert session.evaluate().val_loss == pytest.approx(trained[1].val_loss, rel=1e-5)


def test_meta_features_tell_variants_apart():
    task_set = TaskSet.from_dict(VARIANT_SET)
    session = FineTuneSession(TINY)

    def features(name):
        session.start(load_task(task_set.get(name)), seed=0)
        return session.features

    base = features("topics/k4-n256-s0")
    noisy, small, fewer = (features(n) for n in ("topics/k4-n256-noise30-s0",
                                                 "topics/k4-n64-s0", "topics/k2-n256-s0"))
    assert noisy.label_agreement < base.label_agreement - 0.1
    assert (noisy.train_size, noisy.num_classes) == (base.train_size, base.num_classes)
    assert small.train_size == 64 and base.train_size == 256
    assert fewer.num_classes == 2 and base.num_classes == 4


def test_knn_label_agreement():
    texts = ["red apple", "red cherry", "blue sea", "blue sky", "green leaf", "green grass"]
    assert knn_label_agreement(texts, np.array([0, 0, 1, 1, 2, 2])) == 1.0
    assert knn_label_agreement(texts, np.array([0, 1, 0, 1, 0, 1])) == 0.0
    assert knn_label_agreement(texts[:1], np.array([0])) == 0.0
    data = load_task(TaskSpec("s", "synthetic", num_examples=200))
    assert isinstance(data, TaskData) and 0.0 < data.label_agreement < 1.0


def test_env_on_variants_passes_check_env(tmp_path):
    from gymnasium.utils.env_checker import check_env

    path = tmp_path / "fam.yaml"
    path.write_text(json.dumps(VARIANT_SET))
    for split in ("train", "val", "test"):
        env = LoRATuningEnv(config=TINY, task_set=str(path), task_split=split, episode_length=2)
        check_env(env, skip_render_check=True)
        obs, _ = env.reset(seed=0)
        assert obs in env.observation_space
        assert env.task.name in {s.name for s in env.task_set.tasks(split)}


def test_the_test_split_follows_its_written_rule():
    """default_tasks.yaml: every held-out corpus gives the same families (README's rule)."""
    test = load_task_set("default").tasks("test")
    names = {s.name for s in test}
    for corpus in {s.corpus for s in test}:
        whole = load_task(next(s for s in test if s.name == corpus))
        expected = {corpus, f"{corpus}/n64-s2", f"{corpus}/n128-noise20-s0",
                    f"{corpus}/n256-noise20-s1"}
        if whole.num_classes >= 5:
            expected.add(f"{corpus}/k3-n128-s0")
        assert {n for n in names if n.split("/")[0] == corpus} == expected, corpus
