"""The fine-tune engine: cached and fast paths equal the plain model, token cache, threads."""

import math

import numpy as np
import pytest
import torch

from lora_gym.core import paths
from lora_gym.core.config import EnvConfig
from lora_gym.core.errors import ConfigError, LoRAGymWarning
from lora_gym.engine import encoding, prefix_cache
from lora_gym.engine.encoding import EncodedSplit, collate, encode_task
from lora_gym.engine.session import N_ENVS_ENV, FineTuneSession, available_cpus, resolve_threads
from lora_gym.tasks.loading import load_task
from lora_gym.tasks.sets import load_task_set
from tests.conftest import TINY

TINY = EnvConfig.from_yaml(TINY)
ALL_MODULES = ("query", "key", "value", "attention.output.dense", "intermediate.dense",
               "output.dense")


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny_task(name="synth-a"):
    return load_task(load_task_set("tiny").get(name))


def tiny_bert(attn: str, layers: int = 3, seed: int = 0):
    """A small BERT classifier with LoRA (random, non-zero B) in its top 2 layers."""
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=layers,
                        num_attention_heads=4, intermediate_size=64, num_labels=3)
    config._attn_implementation = attn
    torch.manual_seed(seed)
    net = BertForSequenceClassification(config).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    get_peft_model(net, LoraConfig(r=4, target_modules=list(ALL_MODULES), lora_dropout=0.0,
                                   layers_to_transform=list(range(layers - 2, layers)),
                                   layers_pattern="layer"))
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.1)
    return net


def random_split(n=12, max_len=9, seed=0):
    rng = np.random.default_rng(seed)
    ids = tuple(np.concatenate([[1], rng.integers(5, 100, size=rng.integers(1, max_len))])
                for _ in range(n))
    return EncodedSplit(ids, rng.integers(0, 3, size=n))


# -- the frozen-prefix path equals the full model ------------------------------------------------
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_cached_prefix_logits_equal_full_model(attn):
    net = tiny_bert(attn)
    split = random_split()
    states = prefix_cache.compute_prefix(net, split, pad_id=0, layer=1, batch_size=5)
    idx = np.array([3, 0, 7, 11, 5])
    hidden, mask, labels = states.batch(idx)
    ids, full_mask, full_labels = collate(split, idx, pad_id=0)
    assert torch.equal(mask, full_mask) and torch.equal(labels, full_labels)
    with torch.no_grad():
        expected = net(input_ids=ids, attention_mask=full_mask).logits
        cached = net.classifier(prefix_cache.top_pooled(net, hidden, mask, 1))
        fresh = net.classifier(prefix_cache.top_pooled(net, net.bert.embeddings(input_ids=ids),
                                                       full_mask, 0))
    torch.testing.assert_close(cached, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fresh, expected, atol=1e-5, rtol=1e-5)


def test_prefix_states_are_unpadded_and_padded_back_with_zeros():
    net = tiny_bert("sdpa")
    split = random_split()
    states = prefix_cache.compute_prefix(net, split, pad_id=0, layer=1, batch_size=4)
    assert states.flat.shape == (split.lengths.sum(), 32)
    assert states.nbytes == split.lengths.sum() * 32 * 4
    hidden, mask, _ = states.batch(np.array([1, 2]))
    assert hidden.shape[1] == split.lengths[[1, 2]].max()
    assert (hidden[mask == 0] == 0).all()


def sessions(**changes):
    config = TINY.replace(lora_layers="top-1", target_modules=ALL_MODULES, **changes)
    fast = FineTuneSession(config)
    plain = FineTuneSession(config.replace(prefix_cache=False))
    assert fast.prefix_layer == 1 and plain.prefix_layer is None
    return fast, plain


def test_cached_training_equals_full_training():
    fast, plain = sessions()
    task = tiny_task()
    m_fast, m_plain = fast.start(task, seed=5), plain.start(task, seed=5)
    assert fast._states is not None and plain._states is None
    assert m_fast.accuracy == m_plain.accuracy
    assert math.isclose(m_fast.val_loss, m_plain.val_loss, rel_tol=1e-5)
    for rank, lr in [(2, 1e-2), (4, 1e-2), (1, 1e-3)]:  # grow, grow, shrink
        s_fast, s_plain = fast.train(rank, lr, 4), plain.train(rank, lr, 4)
        assert s_fast.tokens == s_plain.tokens
        assert s_fast.train_loss == pytest.approx(s_plain.train_loss, rel=1e-4)
        e_fast, e_plain = fast.evaluate(s_fast.train_loss), plain.evaluate(s_plain.train_loss)
        assert e_fast.accuracy == e_plain.accuracy
        assert e_fast.val_loss == pytest.approx(e_plain.val_loss, rel=1e-4)
    assert s_plain.train_loss < m_plain.val_loss  # it learned something


def test_engine_logits_equal_the_hugging_face_forward():
    session = FineTuneSession(TINY)
    session.start(tiny_task(), seed=0)
    session.train(2, 1e-2, 3)  # non-zero B
    idx = np.arange(20)
    ids, mask, _ = collate(session.val_split, idx, session.tokenizer.pad_token_id)
    with torch.no_grad():
        engine, _, _ = session._outputs("val", idx, pooled=False)
        torch.testing.assert_close(engine, session.logits(ids, mask), atol=1e-5, rtol=1e-5)


def test_dynamic_padding_equals_max_length_padding():
    session = FineTuneSession(TINY)
    session.start(tiny_task(), seed=0)
    session.train(2, 1e-2, 3)
    split, pad = session.val_split, session.tokenizer.pad_token_id
    idx = np.arange(len(split.labels))
    ids, mask, _ = collate(split, idx, pad)
    width = TINY.max_length
    assert ids.shape[1] < width  # the test must pad something
    padded_ids = torch.full((len(idx), width), pad, dtype=torch.int64)
    padded_mask = torch.zeros((len(idx), width), dtype=torch.int64)
    padded_ids[:, :ids.shape[1]], padded_mask[:, :ids.shape[1]] = ids, mask
    with torch.no_grad():
        dynamic, fixed = session.logits(ids, mask), session.logits(padded_ids, padded_mask)
    torch.testing.assert_close(dynamic, fixed, atol=1e-5, rtol=1e-5)
    assert torch.equal(dynamic.argmax(1), fixed.argmax(1))
    engine = session.evaluate()
    assert engine.accuracy == float((fixed.argmax(1).numpy() == split.labels).mean())


def test_untrained_outputs_are_cached_per_task_and_exact():
    session = FineTuneSession(TINY)
    task = tiny_task()
    first = session.start(task, seed=1)
    assert len(session._untrained) == 1
    again = session.start(task, seed=2)  # another head: other metrics, from the cached outputs
    assert again != first and len(session._untrained) == 1
    assert session.evaluate() == again  # evaluating the fresh model from scratch agrees exactly


def test_prefix_cache_keeps_recent_tasks_within_budget():
    cache = prefix_cache.PrefixCache(budget=1000)
    big = {"train": prefix_cache.PrefixStates(torch.zeros(10, 10), np.array([0, 10]),
                                              torch.zeros(1, dtype=torch.int64), 1)}
    cache.get("a", lambda: big)
    cache.get("b", lambda: big)
    assert "a" in cache and "b" in cache and cache.nbytes == 800
    cache.get("c", lambda: big)
    assert "a" not in cache and len(cache) == 2
    cache.get("d", lambda: {"train": prefix_cache.PrefixStates(
        torch.zeros(100, 100), np.array([0, 100]), torch.zeros(1, dtype=torch.int64), 1)})
    assert len(cache) == 1 and "d" in cache  # the current task always stays


def test_prefix_budget_env(monkeypatch):
    monkeypatch.setenv(prefix_cache.BUDGET_ENV, "2")
    assert prefix_cache.budget_bytes() == 2 * 2**20
    monkeypatch.setenv(prefix_cache.BUDGET_ENV, "lots")
    with pytest.raises(ConfigError, match=prefix_cache.BUDGET_ENV):
        prefix_cache.budget_bytes()


# -- tokenisation cache ----------------------------------------------------------------------------
def test_token_cache_round_trips_and_is_keyed(monkeypatch):
    from lora_gym.engine.models import load_base

    _, tokenizer = load_base("tiny-bert")
    task = tiny_task()
    train, val = encode_task(task, tokenizer, 16)
    path = encoding.cache_path(task, tokenizer, 16)
    assert path.is_file() and path.parent.parent == paths.cache_dir()
    assert not list(path.parent.glob("*.tmp"))

    def no_tokenising(*args, **kwargs):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(encoding, "encode", no_tokenising)
    train2, val2 = encode_task(task, tokenizer, 16)
    for a, b in ((train, train2), (val, val2)):
        assert len(a.ids) == len(b.ids) and all(np.array_equal(x, y) and y.dtype == np.int64
                                                for x, y in zip(a.ids, b.ids, strict=True))
        assert np.array_equal(a.labels, b.labels)
    monkeypatch.undo()
    monkeypatch.setenv(paths.CACHE_ENV, str(path.parent.parent))
    assert encoding.cache_path(task, tokenizer, 8) != path
    assert encoding.cache_path(tiny_task("synth-b"), tokenizer, 16) != path
    short, _ = encode_task(task, tokenizer, 8)
    assert short.lengths.max() == 8 < train.lengths.max()
    assert len(list(path.parent.glob("*.npz"))) == 2


def test_token_cache_recovers_from_a_bad_file_and_an_unwritable_dir(tmp_path, monkeypatch):
    from lora_gym.engine.models import load_base

    _, tokenizer = load_base("tiny-bert")
    task = tiny_task()
    expected, _ = encode_task(task, tokenizer, 16)
    path = encoding.cache_path(task, tokenizer, 16)
    path.write_bytes(b"not a npz file")
    with pytest.warns(LoRAGymWarning, match="unreadable"):
        again, _ = encode_task(task, tokenizer, 16)
    assert all(np.array_equal(x, y) for x, y in zip(expected.ids, again.ids, strict=True))
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(paths.CACHE_ENV, str(blocker))  # a file: no directory can go there
    with pytest.warns(LoRAGymWarning, match="cannot write"):
        third, _ = encode_task(task, tokenizer, 16)
    assert len(third.ids) == len(expected.ids)


# -- threads -----------------------------------------------------------------------------------
def test_threads_setting(monkeypatch):
    monkeypatch.delenv(N_ENVS_ENV, raising=False)
    assert resolve_threads(3) == 3
    assert resolve_threads(0) == available_cpus()
    monkeypatch.setenv(N_ENVS_ENV, "2")
    assert resolve_threads(0) == max(1, available_cpus() // 2)
    monkeypatch.setenv(N_ENVS_ENV, "100000")
    assert resolve_threads(0) == 1
    assert resolve_threads(2) == 2  # an explicit setting wins
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(N_ENVS_ENV, bad)
        with pytest.raises(ConfigError, match=N_ENVS_ENV):
            resolve_threads(0)
    monkeypatch.setenv(N_ENVS_ENV, "1")
    FineTuneSession(TINY.replace(torch_threads=0))
    assert torch.get_num_threads() == available_cpus()
    FineTuneSession(TINY)  # tiny.yaml: torch_threads 1
    assert torch.get_num_threads() == 1


def test_one_cache_root_for_tokens_and_tables(monkeypatch, tmp_path):
    from lora_gym.engine import encoding as enc
    from lora_gym.replay import tables

    assert enc.cache_dir is paths.cache_dir and tables.cache_dir is paths.cache_dir
    monkeypatch.setenv(paths.CACHE_ENV, "")
    assert paths.cache_dir() == paths.Path.home() / ".cache" / "lora_gym"
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path))
    assert paths.cache_dir() == tmp_path
