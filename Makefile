# Two commands set up a fresh machine:  make demo  (install + run the whole pipeline on the demo)
#                                        make test  (install + run the tests)
PYTHON ?= python3
VENV ?= .venv
# The CPU build is enough for the demo and the tests; on a GPU machine install the CUDA build of torch
# into the venv first (see README), and `make` keeps it.
TORCH ?= torch==2.13.0
# llama.cpp's Python bindings (the `llama` extra) for the GGUF tests, installed by `make test` only (the demo
# does not need them): pip compiles llama.cpp once (about 7 minutes on 2 idle cores with these flags: no
# multimodal library, tools, tests or OpenMP). LLAMA_CPP=0 leaves it out; the tests that need it then skip.
LLAMA_CPP ?= 1
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DLLAMA_BUILD_TESTS=OFF \
	-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
BIN := $(VENV)/bin

.PHONY: install install-llama demo test clean-demo
install: $(VENV)/.installed
install-llama: $(VENV)/.llama

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

$(VENV)/.llama: $(VENV)/.installed
	if [ "$(LLAMA_CPP)" = 1 ]; then CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 \
		$(BIN)/pip install -q -e ".[llama]"; fi
	touch $@

demo: install
	$(BIN)/forumtune run examples/demo.yaml

test: install install-llama
	$(BIN)/pytest -q

clean-demo:
	rm -rf examples/runs/demo
