# tandem's entry points. CI runs `make test` (via .ci/run) on a fresh Debian machine.

SHELL := /bin/bash
CARGO ?= cargo
# Not root (a developer's machine): install packages through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# CI sets CI=true: run every test and report all failures, not just the first.
NEXTEST_PROFILE ?= $(if $(CI),ci,default)
# The status page test loads the page in Debian's Chromium; the demo needs no browser.
BROWSER_PKG ?= chromium

.PHONY: setup test fmt lint demo bench clean-demo

## setup: install the servers and tools the tests need (idempotent, quiet when present)
setup:
	@need=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$$need postgresql"; \
	{ command -v mariadbd || [ -x /usr/sbin/mariadbd ]; } >/dev/null 2>&1 || need="$$need mariadb-server"; \
	command -v mariadb >/dev/null 2>&1 || need="$$need mariadb-client"; \
	[ -z "$(BROWSER_PKG)" ] || [ -x /usr/bin/chromium ] || need="$$need $(BROWSER_PKG)"; \
	if grep -qs '^name = "openssl-sys"' Cargo.lock && ! pkg-config --exists openssl 2>/dev/null; then \
		need="$$need pkg-config libssl-dev"; \
	fi; \
	if [ -n "$$need" ]; then \
		echo "setup: installing$$need"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; \
	fi
	@command -v cargo-nextest >/dev/null 2>&1 || $(CARGO) install cargo-nextest --locked

## test: formatting, lints, then every test against throwaway servers
test: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace --doc
	$(CARGO) nextest run --workspace --profile $(NEXTEST_PROFILE)

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## demo: both demo databases, tandem between them and a live workload (Ctrl-C stops all)
demo: BROWSER_PKG :=
demo: setup
	$(CARGO) build --release -p tandem -p tandem-testkit --bins
	DEMO_SKIP_BUILD=1 scripts/demo.sh

## bench: end-to-end benchmarks against the databases' raw limits, on throwaway servers
## (figures in BENCHMARKS.md). BENCH=throughput|both|decode|lag|snapshot|bigtx picks some
## (default all); TANDEM_BENCH_SCALE=0.1 shrinks them. The setup target installs no browser.
BENCH ?= all
bench: BROWSER_PKG :=
bench: setup
	$(CARGO) build --release -p tandem -p tandem-bench
	target/release/tandem-bench $(BENCH)
	$(CARGO) bench -p tandem-mysql --bench decode

## clean-demo: forget the demo's databases (stop `make demo` first)
clean-demo:
	@if [ -f .demo/env ]; then echo "clean-demo: the demo is still running; stop it first" >&2; exit 1; fi
	rm -rf .demo
