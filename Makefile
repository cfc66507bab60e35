# hitchhiker: two commands do everything on a fresh machine.
#   make book   -- create/update .venv, install, build the book (stored outputs; no execution)
#   make test   -- install, unit tests, every notebook at smoke scale under nbval, the book, then the
#                  browser test (headless Chromium through every built page; screenshots in _build/screenshots)
# TORCH chooses the torch requirement (CI: make test TORCH='torch==2.13.0+cpu').

TORCH ?= torch
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hitchhiker-installed
NOTEBOOKS := $(sort $(wildcard book/*.ipynb))
export PYTHONHASHSEED := 0
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: bench execute paper install book test unit notebooks chromium browser clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[book,test,data]"
	touch $@

install: $(STAMP)

book: install
	$(BIN)/jupyter-book build . -W --keep-going --all
	$(BIN)/python tests/check_book.py

unit: install
	$(BIN)/python -m pytest tests -q

notebooks: install
	HITCHHIKER_SCALE=smoke $(BIN)/python -m pytest --nbval-lax -q $(NOTEBOOKS)

# Debian's chromium and its chromedriver, installed when missing (selenium never downloads a browser).
chromium:
	test -x $(CHROMIUM) -a -x $(CHROMEDRIVER) || ($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium chromium-driver)

browser: book chromium
	$(BIN)/python -m pytest tests/browser --browser -q

test: unit notebooks book browser

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

clean:
	rm -rf _build
