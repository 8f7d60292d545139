"""In-segment learning-rate schedules, and that the session trains with them."""

import math

import pytest

from lora_gym.core.config import EnvConfig, resolve_config
from lora_gym.core.errors import ConfigError
from lora_gym.core.schedules import LR_SCHEDULES, lr_factor, warmup_steps
from lora_gym.engine.encoding import CACHE_ENV
from lora_gym.engine.session import FineTuneSession
from lora_gym.replay.store import config_hash
from lora_gym.tasks.loading import load_task
from lora_gym.tasks.sets import load_task_set
from tests.conftest import TINY as TINY_PATH

TINY = EnvConfig.from_yaml(TINY_PATH)


def test_factors_of_each_schedule():
    assert [lr_factor("constant", t, 4) for t in range(4)] == [1.0] * 4
    cosine = [lr_factor("cosine", t, 4) for t in range(4)]
    assert cosine[0] == 1.0 and cosine == sorted(cosine, reverse=True) and cosine[-1] < 0.2
    assert cosine[2] == pytest.approx(0.5)
    assert warmup_steps(20, 0.1) == 2 and warmup_steps(3, 0.1) == 1
    warm = [lr_factor("warmup_cosine", t, 20, 0.1) for t in range(20)]
    assert warm[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert all(b <= a for a, b in zip(warm[2:], warm[3:], strict=False)) and warm[-1] > 0
    with pytest.raises(ValueError, match="`lr_schedule` must be one of"):
        lr_factor("linear", 0, 4)


@pytest.mark.parametrize("schedule", LR_SCHEDULES)
def test_session_steps_with_the_schedule(schedule, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    config = TINY.replace(lr_schedule=schedule, steps_per_action=5)
    session = FineTuneSession(config)
    session.start(load_task(load_task_set("tiny").get("synth-a")), seed=0)
    seen = []
    step = session.optimizer.step
    session.optimizer.step = lambda: (seen.append(session.optimizer.param_groups[0]["lr"]),
                                      step())
    session.train(config.ranks[0], 1.0e-2, 5)
    assert seen == pytest.approx([1.0e-2 * lr_factor(schedule, t, 5) for t in range(5)])
    assert math.isfinite(session.evaluate().accuracy)


def test_schedule_is_in_the_hash_only_when_not_constant():
    # the shipped MiniLM table's key (recorded under the default of the time, now legacy-v1)
    assert config_hash(resolve_config("legacy-v1")) == "49f69ef9c7596f8c"
    assert config_hash(TINY) == "bccb61d7b7aeaec7"  # the shipped tiny table's key
    for changes in ({"lr_schedule": "cosine"}, {"lr_schedule": "warmup_cosine"},
                    {"lr_warmup": 0.3}):
        assert config_hash(TINY.replace(**changes)) != config_hash(TINY)


def test_bad_schedule_names_the_field():
    with pytest.raises(ConfigError, match=r"`lr_schedule` must be one of \['constant'"):
        EnvConfig(lr_schedule="linear")
    with pytest.raises(ConfigError, match=r"`lr_warmup` must be in \[0, 1\), got 1.5"):
        EnvConfig(lr_warmup=1.5)
