"""`LoRATuneMultiTask-v0` and gradient projection (seed 003): the env contract, one frozen base,
per-task adapters, the shared adapter, PCGrad and the subspace projection."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import lora_gym
from lora_gym.core.config import resolve_config
from lora_gym.core.errors import ConfigError
from lora_gym.engine.projection import pcgrad, subspace_projection
from tests.conftest import TINY

MT = {"multi_task_k": 2}  # the tiny set's train split holds two tasks


def make(**kw):
    return gym.make("LoRATuneMultiTask-v0", config=TINY, **{**MT, **kw})


def act(env, ranks, lr_index=1, stop=0):
    base = env.unwrapped
    return np.array([base.config.ranks.index(r) for r in ranks] + [lr_index, stop])


# -- projection ----------------------------------------------------------------------------------
def test_pcgrad_removes_the_conflicting_component():
    g1, g2 = torch.tensor([1.0, 1.0, 0.0]), torch.tensor([-1.0, 0.5, 2.0])
    assert torch.dot(g1, g2) < 0
    combined = pcgrad([g1, g2], np.random.default_rng(0))
    p1 = g1 - torch.dot(g1, g2) / torch.dot(g2, g2) * g2  # g1 without its part along g2
    p2 = g2 - torch.dot(g2, g1) / torch.dot(g1, g1) * g1
    assert abs(float(torch.dot(p1, g2))) < 1e-6 and abs(float(torch.dot(p2, g1))) < 1e-6
    torch.testing.assert_close(combined, p1 + p2)
    agreeing = [g1, torch.tensor([1.0, 0.0, 1.0])]  # no conflict: the plain sum
    torch.testing.assert_close(pcgrad(agreeing, np.random.default_rng(0)), sum(agreeing))


def test_subspace_projection_stays_in_the_top_singular_subspace():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(8, 20, generator=gen, dtype=torch.float64)
    grad = torch.randn(8, 20, generator=gen, dtype=torch.float64)
    u, _, vh = torch.linalg.svd(a, full_matrices=False)
    p = subspace_projection(a, grad, dim=3)
    uk, vk = u[:, :3], vh[:3].T
    torch.testing.assert_close(p, uk @ uk.T @ p @ vk @ vk.T)  # inside the subspace
    torch.testing.assert_close(subspace_projection(a, p, dim=3), p)  # a projection: idempotent
    residual = grad - p  # orthogonal to it
    assert abs(float((residual * p).sum())) < 1e-9
    assert torch.equal(subspace_projection(torch.zeros(4, 5), torch.ones(4, 5), 2),
                       torch.zeros(4, 5))


# -- the env ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [{}, {"shared_adapter": True, "grad_projection": "pcgrad"},
                                {"grad_projection": "subspace"}])
def test_gymnasium_and_sb3_check_env(kw):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    assert "LoRATuneMultiTask-v0" in lora_gym.MULTI_TASK_ENV_IDS
    check_env(make(**kw).unwrapped, skip_render_check=True)
    sb3_check_env(make(**kw).unwrapped)


def test_spaces_and_layout():
    env = make(task_split="all", multi_task_k=3)
    base = env.unwrapped
    assert list(env.action_space.nvec) == [len(base.config.ranks)] * 3 + [
        len(base.config.learning_rates), 2]
    names = base.observation_names
    assert len(names) == 13 * 3 + 3 and names[:2] == ("val_accuracy_0", "val_macro_f1_0")
    assert names[13] == "val_accuracy_1" and names[-3:] == ("cost_so_far", "steps_left",
                                                            "lr_position")
    obs, info = env.reset(seed=0, options={"tasks": ["synth-c", "synth-a", "synth-b"]})
    assert info["tasks"] == ["synth-c", "synth-a", "synth-b"] and obs.shape == (42,)
    for k, metrics in enumerate(info["task_metrics"]):
        assert obs[names.index(f"val_accuracy_{k}")] == pytest.approx(metrics["accuracy"])
    assert info["metrics"]["accuracy"] == pytest.approx(
        np.mean([m["accuracy"] for m in info["task_metrics"]]))


def test_episode_is_seeded():
    runs = []
    for _ in range(2):
        env = make(shared_adapter=True, grad_projection="pcgrad")
        out = [env.reset(seed=5)[0]]
        for ranks in ((4, 2), (2, 4)):
            obs, reward, *_ , info = env.step(act(env, ranks))
            out += [obs, reward, info["task_metrics"]]
        runs.append(out)
    for x, y in zip(*runs, strict=True):
        np.testing.assert_equal(x, y)


def test_one_frozen_base_and_per_task_adapters():
    env = make(shared_adapter=True)
    env.reset(seed=0)
    session = env.unwrapped.session
    a, b = session.sessions
    frozen = [p for p in a.net.parameters() if not p.requires_grad]
    assert session.base_tensors == len(frozen)  # the second model adds no frozen tensor
    name = next(iter(a.adapter.layers))
    la, lb = a.adapter.layers[name], b.adapter.layers[name]
    assert la.lora_A["default"] is not lb.lora_A["default"]  # own adapters
    assert la.lora_A["shared"] is lb.lora_A["shared"]  # one shared adapter
    assert a.net.classifier is not b.net.classifier  # own heads
    shared_before = la.lora_B["shared"].weight.detach().clone()
    env.step(act(env, (2, 2), lr_index=1))
    assert not torch.equal(la.lora_B["shared"].weight, shared_before)  # it trained
    assert not torch.equal(la.lora_B["default"].weight, lb.lora_B["default"].weight)


def test_rank_change_keeps_each_tasks_delta_w():
    env = make()
    env.reset(seed=1)
    env.step(act(env, (2, 2), lr_index=1))
    session = env.unwrapped.session
    before = [s.evaluate() for s in session.sessions]
    session.sessions[0].set_rank(4)  # grow task 0 only
    after = [s.evaluate() for s in session.sessions]
    for x, y in zip(before, after, strict=True):
        assert y.val_loss == pytest.approx(x.val_loss, abs=1e-5)
    assert session.ranks == (4, 2)


def test_stop_divergence_and_reward():
    env = make()
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(act(env, (2, 2), stop=1))
    assert terminated and info["stopped"] and reward == 0.0
    _, start = env.reset(seed=0)
    _, reward, _, _, info = env.step(act(env, (2, 2)))
    gain = info["metrics"]["accuracy"] - start["metrics"]["accuracy"]  # mean over the tasks
    lam = env.unwrapped.config.cost_weight
    assert reward == pytest.approx(gain - lam * info["cost"])
    assert info["reward_components"]["delta_accuracy"] == pytest.approx(gain)
    assert len(info["task_metrics"]) == 2 and info["cost"] > 0
    env.reset(seed=0)
    first = env.unwrapped.session.sessions[0]
    first.backward = lambda kind: (None, 1)  # a non-finite loss
    obs, reward, terminated, _, info = env.step(act(env, (2, 2)))
    assert terminated and info["diverged"] and reward == -1.0 and np.isfinite(obs).all()


def test_misuse_names_the_fix():
    with pytest.raises(ValueError, match="pcgrad combines the tasks' gradients on the shared"):
        make(grad_projection="pcgrad")
    with pytest.raises(ValueError, match="`extra_observations` is not supported"):
        make(extra_observations=["effective_rank"])
    with pytest.raises(ConfigError, match=r"`grad_projection` must be one of \['none', "
                                          r"'subspace', 'pcgrad'\]"):
        resolve_config(TINY, grad_projection="svd")
    with pytest.raises(ConfigError, match="`multi_task_k` must be >= 1"):
        resolve_config(TINY, multi_task_k=0)
    env = make(multi_task_k=3)
    with pytest.raises(ValueError, match="`multi_task_k` 3 exceeds the 2 tasks"):
        env.reset(seed=0)
    env = make()
    with pytest.raises(ValueError, match="must name 2 distinct tasks"):
        env.reset(seed=0, options={"tasks": ["synth-a", "synth-a"]})
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(seed=0, options={"task": "synth-a"})
    with pytest.raises(gym.error.ResetNeeded):
        make().step(np.zeros(4, dtype=np.int64))
    from lora_gym.cli import compare

    with pytest.raises(SystemExit, match="plays one task per episode"):
        compare.main(["--env", "LoRATuneMultiTask-v0", "--env-kwargs", f"config:'{TINY}'"])


def test_single_task_env_trains_with_subspace_projection():
    env = gym.make("LoRATune-v0", config=TINY, grad_projection="subspace", projection_dim=1)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(env.unwrapped.grid.encode(4, 1e-2))
    assert np.isfinite(reward) and not terminated and info["metrics"]["accuracy"] is not None


def test_train_agent_trains_ppo_on_it(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    cmd = [sys.executable, str(ROOT / "train_agent.py"), "--env", "LoRATuneMultiTask-v0",
           "--env-kwargs", f"config:'{TINY}'", "multi_task_k:2", "-n", "8", "-f",
           str(tmp_path / "logs"), "--eval-freq", "0", "-params", "n_steps:4", "batch_size:4"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert list((tmp_path / "logs" / "ppo").glob("LoRATuneMultiTask-v0_1/*.zip"))
