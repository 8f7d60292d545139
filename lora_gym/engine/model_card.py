"""The model card (README.md) of an exported adapter: task, labels, metrics, trajectory, loading.

It replaces PEFT's empty template: YAML front matter for the Hugging Face Hub (``base_model``,
``library_name: peft``, ``pipeline_tag``), then what the adapter is for, its labels, its
validation metrics, how the agent tuned it step by step, and the lines that load it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def _fmt(value: Any, spec: str = ".4f") -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple | list):
        return "x".join(map(str, value))
    return format(value, spec) if isinstance(value, float) else str(value)


def trajectory_table(history: Sequence[Mapping[str, Any]]) -> str:
    """The tuning trajectory as a markdown table: step, rank, lr, accuracy, macro-F1, cost."""
    scope = any("scope" in row for row in history)
    head = "| step | rank | lr | accuracy | macro-F1 | cost so far |" + " scope |" * scope
    lines = [head, "|" + "---|" * (6 + scope)]
    for row in history:
        cells = [str(row["step"]), _fmt(row["rank"]), _fmt(row["lr"], ".0e"),
                 _fmt(row["accuracy"]), _fmt(row["f1"]), _fmt(row["cost_so_far"], ".2f")]
        if scope:
            cells.append(str(row.get("scope", "-")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_card(meta: Mapping[str, Any], base: str, history: Sequence[Mapping[str, Any]],
               hub_base: bool) -> str:
    """The README.md of an adapter folder.

    Args:
        meta: ``lora_gym.json``'s content (task, label names, max length, init, alpha policy).
        base: ``base_model_name_or_path`` (a hub id, or a local path / ``tiny-bert``).
        history: one row per evaluation of the episode (reset first): step, rank, lr,
            accuracy, f1, cost_so_far (and scope).
        hub_base: whether `base` is a hub id that ``from_pretrained`` can download.
    """
    labels = list(meta["label_names"])
    id2label = {i: name for i, name in enumerate(labels)}
    last = history[-1] if history else {}
    front = ["---", "library_name: peft", "pipeline_tag: text-classification",
             "tags: [lora, peft, text-classification, lora-gym]"]
    if hub_base:
        front.append(f"base_model: {base}")
    front.append("---")
    if hub_base:
        load = (f"```python\nfrom peft import PeftModel\nfrom transformers import "
                f"AutoModelForSequenceClassification, AutoTokenizer\n\n"
                f"base = AutoModelForSequenceClassification.from_pretrained(\n"
                f"    {base!r}, num_labels={len(labels)},\n"
                f"    id2label={json.dumps(id2label)},\n"
                f"    label2id={json.dumps({n: i for i, n in id2label.items()})})\n"
                f"model = PeftModel.from_pretrained(base, \"path/to/this/folder\").eval()\n"
                f"tokenizer = AutoTokenizer.from_pretrained({base!r})\n"
                f"batch = tokenizer([\"some text\"], truncation=True, "
                f"max_length={meta['max_length']}, return_tensors=\"pt\")\n"
                f"label = model.config.id2label[model(**batch).logits.argmax(-1).item()]\n```")
    else:
        load = ("```python\nfrom lora_gym.engine.export import load_adapter\n\n"
                "model, tokenizer, meta = load_adapter(\"path/to/this/folder\")  "
                "# a PeftModel\n```\n"
                f"The base `{base}` is not on the Hugging Face Hub; `load_adapter` rebuilds it "
                "and calls `PeftModel.from_pretrained`.")
    metrics = (f"accuracy {_fmt(last.get('accuracy'))}, macro-F1 {_fmt(last.get('f1'))}, "
               f"loss {_fmt(last.get('val_loss'))}" if last else "not recorded")
    return "\n".join([
        *front, "",
        f"# LoRA adapter for `{meta['task']}` (text classification)", "",
        f"A LoRA adapter and classification head for `{base}`, tuned by a lora-gym episode: at "
        "every step a policy chose the LoRA rank and learning rate, the adapter was resized "
        "keeping what it had learned, trained and evaluated.", "",
        "## Task and labels", "",
        f"* task: `{meta['task']}`; inputs truncated to {meta['max_length']} tokens",
        f"* labels ({len(labels)}): " + ", ".join(f"{i} = `{n}`" for i, n in id2label.items()),
        f"* LoRA init `{meta['init']}`, alpha policy `{meta['alpha_policy']}`", "",
        "## Validation metrics", "",
        f"On the task's fixed validation subset after the last step: {metrics}.", "",
        "## Tuning trajectory", "",
        "Step 0 is the untrained adapter; the cost is lora-gym's compute proxy (about 1 per "
        "default segment).", "",
        trajectory_table(history) if history else "Not recorded.", "",
        "## How to load", "", load, "",
    ])
