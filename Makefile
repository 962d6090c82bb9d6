# Portcullis: `make test` is what CI runs; `make demo` shows the sidecar at work.
SHELL := /bin/bash
CARGO ?= cargo
VENV := .venv
HTTPLINT := $(VENV)/bin/httplint

.PHONY: all build test lint unit demo bench crds tools clean

all: build

build:
	$(CARGO) build --bins --examples

## Python tools the tests use (httplint), in a virtualenv inside the checkout.
tools: $(HTTPLINT)
$(HTTPLINT): tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# Ends with one line that adds up every test binary's results.
unit: tools
	@mkdir -p target
	set -o pipefail; HTTPLINT=$(abspath $(HTTPLINT)) $(CARGO) test --all-targets 2>&1 | tee target/test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "summary: %d passed, %d failed\n", p, f }' target/test.log

test: lint unit

## Regenerate crds/ from the Rust types (a test fails when they drift).
crds:
	$(CARGO) run --quiet -- crds > crds/portcullis.dev.yaml

demo:
	bash demo/run.sh

bench:
	bash bench/run.sh

clean:
	$(CARGO) clean
	rm -rf $(VENV) bench/out
