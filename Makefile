# The one command runner: the same targets for developers and CI (.ci/run calls `make test`).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run lint format typecheck pytest test bench clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install cityhub with its dev tools

run: install  ## the whole hub, embedded, on http://127.0.0.1:8000
	$(VENV)/bin/cityhub run

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: install
	$(VENV)/bin/mypy

pytest: install  ## tests only (real PostgreSQL, Redis, Mosquitto: found or started)
	$(PY) -m pytest

test: lint typecheck pytest  ## everything CI checks

bench: install  ## performance figures (see docs/benchmarks.md)
	$(PY) -m simulators.bench_geotag
	$(PY) -m simulators.bench_dispatch

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
