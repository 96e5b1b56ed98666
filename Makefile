# agent-runtime — the two commands that must always work on a fresh machine
# are `make run` and `make test`.

CARGO ?= cargo
# Arguments passed to `agent-runtime serve` by `make run` (none needed).
RUN_ARGS ?=

.PHONY: build run test lint fmt fmt-check unit bench clean help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## Release build (stripped binary in target/release/agent-runtime)
	$(CARGO) build --locked --release

run: build ## Build and start the daemon with defaults (./data, API on 127.0.0.1:8080)
	./target/release/agent-runtime serve $(RUN_ARGS)

test: fmt-check lint unit ## Format check, clippy -D warnings, and the whole test suite

unit:
	$(CARGO) test --locked

lint: ## Clippy on every target, warnings are errors
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

bench: build ## Benchmarks (release build); results go in docs/benchmarks.md by hand
	@echo "| release binary size, stripped (make build) | $$(stat -c %s target/release/agent-runtime) bytes | 1 |"
	$(CARGO) bench --locked --bench bench

clean:
	$(CARGO) clean
