"""λ as the user's choice: a ``cost_weight`` range drawn per episode, observed, rewarded, fixed."""

import json
import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from lora_gym.core.config import EnvConfig
from lora_gym.core.errors import ConfigError
from lora_gym.envs.cost_weight import FixedCostWeight
from lora_gym.replay.recording import RecordingWrapper
from lora_gym.replay.store import Store, config_hash

from .conftest import TINY

RANGE = [0.001, 0.1]
ENVS = (("LoRATune-v0", {}), ("LoRATuneReplay-v0", {"store": "tiny"}))


@pytest.mark.parametrize("bad", [[0.1, 0.01], [0.0, 0.1], [0.01], [0.001, 0.01, 0.1], -0.1,
                                 [0.01, float("inf")]])
def test_bad_cost_weight_names_the_field(bad):
    with pytest.raises(ConfigError, match="cost_weight"):
        EnvConfig(cost_weight=tuple(bad) if isinstance(bad, list) else bad)


def test_a_range_stays_out_of_the_table_key():
    assert config_hash(EnvConfig(cost_weight=(0.001, 0.1))) == config_hash(EnvConfig())


@pytest.mark.parametrize(("env_id", "kwargs"), ENVS)
def test_range_env_passes_both_checkers(env_id, kwargs):
    env = gym.make(env_id, config=TINY, cost_weight=RANGE, **kwargs).unwrapped
    check_env(env, skip_render_check=True)
    sb3_check_env(env)
    assert env.observation_names[-1] == "log10_cost_weight"


@pytest.mark.parametrize(("env_id", "kwargs"), ENVS)
def test_lambda_is_drawn_observed_and_rewarded(env_id, kwargs):
    ranged = gym.make(env_id, config=TINY, cost_weight=RANGE, **kwargs)
    scalar = gym.make(env_id, config=TINY, **kwargs)
    lams = []
    for seed in range(4):
        obs, info = ranged.reset(seed=seed)
        obs0, info0 = scalar.reset(seed=seed)
        lam = ranged.unwrapped.cost_weight
        lams.append(lam)
        assert RANGE[0] <= lam <= RANGE[1]
        assert obs[-1] == pytest.approx(math.log10(lam), abs=1e-6)
        # λ is drawn after the task and the episode seed: the episode is the scalar config's
        assert (info["task"], info["episode_seed"]) == (info0["task"], info0["episode_seed"])
        np.testing.assert_array_equal(obs[:-1], obs0)
        _, reward, *_, step_info = ranged.step(0)
        _, reward0, *_ = scalar.step(0)
        delta = step_info["reward_components"]["delta_accuracy"]
        assert reward == pytest.approx(delta - lam * step_info["cost"])
        assert reward0 == pytest.approx(delta - 0.01 * step_info["cost"])
    assert len(set(lams)) == 4


@pytest.mark.parametrize(("env_id", "kwargs"), ENVS)
def test_reset_option_fixes_lambda(env_id, kwargs):
    env = gym.make(env_id, config=TINY, cost_weight=RANGE, **kwargs)
    rewards = {}
    for lam in (0.002, 0.05):
        obs, _ = env.reset(seed=3, options={"cost_weight": lam})
        assert obs[-1] == pytest.approx(math.log10(lam), abs=1e-6)
        _, rewards[lam], *_, info = env.step(1)
    assert rewards[0.002] - rewards[0.05] == pytest.approx((0.05 - 0.002) * info["cost"])
    with pytest.raises(ValueError, match="cost_weight"):
        env.reset(options={"cost_weight": 0.0})
    wrapped = FixedCostWeight(env, 0.05)
    obs, _ = wrapped.reset(seed=3)
    assert obs[-1] == pytest.approx(math.log10(0.05), abs=1e-6)


def test_scalar_config_takes_a_per_episode_lambda():
    env = gym.make("LoRATuneReplay-v0", config=TINY, store="tiny")
    obs, _ = env.reset(seed=0, options={"cost_weight": 0.5})
    assert obs.shape == env.observation_space.shape  # no λ entry without a range
    _, reward, *_, info = env.step(0)
    assert reward == pytest.approx(info["reward_components"]["delta_accuracy"] - 0.5 * info["cost"])


def test_recorded_rows_hold_no_lambda(tmp_path):
    """A range config records the same rows as the scalar one (λ is no outcome)."""
    rows = {}
    for name, extra in (("ranged", {"cost_weight": RANGE}), ("scalar", {})):
        with Store(tmp_path / f"{name}.sqlite") as store:
            env = RecordingWrapper(gym.make("LoRATune-v0", config=TINY, episode_length=2,
                                            **extra), store)
            env.reset(seed=0)
            env.step(0)
            cfg = env.unwrapped.config
            rows[name] = sorted((r[4], bytes(r[6])) for r in store.rows(cfg.model,
                                                                      config_hash(cfg)))
    assert rows["ranged"] == rows["scalar"] and len(rows["scalar"]) == 2


def test_compare_per_lambda_writes_each_and_a_pareto_plot(tmp_path):
    from lora_gym.cli import compare

    out = tmp_path / "cmp"
    summaries = compare.main(["--env", "LoRATuneReplay-v0", "--env-kwargs", "config:tiny",
                              "store:tiny", f"cost_weight:{RANGE}", "--methods", "default",
                              "best-static", "--seeds", "1", "--cost-weights", "0.001", "0.1",
                              "--out", str(out), "--no-progress"])
    assert set(summaries) == {0.001, 0.1}
    for lam in ("0.001", "0.1"):
        payload = json.loads((out / f"lambda-{lam}" / "results.json").read_text())
        assert payload["cost_weight"] == float(lam)
    assert (out / "pareto.png").is_file() and "λ=0.1" in (out / "results.md").read_text()
    # the same episodes at two λ: returns differ by exactly the cost term
    for method in ("default",):
        lo, hi = summaries[0.001][method], summaries[0.1][method]
        assert lo["return"] - hi["return"] == pytest.approx((0.1 - 0.001) * lo["total_cost"])
