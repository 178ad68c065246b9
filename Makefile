# The two commands of the README: `make run` and `make test`.
# Both create .venv when it is missing and install llmos into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
EXTRAS ?= dev,ray

.PHONY: setup run test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	$(PY) -m llmos.cli.demo

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/mypy src

unit: setup
	$(PY) -m pytest -q

test: lint unit

# Every figure the README quotes; each script prints the figure and how it was obtained.
bench: setup
	$(PY) benchmarks/control_plane.py
	$(PY) benchmarks/serving.py --baseline-requests 8

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
