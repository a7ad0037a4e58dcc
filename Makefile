# Every target is self-contained from a fresh clone: it creates .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench local stress wheel-check clean

BASE := $(VENV)/.base

# chronicle itself: all the demo needs.
$(BASE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet .
	touch $(BASE)

# and what the tests and benchmarks use.
$(STAMP): $(BASE)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

demo: $(BASE)
	$(BIN)/chronicle --root demo demo

test: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/run.py

# The `local` provider (llama.cpp + Gemma 3 270M); compiles llama.cpp once (~10 minutes on 2 cores).
local: $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
		$(BIN)/pip install --quiet --no-cache-dir -e '.[test,bench,local]'

# The long crash tests: many more SIGKILL trials than the suite runs (appends and seals; rebuilds;
# redactions).
stress: $(STAMP)
	CHRONICLE_CRASH_TRIALS=500 $(BIN)/pytest -q tests/test_crash.py
	CHRONICLE_PROJECTION_CRASH_TRIALS=300 $(BIN)/pytest -q tests/test_projection_crash.py
	CHRONICLE_REDACT_CRASH_TRIALS=200 $(BIN)/pytest -q tests/test_redaction.py -k sigkill_at_random

# Installed as users install it: a built wheel in a fresh environment, run from outside the checkout.
wheel-check: $(STAMP)
	bash .ci/wheel-check

clean:
	rm -rf $(VENV) demo
