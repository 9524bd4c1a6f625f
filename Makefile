# The two commands of the README: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install setup run test lint test-deps migrate token clean rpm bench bench-ui screenshots fuzz

# Two installs: `make run` gets exactly what `pip install .` needs (no test extras, nothing that
# builds against system libraries); `make test` and `make setup` add the test extras, which
# need the Debian packages of scripts/install-test-deps.sh (tpm2-pytss builds against
# libtss2-dev).
$(BIN)/.installed: pyproject.toml $(wildcard agent/pyproject.toml)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# -qq: errors only (setuptools warns about editable installs on every build).
	$(BIN)/pip install -qq -e .
	@if [ -f agent/pyproject.toml ]; then $(BIN)/pip install -qq -e ./agent; fi
	@touch $@

$(BIN)/.installed-test: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[test]'
	@if [ -f agent/pyproject.toml ]; then $(BIN)/pip install -q -e './agent[test]'; fi
	@touch $@

install: $(BIN)/.installed

setup: $(BIN)/.installed-test

## Run the server on the embedded PostgreSQL (first start prints an admin token).
run: install
	@echo "The command line is in $(abspath $(BIN)): export PATH=$(abspath $(BIN)):\$$PATH"
	$(BIN)/flightctl-server serve

migrate: install
	$(BIN)/flightctl-server migrate

## Print a new API token for user "admin".
token: install
	$(BIN)/flightctl-server create-token --username admin

## Install what the tests need from Debian (when root), then lint and run every test.
test: test-deps setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest $(PYTEST_ARGS)

test-deps:
	@bash scripts/install-test-deps.sh

## Build the device agent's RPM (from its pip-built wheel) into dist/rpm. Needs only a Python
## with pip (no virtualenv, no server, no test extras); as root it installs rpmbuild if missing.
rpm:
	PYTHON=$(PYTHON) bash agent/packaging/build-rpm.sh dist/rpm

## Scale benchmark: server + N simulated devices, one JSON report (docs/scale.md).
DEVICES ?= 1000
BENCH_ARGS ?=
# NODES=2: the same workload on server nodes behind HAProxy (bench/multihost.py, root).
NODES ?= 1
bench: setup
	@$(BIN)/python -c 'import aiohttp' 2>/dev/null || $(BIN)/pip install -q -e './agent[simulator]'
	@if [ "$(NODES)" -gt 1 ]; then \
		timeout 7200 $(BIN)/python -m bench.multihost --bench --nodes $(NODES) \
			--devices $(DEVICES) --output bench/report-multihost-$(DEVICES).json $(BENCH_ARGS); \
	else \
		timeout 7200 $(BIN)/python -m bench.run --devices $(DEVICES) \
			--output bench/report-$(DEVICES).json $(BENCH_ARGS); fi

## Web console page latency with 100,000 devices on the local PostgreSQL (docs/ui.md).
UI_DEVICES ?= 100000
bench-ui: setup
	$(BIN)/python -m bench.ui --devices $(UI_DEVICES)

## Retake the console's screenshots in docs/ui/ (the browser tests take them).
screenshots: test-deps setup
	FLIGHTCTL_SCREENSHOTS=docs/ui $(BIN)/pytest tests/ui/test_console_browser.py tests/ui/test_terminal_browser.py

## Fuzz every user-API operation with schemathesis, long budget: cases and 5xx (docs/security.md).
FUZZ_EXAMPLES ?= 25
fuzz: setup
	$(BIN)/python -m bench.fuzz --max-examples $(FUZZ_EXAMPLES)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build dist *.egg-info
