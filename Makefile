# Two set-up commands for a new machine: `make demo` and `make test`.
# Everything installs into .venv; Debian packages are apt-get installed when missing and we are root.

VENV     := .venv
PYTHON   ?= python3
BIN      := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export GOTOOLCHAIN := local
export GOFLAGS := -mod=mod
export GOPROXY := off
export GOCACHE ?= $(CURDIR)/.cache/go-build
export GOPATH ?= $(CURDIR)/.cache/go

# Debian packages the tests and benchmarks drive for real (tshark is the capture oracle).
APT_TEST := tshark tcpdump bpftrace iptables iproute2 ethtool wrk chromium
PYTEST_ARGS ?= -n 2

.PHONY: install install-test apt-test demo test lint typecheck pytest bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# byte-compiled once here: with PYTHONDONTWRITEBYTECODE set, every run would compile the package
# from source (~0.2 s of each start); compileall writes .pyc regardless and skips fresh ones
install: $(VENV)/.installed
	$(BIN)/python -m compileall -q src
	@# the capture kernels compiled ahead of time (no numba start-up in `tcpdoctor pcap`); without a
	@# C compiler tcpdoctor still works, numba compiling them at first use instead
	$(BIN)/python -m tcpdoctor.sources.pcap.aot_build || echo "tcpdoctor: ahead-of-time build failed; numba will compile the capture kernels at first use" >&2
install-test: install $(VENV)/.installed-test

apt-test:
	@scripts/apt-install.sh $(APT_TEST)

demo: install
	$(BIN)/tcpdoctor demo

lint: install-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install-test
	$(BIN)/mypy

pytest: install-test apt-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: install-test apt-test
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
