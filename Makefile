# The two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run test bench services fmt-check clippy proto-lint proto-breaking nextest node-tools help

help:
	@echo "make run         start the services in embedded mode (SQLite per service, in-process cache and bus)"
	@echo "make test        format, lint, proto lint and the whole test suite (needs PostgreSQL + Redis)"
	@echo "make proto-lint  buf lint over proto/ (proto-breaking: buf breaking against proto/BREAKING_BASE)"
	@echo "make bench       benchmarks (release build, PostgreSQL); results go in BENCHMARKS.md"

run:
	$(CARGO) run -p retention-suite --bin retention

test: services fmt-check proto-lint proto-breaking clippy nextest

# Not part of `make test`: a release build and minutes of work per benchmark.
bench: services
	$(CARGO) bench -p retention-segmentation --bench scoring_run

# Start the local PostgreSQL and Redis if they are installed but stopped.
services:
	@bash scripts/ensure-services.sh

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# buf is pinned exactly in package.json. No lock file: npm's lock for buf's
# per-platform optional packages does not survive `npm ci` on another platform.
node-tools:
	@if [ ! -x node_modules/.bin/buf ]; then npm install --no-audit --no-fund --no-package-lock; fi

proto-lint: node-tools
	npx --no-install buf lint

# Published v1 contracts never break: compare with the contract as last accepted
# (the commit in proto/BREAKING_BASE). A deliberate break goes through an issue and
# moves the base.
proto-breaking: node-tools
	@base=$$(cat proto/BREAKING_BASE); \
	if git cat-file -e "$$base^{commit}" 2>/dev/null; then \
		npx --no-install buf breaking --against ".git#ref=$$base"; \
	else \
		echo "proto-breaking: base $$base is not in this clone's history (shallow?); check skipped"; \
	fi

nextest:
	$(CARGO) nextest run --workspace --no-fail-fast
