"""Numeric CLI options at their edges: 0 and 1 either work or are argparse usage errors."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lora_gym_agents import train as train_agent

from lora_gym.cli import compare, demo, live_demo, recommend, record, sim2real

ROOT = Path(__file__).parents[1]
from tests.conftest import TINY  # noqa: E402

REJECTED = [
    (compare.main, ["--seeds", "0"], "--seeds", "1"),
    (compare.main, ["--seed", "-1"], "--seed", "0"),
    (record.main, ["--store", "unused.sqlite", "--seeds", "0"], "--seeds", "1"),
    (sim2real.main, ["--seeds", "0"], "--seeds", "1"),
    (record.main, ["--store", "unused.sqlite", "--num-workers", "0"], "--num-workers", "1"),
    (sim2real.main, ["--backend", "ray", "--num-workers", "0"], "--num-workers", "1"),
    (recommend.main, ["--data", "d.csv", "--agent", "default", "--out", "o", "--max-val", "15"],
     "--max-val", "16"),
    (recommend.main, ["--data", "d.csv", "--agent", "default", "--out", "o", "--max-train", "0"],
     "--max-train", "1"),
    (recommend.main, ["--data", "d.csv", "--agent", "default", "--out", "o", "--seed", "-1"],
     "--seed", "0"),
    (train_agent.main, ["-n", "0"], "-n/--n-timesteps", "1 (or -1)"),
    (train_agent.main, ["--eval-episodes", "0"], "--eval-episodes", "1"),
    (train_agent.main, ["--n-envs", "-1"], "--n-envs", "0"),
    (train_agent.main, ["--seed", "-1"], "--seed", "0"),
    (demo.main, ["--timesteps", "0"], "--timesteps", "1"),
    (demo.main, ["--seeds", "0"], "--seeds", "1"),
    (demo.main, ["--live-episodes", "-1"], "--live-episodes", "0"),
    (live_demo.main, ["--episodes", "0"], "--episodes", "1"),
    (live_demo.main, ["--episode-length", "0"], "--episode-length", "1"),
]


@pytest.mark.parametrize(("main", "argv", "flag", "low"), REJECTED,
                         ids=[f"{m.__module__}{' '.join(a[-2:])}" for m, a, *_ in REJECTED])
def test_out_of_range_values_are_usage_errors(main, argv, flag, low, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert f"argument {flag}: must be an integer >= {low}, got " in capsys.readouterr().err


def run(*argv, **env):
    out = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1", **env})
    assert out.returncode == 0, out.stderr[-3000:]
    return out


REPLAY = [str(ROOT / "train_agent.py"), "--env", "LoRATuneReplay-v0", "--env-kwargs",
          f"config:'{TINY}'", "--n-envs", "1", "--verbose", "0", "-params", "n_steps:8",
          "batch_size:8"]


def test_train_agent_at_one_and_zero(tmp_path):
    run(*REPLAY, "-n", "1", "--save-freq", "1", "--eval-freq", "1", "--eval-episodes", "1",
        "-f", str(tmp_path / "ones"))
    ones = tmp_path / "ones" / "ppo" / "LoRATuneReplay-v0_1"
    assert len(list(ones.glob("rl_model_*_steps.zip"))) == 8  # one rollout of n_steps=8
    assert len(np.load(ones / "evaluations.npz")["timesteps"]) == 8
    run(*REPLAY, "-n", "1", "--save-freq", "0", "--eval-freq", "0", "-f", str(tmp_path / "zeros"))
    zeros = tmp_path / "zeros" / "ppo" / "LoRATuneReplay-v0_1"
    assert (zeros / "LoRATuneReplay-v0.zip").is_file()
    assert not list(zeros.glob("rl_model_*")) and not (zeros / "evaluations.npz").exists()


def test_demo_with_zero_live_episodes_skips_the_live_check(tmp_path):
    out = run("-m", "lora_gym", "demo", "--config", TINY, "--timesteps", "1", "--seeds", "1",
              "--live-episodes", "0", "--out", str(tmp_path),
              LORA_GYM_CACHE=str(tmp_path / "cache"))
    assert "Live check skipped (--live-episodes 0)" in out.stdout and "| ppo |" in out.stdout
