"""Store, config and task-set files that are not what they should be: errors name path and cause."""

import sqlite3

import gymnasium as gym
import pytest

import lora_gym  # noqa: F401
from lora_gym.core.config import EnvConfig
from lora_gym.core.errors import ConfigError, StoreError
from lora_gym.replay.store import SCHEMA_VERSION, Store
from lora_gym.tasks.sets import load_task_set
from tests.conftest import TINY  # noqa: E402


def foreign(path):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER, name TEXT)")
    return path


def corrupt(path):
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 600)
    return path


def not_sqlite(path):
    path.write_text("text,label\nhello,1\n")
    return path


def old_schema(path):
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    return path


CASES = [(foreign, r"is a SQLite database but not a lora-gym store \(tables \['photos'\]"),
         (corrupt, "is not a SQLite database or is corrupt"),
         (not_sqlite, "is not a SQLite database or is corrupt"),
         (old_schema, rf"has schema version '0', this lora-gym reads version {SCHEMA_VERSION}")]


@pytest.mark.parametrize(("make", "cause"), CASES, ids=[m.__name__ for m, _ in CASES])
@pytest.mark.parametrize("readonly", [True, False])
def test_a_bad_store_names_path_and_cause(tmp_path, make, cause, readonly):
    path = make(tmp_path / "x.sqlite")
    before = path.read_bytes()
    with pytest.raises(StoreError, match=rf"store '{path}' {cause}"):
        Store(path, readonly=readonly)
    assert path.read_bytes() == before  # a foreign file is never written to


def test_the_replay_env_reports_a_bad_store(tmp_path):
    path = foreign(tmp_path / "photos.db")
    with pytest.raises(StoreError, match=f"store '{path}' is a SQLite database but not"):
        gym.make("LoRATuneReplay-v0", config=TINY, store=str(path))


def test_an_empty_file_becomes_a_store(tmp_path):
    path = tmp_path / "new.sqlite"
    path.touch()
    with Store(path) as store:
        assert store.count() == 0
    assert Store(path, readonly=True).count() == 0


def test_yaml_syntax_error_in_a_config_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: tiny-bert\nranks: [1, 2\nepisode_length: 3\n")
    with pytest.raises(ConfigError, match=rf"config file '{path}': YAML syntax error at line 3"):
        EnvConfig.from_yaml(path)
    with pytest.raises(ConfigError, match="config file .*bad.yaml.: YAML syntax error"):
        gym.make("LoRATune-v0", config=str(path))


def test_binary_config_names_the_file(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match=rf"config file '{path}' cannot be read as UTF-8"):
        EnvConfig.from_yaml(path)


def test_task_set_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "set.yaml"
    path.write_text("name: mine\ntrain:\n  - name: a\n    source: [synthetic\n")
    with pytest.raises(ConfigError, match=rf"task set file '{path}': YAML syntax error at line"):
        load_task_set(str(path))
    path.write_text("name: mine\ntrain:\n  - name: a\n    source: nowhere\n")
    with pytest.raises(ConfigError, match=rf"task set file '{path}': .*`source`"):
        load_task_set(str(path))
