# agent-runtime — the two commands that must always work on a fresh machine
# are `make run` and `make test`.

CARGO ?= cargo
# Arguments passed to `agent-runtime serve` by `make run` (none needed).
RUN_ARGS ?=

.PHONY: build run test test-deps lint fmt fmt-check unit bench clean help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## Release build (stripped binary in target/release/agent-runtime)
	$(CARGO) build --locked --release

run: build ## Build and start the daemon with defaults (./data, API on 127.0.0.1:8080)
	./target/release/agent-runtime serve $(RUN_ARGS)

test: test-deps fmt-check lint unit ## Format check, clippy -D warnings, and the whole test suite

# The e2e tests start a real Dovecot (IMAP) and a real aiosmtpd (SMTP) per
# test. Installs them only when missing (Debian, as root); silent otherwise.
test-deps: ## Install the test peers (dovecot-imapd, python aiosmtpd) if missing
	@command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || { \
	  echo "test-deps: installing dovecot-imapd"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dovecot-imapd; \
	}
	@python3 -c 'import aiosmtpd' >/dev/null 2>&1 || { \
	  echo "test-deps: installing aiosmtpd"; \
	  python3 -m pip install -q aiosmtpd 2>/dev/null \
	  || python3 -m pip install -q --break-system-packages aiosmtpd \
	  || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-aiosmtpd; }; \
	  python3 -c 'import aiosmtpd' || { echo "test-deps: python3 still cannot import aiosmtpd" >&2; exit 1; }; \
	}

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
