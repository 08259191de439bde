# miniclip: the two commands a reader needs are `make book` (the main job) and `make test`.
# Both create and fill a virtual environment in .venv on first use; nothing needs installing by hand.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Real data (Flickr8k, CIFAR-10 test) is read from here; see README.md.
export MINICLIP_DATA ?= $(HOME)/.cache/miniclip
# Torch is pinned to the release this project is tested with.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install test test-unit test-notebooks book book-ci train bench bench-data clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e ".[test,book,data]"
	touch $@

## make test: unit and integration tests, every notebook in the ci profile, and the book built in the ci profile.
test: test-unit test-notebooks book-ci

test-unit: install
	$(PY) -m pytest tests

test-notebooks: install
	MINICLIP_PROFILE=ci $(PY) -m pytest --nbval notebooks -p no:cacheprovider

## make book: the book in the cpu profile, executed, with warnings as errors.
book: install
	MINICLIP_PROFILE=cpu $(VENV)/bin/jupyter-book build . -W --keep-going

book-ci: install
	MINICLIP_PROFILE=ci $(VENV)/bin/jupyter-book build . -W --keep-going --path-output _build/ci

## make train: the cpu-profile models (Shapes, then Flickr8k), trained once and cached in runs/cpu/<name>/.
## A finished run is kept until its config changes; an interrupted one resumes where it stopped.
train: install
	$(PY) -m miniclip train --config configs/cpu-shapes.yaml --if-changed
	$(PY) -m miniclip train --config configs/cpu-flickr8k.yaml --if-changed

bench: install
	$(PY) -m miniclip bench model

bench-data: install
	$(PY) -m miniclip bench data

clean:
	rm -rf _build .jupyter_cache
