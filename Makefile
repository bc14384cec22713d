# fetchq: every target does its own set-up in .venv, so a fresh machine with
# only Python 3 and make needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test unit lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fetchq demo

test: lint typecheck unit

# Test files run in 3 processes (pytest-xdist, one file per process at a
# time): most tests wait on sockets, subprocesses and Redis rather than
# compute, so 3 fit 2 cores (on a busy machine: 7m53s in one process, 6m33s
# in 3 at load 5, 3m02s in 3 at load 2-3 from a clean clone).  `make unit
# TEST_PROCESSES=0` runs them in this process.
TEST_PROCESSES ?= 3

unit: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict fetchq

bench: $(STAMP)
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) build *.egg-info
