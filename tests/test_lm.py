"""`LoRATuneLM-v0` and its data pipeline: readers, prompt mask, env contract, export round trip.

Everything runs on ``tiny-llama`` (a random 2-layer Llama built in-process) with small settings
and task sets written into the test's folder.
"""

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import lora_gym
from lora_gym.core.errors import ConfigError, TaskError
from lora_gym.core.lm_config import LMConfig, resolve_lm_config
from lora_gym.tasks.instructions import (
    IGNORE_INDEX,
    LMTaskSpec,
    encode_example,
    instruction_example,
    load_lm_task,
    render_prompt,
)
from lora_gym.tasks.sets import load_task_set
from tests.conftest import ROOT

SMALL = {"episode_length": 3, "steps_per_action": 2, "batch_size": 4, "grad_accum": 2,
         "max_length": 48, "eval_batch_size": 16, "torch_threads": 1}


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture(scope="module")
def task_set(tmp_path_factory):
    """A causal-LM task set of an instruction file and a conversation file."""
    root = tmp_path_factory.mktemp("lm")
    colours = ["red", "green", "blue", "black", "white", "pink", "grey", "brown"]
    write_jsonl(root / "colours.jsonl", [
        {"instruction": "Name the colour.", "input": f"the {c} {i}", "output": c}
        for i in range(6) for c in colours])
    write_jsonl(root / "chat.jsonl", [
        {"messages": [{"role": "user", "content": f"hello {i}"},
                      {"role": "assistant", "content": f"hi {i}"},
                      {"role": "user", "content": f"count to {i % 5}"},
                      {"role": "assistant", "content": " ".join(map(str, range(i % 5 + 1)))}]}
        for i in range(40)])
    return {"name": "lm-test", "train": [
        {"name": "colours", "type": "causal_lm", "source": "instructions",
         "path": str(root / "colours.jsonl")},
        {"name": "chat", "type": "causal_lm", "source": "conversations",
         "path": str(root / "chat.jsonl")}]}


@pytest.fixture(scope="module")
def task_set_file(task_set, tmp_path_factory):
    import yaml

    path = tmp_path_factory.mktemp("lm-set") / "set.yaml"
    path.write_text(yaml.safe_dump(task_set))
    return str(path)


@pytest.fixture(scope="module")
def tokenizer():
    from lora_gym.engine.lm_session import load_lm

    return load_lm("tiny-llama")[1]


def make_env(task_set_file, **kw):
    return gym.make("LoRATuneLM-v0", config={**SMALL, "task_set": task_set_file, **kw})


# -- readers -------------------------------------------------------------------------------------
def test_readers_split_dedupe_and_filter(task_set):
    ts = load_task_set(task_set)
    assert ts.task_type == "causal_lm"
    colours = load_lm_task(ts.get("colours"))
    assert colours.n_available == 48 and len(colours.train) + len(colours.val) == 48
    assert not {(e.messages, e.response) for e in colours.train} & {
        (e.messages, e.response) for e in colours.val}
    chat = load_lm_task(ts.get("chat"))
    ex = chat.train[0]
    assert [r for r, _ in ex.messages] == ["user", "assistant", "user"]  # last assistant turn
    assert ex.response[0] == "0"


def test_duplicates_and_lengths_are_dropped(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"instruction": "a", "input": "", "output": "yes"},
        {"instruction": "a", "input": "", "output": "yes"},  # exact duplicate
        {"instruction": "b", "output": "no"},
        {"instruction": "c", "output": "x" * 50}])  # too long
    spec = LMTaskSpec(name="d", source="instructions", path=str(path), max_chars=20)
    assert load_lm_task(spec).n_available == 2


def test_csv_instructions(tmp_path):
    path = tmp_path / "i.csv"
    path.write_text("instruction,input,output\nSay hi,,hi\nSay bye,now,bye\nSay no,,no\n")
    data = load_lm_task(LMTaskSpec(name="c", source="instructions", path=str(path)))
    assert data.n_available == 3


@pytest.mark.parametrize(("rows", "match"), [
    ([{"instruction": "x", "input": ""}], r"b\.jsonl:1: field `output` must be a non-empty"),
    (["not an object"], r"b\.jsonl:1: a row must be an object"),
    ([{"messages": [{"role": "bot", "content": "x"}]}], r"b\.jsonl:1: field `messages\[0\]\.role`"),
    ([{"messages": [{"role": "user", "content": "x"}]}], r"needs a user turn followed by an assi"),
])
def test_bad_rows_name_file_row_and_field(tmp_path, rows, match):
    source = "conversations" if "messages" in json.dumps(rows) else "instructions"
    path = write_jsonl(tmp_path / "b.jsonl", rows)
    with pytest.raises(TaskError, match=match):
        load_lm_task(LMTaskSpec(name="b", source=source, path=str(path)))


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{oops\n')
    with pytest.raises(TaskError, match=r"j\.jsonl:2: not valid JSON"):
        load_lm_task(LMTaskSpec(name="j", source="instructions", path=str(path)))


def test_shipped_lm_task_set_reads_real_data():
    ts = load_task_set("lm")
    assert ts.task_type == "causal_lm" and ts.train and ts.val and ts.test
    chat = load_lm_task(ts.get("chatterbot-trivia"))
    assert len(chat.val) > 10 and all(ex.messages[-1][0] == "user" for ex in chat.val)
    sms = load_lm_task(ts.get("sms-instruct"))
    assert {ex.response for ex in sms.train} == {"ham", "spam"}


def test_task_sets_hold_one_type(task_set):
    mixed = {**task_set, "train": [*task_set["train"],
                                   {"name": "s", "source": "synthetic", "num_classes": 2}]}
    with pytest.raises(ConfigError, match="mixes task types"):
        load_task_set(mixed)
    with pytest.raises(ConfigError, match="use LoRATuneLM-v0"):
        gym.make("LoRATune-v0", config="tiny", task_set="lm").reset(seed=0)
    with pytest.raises(ConfigError, match=r"`type` must be one of \['classification', 'causal_lm'"):
        load_task_set({"name": "t", "train": [{"name": "x", "type": "seq2seq"}]})


# -- prompts and the label mask ------------------------------------------------------------------
def test_prompt_tokens_carry_no_loss(tokenizer):
    ex = instruction_example({"instruction": "Name the colour.", "input": "a red car",
                              "output": "red"}, "row")
    prompt = render_prompt(ex, tokenizer)
    assert prompt == ("### Instruction:\nName the colour.\n\n### Input:\na red car\n\n"
                      "### Response:\n")
    ids, labels = encode_example(ex, tokenizer, 64)
    n_prompt = sum(1 for y in labels if y == IGNORE_INDEX)
    assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:]  # the response and EOS are learned
    assert labels[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[n_prompt:-1]) == "red"


def test_truncation_keeps_a_response_token(tokenizer):
    ex = instruction_example({"instruction": "word " * 100, "output": "yes"}, "row")
    ids, labels = encode_example(ex, tokenizer, 16)
    assert len(ids) == 16 and labels[-1] != IGNORE_INDEX and labels[-2] == IGNORE_INDEX


def test_chat_template_is_used_when_the_tokenizer_has_one(tokenizer):
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    ex = instruction_example({"instruction": "hi", "output": "yo"}, "row")
    assert render_prompt(ex, tok) == "<user>hi<assistant>"


# -- config --------------------------------------------------------------------------------------
def test_shipped_lm_config_is_the_default():
    assert resolve_lm_config("lm") == LMConfig()


@pytest.mark.parametrize(("field", "value", "match"), [
    ("lora_dropout", 1.5, r"`lora_dropout` must be in \[0, 1\)"),
    ("grad_accum", 0, r"`grad_accum` must be >= 1"),
    ("init", "pissa", r"`init` must be one of .*classification-env init"),
    ("lr_schedule", "step", r"`lr_schedule` must be one of"),
    ("cost_weight", [0.001, 0.01], r"`cost_weight` must be of type float"),
])
def test_bad_config_names_field_and_allowed_values(field, value, match):
    with pytest.raises(ConfigError, match=match):
        LMConfig.from_dict({field: value})


def test_unknown_config_key():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['augmentation_choices'\]"):
        LMConfig.from_dict({"augmentation_choices": []})


# -- the env -------------------------------------------------------------------------------------
def test_gymnasium_and_sb3_check_env(task_set_file):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    assert "LoRATuneLM-v0" in lora_gym.LM_ENV_IDS
    env = make_env(task_set_file)
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(make_env(task_set_file).unwrapped)


def test_episode_is_seeded_and_learns(task_set_file):
    runs = []
    for _ in range(2):
        env = make_env(task_set_file)
        obs, info = env.reset(seed=3, options={"task": "colours"})
        out = [obs]
        for _ in range(3):
            obs, reward, term, trunc, info = env.step(env.unwrapped.grid.encode(16, 1e-2))
            out += [obs, reward]
        runs.append((out, info))
    (a, info), (b, _) = runs
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert info["step"] == 3 and info["metrics"]["val_loss"] < a[0][2]  # the loss fell
    assert math.isclose(info["metrics"]["perplexity"], math.exp(info["metrics"]["val_loss"]))
    assert info["lora_stats"] and not term and trunc


def test_stop_and_divergence(task_set_file, monkeypatch):
    env = make_env(task_set_file)
    env.reset(seed=0)
    _, reward, term, _, info = env.step(env.action_space.n - 1)
    assert term and info["stopped"] and reward == 0.0
    env.reset(seed=0)
    session = env.unwrapped.session
    monkeypatch.setattr(session, "_loss", lambda batch: (torch.tensor(float("nan")),) * 3 + (1,))
    obs, reward, term, _, info = env.step(0)
    assert term and info["diverged"] and reward == -1.0 and np.isfinite(obs).all()


def test_rank_change_keeps_what_was_learned(task_set_file):
    env = make_env(task_set_file)
    env.reset(seed=1, options={"task": "colours"})
    env.step(env.unwrapped.grid.encode(4, 1e-2))
    session = env.unwrapped.session
    before = session.evaluate()
    session.set_rank(16)
    grown = session.evaluate()
    session.set_rank(4)  # back down by SVD truncation of a rank-4 ΔW: exact
    shrunk = session.evaluate()
    assert grown.val_loss == pytest.approx(before.val_loss, abs=1e-5)
    assert shrunk.val_loss == pytest.approx(before.val_loss, abs=1e-4)


def test_export_reloads_with_peft_and_generates_the_same(task_set_file, tmp_path):
    from lora_gym.engine.lm_session import load_lm_adapter

    env = make_env(task_set_file)
    env.reset(seed=2, options={"task": "colours"})
    env.step(env.unwrapped.grid.encode(1, 1e-2))
    env.step(env.unwrapped.grid.encode(4, 1e-2))  # per-layer ranks after a resize
    folder = env.unwrapped.save_adapter(tmp_path / "adapter")
    assert json.loads((folder / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
    model, tok = load_lm_adapter(folder)
    live = env.unwrapped.session
    enc = tok("### Instruction:\nName the colour.\n\n### Response:\n", return_tensors="pt",
              add_special_tokens=False)
    prompt = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    with torch.inference_mode():
        a = model.generate(**prompt, max_new_tokens=5, do_sample=False,
                           pad_token_id=tok.pad_token_id)
        b = live.model.generate(**prompt, max_new_tokens=5, do_sample=False,
                                pad_token_id=tok.pad_token_id)
        la = model(**prompt).logits
        lb = live.net(**prompt).logits
    assert torch.equal(a, b)
    torch.testing.assert_close(la, lb, atol=1e-5, rtol=1e-5)


def test_train_agent_trains_on_the_tiny_lm_setting(task_set_file, tmp_path):
    import subprocess
    import sys

    import yaml

    config = tmp_path / "lm-small.yaml"
    config.write_text(yaml.safe_dump({**SMALL, "task_set": task_set_file}))
    cmd = [sys.executable, str(ROOT / "train_agent.py"), "--env", "LoRATuneLM-v0",
           "--env-kwargs", f"config:'{config}'", "-n", "8", "-f", str(tmp_path / "logs"),
           "--eval-freq", "0", "-params", "n_steps:4", "batch_size:4"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert list((tmp_path / "logs" / "ppo").glob("LoRATuneLM-v0_1/LoRATuneLM-v0.zip"))


# -- recording and replay ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lm_store(task_set_file, tmp_path_factory):
    """A store of one random episode per task, recorded with the README's command."""
    from lora_gym.cli import record

    path = tmp_path_factory.mktemp("lm-store") / "lm.sqlite"
    argv = ["--env", "LoRATuneLM-v0", "--store", str(path), "--policy", "random", "--seeds", "1",
            "--quiet", "--env-kwargs", *(f"{k}:{v}" for k, v in SMALL.items()),
            f"task_set:{task_set_file}"]
    record.main(argv)
    return path, argv


def make_replay(task_set_file, store, **kw):
    return gym.make("LoRATuneLMReplay-v0", store=str(store),
                    config={**SMALL, "task_set": task_set_file}, **kw)


def test_lm_rows_have_their_own_key(lm_store, task_set_file, capsys):
    from lora_gym.cli import record
    from lora_gym.core.config import EnvConfig
    from lora_gym.replay.store import Store, config_hash, outcome_config

    path, argv = lm_store
    config = resolve_lm_config(None, **SMALL, task_set=task_set_file)
    assert outcome_config(config)["env_id"] == "LoRATuneLM-v0"
    assert config_hash(config) != config_hash(EnvConfig())
    with Store(path, readonly=True) as db:
        [stored] = db.configs()
        rows = db.count()
    assert stored["config_hash"] == config_hash(config) and stored["rows"] == rows >= 2 * 2
    capsys.readouterr()
    record.main(argv)  # rerun: every episode is already recorded
    assert "run=0 skipped=2 new_rows=0" in capsys.readouterr().out


@pytest.mark.parametrize("reward_fn", ["delta_acc_minus_cost", "delta_neg_loss_minus_cost"])
def test_replay_serves_the_live_episode_bit_for_bit(lm_store, task_set_file, reward_fn):
    path, _ = lm_store
    replay = make_replay(task_set_file, path, miss="raise", reward_fn=reward_fn)
    index = replay.unwrapped.index
    for task in ("colours", "chat"):
        [seed] = index.seeds(task)
        live = make_env(task_set_file, reward_fn=reward_fn)
        options = {"task": task, "episode_seed": seed}
        (a, info_a), (b, info_b) = replay.reset(options=options), live.reset(options=options)
        np.testing.assert_array_equal(a, b)
        assert info_a["metrics"] == pytest.approx(info_b["metrics"], nan_ok=True)
        node = index.get(task, seed, ())
        while node.children:
            action, node = next(iter(node.children.items()))
            out_a, out_b = replay.step(action), live.step(action)
            np.testing.assert_array_equal(out_a[0], out_b[0])
            assert out_a[1:4] == out_b[1:4]  # reward, terminated, truncated
            assert out_a[4]["source"] == "table"
            assert out_a[4]["metrics"] == pytest.approx(out_b[4]["metrics"], nan_ok=True)


def test_replay_misses_raise_or_run_live_and_are_recorded(lm_store, task_set_file, tmp_path):
    import shutil

    from lora_gym.replay.index import TableMiss

    path, _ = lm_store
    store = shutil.copy(path, tmp_path / "copy.sqlite")
    raising = make_replay(task_set_file, store, miss="raise")
    raising.reset(seed=0)
    node = raising.unwrapped._node
    unrecorded = next(a for a in range(raising.action_space.n - 1) if a not in node.children)
    with pytest.raises(TableMiss, match="lora-gym record"):
        raising.step(unrecorded)
    env = make_replay(task_set_file, store)  # miss="live" by default
    env.reset(seed=0)
    _, _, _, _, info = env.step(unrecorded)
    assert info["source"] == "live"
    again = make_replay(task_set_file, store, miss="raise")  # the miss is now a row
    again.reset(seed=0)
    assert again.step(unrecorded)[4]["source"] == "table"


def test_replay_check_envs_and_bad_arguments(lm_store, task_set_file, tmp_path):
    import shutil

    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    from lora_gym.cli import record

    assert "LoRATuneLMReplay-v0" in lora_gym.LM_ENV_IDS
    store = shutil.copy(lm_store[0], tmp_path / "copy.sqlite")
    grid = tmp_path / "grid.sqlite"  # every first action recorded: check_env's determinism
    record.main(["--env", "LoRATuneLM-v0", "--store", str(grid), "--policy", "grid", "--quiet",
                 "--tasks", "colours", "--env-kwargs", *(f"{k}:{v}" for k, v in SMALL.items()),
                 f"task_set:{task_set_file}"])  # check compares two steps' infos (source too)
    check_env(make_replay(task_set_file, grid).unwrapped, skip_render_check=True)
    sb3_check_env(make_replay(task_set_file, store).unwrapped)
    with pytest.raises(ValueError, match="needs `store`"):
        gym.make("LoRATuneLMReplay-v0", config={**SMALL, "task_set": task_set_file})
    with pytest.raises(ValueError, match=r"`miss` must be one of \['raise', 'live'\]"):
        make_replay(task_set_file, store, miss="surrogate")
    with pytest.raises(LookupError, match="no rows for model"):
        make_replay(task_set_file, store, max_length=32)  # another outcome config


def test_compare_plays_the_lm_env(task_set_file, tmp_path):
    """`lora-gym compare --env LoRATuneLM-v0`: every method on the same causal-LM episodes."""
    from lora_gym.cli import compare

    summary = compare.main(["--env", "LoRATuneLM-v0", "--env-kwargs",
                            *(f"{k}:{v}" for k, v in SMALL.items()), f"task_set:{task_set_file}",
                            "--split", "train", "--seeds", "1", "--methods", "default", "random",
                            "schedule", "--out", str(tmp_path), "--no-progress"])
    assert set(summary) == {"default", "random", "schedule"}
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["env"] == "LoRATuneLM-v0" and results["tasks"] == ["colours", "chat"]
    assert len(results["episodes"]) == 3 * 2
    for episode in results["episodes"]:  # every method trains all 3 segments (none stops)
        assert episode["steps"] == SMALL["episode_length"]
        assert 0.0 <= episode["final_accuracy"] <= 1.0
