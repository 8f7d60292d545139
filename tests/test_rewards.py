"""Reward plugins: by registered name, by `module:function`, by callable; error messages."""

import math

import pytest

from lora_gym.core.config import EnvConfig
from lora_gym.core.errors import RewardError
from lora_gym.core.metrics import Metrics
from lora_gym.core.rewards import REWARDS, evaluate_reward, register_reward, resolve_reward

PREV = Metrics(accuracy=0.5, f1=0.4, val_loss=1.0)
CUR = Metrics(accuracy=0.7, f1=0.65, val_loss=0.8, train_loss=0.9)
CONFIG = EnvConfig(cost_weight=0.1)


def accuracy_only(prev, cur, cost, config):
    """A user's reward function, referenced as 'tests.test_rewards:accuracy_only'."""
    return cur.accuracy


def test_default_reward_by_name_has_components():
    reward, parts = evaluate_reward(resolve_reward("delta_acc_minus_cost"), PREV, CUR, 2.0, CONFIG)
    assert parts == pytest.approx({"delta_accuracy": 0.2, "cost": -0.2})
    assert reward == pytest.approx(0.0)


def test_reward_by_module_function_string():
    fn = resolve_reward("tests.test_rewards:accuracy_only")
    assert fn is accuracy_only
    assert evaluate_reward(fn, PREV, CUR, 1.0, CONFIG) == (0.7, {"reward": 0.7})


def test_reward_by_callable_and_registration():
    @register_reward("test_f1_gain")
    def f1_gain(prev, cur, cost, config):
        return {"f1": cur.f1 - prev.f1}

    try:
        assert resolve_reward("test_f1_gain") is f1_gain
        assert resolve_reward(f1_gain) is f1_gain
        reward, parts = evaluate_reward(f1_gain, PREV, CUR, 1.0, CONFIG)
        assert math.isclose(reward, 0.25) and set(parts) == {"f1"}
    finally:
        REWARDS.pop("test_f1_gain")


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ("no_such_reward", r"unknown reward function 'no_such_reward'; registered: \[.*delta_acc"),
        ("no_such_pkg.mod:fn", r"cannot import module 'no_such_pkg.mod'"),
        ("tests.test_rewards:missing", r"module 'tests.test_rewards' has no callable 'missing'"),
        (42, r"must be a name, 'module:function' or a callable, got 42"),
    ],
)
def test_bad_references_explain_themselves(ref, match):
    with pytest.raises(RewardError, match=match):
        resolve_reward(ref)


def test_non_numeric_reward_is_rejected():
    with pytest.raises(RewardError, match="expected a float or a mapping"):
        evaluate_reward(lambda *a: "high", PREV, CUR, 1.0, CONFIG)


def test_duplicate_registration_is_rejected():
    with pytest.raises(RewardError, match="already registered"):
        register_reward("delta_acc_minus_cost")(accuracy_only)
