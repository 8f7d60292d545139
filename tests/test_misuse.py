"""Misuse raises exceptions that say what to do (never asserts): envs, tasks, task limits."""

import re

import gymnasium as gym
import numpy as np
import pytest

import lora_gym
from lora_gym.core.errors import TaskError
from lora_gym.tasks.loading import MIN_TRAIN_PER_CLASS, MIN_VAL_ROWS, TaskSpec, load_task
from tests.conftest import TINY  # noqa: E402


@pytest.mark.parametrize("env_id", lora_gym.ENV_IDS)
def test_step_before_reset_and_invalid_actions_raise(env_id):
    env = gym.make(env_id, config=TINY).unwrapped
    action = env.action_space.sample()
    with pytest.raises(gym.error.ResetNeeded, match=r"call reset\(\) before step\(\)"):
        env.step(action)
    env.reset(seed=0)
    bad = env.action_space.n if env_id in ("LoRATune-v0", "LoRATuneReplay-v0") else \
        np.asarray(env.action_space.nvec)
    with pytest.raises(gym.error.InvalidAction, match="not in the action space"):
        env.step(bad)


@pytest.mark.parametrize("env_id", ("LoRATunePerLayer-v0", "LoRATuneScope-v0"))
def test_save_adapter_before_reset_raises(env_id):
    with pytest.raises(gym.error.ResetNeeded, match="there is no adapter"):
        gym.make(env_id, config=TINY).unwrapped.save_adapter("unused")


@pytest.mark.parametrize("env_id", lora_gym.ENV_IDS)
def test_unknown_task_lists_the_valid_names(env_id):
    env = gym.make(env_id, config=TINY)
    names = [t.name for t in env.unwrapped.task_set.tasks("all")]
    with pytest.raises(ValueError, match=re.escape(f"task 'nope' is not in task set 'tiny'; "
                                                   f"available: {names}")):
        env.reset(seed=0, options={"task": "nope"})


def write(tmp_path, texts, labels):
    path = tmp_path / "data.csv"
    lines = ["text,label", *(f"{t},{y}" for t, y in zip(texts, labels, strict=True))]
    path.write_text("\n".join(lines) + "\n")
    return TaskSpec("mine", "file", path=str(path))


def test_too_few_validation_rows_is_a_task_error(tmp_path):
    spec = write(tmp_path, ["good film", "bad film", "fine film"], ["pos", "neg", "pos"])
    with pytest.raises(TaskError, match=rf"'mine': 1 validation row\(s\), need at least "
                                        rf"{MIN_VAL_ROWS}"):
        load_task(spec)


def test_a_class_with_too_few_rows_is_a_task_error(tmp_path):
    n = 2 * MIN_VAL_ROWS + 4
    labels = ["rare" if i < 2 else ("pos" if i % 2 else "neg") for i in range(n)]
    spec = write(tmp_path, [f"text {i}" for i in range(n)], labels)
    with pytest.raises(TaskError, match=rf"fewer than {MIN_TRAIN_PER_CLASS} training rows: "
                                        r"\{'rare': [0-2]\}"):
        load_task(spec)


def test_at_the_limits_a_task_loads(tmp_path):
    n = 2 * MIN_VAL_ROWS
    spec = write(tmp_path, [f"text {i}" for i in range(n)], ["a", "b"] * (n // 2))
    data = load_task(spec)
    assert len(data.val_texts) == MIN_VAL_ROWS
    assert np.bincount(data.train_labels).min() >= MIN_TRAIN_PER_CLASS
