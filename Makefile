# The two set-up commands: `make up` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
DATA_DIR ?= var
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: up test lint typecheck pytest sync bench clean

$(UV):
	@echo "uv not found: installing it into .tools/"
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv

.venv: $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --all-packages
	@touch .venv

sync: .venv

## Run the whole platform in one process (SQLite under $(DATA_DIR), in-process bus).
up: .venv
	$(UV) run --no-sync icrs up --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

## Lint, type-check and run every test on a real RabbitMQ and PostgreSQL.
test: lint typecheck pytest

lint: .venv
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .

typecheck: .venv
	$(UV) run --no-sync mypy

pytest: .venv
	$(UV) run --no-sync pytest $(PYTEST_ARGS)

## Benchmarks on the local RabbitMQ and PostgreSQL; results go to bench/results/.
bench: .venv
	$(UV) run --no-sync python bench/bus_throughput.py
	$(UV) run --no-sync python bench/audit_log.py
	$(UV) run --no-sync python bench/intake_import.py
	$(UV) run --no-sync python bench/api.py
	$(UV) run --no-sync python bench/memory.py
	$(UV) run --no-sync python bench/pipeline.py

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache
