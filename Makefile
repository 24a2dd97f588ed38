# Two entry points for a fresh machine: `make demo` and `make test` (each builds .venv on first use).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Root installs Debian packages directly; anyone else through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test system-packages figure clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[test]"
	touch $(STAMP)

# The demo runs the UNet (the default method) and scores it against the demo phantom's known CMBs.
demo: $(STAMP)
	$(BIN)/cmb-detect --demo -o demo_output
	$(BIN)/cmb-eval --gt CMBDetectionLib/data --pred demo_output

# The PACS and DICOM tests start a real Orthanc and run the DICOM standard's validator dciodvfy (Debian's orthanc
# and dicom3tools), installed here when missing.
system-packages:
	@command -v Orthanc >/dev/null 2>&1 && command -v dciodvfy >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends orthanc dicom3tools; }

# The linter first (seconds), then the tests and the doctests (pytest config in pyproject.toml).
test: $(STAMP) system-packages
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

figure: $(STAMP)
	$(BIN)/python scripts/make_readme_figure.py

clean:
	rm -rf $(VENV) demo_output
