"""NaN or inf never reaches the agent: divergence, reward errors, no diverged adapter exported."""

import math

import gymnasium as gym
import numpy as np
import pytest

from lora_gym.core.errors import RewardError
from lora_gym.core.metrics import Metrics
from lora_gym.engine.session import SegmentResult
from lora_gym.policies import FixedPolicy
from lora_gym.policies.evaluate import evaluate
from lora_gym.replay.index import Node
from lora_gym.replay.store import StepRecord
from tests.conftest import TINY  # noqa: E402

LIVE_IDS = ("LoRATune-v0", "LoRATunePerLayer-v0", "LoRATuneScope-v0")
NAN, INF = math.nan, math.inf


def train_action(env):
    return env.unwrapped.uniform_action(*env.unwrapped.grid.pairs()[0])


def nan_metrics(train_loss=NAN):
    return Metrics(NAN, NAN, NAN, train_loss)


def inf_val_loss(train_loss=NAN):
    return Metrics(0.5, 0.5, INF, train_loss)


def patch_train_loss(session, monkeypatch, loss):
    real = session.train

    def train(rank, lr, steps, augmentation=None):
        return SegmentResult(loss, real(rank, lr, steps, augmentation).tokens, diverged=False)

    monkeypatch.setattr(session, "train", train)


@pytest.mark.parametrize("env_id", LIVE_IDS)
@pytest.mark.parametrize("fault", ["nan_metrics", "inf_val_loss", "inf_train_loss",
                                   "nan_train_loss"])
def test_non_finite_values_end_the_episode_with_the_penalty(env_id, fault, monkeypatch):
    env = gym.make(env_id, config=TINY, divergence_penalty=1.5)
    obs, _ = env.reset(seed=0)
    session = env.unwrapped.session
    if fault == "nan_metrics":
        monkeypatch.setattr(session, "evaluate", nan_metrics)
    elif fault == "inf_val_loss":
        monkeypatch.setattr(session, "evaluate", inf_val_loss)
    else:
        patch_train_loss(session, monkeypatch, INF if fault == "inf_train_loss" else NAN)
    obs, reward, terminated, truncated, info = env.step(train_action(env))
    assert terminated and not truncated and info["diverged"]
    assert reward == -1.5 and info["reward_components"] == {"divergence": -1.5}
    assert np.isfinite(obs).all() and obs in env.observation_space
    assert all(v is None for v in info["metrics"].values())  # JSON-safe, no NaN in the info


def test_a_reward_function_returning_nan_or_inf_raises_naming_it():
    def nan_reward(prev, cur, cost, config):
        return {"gain": math.nan}

    env = gym.make("LoRATune-v0", config=TINY, reward_fn=nan_reward)
    env.reset(seed=0)
    with pytest.raises(RewardError, match=r"test_nonfinite:.*nan_reward returned a non-finite"):
        env.step(0)
    env = gym.make("LoRATune-v0", config=TINY, reward_fn=lambda *a: math.inf)
    env.reset(seed=0)
    with pytest.raises(RewardError, match="<lambda> returned a non-finite reward"):
        env.step(env.unwrapped.grid.stop_action)  # the stop action's reward is checked too


def test_evaluate_never_exports_a_diverged_adapter(tmp_path):
    env = gym.make("LoRATune-v0", config=TINY, learning_rates=[1.0e30], max_grad_norm=0.0)
    policies = {"fixed": FixedPolicy(0), "stop": FixedPolicy(env.unwrapped.grid.stop_action)}
    results = evaluate(env, policies, ["synth-c"], [0], progress=False, export_dir=tmp_path)
    assert [r.diverged for r in results] == [True, False]
    assert not (tmp_path / "fixed").exists()
    assert (tmp_path / "stop" / "synth-c" / "adapter_config.json").is_file()


def test_a_recorded_step_with_non_finite_metrics_replays_as_divergence():
    obs = np.zeros(15, dtype=np.float32)
    record = StepRecord("t", "m", "h", 0, (1,), obs, NAN, NAN, NAN, 0.5, 2, 1e-3, 1.0, 1.0,
                        diverged=False)
    assert Node.from_record(record).diverged
    reset = StepRecord("t", "m", "h", 0, (), obs, 0.5, 0.5, 1.0, NAN, 2, None, 0.0, 0.0, False)
    assert not Node.from_record(reset).diverged  # train loss is NaN before any training
