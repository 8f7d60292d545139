"""Weight-preserving rank changes of PEFT LoRA layers."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import BertConfig, BertForSequenceClassification

from lora_gym.engine import resize as lora


def tiny_lora_model(rank: int = 4, alpha: float = 16.0):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=3)
    model = get_peft_model(BertForSequenceClassification(config).eval(),
                           LoraConfig(r=rank, lora_alpha=alpha, target_modules=["query", "value"]))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a "trained" adapter: B != 0
        for layer in lora.lora_layers(model):
            layer.lora_B[lora.ADAPTER].weight.normal_(0, 0.1, generator=gen)
    return model, gen


def logits(model):
    ids = torch.arange(1, 41).reshape(4, 10) % 100
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_grow_keeps_logits():
    model, gen = tiny_lora_model(rank=4)
    before = logits(model)
    lora.resize_adapter(model, 8, 16.0, gen)
    assert lora.current_rank(model) == 8
    torch.testing.assert_close(logits(model), before, atol=1e-5, rtol=0)


def test_grow_adds_zero_b_columns_and_keeps_delta_w():
    model, gen = tiny_lora_model(rank=2)
    layer = lora.lora_layers(model)[0]
    dw = lora.delta_weight(layer).clone()
    lora.resize_layer(layer, 6, 16.0, gen)
    assert layer.lora_A[lora.ADAPTER].weight.shape == (6, 32)
    assert layer.lora_B[lora.ADAPTER].weight.shape == (32, 6)
    assert torch.all(layer.lora_B[lora.ADAPTER].weight[:, 2:] == 0)
    assert layer.scaling[lora.ADAPTER] == pytest.approx(16.0 / 6)
    torch.testing.assert_close(lora.delta_weight(layer), dw, atol=1e-6, rtol=0)


def test_shrink_to_current_rank_is_exact():
    model, gen = tiny_lora_model(rank=4)
    before = logits(model)
    dws = [lora.delta_weight(layer).clone() for layer in lora.lora_layers(model)]
    for layer in lora.lora_layers(model):
        lora.resize_layer(layer, 4, 16.0, gen)
    for layer, dw in zip(lora.lora_layers(model), dws, strict=True):
        torch.testing.assert_close(lora.delta_weight(layer), dw, atol=1e-6, rtol=0)
    torch.testing.assert_close(logits(model), before, atol=1e-5, rtol=0)


def test_shrink_matches_truncated_svd():
    model, gen = tiny_lora_model(rank=8)
    for layer in lora.lora_layers(model):
        dw = lora.delta_weight(layer).double()
        u, s, vh = torch.linalg.svd(dw)
        expected = (u[:, :3] * s[:3]) @ vh[:3]
        lora.resize_layer(layer, 3, 16.0, gen)
        assert layer.r[lora.ADAPTER] == 3
        torch.testing.assert_close(lora.delta_weight(layer).double(), expected, atol=1e-5, rtol=0)
        # The error is exactly the dropped singular values (Eckart–Young).
        err = torch.linalg.matrix_norm(dw - lora.delta_weight(layer).double())
        assert err.item() == pytest.approx(s[3:].norm().item(), rel=1e-4)


def test_reset_gives_zero_update():
    model, gen = tiny_lora_model(rank=4)
    lora.reset_adapter(model, 2, 16.0, gen)
    for layer in lora.lora_layers(model):
        assert torch.all(lora.delta_weight(layer) == 0)
        assert layer.lora_A[lora.ADAPTER].weight.requires_grad


@pytest.mark.parametrize("init", lora.INIT_STRATEGIES)
@pytest.mark.parametrize("policy", lora.ALPHA_POLICIES)
def test_grow_and_shrink_keep_delta_w_under_every_init_and_alpha_policy(init, policy):
    model, gen = tiny_lora_model(rank=2)
    lora.resize_adapter(model, 2, 16.0, gen, init, policy)  # adopt the policy's scaling
    before = logits(model)
    lora.resize_adapter(model, 6, 16.0, gen, init, policy)
    torch.testing.assert_close(logits(model), before, atol=1e-5, rtol=0)
    layer = lora.lora_layers(model)[0]
    assert layer.scaling[lora.ADAPTER] == pytest.approx(lora.scaling(6, 16.0, policy))
    lora.resize_adapter(model, 2, 16.0, gen, init, policy)  # back to rank 2: ΔW had rank 2
    torch.testing.assert_close(logits(model), before, atol=1e-5, rtol=0)


def test_alpha_policies():
    assert lora.scaling(4, 16.0, "fixed") == 4.0
    assert lora.scaling(4, 16.0, "rslora") == 8.0
    assert lora.scaling(4, 16.0, "2r") == lora.scaling(64, 16.0, "2r") == 2.0
    with pytest.raises(ValueError, match=r"alpha policy must be one of \['fixed'"):
        lora.scaling(4, 16.0, "sqrt")


def test_orthogonal_init_rows_are_orthogonal_also_after_growth():
    gen = torch.Generator().manual_seed(0)
    a = lora.init_a(3, 32, gen, "orthogonal")
    grown = torch.cat([a, lora.init_a(4, 32, gen, "orthogonal", existing=a)])
    gram = grown @ grown.T
    off_diagonal = gram - torch.diag(torch.diag(gram))
    assert off_diagonal.abs().max() < 1e-5


def test_unknown_init_is_rejected():
    with pytest.raises(ValueError, match=r"`init` must be one of \['kaiming', 'gaussian'"):
        lora.init_a(2, 8, torch.Generator(), "uniform")


def test_xavier_and_layer_adaptive_scale_a_by_the_base_layer():
    model, gen = tiny_lora_model(rank=2)
    layer = lora.lora_layers(model)[0]
    weight = layer.get_base_layer().weight.detach()  # (32, 32)
    xavier = lora.init_a(2000, 32, gen, "xavier", base_weight=weight)
    assert xavier.std().item() == pytest.approx((2 / 64) ** 0.5, rel=0.05)
    sigma = torch.linalg.svdvals(weight.double())
    scale = weight.std().item() * sigma[0].item()
    low = lora.init_a(4, 32, gen, "layer_adaptive", base_weight=weight)  # rank <= eff. rank / 2
    high = lora.init_a(2000, 32, gen, "layer_adaptive", base_weight=weight)
    assert low.std().item() == pytest.approx(0.5 * scale, rel=0.5)
    assert high.std().item() == pytest.approx(0.2 * scale, rel=0.05)
    doubled = lora.init_a(2000, 32, torch.Generator().manual_seed(0), "layer_adaptive",
                          base_weight=2 * weight)  # std and spectral norm both double
    again = lora.init_a(2000, 32, torch.Generator().manual_seed(0), "layer_adaptive",
                        base_weight=weight)
    torch.testing.assert_close(doubled, 4 * again)
    with pytest.raises(ValueError, match="needs the base layer's weight"):
        lora.init_a(2, 32, gen, "xavier")
    lora.reset_layer(layer, 3, 16.0, gen, "layer_adaptive")
    assert torch.all(lora.delta_weight(layer) == 0)
