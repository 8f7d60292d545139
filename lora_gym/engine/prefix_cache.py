"""Frozen-prefix activations: run a BERT's frozen lower layers once per task, then only the top k.

With LoRA in only the top k of a BERT's L layers (``lora_layers: top-<k>``), the hidden states
entering layer ``L - k`` are a fixed function of each example: the embeddings and the lower layers
are frozen and the model always runs without dropout. They are computed once per task (a task
variant selects rows of its corpus's states with `PrefixStates.select`; inference
mode, in batches of similar length) and stored unpadded; training and evaluation then run only the
top k layers, the pooler and the head on padded batches of them, with the attention mask built by
the same function `BertModel` uses. The result equals the full forward pass up to float rounding
(the padded positions hold zeros instead of pad-token states; attention never reads them).

Memory: ``tokens x hidden x 4`` bytes per task (about 70 MB for 2,256 short tweets, 220 MB for
2,256 news articles at 64 tokens, with MiniLM). A `PrefixCache` keeps the most recently used tasks
within a byte budget (``$LORA_GYM_PREFIX_CACHE_MB``, default 1024); the current task always stays.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lora_gym.core.errors import ConfigError
from lora_gym.engine.encoding import EncodedSplit, collate

BUDGET_ENV = "LORA_GYM_PREFIX_CACHE_MB"
"""Environment variable: megabytes of cached activations a session keeps (default 1024)."""
DEFAULT_BUDGET_MB = 1024


def supports(net: nn.Module) -> bool:
    """Whether `net` is a BERT-style encoder classifier (``bert.encoder.layer``, pooler, head)."""
    bert = getattr(net, "bert", None)
    return (bert is not None and hasattr(getattr(bert, "encoder", None), "layer")
            and getattr(bert, "pooler", None) is not None and hasattr(net, "classifier")
            and hasattr(net, "dropout")
            and not getattr(bert.config, "is_decoder", False))


def _attention_mask(bert: nn.Module, hidden: torch.Tensor, mask: torch.Tensor):
    """The encoder's attention mask, made exactly as `BertModel.forward` makes it."""
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=bert.config, inputs_embeds=hidden,
                                     attention_mask=mask)


def run_layers(bert: nn.Module, hidden: torch.Tensor, mask: torch.Tensor, start: int,
               stop: int | None = None) -> torch.Tensor:
    """Run encoder layers ``start:stop`` on `hidden` (batch, width, hidden) with 0/1 `mask`."""
    mask4 = _attention_mask(bert, hidden, mask)
    for layer in bert.encoder.layer[start:stop]:
        hidden = layer(hidden, mask4)
    return hidden


@dataclass(frozen=True)
class PrefixStates:
    """Hidden states entering layer `layer` of every example of a split, stored unpadded."""

    flat: torch.Tensor
    """All examples' states, concatenated: (total tokens, hidden), float32."""
    offsets: np.ndarray
    """Example ``i`` owns rows ``offsets[i]:offsets[i + 1]`` of `flat`."""
    labels: torch.Tensor
    """int64 label of every example."""
    layer: int
    """Index of the first layer that still has to run."""
    rows: np.ndarray | None = None
    """A selection's examples: example ``i`` is stored example ``rows[i]`` (None: all, in order)."""

    @property
    def nbytes(self) -> int:
        """Memory held by the states (shared with every selection of them)."""
        return self.flat.numel() * self.flat.element_size()

    def select(self, rows: np.ndarray, labels: np.ndarray) -> PrefixStates:
        """The examples `rows` with new `labels`: a view sharing the states (no copy)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.rows is not None:
            rows = self.rows[rows]
        return PrefixStates(self.flat, self.offsets, torch.from_numpy(np.array(labels,
                            dtype=np.int64)), self.layer, rows)

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Examples `idx` padded (with zeros) to their longest: ``(hidden, mask, labels)``."""
        stored = self.rows[idx] if self.rows is not None else idx
        starts = self.offsets[stored]
        lengths = self.offsets[stored + 1] - starts
        rows = np.repeat(np.arange(len(idx)), lengths)
        cols = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        device = self.flat.device
        rows_t, cols_t = torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device)
        hidden = self.flat.new_zeros(len(idx), int(lengths.max()), self.flat.shape[1])
        flat_idx = torch.from_numpy(np.repeat(starts, lengths) + cols).to(device)
        hidden[rows_t, cols_t] = self.flat[flat_idx]
        mask = torch.zeros(hidden.shape[:2], dtype=torch.int64, device=device)
        mask[rows_t, cols_t] = 1
        return hidden, mask, self.labels[torch.from_numpy(np.asarray(idx))].to(device)


def compute_prefix(net: nn.Module, split: EncodedSplit, pad_id: int, layer: int,
                   batch_size: int, run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                   | None = None, device: torch.device | str = "cpu") -> PrefixStates:
    """Embed `split`, run layers ``0:layer`` of `net`: inference mode, batches sorted by length.

    `run` maps a padded batch ``(ids, mask)`` to the states entering `layer` (default: a BERT's
    embeddings and encoder layers); the states are kept on `device` as float32.
    """
    lengths = split.lengths
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    # allocated outside inference mode: the states are later inputs of trained layers
    flat = torch.empty(int(offsets[-1]), net.config.hidden_size, device=device)
    order = np.argsort(lengths, kind="stable")
    if run is None:
        def run(ids, mask):
            return run_layers(net.bert, net.bert.embeddings(input_ids=ids), mask, 0, layer)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            ids, mask, _ = collate(split, idx, pad_id)
            hidden = run(ids.to(device), mask.to(device))
            for row, i in enumerate(idx):
                flat[offsets[i]:offsets[i + 1]] = hidden[row, :lengths[i]]
    labels = torch.from_numpy(np.array(split.labels, dtype=np.int64)).to(device)
    return PrefixStates(flat, offsets, labels, layer)


def top_pooled(net: nn.Module, hidden: torch.Tensor, mask: torch.Tensor,
               layer: int) -> torch.Tensor:
    """The pooler output of states entering layer `layer` (embeddings for 0): layers, pooler.

    The last layer computes only position 0, the [CLS] state the pooler reads (with eager or
    SDPA attention): its queries, attention output and feed-forward block are per position, so
    the other positions cannot change the pooled output.
    """
    bert = net.bert
    layers = bert.encoder.layer
    mask4 = _attention_mask(bert, hidden, mask)
    for block in layers[layer:-1]:
        hidden = block(hidden, mask4)
    if bert.config._attn_implementation in ("eager", "sdpa"):
        hidden = _first_position(layers[-1], hidden, mask4)
    else:
        hidden = layers[-1](hidden, mask4)
    return bert.pooler(hidden)


def _first_position(block: nn.Module, hidden: torch.Tensor, mask4) -> torch.Tensor:
    """A `BertLayer`'s output at position 0 only: (batch, 1, hidden)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.bert.modeling_bert import eager_attention_forward

    attn = block.attention.self
    batch, width = hidden.shape[:2]
    heads = (batch, -1, attn.num_attention_heads, attn.attention_head_size)
    first = hidden[:, :1]
    query = attn.query(first).view(*heads).transpose(1, 2)
    key = attn.key(hidden).view(*heads).transpose(1, 2)
    value = attn.value(hidden).view(*heads).transpose(1, 2)
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(attn.config._attn_implementation,
                                                      eager_attention_forward)
    first_mask = None if mask4 is None else mask4[:, :, :1]
    context, _ = interface(attn, query, key, value, first_mask, dropout=0.0,
                           scaling=attn.scaling)
    attended = block.attention.output(context.reshape(batch, 1, -1).contiguous(), first)
    return block.feed_forward_chunk(attended)


def budget_bytes() -> int:
    """The byte budget of a `PrefixCache` (``$LORA_GYM_PREFIX_CACHE_MB``, default 1024 MB)."""
    raw = os.environ.get(BUDGET_ENV, str(DEFAULT_BUDGET_MB))
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not mb >= 0:
        raise ConfigError(f"`{BUDGET_ENV}` must be a number of megabytes >= 0, got {raw!r}")
    return int(mb * 2**20)


class PrefixCache:
    """Prefix states per task, least recently used first out beyond a byte budget."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget_bytes() if budget is None else budget
        self._entries: OrderedDict[str, dict[str, PrefixStates]] = OrderedDict()

    def get(self, key: str, build: Callable[[], dict[str, PrefixStates]]
            ) -> dict[str, PrefixStates]:
        """The states stored under `key`, built (and older entries evicted) when missing."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = build()
        self._entries[key] = value
        while len(self._entries) > 1 and self.nbytes > self.budget:
            self._entries.popitem(last=False)
        return value

    @property
    def nbytes(self) -> int:
        """Memory held by all entries."""
        return sum(s.nbytes for entry in self._entries.values() for s in entry.values())

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)
