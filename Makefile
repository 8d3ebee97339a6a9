# Two commands do all the set-up: `make demo` (the main job) and `make test` (the test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
QUIET_PIP := { grep -v "^WARNING: Location" || true; }
STAMP := $(VENV)/.segfpn-installed

.PHONY: demo test test-quick lint bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]" 2>&1 | $(QUIET_PIP)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/segfpn fit --config configs/demo.yaml
	$(BIN)/segfpn validate --config configs/demo.yaml --ckpt_path best

test: $(STAMP)
	$(BIN)/ruff check segfpn tests benchmarks
	$(BIN)/python -m pytest

test-quick: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -x

lint: $(STAMP)
	$(BIN)/ruff check segfpn tests benchmarks
	$(BIN)/ruff format --check segfpn tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) data/embedded_ade20k runs wandb lightning_logs
