# certpost: `make run` serves the API with the embedded SQLite default and its worker
# (`make run PORT=8080 HOST=0.0.0.0` to listen elsewhere; unset, CERTPOST_PORT/CERTPOST_HOST or
# 127.0.0.1:8000); `make test` installs what the tests need and runs the whole suite on SQLite
# and PostgreSQL at the same time (scripts/run-tests.sh).
PYTHON ?= python3
HOST   ?=
PORT   ?=
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test test-sqlite test-postgres test-deps openapi bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/certpost serve $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

test-deps: $(STAMP)
	bash scripts/install-test-deps.sh
	bash scripts/ensure-postgres.sh

test: test-deps
	PYTHON=$(BIN)/python bash scripts/run-tests.sh $(PYTEST_ARGS)

test-sqlite: test-deps
	CERTPOST_TEST_DB=sqlite $(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: test-deps
	CERTPOST_TEST_DB=postgres $(BIN)/python -m pytest $(PYTEST_ARGS)

openapi: $(STAMP)
	$(BIN)/certpost openapi > openapi/openapi.json

bench: test-deps
	bash scripts/install-bench-deps.sh
	$(BIN)/python bench/run.py

clean:  # the data directory (CERTPOST_DATA_DIR, ~/.local/share/certpost by default) is kept
	rm -rf $(VENV) .pytest_cache
