# oponn: every command a developer or CI needs. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Telemetry off everywhere, for every tool these targets start.
export DO_NOT_TRACK := 1
export ARTILLERY_DISABLE_TELEMETRY := true

STACK_ENV = eval "$$(scripts/stack env)"
# The token `make run` configures for mutations (development only).
DEV_TOKEN ?= dev-token-0123456789abcdef
OPONN_LISTEN ?= 127.0.0.1:8080

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  make %-14s %s\n", $$1, $$2 }'

.PHONY: stack-up stack-down stack-status
stack-up: ## Install (if missing) and start Redis and MongoDB (FerretDB on PostgreSQL) on 127.0.0.1
	@scripts/stack up
stack-down: ## Stop the servers stack-up started
	@scripts/stack down
stack-status: ## Show whether the local servers are up
	@scripts/stack status

.PHONY: run
run: stack-up ## Start the stack, ingest the recorded sample, serve GraphQL on http://127.0.0.1:8080/graphql
	@scripts/timed "[run] building the release binaries (the first time: about 4 minutes on 2 cores; then seconds)" \
	  cargo build --release -q -p oponn --bin oponn --example local_openlibrary
	@$(STACK_ENV); export OPONN_API_TOKENS=$(DEV_TOKEN) OPONN_LISTEN=$(OPONN_LISTEN) OPONN_LOG_FORMAT=$${OPONN_LOG_FORMAT:-pretty}; \
	  exec scripts/run

.PHONY: test
test: stack-up lint infra-check ## Run every check and every test (unit, integration, end-to-end) against the local stack
	@scripts/timed "[test] building the tests and the binary the end-to-end tests run, in one build (the first time: about 7 minutes on 2 cores)" \
	  cargo test -q --workspace --no-run
	@echo "[test] cargo test --workspace (running: about 3 minutes)"
	@$(STACK_ENV); scripts/timed "[test] cargo test" cargo test --workspace --no-fail-fast
	@$(STACK_ENV); scripts/timed "[test] the typed TypeScript client against a live server (the first time: installing its packages, about 20 s)" \
	  scripts/client-test
	@scripts/timed "[test] schema breaking-change check against api/released/schema.graphql" scripts/schema-check
	@$(STACK_ENV); scripts/smoke-release
	@$(STACK_ENV); LOADTEST_PROFILE=smoke LOADTEST_BIN="$$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug" \
	  scripts/timed "[test] load test smoke run (every artillery scenario for seconds; fails on any GraphQL error)" loadtest/run

# One chaos fault only: `make chaos FAULT=older-snapshot` (restart-empty, older-snapshot, pause,
# instance-killed); empty runs all four.
FAULT ?=

.PHONY: chaos
chaos: stack-up ## Chaos suite, full profile: Redis killed, rolled back, paused, an instance killed under load; fails on any stale read
	@scripts/timed "[chaos] building the binary it runs (the first time: about 3 minutes on 2 cores)" \
	  cargo build -q -p oponn
	@$(STACK_ENV); export OPONN_CHAOS_PROFILE=full OPONN_CHAOS_FAULT=$(FAULT); \
	  scripts/timed "[chaos] four faults one after another (about 2 minutes)" \
	  cargo test -p oponn-tests --test chaos -- --nocapture --test-threads=1

.PHONY: crash-behind
crash-behind: stack-up infra-check ## Write-behind crash tests, full profile: 10,000 acknowledged mutations per run while workers (and once Redis) are SIGKILLed; 1,000 on SQS (moto)
	@scripts/timed "[crash-behind] building the binary it runs (the first time: about 3 minutes on 2 cores)" \
	  cargo build -q -p oponn
	@$(STACK_ENV); export OPONN_BEHIND_WRITES=10000 OPONN_BEHIND_SQS_WRITES=1000; \
	  scripts/timed "[crash-behind] four runs one after another, the last on SQS (moto) (about 8 minutes)" \
	  cargo test -p oponn-tests --test behind -- --nocapture --test-threads=1 --include-ignored

.PHONY: infra-check
infra-check: ## cfn-lint and cfn-guard on the templates (and a fixture every rule must reject), hadolint on the Dockerfile (offline)
	@scripts/infra-check

.PHONY: lint
lint: ## bash -n on every bash script, the layering check, rustfmt, clippy (warnings as errors), cargo deny (licences, bans, sources)
	@echo "[lint] bash -n on every bash script"
	@for script in $$(git ls-files | xargs grep -lE '^#!(/usr/bin/env bash|/bin/bash)' 2>/dev/null); do \
	  bash -n "$$script" || { echo "[lint] $$script does not parse"; exit 1; }; done
	@scripts/layers --self-test
	@scripts/layers
	@echo "[lint] cargo fmt --check"
	@cargo fmt --all -- --check
	@scripts/timed "[lint] cargo clippy -D warnings (the first time: about 3 minutes on 2 cores)" \
	  cargo clippy -q --workspace --all-targets -- -D warnings
	@scripts/timed "[lint] cargo clippy -D warnings on the service's own build, without test-hooks and tokio's test-util (the first time: about 2 minutes)" \
	  cargo clippy -q -p oponn --lib --bins -- -D warnings
	@scripts/deny

.PHONY: audit
audit: ## cargo deny with the RustSec advisories too (needs network: the advisory database is cloned from GitHub)
	@scripts/deny --advisories

.PHONY: schema
schema: ## Regenerate schema.graphql from the code
	@cargo run -q -p oponn -- schema > schema.graphql
	@echo "[schema] wrote schema.graphql"

.PHONY: schema-check release-schema client-test
schema-check: ## Fail on a breaking change to schema.graphql since the released schema (GraphQL Inspector; no server)
	@scripts/schema-check
release-schema: ## When a release is cut: record schema.graphql as the released schema (api/released/)
	@cp schema.graphql api/released/schema.graphql
	@echo "[schema] api/released/schema.graphql is now today's schema.graphql; commit it with the release"
client-test: stack-up ## The typed TypeScript client (examples/client/): codegen, tsc --noEmit, its test against a live server
	@scripts/timed "[client] building the binary it serves (the first time: about 3 minutes on 2 cores)" \
	  cargo build -q -p oponn
	@$(STACK_ENV); scripts/client-test

.PHONY: bench
bench: stack-up ## Cached book(id) over HTTP vs an axum hello-world, with oha; prints req/s, p50, p99, ratio
	@$(STACK_ENV); scripts/bench

.PHONY: bench-queries
bench-queries: stack-up ## The query-result cache: warm/cold req/s and p99, and write cost as cached results grow
	@cargo build --release -q -p oponn --example bench_queries
	@$(STACK_ENV); cargo run --release -q -p oponn --example bench_queries

.PHONY: loadtest loadtest-smoke
loadtest: stack-up ## Artillery scenarios against a release build, cache on and off, oha, perf, make bench; report in loadtest/reports/
	@$(STACK_ENV); loadtest/run
loadtest-smoke: stack-up ## Every artillery scenario for seconds on a small catalogue (debug build); fails on any GraphQL error
	@$(STACK_ENV); LOADTEST_PROFILE=smoke loadtest/run

.PHONY: bench-hostile
bench-hostile: stack-up ## What anonymous readers cost writers and Redis: updateBook p99 before/after 10,000 filtered queries, Redis memory after 10,000 random-id lookups expire
	@cargo build --release -q -p oponn --example bench_hostile
	@$(STACK_ENV); cargo run --release -q -p oponn --example bench_hostile

.PHONY: bench-ingest
bench-ingest: stack-up ## Ingest 10,000 generated books from a local source; books/s, peak RSS, and the raw insert rate
	@$(STACK_ENV); scripts/bench-ingest

BOOKS ?= 100000
STORES ?= 500

.PHONY: seed-large
seed-large: stack-up ## A generated catalogue through the bulk path: BOOKS (100000) books over STORES (500) stores; books/s
	@scripts/timed "[seed] building the release binary (the first time: about 4 minutes on 2 cores)" \
	  cargo build --release -q -p oponn --bin oponn
	@$(STACK_ENV); export OPONN_LOG_FORMAT=$${OPONN_LOG_FORMAT:-pretty}; \
	  scripts/timed "[seed] oponn seed --generate $(BOOKS) --stores $(STORES)" \
	  "$${CARGO_TARGET_DIR:-target}/release/oponn" seed --generate $(BOOKS) --stores $(STORES)

.PHONY: bench-store
bench-store: stack-up ## Through the service over HTTP at 10,000 and 100,000 books (BENCH_SIZES=...,1000000 adds a million): p50/p99 of updateBook and cold reads and pages
	@scripts/timed "[bench] building the release binaries (the first time: about 4 minutes on 2 cores)" \
	  cargo build --release -q -p oponn --bin oponn --example bench_store
	@$(STACK_ENV); "$${CARGO_TARGET_DIR:-target}/release/examples/bench_store"

.PHONY: bench-writes
bench-writes: stack-up ## updateBook over HTTP at 10,000 books, through vs behind (no worker, then one running): mutations/s, p50/p99, the worker's apply rate, behind p99 / through p99
	@$(STACK_ENV); scripts/bench-writes
