# Everything a fresh machine needs beyond python3 and make is installed into .venv here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DATA_DIR ?=

.PHONY: setup run serve-demo test lint bench lock clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

## Open the console on the embedded backend with the demo workspace and live traffic.
run: setup
	$(BIN)/servedeck --demo $(if $(DATA_DIR),--data-dir $(DATA_DIR))

## The same without a screen: serve the demo and print its address (the token: DATA_DIR/admin.token).
serve-demo: setup
	$(BIN)/servedeck-server demo --serve --rate 20 $(if $(DATA_DIR),--data-dir $(DATA_DIR))

lint: setup
	$(BIN)/ruff check backend console tests
	$(BIN)/ruff format --check backend console tests
	$(BIN)/mypy backend
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q -n 2 -m "not serial" --durations=15
	$(BIN)/python -m pytest -q -m serial --durations=10

bench: setup
	$(BIN)/python -m tests.bench

## Re-resolve the exact versions after changing dependencies in pyproject.toml.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e ".[dev]"
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
