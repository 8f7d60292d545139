"""Model families: a tiny random model of each, built here from its config class (no download),
runs the whole engine: both env checkers, prefix cache = full forward, rank resize keeps ΔW,
augmentation, and an exported adapter that reloads with plain PEFT and predicts the same."""

import dataclasses

import gymnasium as gym
import pytest
import torch
import transformers as T
from gymnasium.utils.env_checker import check_env as gym_check_env
from peft import PeftModel
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import lora_gym  # noqa: F401 - registers the env ids
from lora_gym.core import paths
from lora_gym.core.config import EnvConfig
from lora_gym.core.errors import ConfigError
from lora_gym.engine import resize as lora
from lora_gym.engine.encoding import collate
from lora_gym.engine.export import load_adapter
from lora_gym.engine.families import FAMILIES, family_of
from lora_gym.engine.models import embedded_model_dir
from lora_gym.engine.session import FineTuneSession
from lora_gym.tasks.loading import load_task
from lora_gym.tasks.sets import load_task_set
from tests.conftest import TINY

SIZE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=128)
DECODER = dict(SIZE, num_key_value_heads=2, bos_token_id=101, eos_token_id=102)
MODELS = {  # model type -> a tiny config of it (vocabulary: the embedded MiniLM tokenizer's)
    "bert": lambda v: T.BertConfig(vocab_size=v, **SIZE),
    "roberta": lambda v: T.RobertaConfig(vocab_size=v, pad_token_id=0, **SIZE),
    "xlm-roberta": lambda v: T.XLMRobertaConfig(vocab_size=v, pad_token_id=0, **SIZE),
    "distilbert": lambda v: T.DistilBertConfig(vocab_size=v, dim=32, n_layers=2, n_heads=2,
                                               hidden_dim=64, max_position_embeddings=128),
    "deberta-v2": lambda v: T.DebertaV2Config(vocab_size=v, **SIZE),
    "electra": lambda v: T.ElectraConfig(vocab_size=v, embedding_size=32, **SIZE),
    "gpt2": lambda v: T.GPT2Config(vocab_size=v, n_embd=32, n_layer=2, n_head=2, n_positions=128,
                                   bos_token_id=101, eos_token_id=102),
    "llama": lambda v: T.LlamaConfig(vocab_size=v, **DECODER),
    "qwen2": lambda v: T.Qwen2Config(vocab_size=v, **DECODER),
    "mistral": lambda v: T.MistralConfig(vocab_size=v, **DECODER),
}


def test_every_family_has_a_tiny_model_here():
    assert sorted(MODELS) == sorted(t for f in FAMILIES for t in f.model_types)


def save_tiny(model_config, path):
    """A random tiny sequence classifier of `model_config` and the MiniLM tokenizer in `path`."""
    tokenizer = T.AutoTokenizer.from_pretrained(embedded_model_dir(), local_files_only=True)
    model_config.num_labels = 2
    torch.manual_seed(0)
    T.AutoModelForSequenceClassification.from_config(model_config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module", params=sorted(MODELS))
def model_dir(request, tmp_path_factory):
    """(model type, directory of its tiny random model)."""
    tokenizer_vocab = T.AutoTokenizer.from_pretrained(embedded_model_dir()).vocab_size
    path = tmp_path_factory.mktemp(request.param)
    return request.param, save_tiny(MODELS[request.param](tokenizer_vocab), path)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))


def family_config(model_type: str, path: str, **changes) -> EnvConfig:
    """The tiny config on this model: LoRA on its top layer (prefix cache) with its targets."""
    family = next(f for f in FAMILIES if model_type in f.model_types)
    settings = dict(model=path, target_modules=family.targets, lora_layers="top-1",
                    episode_length=2, augmentation_choices=("none", "hidden_noise"))
    return dataclasses.replace(EnvConfig.from_yaml(TINY), **{**settings, **changes})


def test_env_checkers_pass(model_dir):
    model_type, path = model_dir
    config = family_config(model_type, path)
    env = gym.make("LoRATune-v0", config=config)
    gym_check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped)
    env.reset(seed=0)
    for action in (0, env.action_space.n - 2):  # a plain and a hidden_noise action
        obs, reward, *_ = env.step(action)
        assert obs in env.observation_space and torch.isfinite(torch.tensor(reward))


def _session(model_type, path, **changes):
    session = FineTuneSession(family_config(model_type, path, **changes))
    session.start(load_task(load_task_set("tiny").get("synth-a")), seed=0)
    return session


def test_prefix_cache_equals_full_forward_and_augmentations_train(model_dir):
    model_type, path = model_dir
    session = _session(model_type, path)
    assert session.prefix_layer == 1 and family_of(session.net.config).name
    for kind in ("none", "hidden_noise", "mixup"):
        result = session.train(rank=2, lr=1e-2, steps=2, augmentation=kind)
        assert not result.diverged and result.train_loss > 0
    idx = torch.arange(len(session.val_split.labels)).numpy()
    with torch.inference_mode():
        cached = session._split_outputs(session._states["val"], session.val_split, idx, False)[0]
        ids, mask, _ = collate(session.val_split, idx, session.tokenizer.pad_token_id)
        full = session.logits(ids, mask)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-4)


def test_rank_grow_and_shrink_keep_delta_w(model_dir):
    model_type, path = model_dir
    session = _session(model_type, path)
    session.train(rank=2, lr=1e-2, steps=3)
    layers = list(session.adapter.layers.values())
    before = [lora.delta_weight(layer).clone() for layer in layers]
    assert any(d.abs().max() > 0 for d in before)
    session.set_rank(4)  # grow: exactly
    for layer, d in zip(layers, before, strict=True):
        torch.testing.assert_close(lora.delta_weight(layer), d, atol=1e-6, rtol=0)
    session.set_rank(2)  # shrink back to the rank ΔW has: its SVD loses nothing
    for layer, d in zip(layers, before, strict=True):
        torch.testing.assert_close(lora.delta_weight(layer), d, atol=1e-5, rtol=0)


def test_exported_adapter_reloads_with_peft_and_predicts_the_same(model_dir, tmp_path):
    model_type, path = model_dir
    env = gym.make("LoRATune-v0", config=family_config(model_type, path))
    env.reset(seed=0, options={"task": "synth-a"})
    grid = env.unwrapped.grid
    env.step(grid.encode(4, 1.0e-2))
    env.step(grid.encode(2, 1.0e-2))  # shrink after training: ΔW by SVD
    folder = env.unwrapped.save_adapter(tmp_path / "adapter")
    session = env.unwrapped.session
    batch = session.tokenizer(list(session.task.val_texts[:8]), padding=True, truncation=True,
                              max_length=32, return_tensors="pt")
    with torch.inference_mode():
        expected = session.logits(batch["input_ids"], batch["attention_mask"])
    model, _, _ = load_adapter(folder)
    assert isinstance(model, PeftModel)
    with torch.inference_mode():
        got = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_an_unsupported_architecture_is_named_with_the_supported_ones(tmp_path):
    vocab = T.AutoTokenizer.from_pretrained(embedded_model_dir()).vocab_size
    path = save_tiny(T.MPNetConfig(vocab_size=vocab, **SIZE), tmp_path)
    with pytest.raises(ConfigError, match=r"model type 'mpnet'.*supported model types.*'llama'"):
        FineTuneSession(dataclasses.replace(EnvConfig.from_yaml(TINY), model=path))


def test_device_and_dtype_are_validated():
    with pytest.raises(ConfigError, match=r"`device` must be auto, cpu, cuda or cuda:N"):
        EnvConfig(device="gpu")
    with pytest.raises(ConfigError, match=r"`dtype` 'bfloat16' needs a CUDA `device`"):
        EnvConfig(dtype="bfloat16")
    with pytest.raises(ConfigError, match=r"`dtype` must be one of"):
        EnvConfig(device="cuda", dtype="float8")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        EnvConfig(device="cuda").device_name(cuda_available=False)
    assert EnvConfig(device="auto").device_name(cuda_available=False) == "cpu"
    assert EnvConfig(device="auto").device_name(cuda_available=True) == "cuda"
    with pytest.raises(ConfigError, match="resolved to the CPU"):
        EnvConfig(device="auto", dtype="bfloat16").device_name(cuda_available=False)


def test_device_keys_tables_by_type_and_cpu_keeps_old_keys():
    from lora_gym.replay.store import config_hash

    base = EnvConfig()
    assert config_hash(dataclasses.replace(base, device="auto")) == config_hash(base) or \
        torch.cuda.is_available()
    cuda = [config_hash(dataclasses.replace(base, device=d)) for d in ("cuda", "cuda:1")]
    assert cuda[0] == cuda[1] != config_hash(base)
    bf16 = dataclasses.replace(base, device="cuda", dtype="bfloat16")
    assert config_hash(bf16) not in (config_hash(base), cuda[0])
