# Grantwall — the two commands a newcomer needs are `make demo` and `make test`.
#
#   make build     dist/grantwall.wasm (the filter) and dist/grantwall (the policy compiler)
#   make demo      build, compile the example CRDs, run Envoy + the filter + a real MCP server and agent
#   make test      everything: native unit tests, the same tests on 32-bit Wasm, clippy, end-to-end in Envoy
#   make venv      the Python environment the e2e suite and the demo use (.venv)
#   make package   dist/oci and dist/grantwall-oci.tar: the filter as an OCI image for Istio (docs/deploy.md)
#   make examples  regenerate the generated examples (examples/wasmplugin.yaml); a test fails when they are stale
#   make fuzz      cargo-fuzz every untrusted-input parser, FUZZ_SECONDS each (default 60; docs/security.md)
#   make soak      10 minutes of mixed traffic at saturation through Envoy (SOAK_SECONDS; not part of test)
#   make bench     Grantwall vs Envoy pass-through vs native MCP+RBAC (10.5 min fresh; BENCH_QUICK=1: ~1.5 min); not in `make test`

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
VENV ?= .venv
PYTHON := $(VENV)/bin/python
WASM_TARGET := wasm32-wasip1
WASM_TEST_TARGET := wasm32-unknown-unknown
# Must equal the wasm-bindgen version in Cargo.lock (the test runner checks).
WASM_BINDGEN_VERSION := $(shell sed -n '/^name = "wasm-bindgen"$$/{n;s/version = "\(.*\)"/\1/p;}' Cargo.lock)

.PHONY: all build wasm build-trap demo test test-unit test-wasm lint test-e2e venv ts-server fuzz soak toolchain clean package examples bench

all: build

toolchain:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@rustup target list --installed | grep -qx $(WASM_TEST_TARGET) || rustup target add $(WASM_TEST_TARGET)

build: wasm
	$(CARGO) build --locked --release -p grantwall-policy-compiler
	cp target/release/grantwall dist/grantwall

# The filter alone (what `make bench` needs).
wasm: toolchain
	$(CARGO) build --locked --release --target $(WASM_TARGET) -p grantwall-filter
	@mkdir -p dist
	cp target/$(WASM_TARGET)/release/grantwall_filter.wasm dist/grantwall.wasm
	@echo "dist/grantwall.wasm: $$(stat -c %s dist/grantwall.wasm) bytes"

# TEST-ONLY filter that traps on request (feature trap-test), for tests/e2e/test_trap.py. Its own target dir,
# so the release dist/grantwall.wasm is never built with the feature.
build-trap: toolchain
	$(CARGO) build --locked --release --target $(WASM_TARGET) -p grantwall-filter --features trap-test --target-dir target/trap
	@mkdir -p dist
	cp target/trap/$(WASM_TARGET)/release/grantwall_filter.wasm dist/grantwall-trap.wasm

venv:
	scripts/venv.sh

package: build
	dist/grantwall package --wasm dist/grantwall.wasm -o dist/oci --tar dist/grantwall-oci.tar

# The WasmPlugin for examples/istio/'s Gateway; policy-compiler/tests/deploy.rs checks it is current.
examples: build
	dist/grantwall compile -f examples/policies/ -f examples/istio/ --emit wasmplugin \
	  --image oci://registry.example.com/grantwall:0.1.0 -o examples/wasmplugin.yaml

# The TypeScript SDK MCP servers (differential suite, side channels): npm ci into tests/e2e/ts_server/node_modules.
ts-server:
	scripts/ts-server.sh

demo: build venv
	$(PYTHON) examples/demo/run_demo.py

test: test-unit test-wasm lint test-e2e

test-unit:
	$(CARGO) test --locked --workspace

# The core's tests again, compiled to 32-bit Wasm and run by wasm-bindgen-test under Node.
test-wasm: toolchain
	@command -v wasm-bindgen-test-runner >/dev/null && wasm-bindgen-test-runner --version | grep -q "$(WASM_BINDGEN_VERSION)" \
	  || $(CARGO) install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
	  $(CARGO) test --locked -p grantwall-core --target $(WASM_TEST_TARGET)

lint: toolchain
	$(CARGO) clippy --locked --release --target $(WASM_TARGET) -p grantwall-filter -p grantwall-core -- -D warnings
	$(CARGO) clippy --locked -p grantwall-policy-compiler -- -D warnings
	# The fuzz targets live outside the workspace (cargo-fuzz's layout); keep them compiling with the core.
	$(CARGO) check --locked --manifest-path fuzz/Cargo.toml --all-targets

test-e2e: build build-trap venv ts-server
	$(PYTHON) -m pytest tests/e2e -q

# Fuzz each target for FUZZ_SECONDS on nightly. New inputs go to .cache/fuzz/<target> (the committed seeds in
# fuzz/corpus/<target> are only read); crashes land in fuzz/artifacts/<target>.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := jsonrpc xfcc config chunked sse jwt a2a llm
fuzz:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && cargo +nightly fuzz build -O
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p .cache/fuzz/$$t; \
	  echo "== fuzz $$t ($(FUZZ_SECONDS)s)"; \
	  (cd fuzz && cargo +nightly fuzz run -O $$t ../.cache/fuzz/$$t corpus/$$t -- \
	     -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=1) 2>&1 | tee .cache/fuzz/$$t.log | grep -E '^(#[0-9]+\s+DONE|stat::number_of_executed_units|==[0-9]+== ERROR|SUMMARY)' ; \
	done

# Saturation soak through real Envoy on loopback: SOAK_SECONDS (default 600), SOAK_PROCS load processes.
SOAK_SECONDS ?= 600
soak: build venv
	$(PYTHON) tests/soak/soak.py --seconds $(SOAK_SECONDS)

# Load benchmark on loopback plus criterion micro-benchmarks; writes docs/benchmarks.md (see bench/run.py).
bench: wasm venv
	$(PYTHON) bench/run.py

clean:
	rm -rf dist target
