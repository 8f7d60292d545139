"""The engine on CUDA: same outcomes as the CPU in float32, finite ones in bf16 and fp16, the
prefix cache and every family on the GPU. Runs only where CUDA is available."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

import lora_gym  # noqa: F401 - registers the env ids
from lora_gym.core import paths
from lora_gym.core.config import EnvConfig
from lora_gym.engine.session import FineTuneSession
from lora_gym.tasks.loading import load_task
from lora_gym.tasks.sets import load_task_set
from tests.conftest import TINY

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="CUDA is not available on this machine (torch "
                                       f"{torch.__version__}); the CPU tests cover the rest")


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))


def _episode(config: EnvConfig) -> list[float]:
    session = FineTuneSession(config)
    task = load_task(load_task_set("tiny").get("synth-a"))
    out = [session.start(task, seed=0).accuracy]
    for rank, lr in ((2, 1e-2), (4, 1e-2), (1, 1e-3)):  # grow, then shrink
        segment = session.train(rank, lr, config.steps_per_action, augmentation="hidden_noise")
        out.append(session.evaluate(segment.train_loss).val_loss)
    return out


@pytest.mark.parametrize("lora_layers", ["all", "top-1"])
def test_cuda_float32_matches_the_cpu(lora_layers):
    cpu = dataclasses.replace(EnvConfig.from_yaml(TINY), lora_layers=lora_layers)
    gpu = dataclasses.replace(cpu, device="cuda")
    np.testing.assert_allclose(_episode(gpu), _episode(cpu), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_runs_and_stays_finite(dtype):
    config = dataclasses.replace(EnvConfig.from_yaml(TINY), device="cuda", dtype=dtype,
                                 lora_layers="top-1")
    assert np.isfinite(_episode(config)).all()
    session = FineTuneSession(config)
    trainable = [p for p in session.net.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 and p.is_cuda for p in trainable)


def test_live_env_on_cuda_passes_the_checker():
    from gymnasium.utils.env_checker import check_env

    env = gym.make("LoRATune-v0", config=TINY, device="cuda", dtype="bfloat16")
    check_env(env.unwrapped, skip_render_check=True)


def test_every_family_on_cuda(tmp_path):
    from transformers import AutoTokenizer

    from lora_gym.engine.models import embedded_model_dir
    from tests.test_families import MODELS, family_config, save_tiny

    vocab = AutoTokenizer.from_pretrained(embedded_model_dir()).vocab_size
    for model_type, make in MODELS.items():
        path = save_tiny(make(vocab), tmp_path / model_type)
        config = family_config(model_type, path, device="cuda", dtype="bfloat16")
        assert np.isfinite(_episode(config)).all(), model_type
