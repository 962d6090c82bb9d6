# Portcullis: `make test` is what CI runs; `make demo` shows the sidecar at work.
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

unit: tools
	HTTPLINT=$(abspath $(HTTPLINT)) $(CARGO) test --all-targets

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
