"""Training-batch augmentation in hidden-state space: noise, mixup, and a live env using them."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import lora_gym  # noqa: F401
from lora_gym.core.config import EnvConfig
from lora_gym.core.errors import ConfigError
from lora_gym.engine.augment import augment
from lora_gym.replay.store import config_hash
from tests.conftest import TINY


def batch():
    hidden = torch.randn(6, 5, 4, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(6, 5, dtype=torch.long)
    mask[0, 3:] = 0  # padding of the first example
    return hidden, mask, torch.tensor([0, 1, 0, 1, 2, 2])


def test_noise_leaves_padding_alone_and_scales_with_strength():
    hidden, mask, labels = batch()
    small = augment("hidden_noise", 0.1, hidden, mask, labels, np.random.default_rng(0)).hidden
    large = augment("hidden_noise", 0.5, hidden, mask, labels, np.random.default_rng(0)).hidden
    assert torch.equal(small[0, 3:], hidden[0, 3:])  # padding untouched
    assert torch.allclose(large - hidden, 5 * (small - hidden), atol=1e-5)  # same draw, 5x
    assert not torch.equal(small, hidden)


def test_mixup_mixes_states_and_labels_with_the_same_weight():
    hidden, mask, labels = batch()
    out = augment("mixup", 0.4, hidden, mask, labels, np.random.default_rng(1))
    rng = np.random.default_rng(1)
    partner, weight = rng.permutation(6), rng.beta(0.4, 0.4, size=6)
    w = torch.tensor(weight, dtype=hidden.dtype).view(6, 1, 1)
    torch.testing.assert_close(out.hidden, w * hidden + (1 - w) * hidden[partner])
    assert torch.equal(out.partner_labels, labels[partner])
    logits = torch.randn(6, 3)
    ce = torch.nn.functional.cross_entropy
    expect = (torch.tensor(weight, dtype=torch.float32) * ce(logits, labels, reduction="none")
              + (1 - torch.tensor(weight, dtype=torch.float32))
              * ce(logits, labels[partner], reduction="none")).mean()
    torch.testing.assert_close(out.loss(logits), expect)


@pytest.mark.parametrize("layers", ["all", "top-1"])  # top-1: from the frozen-prefix cache
@pytest.mark.parametrize("kind", ["hidden_noise", "mixup"])
def test_live_episode_with_augmentation_is_seeded_and_differs_from_none(kind, layers):
    def episode(**kw):
        env = gym.make("LoRATune-v0", config=TINY, lora_layers=layers, **kw)
        env.reset(seed=0, options={"task": "synth-a"})
        return [env.step(1)[4]["metrics"]["train_loss"] for _ in range(2)], env

    a, env = episode(augmentation=kind, augmentation_strength=1.0)
    b, _ = episode(augmentation=kind, augmentation_strength=1.0)
    none, _ = episode()
    assert a == b  # seeded: the same episode twice
    assert env.unwrapped.session.config.augmentation == kind
    assert a != none  # the augmented batches train with another loss
    cfg = EnvConfig.from_yaml(TINY)
    assert config_hash(cfg) != config_hash(cfg.replace(augmentation=kind))
    assert config_hash(cfg) == config_hash(cfg.replace(augmentation="none"))


def test_bad_augmentation_names_the_field_and_the_choices():
    with pytest.raises(ConfigError, match=r"`augmentation`.*'none', 'hidden_noise', 'mixup'"):
        EnvConfig(augmentation="cutout")
    with pytest.raises(ConfigError, match="`augmentation_strength` must be a finite number > 0"):
        EnvConfig(augmentation_strength=0.0)
