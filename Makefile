# Two entry points on a fresh machine: `make demo` (the main job) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0

.PHONY: setup demo test lint check bench clean

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

test: setup
	$(BIN)/ruff check olmo tests bench
	$(BIN)/pytest -q tests

lint: setup
	$(BIN)/ruff check olmo tests bench
	$(BIN)/ruff format --check olmo tests bench

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
