"""An exported adapter reloads with PeftModel.from_pretrained and predicts the same."""

import gymnasium as gym
import torch
from peft import PeftModel

import lora_gym  # noqa: F401
from lora_gym.engine.export import load_adapter
from tests.conftest import TINY


def test_exported_adapter_reloads_with_identical_predictions(tmp_path):
    env = gym.make("LoRATune-v0", config=TINY, steps_per_action=5)
    env.reset(seed=0, options={"task": "synth-a"})
    grid = env.unwrapped.grid
    env.step(grid.encode(4, 1.0e-2))
    env.step(grid.encode(2, 1.0e-2))  # shrink after training: ΔW by SVD
    path = env.unwrapped.save_adapter(tmp_path / "adapter")
    assert (path / "adapter_config.json").is_file()

    session = env.unwrapped.session
    texts = list(session.task.val_texts[:16])
    batch = session.tokenizer(texts, padding=True, truncation=True, max_length=32,
                              return_tensors="pt")
    with torch.inference_mode():
        expected = session.logits(batch["input_ids"], batch["attention_mask"])
    model, tokenizer, meta = load_adapter(path)
    assert isinstance(model, PeftModel) and meta["task"] == "synth-a"
    assert model.peft_config["default"].r == 2
    with torch.inference_mode():
        got = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert model.config.id2label[0] == session.task.label_names[0]
