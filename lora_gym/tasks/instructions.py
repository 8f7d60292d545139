"""Causal-LM tasks (``type: causal_lm``): instruction and conversation data, prompts, label masks.

Seed 004's data pipeline for LoRA instruction tuning of decoder language models:

* **Examples** are prompt/response pairs. An instruction row is a triple
  ``{instruction, input, output}`` (指令-输入-输出; ``input`` may be empty); a conversation row is
  ``{"messages": [{"role": ..., "content": ...}, ...]}`` whose *last assistant turn* is the
  response and everything before it the prompt.
* **Sources** (`LMTaskSpec.source`): ``instructions`` (a JSONL or CSV file of triples),
  ``conversations`` (a JSONL file of ``messages``), ``chatterbot`` (the dialogue corpus of the
  ``chatterbot-corpus`` package, BSD-3-Clause: every bot turn of its English topic files, with
  the turns before it as the conversation) and ``classification`` (a classification `TaskSpec`
  of any source turned into triples: a fixed instruction, the text as input, the label name as
  output -- FLAN-style templating of real labelled data).
* **Preparation**: exact-duplicate removal (same prompt and response), length filtering
  (``min_chars``/``max_chars`` on the response), a seeded shuffle and the ``max_train`` /
  ``max_val`` caps; a malformed row raises a `TaskError` naming the file, row and field.
* **Prompts**: the tokenizer's chat template when it has one; else `PLAIN_TEMPLATE` (Alpaca's
  layout) for instructions and ``<role>: <content>`` lines ending in ``assistant:`` for
  conversations.
* **Labels** (`encode_examples`): the prompt's tokens are masked to ``-100`` so that only the
  response (and the end-of-sequence token) is learned; sequences are truncated to
  ``max_length`` from the right, keeping the prompt's start.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lora_gym.core.errors import ConfigError, TaskError

LM_SOURCES: tuple[str, ...] = ("instructions", "conversations", "chatterbot", "classification")
"""Where an `LMTaskSpec` reads its examples from (module docstring)."""
ROLES: tuple[str, ...] = ("system", "user", "assistant")
"""The roles a conversation message may have."""
IGNORE_INDEX = -100
"""Label of a token that carries no loss (the prompt, the padding): PyTorch's ignore_index."""
PLAIN_TEMPLATE = "### Instruction:\n{instruction}\n\n{input_block}### Response:\n"
"""The prompt of an instruction without a chat template; ``input_block`` is
``"### Input:\\n{input}\\n\\n"`` or empty when the row has no input."""


@dataclass(frozen=True)
class LMExample:
    """One training or validation example: a conversation prompt and the response to learn."""

    messages: tuple[tuple[str, str], ...]
    """The prompt as ``(role, content)`` turns, ending with a user turn."""
    response: str
    """The assistant turn that is learned."""
    instruction: tuple[str, str] | None = None
    """``(instruction, input)`` when the example is an instruction triple (templated plainly)."""


@dataclass(frozen=True)
class LMTaskSpec:
    """A causal-LM task in a task set: an entry with ``type: causal_lm`` (module docstring)."""

    name: str
    source: str
    """One of `LM_SOURCES`."""
    path: str | None = None
    """The file of ``instructions`` / ``conversations``."""
    topics: tuple[str, ...] = ()
    """``chatterbot``: the English topic files to read (e.g. ``[ai, coding]``)."""
    task: tuple[tuple[str, Any], ...] = ()
    """``classification``: the classification task spec (a `TaskSpec` mapping, kept as sorted
    items so that the spec stays hashable)."""
    instruction: str = ""
    """``classification``: the instruction of every row; ``{labels}`` lists the label names."""
    max_train: int = 1000
    max_val: int = 128
    val_fraction: float = 0.2
    """Share of the examples held out for validation (before the ``max_val`` cap)."""
    min_chars: int = 1
    """Responses shorter than this are dropped."""
    max_chars: int = 2000
    """Responses longer than this are dropped."""
    type: str = "causal_lm"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"causal_lm task `name` must be a non-empty string, "
                              f"got {self.name!r}")
        if self.type != "causal_lm":
            raise ConfigError(f"task {self.name!r}: `type` must be 'causal_lm', got {self.type!r}")
        if self.source not in LM_SOURCES:
            raise ConfigError(f"task {self.name!r}: `source` must be one of {list(LM_SOURCES)} "
                              f"for a causal_lm task, got {self.source!r}")
        needs = {"instructions": "path", "conversations": "path", "chatterbot": "topics",
                 "classification": "task"}[self.source]
        if not getattr(self, needs):
            raise ConfigError(f"task {self.name!r}: source {self.source!r} needs `{needs}`")
        if self.source == "classification" and not self.instruction.strip():
            raise ConfigError(f"task {self.name!r}: source 'classification' needs an "
                              "`instruction`")
        for field in ("max_train", "max_val", "min_chars", "max_chars"):
            if not isinstance(getattr(self, field), int) or getattr(self, field) < 1:
                raise ConfigError(f"task {self.name!r}: `{field}` must be an integer >= 1, "
                                  f"got {getattr(self, field)!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"task {self.name!r}: `val_fraction` must be in (0, 1), "
                              f"got {self.val_fraction!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LMTaskSpec:
        """Build a spec from a task-set entry; unknown keys raise `ConfigError`."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a causal_lm task must be a mapping, got {data!r}")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(str(k) for k in data if k not in valid)
        if unknown:
            raise ConfigError(f"causal_lm task: unknown key(s) {unknown}; valid keys: {valid}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        task = values.get("task")
        if task is not None and not isinstance(task, Mapping):
            raise ConfigError(f"causal_lm task: `task` must be a mapping (a classification task "
                              f"spec), got {task!r}")
        if task is not None:
            values["task"] = tuple(sorted(
                (k, tuple(v) if isinstance(v, list) else v) for k, v in task.items()))
        try:
            return cls(**values)
        except TypeError as err:
            raise ConfigError(f"causal_lm task: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain data that `from_dict` accepts."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["task"] = dict(self.task) if self.task else None
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


@dataclass(frozen=True)
class LMTaskData:
    """A loaded causal-LM task: train and validation examples (no example in both)."""

    name: str
    train: tuple[LMExample, ...]
    val: tuple[LMExample, ...]
    n_available: int
    """Examples left after cleaning, before the split and caps."""


# -- readers -------------------------------------------------------------------------------------
def _text(value: Any, where: str, field: str, optional: bool = False) -> str:
    if value is None and optional:
        return ""
    if not isinstance(value, str) or (not optional and not value.strip()):
        raise TaskError(f"{where}: field `{field}` must be a non-empty string, got {value!r}")
    return value.strip()


def instruction_example(row: Mapping[str, Any], where: str) -> LMExample:
    """An example of an ``{instruction, input, output}`` row (`where` names it in errors)."""
    if not isinstance(row, Mapping):
        raise TaskError(f"{where}: a row must be an object with `instruction`, `input`, "
                        f"`output`, got {row!r}")
    instruction = _text(row.get("instruction"), where, "instruction")
    inp = _text(row.get("input"), where, "input", optional=True)
    output = _text(row.get("output"), where, "output")
    user = f"{instruction}\n\n{inp}" if inp else instruction
    return LMExample((("user", user),), output, (instruction, inp))


def conversation_example(row: Mapping[str, Any], where: str) -> LMExample:
    """An example of a ``{"messages": [...]}`` row: the last assistant turn is the response."""
    messages = row.get("messages") if isinstance(row, Mapping) else None
    if not isinstance(messages, list) or not messages:
        raise TaskError(f"{where}: field `messages` must be a non-empty list, got {messages!r}")
    turns = []
    for i, msg in enumerate(messages):
        field = f"messages[{i}]"
        if not isinstance(msg, Mapping):
            raise TaskError(f"{where}: field `{field}` must be an object with `role` and "
                            f"`content`, got {msg!r}")
        role = msg.get("role")
        if role not in ROLES:
            raise TaskError(f"{where}: field `{field}.role` must be one of {list(ROLES)}, "
                            f"got {role!r}")
        turns.append((role, _text(msg.get("content"), where, f"{field}.content")))
    last = max((i for i, (role, _) in enumerate(turns) if role == "assistant"), default=None)
    if last is None or not any(role == "user" for role, _ in turns[:last]):
        raise TaskError(f"{where}: field `messages` needs a user turn followed by an assistant "
                        "turn (the response)")
    return LMExample(tuple(turns[:last]), turns[last][1])


def read_rows(path: Path) -> list[tuple[str, Any]]:
    """``(where, row)`` of every row of a JSONL or CSV file (`where` = ``file:line``)."""
    if not path.is_file():
        raise TaskError(f"file {str(path)!r} does not exist")
    rows = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            for i, row in enumerate(csv.DictReader(f), start=2):  # line 1 is the header
                rows.append((f"{path}:{i}", row))
        return rows
    if path.suffix.lower() not in (".jsonl", ".json"):
        raise TaskError(f"file {str(path)!r}: expected a .jsonl or .csv file")
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"{path}:{i}", json.loads(line)))
        except json.JSONDecodeError as err:
            raise TaskError(f"{path}:{i}: not valid JSON ({err.msg})") from None
    return rows


def read_chatterbot(spec: LMTaskSpec) -> list[LMExample]:
    """Every bot turn of the chatterbot-corpus English ``spec.topics``, with the turns before it."""
    import yaml

    from lora_gym.tasks.sources import chatterbot_dir

    root, topics, name = chatterbot_dir(spec), spec.topics, spec.name
    available = sorted(p.stem for p in root.glob("*.yml"))
    missing = sorted(set(topics) - set(available))
    if missing:
        raise TaskError(f"task {name!r}: chatterbot topic(s) {missing} not found; available: "
                        f"{available}")
    out = []
    for topic in topics:
        for conv in yaml.safe_load((root / f"{topic}.yml").read_text(encoding="utf-8"))[
                "conversations"]:
            turns = [str(t).strip() for t in conv]
            for k in range(1, len(turns)):  # turn k answers turns[:k]; odd ones are the bot's
                if k % 2 == 1 and turns[k] and turns[k - 1]:
                    roles = ["user" if j % 2 == 0 else "assistant" for j in range(k)]
                    out.append(LMExample(tuple(zip(roles, turns[:k], strict=True)), turns[k]))
    return out


def read_classification(spec: LMTaskSpec) -> list[LMExample]:
    """A classification task's train and val rows as instruction triples (text -> label name)."""
    from lora_gym.tasks.loading import TaskSpec, load_task

    try:
        data = load_task(TaskSpec.from_dict({"name": spec.name, **dict(spec.task)}))
    except ConfigError as err:
        raise ConfigError(f"task {spec.name!r}: `task`: {err}") from None
    instruction = spec.instruction.format(labels=", ".join(data.label_names))
    out = []
    for texts, labels in ((data.train_texts, data.train_labels), (data.val_texts, data.val_labels)):
        for text, label in zip(texts, labels, strict=True):
            out.append(instruction_example(
                {"instruction": instruction, "input": text, "output": data.label_names[label]},
                spec.name))
    return out


def read_examples(spec: LMTaskSpec) -> list[LMExample]:
    """The raw examples of `spec`, in file order."""
    if spec.source == "chatterbot":
        return read_chatterbot(spec)
    if spec.source == "classification":
        return read_classification(spec)
    parse = instruction_example if spec.source == "instructions" else conversation_example
    return [parse(row, where) for where, row in read_rows(Path(spec.path))]


@functools.lru_cache(maxsize=32)
def load_lm_task(spec: LMTaskSpec) -> LMTaskData:
    """Read, clean (duplicates, lengths), shuffle (seed 0) and split `spec`'s examples.

    Raises:
        TaskError: a bad row, or fewer than 2 examples left after cleaning.
    """
    seen, kept = set(), []
    for ex in read_examples(spec):
        key = (ex.messages, ex.response)
        if key in seen or not spec.min_chars <= len(ex.response) <= spec.max_chars:
            continue
        seen.add(key)
        kept.append(ex)
    if len(kept) < 2:
        raise TaskError(f"task {spec.name!r}: {len(kept)} example(s) left after removing "
                        f"duplicates and responses outside [{spec.min_chars}, {spec.max_chars}] "
                        "characters; need at least 2")
    order = np.random.default_rng(0).permutation(len(kept))
    n_val = min(spec.max_val, max(1, round(spec.val_fraction * len(kept))))
    val = tuple(kept[i] for i in order[:n_val])
    train = tuple(kept[i] for i in order[n_val:][:spec.max_train])
    return LMTaskData(spec.name, train, val, len(kept))


# -- prompts and labels --------------------------------------------------------------------------
def render_prompt(example: LMExample, tokenizer: Any) -> str:
    """The prompt text: the tokenizer's chat template if it has one, else the plain layout."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": r, "content": c} for r, c in example.messages]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if example.instruction is not None:
        instruction, inp = example.instruction
        block = f"### Input:\n{inp}\n\n" if inp else ""
        return PLAIN_TEMPLATE.format(instruction=instruction, input_block=block)
    return "".join(f"{role}: {content}\n" for role, content in example.messages) + "assistant: "


def encode_example(example: LMExample, tokenizer: Any, max_length: int
                   ) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)``: prompt tokens labelled `IGNORE_INDEX`, response + EOS learned.

    Truncation keeps the first `max_length` tokens; an example whose prompt fills them all keeps
    its last `max_length` − 1 prompt tokens and one response token, so that every example
    teaches something.
    """
    prompt = tokenizer(render_prompt(example, tokenizer), add_special_tokens=True)["input_ids"]
    if getattr(tokenizer, "sep_token_id", None) is not None and prompt[-1:] == [
            tokenizer.sep_token_id]:
        prompt = prompt[:-1]  # BERT-style tokenizers append [SEP]: it is our EOS, not the prompt's
    response = tokenizer(example.response, add_special_tokens=False)["input_ids"]
    response = response + [tokenizer.eos_token_id]
    if len(prompt) >= max_length:
        prompt = prompt[-(max_length - 1):]
    ids = (prompt + response)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt) + response)[:max_length]
    return ids, labels


def encode_examples(examples: Sequence[LMExample], tokenizer: Any, max_length: int
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """`encode_example` of each example, as int64 arrays."""
    return [tuple(np.asarray(x, dtype=np.int64) for x in encode_example(ex, tokenizer, max_length))
            for ex in examples]


def pad_batch(encoded: Sequence[tuple[np.ndarray, np.ndarray]], pad_id: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask, labels)`` right-padded to the longest example."""
    n = max(len(ids) for ids, _ in encoded)
    ids = np.full((len(encoded), n), pad_id, dtype=np.int64)
    labels = np.full((len(encoded), n), IGNORE_INDEX, dtype=np.int64)
    mask = np.zeros((len(encoded), n), dtype=np.int64)
    for i, (x, y) in enumerate(encoded):
        ids[i, :len(x)], labels[i, :len(y)], mask[i, :len(x)] = x, y, 1
    return ids, mask, labels
