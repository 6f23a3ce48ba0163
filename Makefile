# brainxai — the two commands a newcomer needs: `make study` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

# Embedded defaults: no servers, no telemetry, state inside the project.
export PATH := $(BIN):$(PATH)
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

.PHONY: venv study test test-all lint bench gpu-acceptance lock doctor clean
.DEFAULT_GOAL := help

help:
	@echo "make study   create .venv from requirements.lock (once), make the embedded data, run the study (dvc repro, demo profile: CPU, ~1 h)"
	@echo "make test    create .venv (once) and run the default test suite (not slow)"
	@echo "make test-all | lint | bench | gpu-acceptance | doctor | lock | clean"

# The venv is rebuilt only when the lock or the project metadata change.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade "pip>=24"
	$(VENV)/bin/python -m pip install -q -r requirements.lock
	$(VENV)/bin/python -m pip install -q --no-deps -e .
	$(VENV)/bin/python -m pip check
	@touch $@

venv: $(STAMP)

study: $(STAMP)
	$(BIN)/brainxai study track -- $(BIN)/dvc repro  # one MLflow parent run over every stage
	$(BIN)/brainxai study summary

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src flows tasks tests benchmarks
	$(BIN)/ruff format --check src flows tasks tests benchmarks

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

# On a GPU worker (one GPU, <= 8 min): every CUDA path against the CPU and every GPU target
# (issue 18) -> reports/gpu_acceptance/gpu_acceptance.{json,md}. Exit 1 if a check failed.
# GPU_ACCEPTANCE_ARGS="--dry-run" runs it on the CPU at tiny sizes; "--only CHECK ..." reruns some.
GPU_ACCEPTANCE_ARGS ?=
gpu-acceptance: $(STAMP)
	$(BIN)/python benchmarks/gpu_acceptance.py --out-json reports/gpu_acceptance/gpu_acceptance.json \
		--out-md reports/gpu_acceptance/gpu_acceptance.md $(GPU_ACCEPTANCE_ARGS)

doctor: $(STAMP)
	$(BIN)/brainxai doctor

# Re-resolve the lock from pyproject's direct dependencies in a scratch venv.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --upgrade "pip>=24"
	.venv-lock/bin/python -m pip install -q ".[dev]"
	.venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^brainxai' > requirements.lock
	rm -rf .venv-lock

clean:
	rm -rf .prefect mlruns.db mlartifacts data/interim data/processed reports/metrics
