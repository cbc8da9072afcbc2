# One-command set-up: `make lab` opens the course, `make test` runs every test.
# Set-up (venv + pinned requirements + editable rag_helpers + Jupyter kernel) runs only when
# requirements.txt or pyproject.toml changed since the last successful set-up.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
KERNEL_NAME := rag-course
SETUP_HASH := $(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.setup-$(SETUP_HASH)

.PHONY: setup lab test bench clean-index

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL_NAME) --display-name "RAG course (.venv)" >/dev/null
	rm -f $(VENV)/.setup-*
	touch $@
	@echo "Set-up complete: $(VENV) with pinned requirements, rag_helpers and the '$(KERNEL_NAME)' kernel."

lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/embedding.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/retrievers.py

clean-index:
	rm -rf chroma_db
