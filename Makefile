# codex-lb: `make run` serves, `make test` runs every test. Each sets up what it
# needs: a virtual environment in .venv, the Codex CLI from npm in .tools, and
# (for the Prometheus tests) Debian's prometheus package when run as root.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CODEX := .tools/codex/node_modules/.bin/codex
# The Codex CLI the end-to-end tests drive. Its behaviour (model catalog,
# default model, request shape) is what the tests and the built-in price
# table are written against; README "Development" says how to move it.
CODEX_VERSION := 0.171.0

.PHONY: run test lint format typecheck codex prometheus chromium sim bench bench-dashboard demo soak clean

# Two stamps: serving needs only codex-lb's own dependencies
# (RUN_STAMP); the tests, linters and tools add the [test,dev] extras on top
# (STAMP). Either creates .venv from a fresh clone.
RUN_STAMP := $(VENV)/.installed-run

$(RUN_STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/python -m codex_lb serve

sim: $(RUN_STAMP)
	$(BIN)/python -m codex_lb.sim

# Installs (or replaces) the CLI when the one in .tools is not CODEX_VERSION.
codex:
	@grep -qs '"version": "$(CODEX_VERSION)"' \
	    .tools/codex/node_modules/@openai/codex/package.json || { \
	  mkdir -p .tools/codex && cd .tools/codex && \
	  npm install --silent --no-audit --no-fund @openai/codex@$(CODEX_VERSION); }
	@test -x $(CODEX)

prometheus:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq --no-install-recommends \
	      prometheus >/dev/null); \
	  else echo "install Debian's prometheus package to run the Prometheus tests"; fi; }

# Debian's chromium for the dashboard's browser tests (Playwright drives it;
# it never downloads a browser of its own).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq --no-install-recommends \
	      chromium >/dev/null); \
	  else echo "install Debian's chromium package to run the browser tests"; fi; }

# `make bench-dashboard`: the dashboard API with 300 accounts and 100 000
# request-log rows (goal: page data under 100 ms). Not part of `make test`.
bench-dashboard: $(STAMP)
	$(BIN)/python -m bench.dashboard_api $(BENCH_ARGS)

test: $(STAMP) codex prometheus chromium
	CODEX_LB_TEST_CODEX=$(abspath $(CODEX)) $(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy codex_lb collectors

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache

# --- dashboards, alert rules, compose and the demo (docs/grafana.md) ---
COMPOSE_BIN = $$($(abspath $(BIN))/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"] + "/compose/docker-compose")')

.PHONY: dashboards compose-check

# Foreground until Ctrl-C; DEMO_SECONDS=20 stops it by itself.
demo: $(STAMP) prometheus
	$(BIN)/python scripts/demo.py

dashboards: $(STAMP)
	$(BIN)/python -m scripts.dashboards

compose-check: $(STAMP) prometheus
	cd compose && CODEX_LB_METRICS_TOKEN=compose-check $(COMPOSE_BIN) \
	  -f docker-compose.yml -f docker-compose.observability.yml config -q
	promtool check config --syntax-only compose/prometheus.yml
	promtool check rules compose/alerts/codex-lb.rules.yml
	promtool test rules compose/alerts/codex-lb.rules.test.yml

# `make bench`: codex-lb against a bare aiohttp pass-through (bench/), a few
# minutes. Uses Debian's wrk as load generator when it can (installed here
# when run as root), else a Python client; BENCH_ARGS passes options, e.g.
# BENCH_ARGS="--phases short --rounds 500". Not part of `make test`.
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get install -y -qq --no-install-recommends wrk >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq --no-install-recommends \
	       wrk >/dev/null)) || echo "no wrk: using the Python load client"; \
	  else echo "install Debian's wrk for honest throughput figures"; fi; }
	$(BIN)/python -m bench $(BENCH_ARGS)

# `make soak`: SOAK_SECONDS (default 600) of SOAK_CONCURRENCY (default 200)
# streams through the emulator with random faults, then checks that nothing
# leaked (docs/soak.md). Prints its figures. Not part of `make test`.
SOAK_SECONDS ?= 600
SOAK_CONCURRENCY ?= 200

soak: $(STAMP)
	SOAK_SECONDS=$(SOAK_SECONDS) SOAK_CONCURRENCY=$(SOAK_CONCURRENCY) \
	  $(BIN)/python -m soak.run $(SOAK_ARGS)
