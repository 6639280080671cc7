# One command each, on a fresh machine: `make run` (quickstart experiment) and `make test` (`make test-all` in CI).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch; users with GPUs install their own torch first (pyproject declares a range).
TORCH ?= torch==2.13.0

.PHONY: setup run run-benchmark test test-all lint format bench clean wheels gpu-check

$(BIN)/moga: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(BIN)/moga

setup: $(BIN)/moga

run: setup
	$(BIN)/moga run experiments/quickstart.yaml

# the same pipeline on NAS-Bench-Macro, whose every network has a trained accuracy: the front comes with its regret
run-benchmark: setup
	$(BIN)/moga run experiments/nasbench_macro.yaml

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# `test` leaves out the tests marked slow (multi-second end-to-end runs); `test-all` runs every test and is what CI
# runs. pytest's exit code 5 (no test collected) fails both, like any other non-zero code.
test: lint
	$(BIN)/python -m pytest -q -m "not slow"

test-all: lint
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# On a machine with network: the wheels an air-gapped GPU box lacks (bench/gpu_wheels.txt), for CPython 3.12
# x86-64, into wheels/ (gitignored, ~10 MB). Copy the repository with wheels/ to the box and run `make gpu-check`.
WHEEL_PYTHON ?= 3.12
WHEEL_PLATFORMS := --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64
wheels:
	$(PYTHON) -m pip download --quiet --only-binary=:all: --no-deps --python-version $(WHEEL_PYTHON) --implementation cp \
		--abi cp$(subst .,,$(WHEEL_PYTHON)) $(WHEEL_PLATFORMS) -d wheels -r bench/gpu_wheels.txt
	@du -sh wheels

# On the GPU box (no network): installs wheels/ into .gpu-site/ without touching torch, runs bench/gpu_check.py
gpu-check:
	bash bench/gpu_check.sh
