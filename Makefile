# `make test` is the whole test suite from a fresh clone: it creates .venv itself.
# `make up STACK=dev` runs `pulumi up` on a stack (Pulumi creates .venv from requirements.txt).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STACK ?= dev

.PHONY: test venv up preview lab render bench lint

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

test: venv
	$(PY) -m pytest

up: venv
	pulumi up --stack $(STACK)

preview: venv
	pulumi preview --stack $(STACK) --diff

bench: venv
	$(PY) bench/bench_program.py
