"""`lora-gym recommend`: a policy tunes a LoRA on the user's csv; adapter and summary."""

import csv
import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import lora_gym  # noqa: F401
from lora_gym.cli import recommend
from lora_gym.engine.export import load_adapter
from tests.conftest import TINY


@pytest.fixture()
def data(tmp_path):
    """A small generated sentiment csv with custom column names."""
    rng = np.random.default_rng(0)
    words = {"pos": "great lovely superb happy".split(), "neg": "awful sad poor dreadful".split()}
    path = tmp_path / "reviews.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "sentiment"])
        for i in range(120):
            label = "pos" if i % 2 else "neg"
            writer.writerow([" ".join(rng.choice(words[label], 3)) + f" film {i}", label])
    return path


def run(*argv, timeout=300):
    cmd = [sys.executable, "-m", "lora_gym", "recommend", "--config", TINY, *map(str, argv)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def test_default_policy_writes_adapter_summary_and_table(data, tmp_path):
    out = tmp_path / "out"
    done = run("--data", data, "--text-column", "review", "--label-column", "sentiment",
               "--agent", "default", "--env-id", "LoRATunePerLayer-v0", "--out", out)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    steps = summary["steps"]
    assert len(steps) == 1 + 3  # reset + episode_length of the tiny config
    assert [s["rank"] for s in steps[1:]] == [[4, 4]] * 3 and steps[1]["lr"] == 1.0e-3
    assert summary["final_accuracy"] == steps[-1]["accuracy"]
    assert summary["total_cost"] == pytest.approx(sum(s["cost"] for s in steps))
    assert summary["label_names"] == ["neg", "pos"]
    assert "final accuracy" in done.stdout and "4x4" in done.stdout
    model, _, meta = load_adapter(out / "adapter")
    assert meta["task"] == recommend.TASK_NAME and model.config.id2label[1] == "pos"


def test_sb3_agent_zip(data, tmp_path):
    from stable_baselines3 import PPO

    env = gym.make("LoRATune-v0", config=TINY)
    PPO("MlpPolicy", env, n_steps=8, batch_size=8, seed=0).save(tmp_path / "agent.zip")
    out = tmp_path / "out"
    summary = recommend.run(recommend.parse_args([
        "--data", str(data), "--text-column", "review", "--label-column", "sentiment",
        "--agent", str(tmp_path / "agent.zip"), "--config", TINY, "--out", str(out)]))
    assert len(summary["steps"]) == 4 and (out / "adapter" / "adapter_config.json").is_file()
    assert all(isinstance(s["rank"], int) for s in summary["steps"])


def test_unknown_agent_is_a_clear_error(data, tmp_path):
    done = run("--data", data, "--agent", "nope", "--out", tmp_path / "o")
    assert done.returncode != 0
    assert "neither a built-in policy ['default'] nor an SB3 model zip" in done.stderr
