# Two commands set everything up from a fresh clone:
#   make demo   the app with demo data on http://127.0.0.1:8000 (SQLite, Celery eager)
#   make test   the whole test suite on the embedded default (SQLite, Celery eager),
#               less the browser tests, which `make test-browser` runs (Debian's chromium)
# The other targets are for CI and for the PostgreSQL + real worker setup.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
# Python 3.11 where available, else whatever python3 is.
PYTHON ?= $(shell for p in python3.11 python3; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys' >/dev/null 2>&1; then echo $$p; break; fi; done)
# Reinstall only when requirements.txt changes.
REQUIREMENTS_STAMP := $(VENV)/.requirements.stamp

HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_USER := finance
DEMO_PASSWORD := chargeback-demo

# Extra pytest arguments, e.g. make test PYTEST_ARGS='-k ingest -x'
PYTEST_ARGS ?=
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/chargeback
REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: help venv demo test test-postgres test-browser lint

help:
	@echo "make demo           set up, load demo data, serve on http://$(HOST):$(PORT)/ (login $(DEMO_USER) / $(DEMO_PASSWORD))"
	@echo "make test           set up, run the whole test suite (SQLite, Celery eager)"
	@echo "make test-postgres  the suite on PostgreSQL with a real Celery worker on Redis"
	@echo "make test-browser   the browser tests: pages in Debian's chromium, checked with axe (SQLite)"
	@echo "make lint           ruff check, ruff format --check and the import contracts (lint-imports)"

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "No python3.11 or python3 found on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(REQUIREMENTS_STAMP): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $@

venv: $(REQUIREMENTS_STAMP)

demo: venv
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py make_signing_certificate --if-missing
	$(BIN)/python manage.py demo
	@echo
	@echo "  Chargeback demo: http://$(HOST):$(PORT)/"
	@echo "  Log in as: $(DEMO_USER) / $(DEMO_PASSWORD)  (or analyst, platform, sofia, mei, grace, arjun, lucas: same password; README lists their roles)"
	@echo "  (Ctrl-C stops the server)"
	@echo
	DJANGO_DEBUG=true $(BIN)/python manage.py runserver $(HOST):$(PORT)

# The variables are cleared so a DATABASE_URL or broker in the shell can't
# turn this run into something other than the embedded default. The browser
# tests are deselected by tests/conftest.py unless a -m names them, so a
# PYTEST_ARGS='-m ...' here still leaves them out.
test: venv
	env -u DATABASE_URL -u CELERY_BROKER_URL -u CELERY_RESULT_BACKEND \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: venv
	DATABASE_URL=$(POSTGRES_URL) CELERY_BROKER_URL=$(REDIS_URL) CELERY_RESULT_BACKEND=$(REDIS_URL) \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

# Debian's chromium, or the one CHROMIUM_PATH names (never Playwright's own download).
# Screenshots of failed browser tests go to var/browser-results/ (git ignores var/).
test-browser: venv
	env -u DATABASE_URL -u CELERY_BROKER_URL -u CELERY_RESULT_BACKEND \
		$(BIN)/python -m pytest -m browser --screenshot=only-on-failure --output=var/browser-results $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
