"""Property tests (hypothesis): config loading, weight-preserving resize, replay == live."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peft import LoraConfig, get_peft_model
from torch import nn

from lora_gym.core.config import ALPHA_POLICIES, INITS, SVD_INITS, EnvConfig
from lora_gym.core.errors import ConfigError
from lora_gym.engine import resize as lora
from lora_gym.policies import RandomPolicy
from lora_gym.policies.recording import record
from tests.conftest import TINY

FIELDS = sorted(EnvConfig.__dataclass_fields__)
scalars = (st.none() | st.booleans() | st.integers(-3, 2**40) | st.floats(allow_nan=True)
           | st.text(max_size=12) | st.sampled_from(["all", "top-2", "top-0", "fixed", "pissa"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
keys = st.sampled_from(FIELDS) | st.text(max_size=8) | st.integers() | st.none()


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(keys, values, max_size=6))
def test_any_mapping_builds_a_config_or_raises_config_error(data):
    try:
        config = EnvConfig.from_dict(data)
    except ConfigError:
        return
    assert EnvConfig.from_dict(config.to_dict()) == config  # what builds also round-trips


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), values, min_size=1, max_size=3))
def test_known_keys_with_any_values_build_or_raise_config_error(data):
    try:
        EnvConfig.from_dict(data)
    except ConfigError:
        pass


def lora_linear(in_f: int, out_f: int, rank: int, seed: int) -> nn.Module:
    """One PEFT LoRA layer around a random Linear(in_f, out_f)."""
    torch.manual_seed(seed)
    model = get_peft_model(nn.Sequential(nn.Linear(in_f, out_f)),
                           LoraConfig(r=rank, lora_alpha=8, target_modules=["0"]))
    return lora.lora_layers(model)[0]


def layer_weight(layer) -> torch.Tensor:
    """What the layer computes: base weight (the residual for SVD inits) + ΔW."""
    return layer.get_base_layer().weight.double() + lora.delta_weight(layer).double()


def truncated(delta: torch.Tensor, rank: int) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vh[:rank]


@settings(max_examples=60, deadline=None)
@given(in_f=st.integers(2, 24), out_f=st.integers(2, 24), r0=st.integers(1, 8),
       r1=st.integers(1, 12), alpha=st.floats(0.5, 64), policy=st.sampled_from(ALPHA_POLICIES),
       init=st.sampled_from(INITS), seed=st.integers(0, 2**16))
def test_resize_keeps_delta_w(in_f, out_f, r0, r1, alpha, policy, init, seed):
    low = min(in_f, out_f)
    r0 = min(r0, low)
    if init in SVD_INITS:
        r1 = min(r1, low)
    layer = lora_linear(in_f, out_f, r0, seed)
    gen = torch.Generator().manual_seed(seed)
    lora.reset_layer(layer, r0, alpha, gen, init, policy)
    with torch.no_grad():  # "trained": a random update on top of the init
        layer.lora_B[lora.ADAPTER].weight.add_(torch.randn(out_f, r0, generator=gen) * 0.1)
    delta, weight = lora.delta_weight(layer).double(), layer_weight(layer)
    lora.resize_layer(layer, r1, alpha, gen, init, policy)
    assert layer.r[lora.ADAPTER] == r1 == layer.lora_A[lora.ADAPTER].weight.shape[0]
    assert layer.scaling[lora.ADAPTER] == pytest.approx(lora.scaling(r1, alpha, policy))
    tol = {"atol": 1e-4 * (1 + delta.abs().max().item()), "rtol": 1e-4}
    if init in SVD_INITS:  # the layer's weight is kept exactly, grow or shrink
        torch.testing.assert_close(layer_weight(layer), weight, **tol)
    elif r1 >= r0:  # grow (or same rank): ΔW kept exactly
        torch.testing.assert_close(lora.delta_weight(layer).double(), delta, **tol)
    else:  # shrink: the best rank-r1 approximation of ΔW
        torch.testing.assert_close(lora.delta_weight(layer).double(), truncated(delta, r1), **tol)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A small store of random episodes on two tiny tasks, and its replay env."""
    from lora_gym.core.config import resolve_config

    path = tmp_path_factory.mktemp("store") / "steps.sqlite"
    config = resolve_config(TINY, task_split="all")
    jobs = [(RandomPolicy(6, seed=s), t, s) for t in ("synth-a", "synth-c") for s in (0, 1)]
    record(config, jobs, str(path), progress=False)
    replay = gym.make("LoRATuneReplay-v0", config=config, store=str(path), miss="raise")
    live = gym.make("LoRATune-v0", config=config)
    keys = sorted((t, s, n.prefix) for t, s, n in replay.unwrapped.index.nodes())
    return replay, live, keys


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.data_too_large])
@given(data=st.data())
def test_replay_equals_live_on_recorded_prefixes(recorded, data):
    replay, live, keys = recorded
    task, seed, prefix = data.draw(st.sampled_from(keys))
    options = {"task": task, "episode_seed": seed}
    obs_r, info_r = replay.reset(options=options)
    obs_l, info_l = live.reset(options=options)
    assert np.array_equal(obs_r, obs_l) and info_r["metrics"] == info_l["metrics"]
    for action in prefix:
        (obs_r, rew_r, *ends_r, info_r) = replay.step(action)
        (obs_l, rew_l, *ends_l, info_l) = live.step(action)
        assert np.array_equal(obs_r, obs_l) and rew_r == rew_l and ends_r == ends_l
        assert info_r["metrics"] == info_l["metrics"] and info_r["source"] == "table"
