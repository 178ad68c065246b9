# The two commands of the README: `make run` and `make test`.
# Both create .venv when it is missing and install llmos into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
EXTRAS ?= dev,ray

.PHONY: setup run test lint unit bench clean

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
	OMP_NUM_THREADS=1 $(PY) benchmarks/scheduler_scale.py
	$(PY) benchmarks/scheduler_quality.py
	$(PY) benchmarks/training.py --rounds 1 --steps 5
	$(PY) benchmarks/engine.py --hf-requests 2 --loras 16
	$(PY) benchmarks/serving.py --requests 64 --max-tokens 128 --baseline-requests 8
	$(PY) benchmarks/ray_backend.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
