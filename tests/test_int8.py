"""INT8 frozen base (seed 003): quantised stand-ins for the prefix and evaluation, fp32 training."""

import numpy as np
import pytest
import torch
from torch import nn

from lora_gym.core.config import EnvConfig
from lora_gym.core.errors import ConfigError
from lora_gym.engine.quantize import int8_base, quantize_frozen_linears
from lora_gym.engine.session import FineTuneSession
from lora_gym.replay.store import config_hash
from lora_gym.tasks.loading import load_task
from lora_gym.tasks.sets import load_task_set
from tests.conftest import TINY

CONFIG = EnvConfig.from_yaml(TINY).replace(lora_layers="top-1")


def session(base_dtype: str) -> FineTuneSession:
    s = FineTuneSession(CONFIG.replace(base_dtype=base_dtype))
    s.start(load_task(load_task_set("tiny").get("synth-a")), seed=0)
    return s


def test_frozen_linears_are_swapped_for_int8_and_restored():
    s = session("int8")
    quantized = s._int8
    assert any(name.endswith("query.base_layer") for name in quantized)  # under LoRA
    assert not any("lora_" in name or name.startswith("classifier") for name in quantized)
    assert all(type(m).__name__ == "Linear" and m.weight().dtype == torch.qint8
               for m in quantized.values())
    name = next(iter(quantized))
    original = s.net.get_submodule(name)
    with int8_base(s.net, quantized):
        assert s.net.get_submodule(name) is quantized[name]
    assert s.net.get_submodule(name) is original and type(original) is nn.Linear
    assert quantize_frozen_linears(nn.Sequential(nn.Linear(2, 2))) == {}  # trainable: kept


def test_int8_evaluates_close_to_fp32_and_trains_in_fp32():
    fp32, int8 = session("float32"), session("int8")
    for s in (fp32, int8):
        s.train(CONFIG.ranks[1], 1.0e-2, 3)
    with torch.inference_mode():
        a, b = (s._val_outputs(True, s._states["val"], s.val_split) for s in (fp32, int8))
    assert not torch.equal(a, b)  # int8 rounding reaches the outputs ...
    np.testing.assert_allclose(b.numpy(), a.numpy(), atol=0.05)  # ... and stays small
    m1, m2 = fp32.evaluate(), int8.evaluate()
    assert abs(m1.accuracy - m2.accuracy) <= 0.05 and m2.val_loss == pytest.approx(m1.val_loss,
                                                                                      abs=0.02)
    assert all(p.grad is None and p.dtype == torch.float32 for p in int8.net.parameters())


def test_int8_config():
    assert config_hash(CONFIG.replace(base_dtype="int8")) != config_hash(CONFIG)
    with pytest.raises(ConfigError, match=r"`base_dtype` must be one of \['float32', 'int8'\]"):
        CONFIG.replace(base_dtype="fp16")
    with pytest.raises(ConfigError, match="`base_dtype` int8 needs an init that leaves the base"):
        CONFIG.replace(base_dtype="int8", init="pissa")


# -- INT8 LoRA increments (seed 003's QuantizedLoRA, `lora_dtype: int8`) --------------------------
def test_int8_round_trip_is_within_half_a_scale():
    from lora_gym.engine.quantize import dequantize_tensor, quantize_tensor

    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(0)) * 0.05
    q, scale = quantize_tensor(w)
    assert q.dtype == torch.int8 and scale == pytest.approx(float(w.abs().max()) / 127)
    assert float((dequantize_tensor(q, scale) - w).abs().max()) <= scale / 2 + 1e-9
    zeros, zero_scale = quantize_tensor(torch.zeros(3, 4))  # a fresh B
    assert zero_scale == 0.0 and not zeros.any()


def test_int8_lora_evaluates_quantised_and_trains_fp32(tmp_path):
    import gymnasium as gym
    from safetensors.torch import load_file

    import lora_gym  # noqa: F401
    from lora_gym.engine.export import INT8_FILE, load_adapter
    from lora_gym.engine.quantize import int8_lora

    env = gym.make("LoRATune-v0", config=TINY, lora_dtype="int8", steps_per_action=5)
    env.reset(seed=0, options={"task": "synth-a"})
    env.step(env.unwrapped.grid.encode(4, 1.0e-2))
    s = env.unwrapped.session
    a = next(iter(s.adapter.layers.values())).lora_A["default"].weight
    before = a.detach().clone()
    int8_out = s._val_outputs(True, None, s.val_split)
    assert torch.equal(a, before)  # the fp32 weights are back after evaluation
    int8_config, s.config = s.config, s.config.replace(lora_dtype="float32")
    fp32_out = s._val_outputs(True, None, s.val_split)
    s.config = int8_config
    assert 0 < float((int8_out - fp32_out).abs().max()) < 1e-3  # quantised: changed, a little
    path = env.unwrapped.save_adapter(tmp_path / "adapter")
    tensors = load_file(str(path / INT8_FILE))
    assert all(t.dtype in (torch.int8, torch.float32) for t in tensors.values())
    model, tokenizer, meta = load_adapter(path)
    assert meta["lora_dtype"] == "int8"
    texts = list(s.task.val_texts[:8])
    batch = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.inference_mode(), int8_lora(s.adapter.layers):
        expected = s.logits(batch["input_ids"], batch["attention_mask"])
    with torch.inference_mode():
        got = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_lora_dtype_is_validated_and_keys_tables():
    with pytest.raises(ConfigError, match=r"`lora_dtype` must be one of \['float32', 'int8'\]"):
        EnvConfig(lora_dtype="int4")
    assert config_hash(CONFIG) != config_hash(CONFIG.replace(lora_dtype="int8"))
    assert config_hash(CONFIG) == config_hash(CONFIG.replace(lora_dtype="float32"))
