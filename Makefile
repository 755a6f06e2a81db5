# Merchant DMP. Everything runs from a fresh clone with only Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install test lint demo bench serve worker beat migrate clean e2e

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet ".[dev]"
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

migrate: install
	$(PY) manage.py migrate --noinput

demo: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_setup
	@echo "Serving on http://$(HOST):$(PORT)/"
	$(PY) manage.py runserver $(HOST):$(PORT)

bench: install
	$(PY) -m benchmarks

serve: install
	$(PY) manage.py runserver $(HOST):$(PORT)

worker: install
	PYTHONPATH=platform:. $(VENV)/bin/celery -A config worker --loglevel=INFO --concurrency=2

beat: install
	PYTHONPATH=platform:. $(VENV)/bin/celery -A config beat --loglevel=INFO

clean:
	rm -rf $(VENV) var staticfiles artifacts .pytest_cache .ruff_cache .hypothesis
