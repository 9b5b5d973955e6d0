# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing and install the project into it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "fuelswitch needs Python >= 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	# Bytecode now, as a wheel install would: an editable install leaves it to the first
	# import, which never writes it where PYTHONDONTWRITEBYTECODE is set, so every start of
	# the switch (a restart after a crash too) compiled every module again (0.3-0.5 s).
	$(BIN)/python -m compileall -q actors channels devices loadtest ops switch > /dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fuelswitch demo

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/fuelswitch bench actors
	$(BIN)/fuelswitch bench journal

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
