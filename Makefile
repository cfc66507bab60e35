# hitchhiker: two commands do everything on a fresh machine.
#   make book   -- create/update .venv, install, build the book (stored outputs; no execution)
#   make test   -- install, unit tests, every notebook at smoke scale under nbval, then the book
# TORCH chooses the torch requirement (CI: make test TORCH='torch==2.13.0+cpu').

TORCH ?= torch
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hitchhiker-installed
NOTEBOOKS := $(sort $(wildcard book/*.ipynb))
export PYTHONHASHSEED := 0

.PHONY: install book test unit notebooks clean

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

test: unit notebooks book

clean:
	rm -rf _build
