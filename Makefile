# Two entry points for a newcomer: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install demo demo-live test bench clean

# lora-gym-research-corpora: the optional research-only corpora (test split, legacy-v1 task set).
$(VENV)/.installed: pyproject.toml lora-gym-research-corpora/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0 -e ".[dev,ray]" ./lora-gym-research-corpora
	touch $@

install: $(VENV)/.installed

# The main job: PPO on the shipped table of real MiniLM fine-tunes, compared, checked live.
demo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/lora-gym demo

# A few live episodes of LoRATune-v0, every step printed.
demo-live: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/lora-gym live-demo

test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

# Speed of a live step (naive vs engine), of the replay env and of recording (serial vs Ray);
# not tests: numbers to quote.
bench: install
	HF_HUB_OFFLINE=1 $(PY) benchmarks/step_speed.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/replay_speed.py --config envs_configs/default.yaml
	HF_HUB_OFFLINE=1 $(PY) benchmarks/surrogate_fit.py --config envs_configs/default.yaml
	HF_HUB_OFFLINE=1 $(PY) benchmarks/int8_speed.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/record_speed.py

clean:
	rm -rf $(VENV)
