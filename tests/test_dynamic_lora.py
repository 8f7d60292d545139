"""Dynamic LoRA: per-layer ranks, trainable scope, init strategies, alpha policies, export."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import data_equivalence

import lora_gym
from lora_gym.core.config import INITS, SVD_INITS, EnvConfig
from lora_gym.core.errors import ConfigError
from lora_gym.core.observation import OBSERVATION_SPEC
from lora_gym.engine import encoding
from lora_gym.engine import resize as lora
from lora_gym.engine.export import load_adapter
from lora_gym.engine.session import FineTuneSession
from lora_gym.envs.per_layer import LoRAPerLayerEnv
from lora_gym.envs.scope import LoRAScopeEnv
from lora_gym.replay.store import outcome_config
from lora_gym.tasks.loading import load_task
from lora_gym.tasks.sets import load_task_set
from tests.conftest import TINY
from tests.test_finetune import _cache_in_tmp, _keep_threads  # noqa: F401 - autouse fixtures

TINY = EnvConfig.from_yaml(TINY).replace(lora_layers="all")
NEW_IDS = ("LoRATunePerLayer-v0", "LoRATuneScope-v0")


def started(config=TINY, seed=0, task="synth-a"):
    session = FineTuneSession(config)
    session.start(load_task(load_task_set("tiny").get(task)), seed=seed)
    return session


def val_logits(session):
    with torch.inference_mode():
        return session._outputs("val", np.arange(48), pooled=False)[0]


def lora_state(session, names):
    return {n: (session.adapter.layers[n].lora_A[lora.ADAPTER].weight.detach().clone(),
                session.adapter.layers[n].lora_B[lora.ADAPTER].weight.detach().clone())
            for n in names}


def test_growing_one_group_rank_keeps_logits():
    session = started()
    session.train((2, 2), 1e-2, 3)  # B != 0 everywhere
    before = val_logits(session)
    session.set_rank((2, 4))
    torch.testing.assert_close(val_logits(session), before, atol=1e-5, rtol=0)
    low, high = session.adapter.groups(2)
    assert {session.adapter.ranks[n] for n in low} == {2}
    assert {session.adapter.ranks[n] for n in high} == {4}
    session.train((2, 4), 1e-2, 2)  # the new directions train
    assert session.adapter.layers[high[0]].lora_B[lora.ADAPTER].weight[:, 2:].abs().sum() > 0


def test_groups_are_contiguous_and_bounded():
    session = started(TINY.replace(target_modules=["query", "value", "intermediate.dense"]))
    low, high = session.adapter.groups(2)
    assert all(".layer.0." in n for n in low) and all(".layer.1." in n for n in high)
    assert len(low) == len(high) == 3
    with pytest.raises(ConfigError, match=r"`layer_groups` must be at most the 2 layers"):
        session.adapter.groups(3)


def test_activating_a_frozen_module_keeps_logits_and_then_trains_it():
    config = TINY.replace(target_modules=["query", "value", "intermediate.dense"])
    session = started(config)
    adapter = session.adapter
    narrow = adapter.select(1, ["query", "value"])  # top layer, attention only
    frozen = sorted(set(adapter.layers) - narrow)
    session.set_active(narrow)
    untouched = lora_state(session, frozen)
    session.train(2, 1e-2, 3)  # grows every module to rank 2, trains only the narrow scope
    for name, (a, b) in lora_state(session, frozen).items():
        assert not b.any() and not b.requires_grad  # frozen, zero effect on the output
        torch.testing.assert_close(a[:1], untouched[name][0])  # old rows kept, new ones drawn
    before = val_logits(session)
    session.set_active(adapter.layers)  # widen to all layers, attention + MLP
    torch.testing.assert_close(val_logits(session), before, atol=0, rtol=0)
    in_optimizer = {id(p) for g in session.optimizer.param_groups for p in g["params"]}
    assert all(id(adapter.layers[n].lora_B[lora.ADAPTER].weight) in in_optimizer for n in frozen)
    session.train(2, 1e-2, 3)
    assert all(lora_state(session, frozen)[n][1].any() for n in frozen)


def test_narrowing_keeps_learned_delta_frozen():
    session = started()
    session.train(2, 1e-2, 3)
    top = session.adapter.select(1, TINY.target_modules)
    bottom = sorted(set(session.adapter.layers) - top)
    learned = lora_state(session, bottom)
    before = val_logits(session)
    session.set_active(top)
    torch.testing.assert_close(val_logits(session), before, atol=0, rtol=0)
    session.train(2, 1e-2, 3)
    for name, (a, b) in lora_state(session, bottom).items():
        assert torch.equal(a, learned[name][0]) and torch.equal(b, learned[name][1])


def test_scope_within_prefix_cache_and_trainable_rank():
    config = TINY.replace(lora_layers="top-1", target_modules=["query", "value"],
                          scopes=["top-1:value", "all"])
    env = gym.make("LoRATuneScope-v0", config=config).unwrapped
    obs, _ = env.reset(seed=0, options={"task": "synth-b"})
    assert env.session.prefix_layer == 1  # scopes stay inside lora_layers: the cache is valid
    assert obs[env.observation_names.index("trainable_rank")] == pytest.approx(1 / 4 / 2)
    _, _, _, _, info = env.step(np.array([1, 2, 0, 0]))
    assert info["scope"] == "all" and info["trainable_rank"] == 4.0
    session = env.session
    ids, mask, _ = encoding.collate(session.val_split, np.arange(48), 0)
    with torch.inference_mode():
        torch.testing.assert_close(val_logits(session), session.logits(ids, mask), atol=1e-5,
                                   rtol=1e-5)
    with pytest.raises(ConfigError, match=r"`scopes` entry 'top-2' reaches beyond `lora_layers`"):
        gym.make("LoRATuneScope-v0", config=config.replace(scopes=["top-2"]))


@pytest.mark.parametrize("init", INITS)
def test_every_init_trains_and_svd_inits_start_at_the_base_output(init):
    base = val_logits(started(TINY, seed=3))  # kaiming: B = 0, so this is the base model
    session = started(TINY.replace(init=init), seed=3)  # same seed: same head
    torch.testing.assert_close(val_logits(session), base, atol=1e-5, rtol=0)
    layers = session.adapter.layers.values()
    assert all(m.lora_B[lora.ADAPTER].weight.any() == (init in SVD_INITS) for m in layers)
    first = session.train(1, 1e-2, 3)
    assert not first.diverged and np.isfinite(first.train_loss)
    before = val_logits(session)
    session.set_rank(4)  # grow: for PiSSA/OLoRA the residual's next directions move in
    torch.testing.assert_close(val_logits(session), before, atol=1e-5, rtol=0)
    assert not session.train(4, 1e-2, 3).diverged
    if init in SVD_INITS:
        before = val_logits(session)
        session.set_rank(1)  # shrink folds the dropped directions into the residual
        torch.testing.assert_close(val_logits(session), before, atol=1e-4, rtol=0)


@pytest.mark.parametrize("init", SVD_INITS)
def test_reset_restores_the_base_weights(init):
    session = started(TINY.replace(init=init))
    residuals = {n: m.get_base_layer().weight.clone() for n, m in session.adapter.layers.items()}
    session.train(2, 1e-2, 3)
    session.start(session.task, seed=1)
    for name, layer in session.adapter.layers.items():
        torch.testing.assert_close(layer.get_base_layer().weight, residuals[name], atol=0, rtol=0)


@pytest.mark.parametrize(("init", "policy"), [("kaiming", "fixed"), ("gaussian", "2r"),
                                              ("pissa", "rslora"), ("olora", "fixed")])
def test_per_layer_export_reloads_with_identical_predictions(tmp_path, init, policy):
    env = gym.make("LoRATunePerLayer-v0", config=TINY, steps_per_action=4, init=init,
                   alpha_policy=policy).unwrapped
    env.reset(seed=0, options={"task": "synth-a"})
    env.step(np.array([2, 1, 1, 0]))  # ranks (4, 2)
    env.step(np.array([1, 2, 1, 0]))  # (2, 4): a shrink and a grow
    path = env.save_adapter(tmp_path / "adapter")
    session = env.session
    ids, mask, _ = encoding.collate(session.val_split, np.arange(32), 0)
    with torch.inference_mode():
        expected = session.logits(ids, mask)
    model, _, meta = load_adapter(path)
    assert (meta["init"], meta["alpha_policy"]) == (init, policy)
    pattern = model.peft_config["default"].rank_pattern
    if init not in SVD_INITS:
        assert sorted(set(pattern.values())) == [2, 4]
    with torch.inference_mode():
        got = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_per_layer_actions_costs_and_observation():
    env = gym.make("LoRATunePerLayer-v0", config=TINY).unwrapped
    obs, info = env.reset(seed=0)
    assert info["rank"] == (1, 1) and obs in env.observation_space
    uniform = gym.make("LoRATune-v0", config=TINY).unwrapped
    uniform.reset(seed=0)
    _, _, _, _, ref = uniform.step(uniform.grid.encode(4, 1e-2))
    obs, _, _, _, info = env.step(env.uniform_action(4, 1e-2))
    assert info["cost"] == ref["cost"]  # a uniform allocation costs what LoRATune-v0 charges
    obs, _, _, _, info = env.step(np.array([0, 2, 1, 0]))  # (1, 4): half the trainable rank
    assert info["rank"] == (1, 4) and info["trainable_rank"] == 2.5
    names = env.observation_names
    assert obs[names.index("group_rank_0")] == 0.0 and obs[names.index("group_rank_1")] == 1.0
    assert obs[names.index("trainable_rank")] == pytest.approx(2.5 / 4)


@pytest.mark.parametrize("env_class", [LoRAPerLayerEnv, LoRAScopeEnv])
def test_docstring_tables_match_the_default_spaces(env_class):
    env = env_class()  # default config: no heavy work until reset
    doc = env_class.__doc__
    extra = env.observation_names[len(OBSERVATION_SPEC):]
    for num, name in enumerate(extra, start=len(OBSERVATION_SPEC)):
        assert f"| {num}  | {name}" in doc
    assert len(env.action_space.nvec) == doc.count("| rank") + doc.count("| learning rate") + (
        doc.count("| scope ")) + doc.count("| stop ")


@pytest.mark.parametrize("env_id", NEW_IDS)
def test_seeded_rollouts_are_identical(env_id):
    def rollout():
        env = gym.make(env_id, config=TINY)
        env.action_space.seed(5)
        trace = [env.reset(seed=7)]
        for _ in range(3):
            trace.append(env.step(env.action_space.sample()))
        return trace

    for x, y in zip(rollout(), rollout(), strict=True):
        assert data_equivalence(x, y, exact=True)


@pytest.mark.parametrize(("env_id", "env_class"), [("LoRATunePerLayer-v0", LoRAPerLayerEnv),
                                                   ("LoRATuneScope-v0", LoRAScopeEnv)])
def test_new_ids_make_their_env_class(env_id, env_class):
    assert env_id in gym.registry and env_id in lora_gym.ENV_IDS
    assert type(gym.make(env_id, config=TINY).unwrapped) is env_class


@pytest.mark.parametrize(
    ("changes", "match"),
    [({"init": "uniform"}, r"`init` must be one of \['kaiming', 'gaussian', 'orthogonal', 'x"),
     ({"alpha_policy": "sqrt"}, r"`alpha_policy` must be one of \['fixed', 'rslora', '2r'\]"),
     ({"layer_groups": 0}, r"`layer_groups` must be >= 1, got 0"),
     ({"scopes": ["all:key"]}, r"`scopes` entries must be .* modules among \['query', 'value'\]"),
     ({"scopes": ["bottom-1"]}, r"got 'bottom-1'"),
     ({"scopes": []}, r"`scopes` must name at least one scope"),
     ({"per_layer": {"layer_groups": 0}}, r"`per_layer`: `layer_groups` must be >= 1, got 0"),
     ({"per_layer": {"groups": 2}}, r"`per_layer`: unknown config key\(s\) \['groups'\]"),
     ({"scope": ["all"]}, r"`scope` must be a mapping with keys \['scopes'\]")])
def test_bad_new_fields_name_the_field(changes, match):
    with pytest.raises(ConfigError, match=match):
        EnvConfig.from_dict({**EnvConfig().to_dict(), **changes})


def test_svd_init_rank_beyond_the_layer_is_a_clear_error():
    with pytest.raises(ValueError, match=r"`init` 'pissa' needs rank <= min\(in, out\) = 32"):
        started(TINY.replace(init="pissa", ranks=[64]))


def test_variant_settings_are_composed_configs_and_old_keys_still_load():
    from lora_gym.core.config import PerLayerConfig, ScopeConfig
    from lora_gym.replay.store import config_hash

    nested = EnvConfig.from_dict({"per_layer": {"layer_groups": 3}, "scope": {"scopes": ["all"]}})
    flat = EnvConfig.from_dict({"layer_groups": 3, "scopes": ["all"]})  # a config of before
    assert nested == flat and nested.per_layer == PerLayerConfig(layer_groups=3)
    assert nested.scope == ScopeConfig(scopes=("all",))
    assert nested.to_dict()["per_layer"] == {"layer_groups": 3}
    assert EnvConfig.from_dict(nested.to_dict()) == nested
    assert nested.replace(layer_groups=2).per_layer.layer_groups == 2  # flat keywords too
    assert outcome_config(nested)["layer_groups"] == 3 and "per_layer" not in outcome_config(nested)
    assert config_hash(EnvConfig()) == "4f2bb39fed94949c"  # the shipped default table's key


def test_new_fields_at_their_defaults_keep_the_config_hash():
    assert not {"init", "alpha_policy", "layer_groups", "scopes"} & set(outcome_config(TINY))
    assert outcome_config(TINY.replace(init="pissa"))["init"] == "pissa"
