# tandem's entry points. CI runs `make test` (via .ci/run) on a fresh Debian machine.

SHELL := /bin/bash
CARGO ?= cargo
# Not root (a developer's machine): install packages through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# CI sets CI=true: run every test and report all failures, not just the first.
NEXTEST_PROFILE ?= $(if $(CI),ci,default)

.PHONY: setup test fmt lint demo bench clean-demo

## setup: install the servers and tools the tests need (idempotent, quiet when present)
setup:
	@need=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$$need postgresql"; \
	{ command -v mariadbd || [ -x /usr/sbin/mariadbd ]; } >/dev/null 2>&1 || need="$$need mariadb-server"; \
	command -v mariadb >/dev/null 2>&1 || need="$$need mariadb-client"; \
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

## demo: both databases with the demo schemas, and tandem between them (Ctrl-C stops all)
demo: setup
	$(CARGO) build --release --workspace --bins
	scripts/demo.sh

bench: setup
	$(CARGO) bench --workspace

## clean-demo: forget the demo's databases (stop `make demo` first)
clean-demo:
	@if [ -f .demo/env ]; then echo "clean-demo: the demo is still running; stop it first" >&2; exit 1; fi
	rm -rf .demo
