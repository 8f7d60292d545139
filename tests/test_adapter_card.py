"""An exported adapter a user can hand on: portable base id, labels in the config, a filled card."""

import json

import gymnasium as gym
import pytest
import torch
from peft import PeftModel
from transformers import AutoConfig, AutoModelForSequenceClassification

import lora_gym  # noqa: F401
from lora_gym.engine.export import load_adapter
from lora_gym.engine.models import HUB_IDS, embedded_model_dir
from tests.conftest import TINY

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def tuned(tmp_path, env_id="LoRATune-v0", **overrides):
    env = gym.make(env_id, config=TINY, **overrides).unwrapped
    env.reset(seed=0, options={"task": "synth-a"})
    env.step(env.uniform_action(2, 1.0e-2))
    env.step(env.uniform_action(4, 1.0e-2))
    env.step(env.grid.stop_action if env_id == "LoRATune-v0" else
             env.uniform_action(4, 1.0e-2))
    return env, env.save_adapter(tmp_path / "adapter")


def logits_of(model, env):
    texts = list(env.session.task.val_texts[:8])
    batch = env.session.tokenizer(texts, padding=True, truncation=True, max_length=32,
                                  return_tensors="pt")
    with torch.inference_mode():
        expected = env.session.logits(batch["input_ids"], batch["attention_mask"])
        got = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return got, expected


@pytest.mark.parametrize("env_id", ["LoRATune-v0", "LoRATunePerLayer-v0", "LoRATuneScope-v0"])
def test_card_has_task_labels_metrics_and_trajectory(tmp_path, env_id):
    env, path = tuned(tmp_path, env_id)
    card = (path / "README.md").read_text()
    assert "[More Information Needed]" not in card
    labels = env.task.label_names
    assert "`synth-a`" in card and all(f"`{name}`" in card for name in labels)
    accuracy = env._history[-1]["accuracy"]
    assert f"accuracy {accuracy:.4f}" in card  # the validation metrics after the last step
    rows = [line for line in card.splitlines() if line.startswith("| ") and "step" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| 0", "| 1", "| 2", "| 3"][:len(rows)]
    assert len(rows) == (3 if env_id == "LoRATune-v0" else 4)  # stop adds no row
    assert "| 2 | 1e-02 |" in card or "2x2 | 1e-02" in card  # rank and lr of step 1
    assert "load_adapter" in card  # tiny-bert has no hub id: the card says how to rebuild it
    config = json.loads((path / "config.json").read_text())
    assert config["id2label"] == {str(i): n for i, n in enumerate(labels)}
    assert config["label2id"] == {n: i for i, n in enumerate(labels)}


def test_minilm_adapter_names_the_hub_id_and_loads_with_plain_peft(tmp_path):
    env, path = tuned(tmp_path, model="minilm", lora_layers="top-1")
    adapter_config = json.loads((path / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == MINILM_HUB_ID == HUB_IDS["minilm"]
    card = (path / "README.md").read_text()
    assert "[More Information Needed]" not in card
    assert f"base_model: {MINILM_HUB_ID}" in card and "PeftModel.from_pretrained(base" in card
    labels = env.task.label_names
    # what a user runs (here from the local copy of the hub model: no network in tests)
    base = AutoModelForSequenceClassification.from_pretrained(
        embedded_model_dir(), config=AutoConfig.from_pretrained(path), local_files_only=True)
    model = PeftModel.from_pretrained(base, path).eval()
    assert model.config.id2label == dict(enumerate(labels))
    got, expected = logits_of(model, env)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    loaded, _, meta = load_adapter(path)  # maps the hub id back to the embedded copy, offline
    assert meta["task"] == "synth-a" and loaded.config.id2label == dict(enumerate(labels))
    torch.testing.assert_close(logits_of(loaded, env)[0], expected, atol=1e-5, rtol=0)
