# miniclip: the two commands a reader needs are `make book` (the main job) and `make test`.
# Both create and fill a virtual environment in .venv on first use; nothing needs installing by hand.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Real data (Flickr8k, CIFAR-10 test) is read from here; see README.md.
export MINICLIP_DATA ?= $(HOME)/.cache/miniclip
# Torch is pinned to the release this project is tested with.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install lint test test-unit test-notebooks book book-ci publish train bench bench-data clean experiments

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

## make book: the book in the cpu profile, executed, with warnings as errors. The models and the experiments'
## results come from the cached `make train` and `make experiments` (each runs only what is missing or
## changed). A chapter is re-executed only when its code changed (execute_notebooks: cache), or, since
## jupyter-cache looks only at a notebook's own code, when miniclip/, configs/ or the results in runs/ changed
## after the last successful build (the `.built` stamp it leaves): then every chapter is re-executed and every
## page rebuilt (`--all`).
define refresh_book_cache
	@if [ ! -f $(2)/.built ] || find miniclip configs runs/$(1) -newer $(2)/.built \( -name '*.py' -o -name '*.yaml' \
	    -o -name '*.json' -o -name '*.safetensors' \) 2>/dev/null | grep -q .; then \
	  echo "no successful build recorded, or miniclip/, configs/ or runs/$(1)/ changed since: re-executing every chapter"; \
	  rm -rf $(2)/.jupyter_cache; fi
endef

book: install train experiments
	$(call refresh_book_cache,cpu,_build)
	MINICLIP_PROFILE=cpu $(VENV)/bin/jupyter-book build . -W --keep-going $$([ -d _build/.jupyter_cache ] || echo --all)
	touch _build/.built

## make book-ci: the book in the ci profile (seconds per chapter), then every page opened in headless Chromium.
book-ci: install
	$(call refresh_book_cache,ci,_build/ci/_build)
	MINICLIP_PROFILE=ci $(VENV)/bin/jupyter-book build . -W --keep-going --path-output _build/ci \
	    $$([ -d _build/ci/_build/.jupyter_cache ] || echo --all)
	touch _build/ci/_build/.built
	MINICLIP_BOOK_HTML=_build/ci/_build/html $(PY) -m pytest -q tests/test_book_browser.py -p no:cacheprovider

## make publish: push the built book (_build/html) to the gh-pages branch, for those who publish by hand.
publish: book
	$(VENV)/bin/ghp-import --no-jekyll --push --force _build/html

## make train: the cpu-profile models (Shapes, then Flickr8k), trained once and cached in runs/cpu/<name>/.
## A finished run is kept until its config changes; an interrupted one resumes where it stopped.
train: install
	$(PY) -m miniclip train --config configs/cpu-shapes.yaml --if-changed
	$(PY) -m miniclip train --config configs/cpu-flickr8k.yaml --if-changed

## make experiments: the paper's experiments at small scale (configs/experiments/cpu.yaml; 27 min on 2
## cores, measured in a fresh clone on 2026-12-02), cached as runs/cpu/experiments/<name>.json; an experiment whose settings
## are unchanged is not rerun.
experiments: install
	MINICLIP_PROFILE=cpu $(PY) -m miniclip experiments

## make bench: the benchmark suite (bench/README.md): one summary table, JSON under runs/bench/ (~15 min on 2 cores).
bench: install
	$(PY) -m miniclip bench all

bench-data: install
	$(PY) -m miniclip bench data

clean:
	rm -rf _build .jupyter_cache
