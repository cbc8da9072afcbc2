# One-command set-up: `make lab` opens the course, `make test` runs every test.
# Set-up (venv + pinned requirements + editable rag_helpers + Jupyter kernel) runs only when
# requirements*.txt or pyproject.toml changed since the last successful set-up.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
KERNEL_NAME := rag-course
SETUP_HASH := $(shell cat requirements.txt requirements-nodeps.txt pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.setup-$(SETUP_HASH)

.PHONY: setup lab test bench notebooks llm-server clean-index

setup: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL_NAME) --display-name "RAG course (.venv)" >/dev/null
	rm -f $(VENV)/.setup-*
	touch $@
	@echo "Set-up complete: $(VENV) with pinned requirements, rag_helpers and the '$(KERNEL_NAME)' kernel."

# LAB_ARGS passes options through, e.g. make lab LAB_ARGS="--no-browser --ip 0.0.0.0"; as root
# (containers) Jupyter refuses to start without --allow-root, so it is added then.
LAB_ARGS ?=
ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root,)

# The course's own notebooks are trusted first: JupyterLab displays saved widgets (the app, progress
# bars) only in trusted notebooks, and shows their text fallback otherwise.
lab: setup
	$(BIN)/jupyter trust $(wildcard notebooks/*.ipynb notebooks/solutions/*.ipynb) >/dev/null
	$(BIN)/jupyter lab --notebook-dir=notebooks $(ROOT_ARGS) $(LAB_ARGS)

test: setup
	$(BIN)/python -m pytest

# Re-execute the notebooks in place from a clean state (fresh temporary index), saving widget state;
# NB="05 12" runs only the notebooks whose names start so.
notebooks: setup
	$(BIN)/python scripts/run_notebooks.py $(NB)

# The bundled SmolLM2-135M-Instruct as an OpenAI-compatible server on 127.0.0.1:8765 (LLM_PORT=... to
# change); it prints the LLM_BASE_URL and LLM_MODEL lines for .env. Ctrl-C stops it.
LLM_PORT ?= 8765
llm-server: setup
	$(BIN)/python -m rag_helpers serve-llm --port $(LLM_PORT)

bench: setup
	$(BIN)/python bench/embedding.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/retrievers.py
	$(BIN)/python bench/llm.py

clean-index:
	rm -rf chroma_db
