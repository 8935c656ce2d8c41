# One entry point for people and CI. `make quickstart` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
START ?= 2026-11-18
END ?= 2026-11-20
#: `make quickstart QUICKSTART_LOG_LEVEL=INFO` shows every task's log lines as well.
QUICKSTART_LOG_LEVEL ?= WARNING

# Quiet, self-contained Prefect: no telemetry, state under the project, patient cold starts.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90
export PREFECT_HOME ?= $(CURDIR)/.prefect

.PHONY: install quickstart quickstart-ui test lint bench clean

# The runtime dependencies at the exact versions the image ships (docker/constraints.txt).
$(BIN)/ecom-pipeline: pyproject.toml docker/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c docker/constraints.txt -e ".[dev]"
	touch $@

install: $(BIN)/ecom-pipeline

## Generate three days of realistic exports and run them through the whole pipeline locally.
quickstart: install
	$(BIN)/ecom-pipeline init-local
	$(BIN)/python -m devtools.generate --start-date $(START) --days 3
	@# Prefect's per-task log lines stay in its API; the console shows a line per day and the gold.
	PREFECT_LOGGING_LEVEL=$(QUICKSTART_LOG_LEVEL) $(BIN)/ecom-pipeline backfill --start-date $(START) --end-date $(END)
	@echo
	@echo "Lake: ./lake (raw/, processed/, gold/, quarantine/, _runs/). Try:"
	@echo "  $(BIN)/python -c \"import duckdb; print(duckdb.connect('warehouse.duckdb').sql('select * from gold.daily_revenue order by 1, 2'))\""

## The same run against a local Prefect server whose UI stays up on http://127.0.0.1:4200.
quickstart-ui: install
	$(BIN)/ecom-pipeline init-local
	$(BIN)/python -m devtools.generate --start-date $(START) --days 3
	$(BIN)/ecom-pipeline backfill --start-date $(START) --end-date $(END) --with-ui --keep-ui

## The test suite, against a real S3 API (moto server), PostgreSQL and a Prefect API.
test: install
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql 2>/dev/null | tail -n 1) main start 2>/dev/null || \
		echo "note: PostgreSQL is not running on 127.0.0.1:5432 and could not be started; its tests will say so"
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Benchmark against DuckDB (see benchmarks/README.md); not part of the tests.
bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf lake warehouse.duckdb .prefect .pytest_cache
