"""LoRATune-v0 on the tiny config: API checks, determinism, observation bounds, docstring."""

import re
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import lora_gym
from lora_gym.core.config import EnvConfig
from lora_gym.envs.lora_tune import LoRATuningEnv
from tests.conftest import TINY


def make(**kwargs):
    return gym.make("LoRATune-v0", config=TINY, **kwargs)


def rollout(env, seed, actions):
    obs, info = env.reset(seed=seed)
    trace = [(obs, info)]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        trace.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            break
    return trace


@pytest.mark.parametrize("env_id", lora_gym.ENV_IDS)
def test_gymnasium_check_env(env_id):
    env = gym.make(env_id, config=TINY)
    gym_check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", lora_gym.ENV_IDS)
def test_sb3_check_env(env_id):
    sb3_check_env(gym.make(env_id, config=TINY).unwrapped, warn=True)


def test_lora_gym_prefix_id_works():
    env = gym.make("lora_gym:LoRATune-v0", config=TINY)
    assert isinstance(env.unwrapped, LoRATuningEnv)


def test_import_is_light():
    code = ("import sys, lora_gym, gymnasium as gym; e = gym.make('LoRATune-v0'); "
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'datasets') "
            "if m in sys.modules];"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_obs_in_space_and_episode_truncates():
    env = make()
    obs, info = env.reset(seed=3)
    assert obs in env.observation_space
    assert info["step"] == 0 and info["rank"] == 1
    rng = np.random.default_rng(0)
    for t in range(1, 4):  # (rank, lr) actions only: stop would end the episode early
        action = int(rng.integers(env.unwrapped.grid.n_pairs))
        obs, reward, terminated, truncated, info = env.step(action)
        assert obs in env.observation_space
        assert np.isfinite(reward)
        assert not terminated
        assert truncated == (t == 3)
        assert set(info["reward_components"]) == {"delta_accuracy", "cost"}
        assert reward == pytest.approx(sum(info["reward_components"].values()))
    names = env.unwrapped.observation_names
    assert len(names) == env.observation_space.shape[0]
    assert obs[names.index("steps_left")] == 0.0


def test_seeded_rollouts_are_identical():
    actions = [5, 0, 3]
    a = rollout(make(), 11, actions)
    b = rollout(make(), 11, actions)
    for x, y in zip(a, b, strict=True):
        assert gym.utils.env_checker.data_equivalence(x, y, exact=True)
    c = rollout(make(), 12, actions)
    assert not np.array_equal(a[-1][0], c[-1][0])


def test_rank_and_lr_follow_the_action():
    env = make()
    env.reset(seed=0, options={"task": "synth-a"})
    grid = env.unwrapped.grid
    for action in (grid.encode(4, 1e-3), grid.encode(2, 1e-2), grid.encode(1, 1e-3)):
        _, _, _, _, info = env.step(action)
        assert (info["rank"], info["lr"]) == grid.decode(action)
        assert env.unwrapped.session.rank == info["rank"]


def test_reset_option_picks_the_task_and_rejects_unknown():
    env = make()
    _, info = env.reset(seed=0, options={"task": "synth-b"})
    assert info["task"] == "synth-b"
    with pytest.raises(ValueError, match=r"task .nope. is not in task set .tiny.; available"):
        env.reset(options={"task": "nope"})
    with pytest.raises(ValueError, match=r"unknown reset option\(s\) \['bogus'\]"):
        env.reset(options={"bogus": 1})


def test_divergence_terminates_with_penalty():
    env = make(learning_rates=[1.0e30], max_grad_norm=0.0, divergence_penalty=2.5)
    obs, _ = env.reset(seed=0)
    terminated = False
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(0)
        assert obs in env.observation_space
        if terminated:
            break
    assert terminated and not truncated
    assert reward == -2.5 and info["diverged"]
    assert info["reward_components"] == {"divergence": -2.5}


def test_custom_reward_callable_through_make():
    env = make(reward_fn=lambda prev, cur, cost, config: {"acc": cur.accuracy})
    env.reset(seed=0)
    _, reward, *_, info = env.step(0)
    assert reward == info["metrics"]["accuracy"] and set(info["reward_components"]) == {"acc"}


def test_wall_time_only_when_asked():
    env = make(report_wall_time=True)
    _, info = env.reset(seed=0)
    assert info["wall_time_s"] > 0
    _, info = make().reset(seed=0)
    assert "wall_time_s" not in info


def test_docstring_action_table_matches_default_grid():
    rows = re.findall(r"^\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*([\d.e+-]+)\s*\|\s*([a-z_]+)\s*\|\s*$",
                      LoRATuningEnv.__doc__, flags=re.M)
    env = LoRATuningEnv()  # default config: no heavy work until reset
    assert [(int(r), float(lr)) for _, r, lr, _ in rows] == env.grid.pairs()
    assert [aug for *_, aug in rows] == [env.grid.augmentation_of(a)
                                         for a in range(env.grid.n_pairs)]
    stop = re.findall(r"^\s*\|\s*(\d+)\s*\|\s*stop\s*\|", LoRATuningEnv.__doc__, flags=re.M)
    assert [int(n) for n, *_ in rows] + [int(n) for n in stop] == list(range(env.action_space.n))
    assert [int(n) for n in stop] == [env.grid.stop_action]


def test_docstring_observation_table_matches_space():
    cell = r"[ \t]*\|[ \t]*"
    pattern = rf"^{cell}(\d+){cell}([a-z0-9_]+){cell}(-?[\d.]+){cell}(-?[\d.]+){cell}"
    rows = re.findall(pattern, LoRATuningEnv.__doc__, flags=re.M)
    env = LoRATuningEnv()
    assert tuple(name for _, name, _, _ in rows) == env.observation_names
    np.testing.assert_array_equal([float(lo) for *_, lo, _ in rows], env.observation_space.low)
    np.testing.assert_array_equal([float(hi) for *_, hi in rows], env.observation_space.high)


def test_bad_config_fails_at_make():
    with pytest.raises(ValueError, match="`ranks` must be strictly increasing"):
        make(ranks=[4, 2])
    assert EnvConfig.from_yaml(TINY).model == "tiny-bert"


def test_stop_ends_the_episode_without_training():
    env = make()
    stop = env.unwrapped.grid.stop_action
    assert stop == env.action_space.n - 1 == env.unwrapped.grid.n_pairs
    obs0, _ = env.reset(seed=3)
    obs1, _, _, _, info1 = env.step(0)
    obs, reward, terminated, truncated, info = env.step(stop)
    assert terminated and not truncated and info["stopped"] and reward == 0.0
    assert info["cost"] == 0.0 and info["cost_so_far"] == info1["cost_so_far"]
    assert info["step"] == 1 and info["metrics"] == info1["metrics"]
    delta = env.unwrapped.observation_names.index("delta_accuracy")
    np.testing.assert_array_equal(np.delete(obs, delta), np.delete(obs1, delta))
    assert obs[delta] == 0.0


def test_stop_action_false_gives_the_plain_grid():
    env = make(stop_action=False)
    assert env.action_space.n == env.unwrapped.grid.n_pairs
    assert env.unwrapped.grid.stop_action is None


def test_misuse_raises_exceptions_not_asserts():
    env = make()
    with pytest.raises(gym.error.ResetNeeded):
        env.unwrapped.step(0)
    with pytest.raises(gym.error.ResetNeeded):
        env.unwrapped.save_adapter("unused")
    env.reset(seed=0)
    with pytest.raises(gym.error.InvalidAction, match="not in the action space"):
        env.unwrapped.step(env.action_space.n)


def test_every_stated_observation_size_matches_the_space():
    """Docstrings and README that give the observation's size ("16 normalised floats") agree."""
    import lora_gym.envs.replay as replay_module
    from tests.conftest import ROOT

    size = LoRATuningEnv().observation_space.shape[0]
    replay_doc = replay_module.LoRATuneReplayEnv.__doc__
    texts = {"LoRATuningEnv": LoRATuningEnv.__doc__, "LoRATuneReplay-v0": replay_doc,
             "README.md": (ROOT / "README.md").read_text(encoding="utf-8")}
    found = {name: [int(n) for n in re.findall(r"(\d+) normalised floats", text)]
             for name, text in texts.items()}
    assert found["LoRATuneReplay-v0"] and found["README.md"], found
    assert all(n == size for sizes in found.values() for n in sizes), (size, found)
    assert f"`Box(low, high, ({size},), float32)`" in LoRATuningEnv.__doc__


def test_a_default_episode_prints_no_library_deprecation_warning():
    """PEFT's read of transformers' deprecated attribute is filtered (`quiet_peft`)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        env = gym.make("LoRATune-v0", config=TINY)
        env.reset(seed=0)
        env.step(0)
