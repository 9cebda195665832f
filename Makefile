# allot: `make run` serves the embedded deployment, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck check conformance bench clean venv browser containers ha-tools openstack-tools mariadb lock

# Every dependency comes from uv.lock, versions and hashes (`make lock` after changing
# pyproject.toml's dependencies). --inexact keeps pip and uv themselves in the environment.
UV_VERSION ?= 0.13.9
UV := UV_PROJECT_ENVIRONMENT=$(VENV) UV_PYTHON_DOWNLOADS=never UV_NATIVE_TLS=1 $(BIN)/uv

$(STAMP): pyproject.toml uv.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(UV) sync --frozen --inexact --extra test --quiet
	@touch $(STAMP)

lock: $(STAMP)
	$(UV) lock

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/allot serve --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(UV) lock --check --quiet  # uv.lock still matches pyproject.toml
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

# The engines the scale-out tests run: PgBouncer (transaction mode) between allot and
# PostgreSQL, and a Patroni-managed cluster with its etcd.
ha-tools:
	@test -x /usr/sbin/pgbouncer -a -x /usr/bin/patroni -a -x /usr/bin/etcd || { \
	  apt-get update -q && apt-get install -y -q pgbouncer patroni etcd-server; }

# Placement's other database, for the import tests: Debian's MariaDB on 127.0.0.1:3306 (root
# with no password, as these machines run it), installed and started if missing.
mariadb:
	@test -x /usr/sbin/mariadbd || { apt-get update -q && apt-get install -y -q mariadb-server; }
	@mysql -h 127.0.0.1 -uroot -e 'SELECT 1' >/dev/null 2>&1 || { \
	  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd; \
	  for i in $$(seq 1 60); do mysql -h 127.0.0.1 -uroot -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.5; done; }

# OpenStack's own programs the cloud tests run, each in a venv outside the repository: real
# Keystone 30.0.0 (../shared/tools/keystone), Nova 34.0.0 (its placement client) and the
# OpenStack CLI with osc-placement. Made on first use anyway; CI makes them up front.
openstack-tools: $(STAMP)
	$(BIN)/python -m tests.openstack_clients

conformance: $(STAMP)
	bash tests/conformance/run.sh

# allot beside real Placement and pgbench, one run (a few minutes): bench/RESULTS.md + plot.
bench: $(STAMP)
	$(UV) sync --frozen --inexact --extra test --extra bench --quiet
	$(BIN)/python -m bench.side_by_side $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
