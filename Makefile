# Every target bootstraps .venv itself; a second run installs nothing (the stamp
# is newer than pyproject.toml), and llama-cpp-python is built once per
# CMAKE_ARGS (see LLAMA_STAMP below).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench

# llama-cpp-python is built from source. A native build (-march=native) turns on
# ggml's AMX kernels on Sapphire Rapids CPUs, which segfault in sandboxes that do
# not grant AMX tile state; so build a portable AVX2 CPU wheel by default.
# For NVIDIA GPUs: make CMAKE_ARGS="-DGGML_CUDA=on -DGGML_RPC=ON" (see README).
# -DGGML_RPC=ON: ggml's RPC backend, for pooled compute (servers/ggml_rpc.py).
CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_RPC=ON
export CMAKE_ARGS
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

# pip's wheel cache is keyed by the sdist alone, not by CMAKE_ARGS: a plain
# install after changing them silently reuses the old build. So each distinct
# CMAKE_ARGS gets its own wheel, built once into a wheelhouse in pip's cache dir
# (shared by every clone: PIP_CACHE_DIR moves it), and a stamp per CMAKE_ARGS
# in the venv installs it.
LLAMA_CPP_VERSION := 0.3.36
CMAKE_HASH  := $(shell printf '%s' '$(CMAKE_ARGS)' | $(PYTHON) -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:12])')
LLAMA_STAMP := $(VENV)/.llama-cpp-$(LLAMA_CPP_VERSION)-$(CMAKE_HASH)
WHEELHOUSE   = $$($(PY) -m pip cache dir 2>/dev/null || echo $(CURDIR)/$(VENV))/mcpfed-wheelhouse/$(CMAKE_HASH)

.PHONY: demo lint test bench clean

$(LLAMA_STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@dir="$(WHEELHOUSE)"; \
	if ! ls "$$dir"/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "Building llama-cpp-python $(LLAMA_CPP_VERSION) with CMAKE_ARGS=$(CMAKE_ARGS) into $$dir (~7 min on 2 cores, once)..."; \
		rm -rf "$$dir.partial" && \
		$(PY) -m pip wheel --no-deps --no-cache-dir -w "$$dir.partial" llama-cpp-python==$(LLAMA_CPP_VERSION) && \
		mkdir -p "$$dir" && mv "$$dir.partial"/llama_cpp_python-*.whl "$$dir"/ && rm -rf "$$dir.partial" || exit 1; \
	fi; \
	$(PY) -m pip install --force-reinstall --no-deps "$$dir"/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	@touch $@

$(STAMP): pyproject.toml $(LLAMA_STAMP)
	@echo "Installing mcp-federation and its dependencies..."
	$(PY) -m pip install --progress-bar on --find-links "$(WHEELHOUSE)" -e '.[dev]' llama-cpp-python==$(LLAMA_CPP_VERSION)
	@touch $@

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --progress-bar on -e '.[dev,bench]'
	@touch $@

demo: $(STAMP)
	$(PY) -m examples.demo

# ruff (lint rules, import order) and mypy (types), both configured in pyproject.toml;
# mypy keeps its cache in .mypy_cache, so a re-run only checks what changed.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

test: lint
	@$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

bench: $(BENCH_STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache
