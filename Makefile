# The one command runner: the same targets for developers and CI (.ci/run calls `make test`).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHROMIUM ?= /usr/bin/chromium

.PHONY: install run lint format typecheck pytest test bench bench-e2e clean ui servers deploy-check

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

# The screen tests drive Debian's Chromium through Playwright (never `playwright install`).
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null); \
	else \
		echo "Chromium is missing: run 'sudo apt-get install chromium' (the screen tests drive it)"; \
		exit 1; \
	fi

# PostgreSQL, Redis and Mosquitto for the tests: apt-get installs what is missing when root,
# otherwise the script names the one command to run (scripts/ensure-servers).
servers:
	@sh scripts/ensure-servers

ui:  ## rebuild the vendored front-end libraries from ui/package-lock.json (needs Node.js)
	cd ui && npm ci --no-audit --no-fund && node vendor.mjs

pytest: install $(CHROMIUM) servers  ## tests only (real PostgreSQL, Redis, Mosquitto: found or started)
	$(PY) -m pytest

test: lint typecheck pytest  ## everything CI checks

deploy-check: install servers  ## the deploy/ files: compose and Kubernetes schemas, settings, entry points
	$(PY) -m pytest tests/deploy

bench: install  ## performance figures (see docs/benchmarks.md)
	$(PY) -m simulators.bench_geotag
	$(PY) -m simulators.bench_dispatch

bench-e2e: install  ## end to end, both profiles, 1 and 2 replicas (docs/benchmarks.md, "End to end")
	mkdir -p var
	$(PY) -m services bench e2e --profile chongqing --replicas 1 --json var/bench-e2e-chongqing-1.json
	$(PY) -m services bench e2e --profile chongqing --replicas 2 --json var/bench-e2e-chongqing-2.json
	$(PY) -m services bench e2e --profile capacity --replicas 1 --json var/bench-e2e-capacity-1.json
	$(PY) -m services bench e2e --profile capacity --replicas 2 --json var/bench-e2e-capacity-2.json

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
