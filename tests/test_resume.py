"""A training run killed with SIGKILL resumes from its last checkpoint; its step count goes on."""

import os
import pickle
import signal
import subprocess
import sys
import time

from stable_baselines3 import PPO

from tests.conftest import ROOT, TINY

TRAIN = [sys.executable, "train_agent.py", "--env", "LoRATuneReplay-v0", "--env-kwargs",
         f"config:'{TINY}'", "--n-envs", "1", "--eval-freq", "-1", "--verbose", "0",
         "-params", "n_steps:16", "batch_size:16", "n_epochs:1"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def checkpoints(run_dir):
    """Checkpoint step counts whose VecNormalize statistics are written too (both complete)."""
    steps = sorted(int(p.name.split("_")[2]) for p in run_dir.glob("rl_model_*_steps.zip"))
    return [n for n in steps if (run_dir / f"rl_model_vecnormalize_{n}_steps.pkl").is_file()]


def obs_count(path):
    with path.open("rb") as f:
        return pickle.load(f).obs_rms.count


def test_a_killed_run_resumes_from_its_checkpoint(tmp_path):
    logs = tmp_path / "logs"
    run_dir = logs / "ppo" / "LoRATuneReplay-v0_1"
    proc = subprocess.Popen([*TRAIN, "-n", "1000000", "--save-freq", "32", "-f", str(logs)],
                            cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while len(checkpoints(run_dir)) < 2:  # the first one is then completely written
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "LoRATuneReplay-v0.zip").exists()  # killed: no final save
    step = checkpoints(run_dir)[0]
    checkpoint = run_dir / f"rl_model_{step}_steps.zip"
    assert PPO.load(checkpoint).num_timesteps == step

    out = subprocess.run([*TRAIN, "-n", "32", "-f", str(logs), "-i", str(checkpoint)],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    resumed = logs / "ppo" / "LoRATuneReplay-v0_2"
    assert PPO.load(resumed / "LoRATuneReplay-v0.zip").num_timesteps == step + 32
    stats = run_dir / f"rl_model_vecnormalize_{step}_steps.pkl"
    assert obs_count(resumed / "vecnormalize.pkl") >= obs_count(stats) + 32  # stats carried on
