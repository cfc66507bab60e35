# hitchhiker: two commands do everything on a fresh machine.
#   make book   -- create/update .venv, install, build the book (stored outputs; no execution)
#   make test   -- install, unit tests, every notebook at smoke scale under nbval (here and under Colab's
#                  versions), the book, then the browser test (headless Chromium through every built page;
#                  screenshots in _build/screenshots)
# TORCH chooses the torch requirement (CI: make test TORCH='torch==2.13.0+cpu'); CONSTRAINTS pins the
# book and test toolchain to what the stored outputs were made with (empty: resolve freely).

TORCH ?= torch
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hitchhiker-installed
CONSTRAINTS ?= constraints.txt
PIN := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
# The library alone: a wheel installed with no extras into its own venv next to torch.
CORE_VENV ?= _build/core-venv
WHEEL_DIR := _build/wheel
NOTEBOOKS := $(sort $(wildcard book/*.ipynb))
export PYTHONHASHSEED := 0
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: gpu-wheels gpu-check bench compile-bench execute paper install book test unit fast core notebooks colab \
	floors chromium browser constraints clean typecheck doctest lint

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet $(PIN) -e ".[book,docs,test]"
	touch $@

install: $(STAMP)

book: install
	$(BIN)/jupyter-book build . -W --keep-going --all
	$(BIN)/python tests/check_book.py

unit: install
	$(BIN)/python -m pytest tests -q

# The fast loop while developing: everything but the tests marked slow.
fast: install
	$(BIN)/python -m pytest tests -q -m "not slow"

# What `pip install poisson-hitchhiker` gives a user: build the wheel, install it with no extras into a
# fresh venv beside torch, check that no book package came with it, and run the library's tests there
# (from outside the source tree, so the installed copy is the one imported).
core: install
	rm -rf $(CORE_VENV) $(WHEEL_DIR)
	$(BIN)/python -m pip wheel --quiet --no-deps -w $(WHEEL_DIR) .
	$(PYTHON) -m venv $(CORE_VENV)
	$(CORE_VENV)/bin/python -m pip install --quiet "$(TORCH)"
	$(CORE_VENV)/bin/python -m pip install --quiet $(PIN) $(WHEEL_DIR)/*.whl pytest hypothesis
	$(CORE_VENV)/bin/python tests/check_core_install.py
	cd $(CORE_VENV) && bin/python -m pytest -q -p no:cacheprovider --rootdir=$(CURDIR)/tests \
	  -c /dev/null $(CURDIR)/tests/core

notebooks: install
	HITCHHIKER_SCALE=smoke $(BIN)/python -m pytest --nbval-lax -q $(NOTEBOOKS)

# The chapters under Colab's versions (envs/colab.txt: its Python, and the packages it preloads at its
# versions): a fresh venv holding those, the book installed into it as a chapter's first cell does
# (failing if that upgrades or downgrades any of them: tests/check_colab_install.py), then every notebook
# at smoke scale under nbval there. Needs no .venv; rebuilt on every run (PyPI serves torch afresh).
COLAB_VERSIONS := envs/colab.txt
COLAB_VENV ?= _build/colab-venv
COLAB_PY := $(shell sed -n 's/^python==\([0-9.]*\).*/\1/p' $(COLAB_VERSIONS))
COLAB_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/$(COLAB_PY).*/bin/python$(COLAB_PY)) \
	python$(COLAB_PY))
colab:
	rm -rf $(COLAB_VENV)
	$(COLAB_PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/python tests/check_colab_install.py $(COLAB_VERSIONS)
	HITCHHIKER_SCALE=smoke PYDEVD_DISABLE_FILE_VALIDATION=1 $(COLAB_VENV)/bin/python -m pytest --nbval-lax \
	  --nbval-current-env -q $(NOTEBOOKS)

# The library at the floors it declares (pyproject.toml: requires-python and the torch and numpy
# minima): the core tests, from the wheel, in a fresh venv on that Python holding exactly those
# versions (PyPI's torch: a CUDA build of ~3 GB that runs on the CPU). Not part of `make test`.
FLOOR_PY := $(shell sed -n 's/^requires-python = ">=\([0-9.]*\)"/\1/p' pyproject.toml)
FLOOR_PINS := $(shell sed -n 's/^ *"\(torch\|numpy\)>=\([0-9.]*\)",*$$/\1==\2/p' pyproject.toml)
FLOOR_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/$(FLOOR_PY).*/bin/python$(FLOOR_PY)) \
	python$(FLOOR_PY))
FLOOR_VENV ?= _build/floor-venv
floors:
	rm -rf $(FLOOR_VENV) $(FLOOR_VENV)-wheel
	$(FLOOR_PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -m pip install --quiet $(FLOOR_PINS)
	$(FLOOR_VENV)/bin/python -m pip wheel --quiet --no-deps -w $(FLOOR_VENV)-wheel .
	$(FLOOR_VENV)/bin/python -m pip install --quiet $(FLOOR_VENV)-wheel/*.whl pytest hypothesis
	$(FLOOR_VENV)/bin/python -c "import sys, torch, numpy; print('floors: Python', sys.version.split()[0], \
	  'torch', torch.__version__, 'numpy', numpy.__version__)"
	cd $(FLOOR_VENV) && bin/python -m pytest -q -p no:cacheprovider --rootdir=$(CURDIR)/tests \
	  -c /dev/null $(CURDIR)/tests/core

# Debian's chromium and its chromedriver, installed when missing (selenium never downloads a browser).
chromium:
	test -x $(CHROMIUM) -a -x $(CHROMEDRIVER) || ($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium chromium-driver)

browser: book chromium
	$(BIN)/python -m pytest tests/browser --browser -q

# The library's types (mypy over hitchhiker/*.py, settings in pyproject.toml [tool.mypy]).
typecheck: install
	$(BIN)/mypy

# Every docstring example (each >>> in hitchhiker/, the library and the book's experiments) must run and
# print what it shows (norecursedirs is reset: pyproject's keeps pytest out of book/, not hitchhiker/book/).
doctest: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -o norecursedirs=__pycache__ --doctest-modules hitchhiker

# Style kept by configuration (pyproject.toml [tool.ruff]): line length, import order, unused names.
lint: install
	$(BIN)/ruff check hitchhiker tests benchmarks book/_ext tools

test: lint typecheck doctest unit core notebooks colab book browser

# Re-run every chapter in place (stored outputs and book/results/*.csv): `make execute` at default
# scale, `make paper` at the paper's scale (meant for a GPU).
EXEC_SCALE ?= default
execute: install
	cd book && for nb in $(notdir $(NOTEBOOKS)); do \
	  echo "== $$nb ($(EXEC_SCALE) scale)"; \
	  HITCHHIKER_SCALE=$(EXEC_SCALE) HITCHHIKER_PROGRESS=0 ../$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=-1 $$nb || exit 1; \
	done

paper:
	$(MAKE) execute EXEC_SCALE=paper

# Time and peak memory of every estimator's rsample + backward against torch.poisson and the
# fixed-cap EAT (benchmarks/sampler.py; BENCH_ARGS e.g. --quick or --device cuda). The stored CPU
# run behind the appendix chapter is book/results/costs.csv.
BENCH_ARGS ?= --out book/results/costs.csv
bench: install
	$(BIN)/python benchmarks/sampler.py $(BENCH_ARGS)

# Rewrite constraints.txt from the current venv (after a deliberate upgrade of the toolchain).
constraints: install
	{ sed -n '1,3p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | \
	  grep -vi '^torch==\|^poisson-hitchhiker\|^nvidia-\|^triton=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

# torch.compile against eager for rsample + backward (benchmarks/compile.py).
compile-bench: install
	$(BIN)/python benchmarks/compile.py

# The book on a GPU (benchmarks/gpu_check.py): run on the lent machine, with its own python3 (which
# holds a CUDA torch), from the working tree; nbval and ipykernel travel as wheels made by
# `make gpu-wheels` here (.whl/, ignored by git). Writes book/results/gpu.csv.
GPU_PYTHON ?= python3
GPU_WHEELS := $(shell grep -i -E '^(asttokens|comm|debugpy|executing|fastjsonschema|ipykernel|ipython|ipython_pygments_lexers|jedi|jsonschema|jsonschema-specifications|jupyter_client|jupyter_core|matplotlib-inline|nbformat|nbval|parso|pexpect|platformdirs|prompt_toolkit|ptyprocess|pure_eval|pyzmq|referencing|rpds-py|stack-data|tornado|traitlets|wcwidth)==' constraints.txt)
gpu-wheels:
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux2014_x86_64 -d .whl $(GPU_WHEELS)

gpu-check:
	if [ -d .whl ]; then $(GPU_PYTHON) -m pip install --quiet --no-index --no-deps --no-compile \
	  --target /tmp/hitchhiker-site .whl/*.whl; fi
	PYTHONPATH=/tmp/hitchhiker-site:$(CURDIR) PYTHONUNBUFFERED=1 $(GPU_PYTHON) benchmarks/gpu_check.py \
	  $(GPU_ARGS)

clean:
	rm -rf _build
