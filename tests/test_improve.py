"""`lora-gym improve` on the tiny config: rounds run end to end, record live steps, resume."""

import json
import subprocess
import sys

from lora_gym.replay.store import Store
from tests.conftest import ROOT, TINY


def improve(tmp_path, rounds):
    cmd = [sys.executable, "-m", "lora_gym", "improve", "--store", str(tmp_path / "s.sqlite"),
           "--config", TINY, "--rounds", str(rounds), "--timesteps", "32", "--tasks-per-round",
           "2", "--episodes", "2", "--out", str(tmp_path / "out"), "--params", "n_steps:32"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_improve_records_the_agents_episodes_and_resumes(tmp_path):
    first = improve(tmp_path, 1)
    assert "round 0: episodes=4" in first
    with Store(tmp_path / "s.sqlite", readonly=True) as db:
        rows_after_one = db.count()
    summary0 = json.loads((tmp_path / "out" / "round_0" / "summary.json").read_text())
    assert summary0["episodes"] == 4 and len(summary0["tasks"]) == 2

    second = improve(tmp_path, 2)  # round 0 is done: only round 1 runs
    assert "round 0" not in second and "round 1: episodes=4" in second
    assert json.loads((tmp_path / "out" / "round_0" / "summary.json").read_text()) == summary0
    with Store(tmp_path / "s.sqlite", readonly=True) as db:
        assert db.count() > rows_after_one  # round 1's new seeds were run live and recorded
