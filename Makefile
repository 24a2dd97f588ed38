# Two entry points for a fresh machine: `make demo` and `make test` (each builds .venv on first use).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test figure clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[test]"
	touch $(STAMP)

# The demo runs the UNet (the default method) and scores it against the demo phantom's known CMBs.
demo: $(STAMP)
	$(BIN)/cmb-detect --demo -o demo_output
	$(BIN)/cmb-eval --gt CMBDetectionLib/data --pred demo_output

# The linter first (seconds), then the tests and the doctests (pytest config in pyproject.toml).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

figure: $(STAMP)
	$(BIN)/python scripts/make_readme_figure.py

clean:
	rm -rf $(VENV) demo_output
