# Two commands do all the set-up: `make demo` (the main job) and `make test` (the test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
QUIET_PIP := { grep -v "^WARNING: Location" || true; }
STAMP := $(VENV)/.segfpn-installed
# Exact versions of everything `make` installs (refresh: `make lock`), so a fresh clone resolves what CI resolved.
LOCK := requirements/constraints.txt
LOCK_VENV := /tmp/segfpn-lock-venv
# mmsegmentation, the parity tests' reference: pure Python, installed without its (compiled) dependencies;
# the pure-Python ones it needs are the `parity` extra.
PARITY_NO_DEPS := requirements/parity-nodeps.txt
EXTRAS := dev,bench,parity

.PHONY: demo test test-quick lint bench install lock clean gpu-wheels

$(STAMP): pyproject.toml $(LOCK) $(PARITY_NO_DEPS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[$(EXTRAS)]" 2>&1 | $(QUIET_PIP)
	$(BIN)/python -m pip install --quiet -c $(LOCK) --no-deps -r $(PARITY_NO_DEPS) 2>&1 | $(QUIET_PIP)
	touch $(STAMP)

# Resolve the unpinned requirements of pyproject.toml (plus the parity reference) in a new venv and freeze them.
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet -e ".[$(EXTRAS)]" 2>&1 | $(QUIET_PIP)
	$(LOCK_VENV)/bin/python -m pip install --quiet --no-deps -r $(PARITY_NO_DEPS) 2>&1 | $(QUIET_PIP)
	mkdir -p $(dir $(LOCK))
	{ echo "# pip constraints: what \`make lock\` resolved ($$(date -u +%F), $$($(LOCK_VENV)/bin/python -V), $$(uname -m))."; \
	  echo "# Used by \`make install\` (pip install -c). Refresh with \`make lock\`; do not edit by hand."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable --exclude segfpn; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf $(LOCK_VENV)

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

# Python 3.12 wheels of what benchmarks/gpu_check.sh needs beyond a GPU machine's image (carry the folder there).
gpu-wheels:
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
	  -d benchmarks/gpu_wheels -r benchmarks/gpu_requirements.txt

clean:
	rm -rf $(VENV) data/embedded_ade20k runs wandb lightning_logs
