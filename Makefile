# Every target bootstraps .venv itself; a second run installs nothing (the stamp
# is newer than pyproject.toml), and pip's wheel cache keeps a rebuild of
# llama-cpp-python fast after the first one.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench

# llama-cpp-python is built from source. A native build (-march=native) turns on
# ggml's AMX kernels on Sapphire Rapids CPUs, which segfault in sandboxes that do
# not grant AMX tile state; so build a portable AVX2 CPU wheel by default.
# For NVIDIA GPUs: make CMAKE_ARGS="-DGGML_CUDA=on" (see README).
CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
export CMAKE_ARGS
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: demo lint test bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@echo "Installing mcp-federation and its dependencies (the first build of llama-cpp-python takes ~6 min on 2 cores)..."
	$(PY) -m pip install --progress-bar on -e '.[dev]'
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
