# Merchant DMP. Everything runs from a fresh clone with only Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_ARGS ?=
# `make demo-check` runs the same steps on a smaller marketplace than the README's demo, to keep CI short.
DEMO_CHECK_ARGS ?= --consumers 1500 --products 300 --events 40000 --replay 2

.PHONY: install test lint typecheck demo demo-check bench serve worker beat migrate clean e2e

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet ".[dev]"
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

migrate: install
	$(PY) manage.py migrate --noinput

demo: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_setup $(DEMO_ARGS)
	@echo "Serving on http://$(HOST):$(PORT)/"
	$(PY) manage.py runserver $(HOST):$(PORT)

# The quick start, checked: `make demo` on a free port, sign in with the login it printed, load the dashboard, stop.
# Needs only Python: `make demo` makes the virtualenv.
demo-check:
	MAKE="$(MAKE)" $(PYTHON) scripts/demo_check.py $(DEMO_CHECK_ARGS)

bench: install
	$(PY) -m benchmarks

serve: install
	$(PY) manage.py runserver $(HOST):$(PORT)

worker: install
	PYTHONPATH=platform:. $(VENV)/bin/celery -A config worker --loglevel=INFO --concurrency=2

beat: install
	PYTHONPATH=platform:. $(VENV)/bin/celery -A config beat --loglevel=INFO

clean:
	rm -rf $(VENV) var staticfiles artifacts .pytest_cache .ruff_cache .mypy_cache .hypothesis
