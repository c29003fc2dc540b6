# keen-sql — every target sets itself up: `make run` and `make test` are all a new user types.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv/bin
PY := $(VENV)/python
# With KEEN_DATABASE_URL unset the targets use (and start) the embedded cluster.
DB_URL = $(or $(KEEN_DATABASE_URL),$(shell scripts/db.sh url))
export KEEN_DATABASE_URL := $(KEEN_DATABASE_URL)

.PHONY: help setup db-up db-down migrate rollback status health backup generate verify lint test test-sql \
        test-py test-citus run check check-wheel coverage docs schedule pitr-drill

help: ## list the targets
	@grep -hE '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup: ## install OS packages (as root) and the virtualenv; quick when nothing is missing
	@scripts/setup.sh

db-up: setup ## start the embedded PostgreSQL cluster (created once in .pg/) unless KEEN_DATABASE_URL is set
	@if [ -z "$(KEEN_DATABASE_URL)" ]; then scripts/db.sh up; fi

db-down: ## stop the embedded cluster
	@scripts/db.sh down

migrate: db-up ## apply pending migrations to the configured database
	@$(VENV)/keen-sql --database-url '$(DB_URL)' migrate

rollback: db-up ## roll back the last migration
	@$(VENV)/keen-sql --database-url '$(DB_URL)' rollback --count 1

status: db-up ## list migrations and whether they are applied
	@$(VENV)/keen-sql --database-url '$(DB_URL)' status

health: db-up ## health checks of the configured database (docs/operations.md)
	@$(VENV)/keen-sql --database-url '$(DB_URL)' health

schedule: db-up ## schedule the periodic jobs in pg_cron (keen-sql schedule; idempotent)
	@$(VENV)/keen-sql --database-url '$(DB_URL)' schedule

pitr-drill: setup ## point-in-time recovery with pgBackRest on a throwaway cluster; prints the figures
	@$(PY) scripts/pitr_drill.py

backup: db-up ## pg_dump with a manifest into backups/ (restore: keen-sql restore DUMP --target-db NAME)
	@$(VENV)/keen-sql --database-url '$(DB_URL)' backup --output-dir backups

generate: db-up ## regenerate generated/ from queries/ with sqlc and the plugin (tools/sqlc_psycopg)
	@scripts/generate.sh

verify: generate ## fail when generated/ is not what `make generate` writes
	@git diff --exit-code --stat -- generated/ || { echo "generated/ is stale: run make generate and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- generated/)" || { git status --porcelain -- generated/; echo "generated/ has untracked or stale files" >&2; exit 1; }

lint: db-up ## squawk, ruff, mypy --strict, plpgsql_check on every function, docs/reference current
	@$(VENV)/squawk --config .squawk.toml migrations/*.sql
	@$(VENV)/ruff check .
	@$(VENV)/ruff format --check .
	@$(VENV)/mypy keen_sql generated/keen_queries tests_py tests_citus scripts examples tools/keen_dev/keen_dev \
		tools/sqlc_psycopg/sqlc_psycopg tools/sqlc_psycopg/tests
	@$(PY) scripts/plpgsql_check.py --database-url '$(DB_URL)'
	@$(PY) scripts/gen_docs.py --check --database-url '$(DB_URL)'

test-sql: db-up ## pgTAP suite over tests_sql/ on a fresh database
	@scripts/test_sql.sh

test-py: db-up ## pytest over tests_py/
	@$(VENV)/pytest -q

test: test-sql test-py ## the whole test suite (pgTAP, then pytest)

test-citus: setup ## on a Citus coordinator (KEEN_CITUS_URL): migrate, distribute, pgTAP tests_citus/, the API scenarios
	@scripts/test_citus.sh

run: db-up ## start the database, migrate and run the demonstration (examples/demo)
	@$(PY) -m examples.demo --database-url '$(DB_URL)'

check: lint verify test ## lint, generated-code check and tests

check-wheel: db-up ## build the wheel, install it in a fresh venv elsewhere, migrate and use it
	@scripts/check_wheel.sh

docs: db-up ## regenerate docs/reference/ (schema and SQL API) from the catalog
	@$(PY) scripts/gen_docs.py --database-url '$(DB_URL)'

coverage: db-up ## pytest-cov over keen_sql/ and the plugin (tools/sqlc_psycopg), plpgsql_check statement coverage
	@scripts/coverage.sh

bench-%: db-up ## run one benchmark: bench/<name>/run.sh (make bench-credits, bench-isolation, …)
	@bench/$*/run.sh
