# miniclip: the two commands a reader needs are `make book` (the main job) and `make test`.
# Both create and fill a virtual environment in .venv on first use; nothing needs installing by hand.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Real data (Flickr8k, CIFAR-10 test) is read from here; see README.md.
export MINICLIP_DATA ?= $(HOME)/.cache/miniclip
# Torch is pinned to the release this project is tested with.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

# The book's profile (configs/<profile>-*.yaml): cpu, the committed book (2 cores); gpu, bigger models for one
# consumer GPU (`make book PROFILE=gpu`); gpu-1m, the gpu book whose real-photo model is the 1M-pair web model
# of Appendix F (trained by that appendix's commands, not by `make train`). MINICLIP_PROFILE works too.
PROFILE ?= $(or $(MINICLIP_PROFILE),cpu)
MODELS_cpu := configs/cpu-shapes.yaml configs/cpu-flickr8k.yaml
MODELS_gpu := configs/gpu-shapes.yaml configs/gpu-flickr8k.yaml
MODELS_gpu-1m := $(MODELS_gpu)
RUNS_cpu := runs/cpu
RUNS_gpu := runs/gpu
RUNS_gpu-1m := runs/gpu runs/gpu-1m
# Only the cpu book builds into _build/ (and writes figures/); the others have their own output, jupyter cache
# and figure folder (_build/<profile>/, _build/figures-<profile>/), so they never overwrite the committed book.
BOOK_OUT := $(if $(filter cpu,$(PROFILE)),,--path-output _build/$(PROFILE))
BOOK_BUILD := $(if $(filter cpu,$(PROFILE)),_build,_build/$(PROFILE)/_build)
# What every chapter reads besides its own code and its profile's runs/: a change here re-executes them all.
BOOK_INPUTS := miniclip configs bench runs/bench

.PHONY: book-profile print-models gpu-check install lint test test-unit test-notebooks book book-ci publish train bench bench-data clean experiments

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e ".[test,book,data]"
	touch $@

## make test: lint, unit and integration tests, every notebook in the ci profile, and the book built in the ci profile.
test: lint test-unit test-notebooks book-ci

lint: install
	$(VENV)/bin/ruff check miniclip tests notebooks bench conftest.py

test-unit: install
	$(PY) -m pytest tests

test-notebooks: install
	MINICLIP_PROFILE=ci $(PY) -m pytest --nbval notebooks -p no:cacheprovider

book-profile:
	@case "$(PROFILE)" in cpu|gpu|gpu-1m) ;; *) echo "error: PROFILE=$(PROFILE) is not a book profile (use cpu, \
	gpu or gpu-1m; the ci book is make book-ci)" >&2; exit 2;; esac

## make book: the book in the cpu profile (PROFILE=gpu: the gpu one), executed, with warnings as errors. The models and the experiments'
## results come from the cached `make train` and `make experiments` (each runs only what is missing or
## changed). A chapter is re-executed only when its code changed (execute_notebooks: cache), or, since
## jupyter-cache looks only at a notebook's own code, when miniclip/, configs/, the committed bench results in
## bench/ or the results in runs/ (the profile's and runs/bench/) changed after the last successful build (the
## `.built` stamp it leaves): then every chapter is re-executed and every page rebuilt (`--all`).
define refresh_book_cache
	@if [ ! -f $(2)/.built ] || find $(BOOK_INPUTS) $(1) -newer $(2)/.built \( -name '*.py' -o -name '*.yaml' \
	    -o -name '*.json' -o -name '*.safetensors' \) 2>/dev/null | grep -q .; then \
	  echo "no successful build recorded, or $(BOOK_INPUTS) $(1) changed since: re-executing every chapter"; \
	  rm -rf $(2)/.jupyter_cache; fi
endef

book: book-profile install train experiments
	$(call refresh_book_cache,$(RUNS_$(PROFILE)),$(BOOK_BUILD))
	MINICLIP_PROFILE=$(PROFILE) $(VENV)/bin/jupyter-book build . -W --keep-going $(BOOK_OUT) \
	    $$([ -d $(BOOK_BUILD)/.jupyter_cache ] || echo --all)
	touch $(BOOK_BUILD)/.built

## make book-ci: the book in the ci profile (seconds per chapter), then every page opened in headless Chromium.
book-ci: install
	$(call refresh_book_cache,runs/ci,_build/ci/_build)
	MINICLIP_PROFILE=ci $(VENV)/bin/jupyter-book build . -W --keep-going --path-output _build/ci \
	    $$([ -d _build/ci/_build/.jupyter_cache ] || echo --all)
	touch _build/ci/_build/.built
	MINICLIP_BOOK_HTML=_build/ci/_build/html $(PY) -m pytest -q tests/test_book_browser.py -p no:cacheprovider

## make publish: push the built cpu book (_build/html) to the gh-pages branch, for those who publish by hand.
publish: book
	$(VENV)/bin/ghp-import --no-jekyll --push --force _build/html

## make train: the profile's models (Shapes, then Flickr8k), trained once and cached in runs/<profile>/<name>/.
## A finished run is kept until its config changes; an interrupted one resumes where it stopped.
train: book-profile install
	@for config in $(MODELS_$(PROFILE)); do \
	  echo "$(PY) -m miniclip train --config $$config --if-changed"; \
	  $(PY) -m miniclip train --config $$config --if-changed || exit 1; done

## make experiments: the paper's experiments at small scale (configs/experiments/cpu.yaml; 17.5 min on 2 cores
## in the last fresh clone, 2026-12-06, 8.2 of them the encoders grid; `bench build --book` times each), cached as
## runs/cpu/experiments/<name>.json; an experiment whose settings are unchanged is not rerun.
experiments: book-profile install
	MINICLIP_PROFILE=$(PROFILE) $(PY) -m miniclip experiments

## make bench: the benchmark suite (bench/README.md): one summary table, JSON under runs/bench/ (~15 min on 2 cores).
bench: install
	$(PY) -m miniclip bench all

## make gpu-check: on a machine with a CUDA GPU (~8 min): the tests with CUDA present, 200 steps of the gpu Shapes
## model, ViT-B/32's bf16 step against open_clip's, and a 50-step gpu-1m rehearsal; runs/bench/gpu-check.json.
gpu-check: install
	$(PY) -m miniclip bench gpu-check

## make print-models: the model configs `make train` trains for PROFILE (read by `bench build --book`).
print-models: book-profile
	@echo $(MODELS_$(PROFILE))

bench-data: install
	$(PY) -m miniclip bench data

clean:
	rm -rf _build .jupyter_cache
