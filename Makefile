# python-executor: `make run` sets everything up and serves; `make test` sets everything up and
# runs every test. Both are meant for a fresh Debian 12 machine as root.

SHELL := /bin/bash
CARGO ?= cargo
PORT ?= 8080
LAYER_OUT := layer/out
APT_PACKAGES := python3 python3-venv python3-pip libstdc++6 ca-certificates make gcc curl

.PHONY: run test build layer deps tools lint lint-deploy bench clean

run: deps layer build
	PORT=$(PORT) ./target/release/python-executor

# No release build here: every test runs the debug binary cargo test builds (CARGO_BIN_EXE), so
# the crate graph, the AWS SDK included, compiles twice (clippy's check, the tests), not three
# times.
test: deps layer tools lint
	$(CARGO) test --locked
	$(MAKE) lint-deploy

# apt packages, installed only when one is missing (so repeated runs stay offline and fast).
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo (Rust 1.94.1+, for the AWS SDK) is required" >&2; exit 1; }

layer: deps
	layer/build.sh $(LAYER_OUT)

build:
	$(CARGO) build --release --locked

tools: deps
	tools/install.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

lint-deploy: tools
	tools/lint-deploy.sh

# Pool on and off side by side: latency percentiles, throughput under load, peak memory.
bench: deps layer
	$(CARGO) bench --locked --bench service

clean:
	rm -rf target $(LAYER_OUT) .tools
