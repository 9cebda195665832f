# allot: `make run` serves the embedded deployment, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck check conformance bench clean venv browser containers

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/allot serve --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check app tests bench migrations
	$(BIN)/ruff format --check app tests bench migrations

typecheck: $(STAMP)
	$(BIN)/mypy app

test: lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

# The headless browser the /docs test drives: Debian's chromium (never `playwright install`,
# which downloads browser builds). Needs root for apt-get; CI runs it before `make test`.
browser:
	@test -x /usr/bin/chromium || { apt-get update -q && apt-get install -y -q chromium; }

# The container engine the image tests use: Debian's podman with runc (crun cannot start
# containers on these machines) and debootstrap, which builds their base image from Debian's
# packages (no image registry is reachable). Needs root for apt-get; CI runs it before `make test`.
containers:
	@test -x /usr/bin/podman -a -x /usr/sbin/runc -a -x /usr/sbin/debootstrap || { \
	  apt-get update -q && apt-get install -y -q podman runc debootstrap; }

conformance: $(STAMP)
	bash tests/conformance/run.sh

# allot beside real Placement and pgbench, one run (a few minutes): bench/RESULTS.md + plot.
bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.side_by_side $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
