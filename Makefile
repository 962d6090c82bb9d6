# Portcullis: `make test` is what CI runs; `make demo` shows the sidecar at work.
SHELL := /bin/bash
CARGO ?= cargo
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := $(VENV)/.installed
IMAGE ?= portcullis:dev

.PHONY: all build test lint deny unit chart grpc monitoring shipping demo bench soak crds tools image image-archive clean fuzz fuzz-ci hot-symbols

all: build

build:
	$(CARGO) build --bins --examples

## Python tools the tests use (httplint, Helm's library, kubernetes-validate, pytest), in a
## virtualenv inside the checkout.
tools: $(TOOLS)
$(TOOLS): tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Licenses, banned or duplicate crates and sources of the dependency graph, against deny.toml
# (advisories are left out: their database cannot be fetched on CI machines).
deny:
	$(CARGO) deny check licenses bans sources

# Every Rust test; the log feeds the summary line of `make test`.
unit: tools
	@mkdir -p target
	set -o pipefail; HTTPLINT=$(abspath $(VENV)/bin/httplint) \
	  KUBERNETES_VALIDATE=$(abspath $(VENV)/bin/kubernetes-validate) \
	  $(CARGO) test --workspace --all-targets 2>&1 | tee target/test.log

## The Helm chart: strict lint, renders with default and other values, every manifest
## checked against Kubernetes 1.33 and 1.35 schemas, CRDs equal to crds/, and its RBAC
## against the API requests the controller's tests record (the tests that record them and
## the binary that `portcullis inject` runs are built first).
chart: tools
	@mkdir -p target
	$(CARGO) build --quiet --bin portcullis
	KUBERNETES_VALIDATE=$(abspath $(VENV)/bin/kubernetes-validate) \
	  $(CARGO) test --quiet --test controller --test tls --test webhook > target/recorders.log 2>&1 \
	  || { tail -n 80 target/recorders.log; exit 1; }
	set -o pipefail; $(PY) -m pytest tests/chart -q -p no:cacheprovider 2>&1 | tee target/chart.log

## gRPC through the real binary, run with the flags `portcullis inject` writes, between a
## real grpcio server and real grpcio clients on 127.0.0.1 (tests/grpc).
grpc: tools
	@mkdir -p target
	$(CARGO) build --quiet --bin portcullis
	set -o pipefail; $(PY) -m pytest tests/grpc -q -p no:cacheprovider 2>&1 | tee target/grpc.log

## The chart's alerts and dashboard against a real Prometheus (Debian's `prometheus`):
## `promtool check rules` and `promtool test rules`, then every expression evaluated over
## a real controller and real sidecars under load (tests/monitoring).
monitoring: tools
	@mkdir -p target
	$(CARGO) build --quiet --bin portcullis --example metrics_fixture
	set -o pipefail; $(PY) -m pytest tests/monitoring -q -p no:cacheprovider 2>&1 | tee target/monitoring.log

## Shipping: the OCI archive of `make image-archive` (packed from the debug binary, which
## takes seconds to build where the release one takes minutes; the packing is the same),
## inspected with skopeo and umoci, and the release workflows checked by actionlint and
## zizmor (tests/image, tests/release).
shipping: tools
	@mkdir -p target
	$(CARGO) build --quiet --bin portcullis
	set -o pipefail; $(PY) -m pytest tests/image tests/release -q -p no:cacheprovider 2>&1 | tee target/shipping.log

PYTEST_LOGS := target/chart.log target/grpc.log target/monitoring.log target/shipping.log

# Ends with one line that adds up every test binary's results and every pytest suite's.
test: lint deny unit chart grpc monitoring shipping
	@awk '/^test result:/ { p += $$4; f += $$6 } END { print p, f }' target/test.log > target/rust.sum
	@read p f < target/rust.sum; \
	  count() { grep -Eo "[0-9]+ $$1" "$$2" | tail -1 | grep -Eo '[0-9]+' || echo 0; }; \
	  for log in $(PYTEST_LOGS); do \
	    p=$$((p + $$(count passed $$log))); f=$$((f + $$(count failed $$log) + $$(count error $$log))); \
	  done; \
	  echo "summary: $$p passed, $$f failed"

## Regenerate crds/ and the chart's copy from the Rust types (a test fails when they drift).
crds:
	$(CARGO) run --quiet -- crds > crds/portcullis.dev.yaml
	cp crds/portcullis.dev.yaml charts/portcullis/crds/portcullis.dev.yaml

demo:
	bash demo/run.sh

bench:
	bash bench/run.sh

## packaging/hot-symbols.txt, the functions a sidecar runs (callgrind on the release binary
## under load), which build.rs has the linker lay out together. Renew it after updating
## crates: `make bench` says how many of its functions the binary still has.
hot-symbols:
	bash bench/hot-symbols.sh

## 30 minutes (SOAK_MINUTES) of mixed traffic, config changes and app restarts through the
## sidecar: RSS, descriptors and tasks each minute, and a verdict on their growth. Not CI.
soak:
	bash bench/soak.sh

## Fuzzing, with cargo-fuzz on the machine's nightly toolchain (`cargo install --locked
## cargo-fuzz`; .ci/run installs it, and runs `fuzz-ci` before `make test`). Each
## target in fuzz/ runs for FUZZ_SECONDS from its seeds in fuzz/seeds/<target> (read only);
## the inputs it finds go to fuzz/corpus/<target>, crashes to fuzz/artifacts/<target>, its
## log to fuzz/logs/<target>.log. Fails when any target crashes. `fuzz-ci` runs each 20 s.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := config_yaml schedule stream_frames http1_server http1_client ack_lines h1_server_vs_hyper
FUZZ_FLAGS ?=
# libFuzzer flags, e.g. -seed=1 for a repeatable run.
FUZZ_ARGS ?=

fuzz:
	cargo +nightly fuzz build $(FUZZ_FLAGS)
	@mkdir -p fuzz/logs
	@failed=; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  cargo +nightly fuzz run $(FUZZ_FLAGS) $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 $(FUZZ_ARGS) \
	    > fuzz/logs/$$t.log 2>&1 || failed="$$failed $$t"; \
	  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added)' \
	    fuzz/logs/$$t.log | sed "s/^/  /"; \
	done; \
	if [ -n "$$failed" ]; then \
	  for t in $$failed; do echo "fuzz: $$t FAILED (fuzz/logs/$$t.log):"; \
	    grep -E -m1 -A3 'panicked at|ERROR: libFuzzer|SUMMARY' fuzz/logs/$$t.log; done; \
	  exit 1; \
	fi; echo "fuzz: no crashes"

fuzz-ci:
	$(MAKE) fuzz FUZZ_SECONDS=20 FUZZ_ARGS=-seed=1

## The container image from the Dockerfile, with docker, else podman, else buildah.
image:
	bash packaging/image.sh $(IMAGE)

## The release binary packed into an OCI archive (target/image/portcullis.oci.tar) without
## a container engine or a base image: `kind load image-archive`, `k3s ctr images import`.
image-archive:
	$(CARGO) build --release --locked --bin portcullis
	bash packaging/image-archive.sh

clean:
	$(CARGO) clean
	rm -rf $(VENV) bench/out

## `kubectl portcullis`: the release binary, linked as kubectl-portcullis into
## $(PREFIX)/bin (default ~/.local/bin), which must be on the PATH for kubectl to find it.
PREFIX ?= $(HOME)/.local
.PHONY: install-plugin
install-plugin:
	$(CARGO) build --release --bin portcullis
	mkdir -p $(PREFIX)/bin
	ln -sf $(abspath target/release/portcullis) $(PREFIX)/bin/kubectl-portcullis
