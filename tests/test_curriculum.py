"""Seed 000's curriculum: stage files, the stage-switching env wrapper, train_agent.py."""

import csv

import pytest
from lora_gym_agents.curriculum import CurriculumEnv, Stage, load_curriculum

from lora_gym.tasks.sets import load_task_set
from tests.conftest import ROOT, TINY


def write(tmp_path, text):
    path = tmp_path / "curriculum.yml"
    path.write_text(text)
    return path


def test_shipped_curricula_load_and_pin_a_training_task():
    train = {t.name for t in load_task_set("default").tasks("train")}
    for name in ("curriculum.yml", "curriculum_replay.yml"):
        stages = load_curriculum(ROOT / "envs_configs" / name)
        assert stages[0].at == 0 and stages[0].task in train
        assert len(stages) == 2 and stages[1].task is None


@pytest.mark.parametrize(("text", "match"), [
    ("stages: []", "a non-empty list"),
    ("stages:\n  - {at: 5}", r"must start at 0 and increase, got \[5\]"),
    ("stages:\n  - {at: 0}\n  - {at: 0}", r"must start at 0 and increase, got \[0, 0\]"),
    ("stages:\n  - {at: -1}", r"stage 0: `at` must be an integer >= 0, got -1"),
    ("stages:\n  - {at: 0, tasks: x}", r"stage 0 must be a mapping with keys among \['at'"),
    ("stages:\n  - {at: 0, env_kwargs: [1]}", r"stage 0: `env_kwargs` must be a mapping"),
])
def test_bad_curricula_name_the_stage_and_field(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        load_curriculum(write(tmp_path, text))


def test_stages_switch_at_the_next_reset_and_keep_the_spaces():
    stages = (Stage(0, "synth-a", {"lora_layers": "top-1"}), Stage(10, None, {}),
              Stage(20, None, {"ranks": [1, 2]}))
    env = CurriculumEnv("LoRATune-v0", stages, config=TINY, task_split="all")
    tasks = {env.reset(seed=s)[1]["task"] for s in range(3)}
    assert tasks == {"synth-a"} and env.unwrapped.config.lora_layers == "top-1"
    env.step(0)
    env.set_stage(1)
    assert env.unwrapped.config.lora_layers == "top-1"  # the episode in progress finishes
    tasks = {env.reset(seed=s)[1]["task"] for s in range(6)}
    assert len(tasks) > 1 and env.unwrapped.config.lora_layers == "all" and env.stage == 1
    env.set_stage(2)  # fewer ranks: another action space
    with pytest.raises(ValueError, match="stage 2 changes the action_space"):
        env.reset(seed=0)


def test_train_agent_follows_the_curriculum(tmp_path):
    from lora_gym_agents import train as train_agent

    path = write(tmp_path, "stages:\n  - {at: 0, task: synth-a}\n  - {at: 48}\n")
    run_dir = train_agent.main([
        "--env", "LoRATuneReplay-v0", "--env-kwargs", f"config:'{TINY}'", "task_split:'all'",
        "--curriculum", str(path), "-n", "96", "-f", str(tmp_path / "logs"), "--n-envs", "1",
        "--eval-freq", "-1", "-params", "n_steps:16", "batch_size:16", "--verbose", "0"])
    with (run_dir / "0.monitor.csv").open() as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    steps = [int(r["l"]) for r in rows]
    started = [sum(steps[:i]) for i in range(len(rows))]
    assert {r["task"] for r, t in zip(rows, started, strict=True) if t < 48} == {"synth-a"}
    assert len({r["task"] for r, t in zip(rows, started, strict=True) if t >= 51}) > 1
    assert (run_dir / "LoRATuneReplay-v0" / "curriculum.yml").is_file()
