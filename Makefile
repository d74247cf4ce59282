# Quick start: `make` runs the main job on the embedded sample set; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint
run: $(VENV)/.installed
	$(BIN)/bench run

test: $(VENV)/.installed
	scripts/install-system-tools
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check bench tests

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[test]'
	touch $@
