"""INT8 frozen base (seed 003): dynamically quantised copies of the frozen Linear layers.

With ``base_dtype: int8`` the session quantises every frozen ``nn.Linear`` of the model (the
base layers under LoRA, the other projections, the pooler; never LoRA's A and B nor the trained
head) once, with PyTorch's dynamic quantisation (``torch.ao.quantization.quantize_dynamic``:
int8 weights, activations quantised per batch on the fly). The quantised copies stand in for the
fp32 layers inside `int8_base` -- the session uses it for the frozen-prefix computation and for
evaluation -- while training keeps the fp32 layers (a quantised layer has no backward). CPU only.
PyTorch marks its quantised tensor API deprecated in favour of torchao; its warning is silenced
here, once per quantisation.

INT8 LoRA increments (seed 003's ``QuantizedLoRA``, ``lora_dtype: int8``): A and B themselves are
quantised per tensor with a dynamic scale, ``q = round(w / s)``, ``s = max|w| / 127``, so every
element comes back within ``s / 2``. Training keeps fp32 A and B; inside `int8_lora` the model
runs their int8 round trip (evaluation), and an exported adapter holds that round trip plus the
int8 tensors themselves (`quantize_tensor`), a quarter of the fp32 size.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["dequantize_tensor", "int8_base", "int8_lora", "quantize_frozen_linears",
           "quantize_tensor"]


def _frozen_linears(net: nn.Module) -> list[str]:
    """Names of the `net`'s Linear layers that never train (not LoRA's A/B, not the head)."""
    return [name for name, m in net.named_modules()
            if type(m) is nn.Linear and "lora_" not in name
            and not name.startswith("classifier") and not m.weight.requires_grad]


def quantize_frozen_linears(net: nn.Module) -> dict[str, nn.Module]:
    """Int8 dynamically quantised copies of `net`'s frozen Linear layers, by module name."""
    from torch.ao.quantization import quantize_dynamic

    out = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"torch\.quantize_per_tensor", UserWarning)
        for name in _frozen_linears(net):
            wrapper = nn.Sequential(copy.deepcopy(net.get_submodule(name)))
            out[name] = quantize_dynamic(wrapper, {nn.Linear}, dtype=torch.qint8)[0]
    return out


@contextmanager
def int8_base(net: nn.Module, quantized: dict[str, nn.Module]) -> Iterator[None]:
    """Within the block, `net` runs the `quantized` layers in place of its fp32 ones."""
    originals = {name: net.get_submodule(name) for name in quantized}
    try:
        for name, module in quantized.items():
            _set(net, name, module)
        yield
    finally:
        for name, module in originals.items():
            _set(net, name, module)


def _set(net: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, child, module)


def quantize_tensor(w: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``(q, s)``: int8 ``q = round(w / s)`` with the dynamic per-tensor scale ``max|w| / 127``.

    An all-zero tensor (a fresh B) has scale 0 and quantises to zeros.
    """
    scale = float(w.detach().abs().max()) / 127.0 if w.numel() else 0.0
    if scale == 0.0:
        return torch.zeros_like(w, dtype=torch.int8), 0.0
    return torch.round(w.detach() / scale).clamp_(-127, 127).to(torch.int8), scale


def dequantize_tensor(q: torch.Tensor, scale: float) -> torch.Tensor:
    """The float32 tensor an int8 `q` with `scale` stands for."""
    return q.to(torch.float32) * scale


@contextmanager
def int8_lora(layers: dict[str, nn.Module], adapter: str = "default") -> Iterator[None]:
    """Within the block, every LoRA layer's A and B hold their int8 round trip (fp32 after)."""
    saved = []
    try:
        with torch.no_grad():
            for layer in layers.values():
                for part in (layer.lora_A[adapter], layer.lora_B[adapter]):
                    saved.append((part.weight, part.weight.detach().clone()))
                    part.weight.copy_(dequantize_tensor(*quantize_tensor(part.weight)))
        yield
    finally:
        with torch.no_grad():
            for weight, original in saved:
                weight.copy_(original)
