# python-executor: `make run` sets everything up and serves; `make test` sets everything up and
# runs every test. Both are meant for a fresh Debian 12 machine as root.

SHELL := /bin/bash
CARGO ?= cargo
PORT ?= 8080
LAYER_OUT := layer/out
# `make test` builds the crate graph (the service and the isolation library, layer/isolate, one
# workspace) once, in the `ci` profile; the image tests ship the binary built with the tests.
TEST_PROFILE := ci

APT_PACKAGES := python3 python3-venv python3-pip libstdc++6 ca-certificates make gcc curl
# Only for `make test`, without their recommends (qemu's would pull in a desktop): debootstrap,
# jq and e2fsprogs build the images' filesystems (tools/images/build-root.sh), qemu boots Debian
# 12's own kernel on one of them for the cgroup v2 check (tools/images/run-vm.sh).
TEST_APT_PACKAGES := debootstrap jq e2fsprogs qemu-system-x86 linux-image-amd64

# $(call apt_install,PACKAGES,APT_OPTIONS): installs the packages that are missing, if any (so
# repeated runs stay offline and fast).
define apt_install
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) $$missing; \
	fi
endef

.PHONY: run test build layer lock lock-check deps test-deps tools lint lint-deploy bench clean

run: deps layer build
	PORT=$(PORT) ./target/release/python-executor

test: lock-check deps test-deps layer tools lint
	$(CARGO) test --locked --workspace --no-fail-fast --profile $(TEST_PROFILE)
	$(MAKE) lint-deploy

# apt packages, installed only when one is missing.
deps:
	$(call apt_install,$(APT_PACKAGES),)
	@command -v $(CARGO) >/dev/null || { echo "cargo (Rust 1.94.1+, for the AWS SDK) is required" >&2; exit 1; }

test-deps: deps
	$(call apt_install,$(TEST_APT_PACKAGES),--no-install-recommends)

layer: deps
	layer/build.sh $(LAYER_OUT)

# The runtime's packages: layer/requirements.in is the list people edit, layer/requirements.txt
# the hash-pinned lock every build installs (docs/packages.md). `make lock` resolves the one
# into the other, keeping the pins that still fit (UPGRADE=1 moves them all); `make test` fails
# first thing while the lock is stale.
lock: tools
	python3 tools/lock.py lock layer/requirements.in layer/requirements.txt

lock-check:
	python3 tools/lock.py check layer/requirements.in layer/requirements.txt

build:
	$(CARGO) build --release --locked

tools: deps
	tools/install.sh

lint:
	python3 tools/import-circles.py src layer/isolate/src
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	# The supervisor as it ships: without the standard library (layer/isolate/supervise.flags).
	$(CARGO) clippy --locked -p pyexec-isolate --bin pyexec-supervise -- -D warnings -C panic=abort

lint-deploy: tools
	tools/lint-deploy.sh

# Cold path (TEMPLATES=0) beside the template path, for nsjail and compat: spaced latency,
# throughput under load, memory, and Lambda invocations with the service frozen in between
# (under the Runtime Interface Emulator, which `tools` installs); on the template path, the CPU
# per request by stage and a flame graph, from `perf` (linux-perf; without it, a dash).
bench: deps layer tools
	$(call apt_install,linux-perf,--no-install-recommends)
	$(CARGO) bench --locked --bench service

clean:
	rm -rf target $(LAYER_OUT) .tools .cache
