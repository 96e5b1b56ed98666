# agent-runtime — the two commands that must always work on a fresh machine
# are `make run` and `make test`.

CARGO ?= cargo
# Arguments passed to `agent-runtime serve` by `make run` (none needed).
RUN_ARGS ?=
# `make install`: where to (DESTDIR is prepended, for packaging).
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DOCDIR ?= $(PREFIX)/share/doc/agent-runtime
MANDIR ?= $(PREFIX)/share/man/man1
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
RELEASE_BIN := $(TARGET_DIR)/release/agent-runtime

.PHONY: build run test test-deps lint fmt fmt-check unit bench clean help install uninstall check-ops

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## Release build (stripped binary in target/release/agent-runtime)
	$(CARGO) build --locked --release
	@touch $(RELEASE_BIN)

run: build ## Build and start the daemon with defaults (./data, API on 127.0.0.1:8080)
	./target/release/agent-runtime serve $(RUN_ARGS)

test: test-deps fmt-check lint unit check-ops ## Format check, clippy -D warnings, the whole test suite, the ops/ checks

# The release binary, rebuilt when a source is newer (so `sudo make install`
# after `make build` needs no cargo in root's PATH).
$(RELEASE_BIN): Cargo.toml Cargo.lock build.rs $(shell find src context docs -type f 2>/dev/null)
	$(CARGO) build --locked --release
	@touch $@

install: $(RELEASE_BIN) ## Install the binary in $(PREFIX)/bin, its man pages in $(MANDIR), and the docs, unit and .env.example in $(DOCDIR) (PREFIX=/usr/local)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DOCDIR)
	install -m 0755 $(RELEASE_BIN) $(DESTDIR)$(BINDIR)/agent-runtime
	install -m 0644 README.md docs/operations.md docs/configuration.md LICENSE-MIT LICENSE-APACHE .env.example \
	  ops/agent-runtime.service $(DESTDIR)$(DOCDIR)/
	install -d $(DESTDIR)$(MANDIR)
	$(RELEASE_BIN) man $(DESTDIR)$(MANDIR)
	@echo "installed $(DESTDIR)$(BINDIR)/agent-runtime"
	@case ":$$PATH:" in *":$(BINDIR):"*) ;; *) echo "note: $(BINDIR) is not on your PATH";; esac

uninstall: ## Remove what `make install` installed (not the data directory)
	rm -f $(DESTDIR)$(BINDIR)/agent-runtime $(DESTDIR)$(MANDIR)/agent-runtime.1 $(DESTDIR)$(MANDIR)/agent-runtime-*.1
	rm -rf $(DESTDIR)$(DOCDIR)

# No container engine needed: systemd-analyze verify/security on the unit,
# the Dockerfile's and compose.yaml's invariants, the image's setup script in
# a temp root, and the debug binary run under the unit's and the image's
# constraints (when `cargo test` has built it).
check-ops: ## Check ops/: the systemd unit and the Dockerfile (no container engine needed)
	CARGO_TARGET_DIR=$(TARGET_DIR) ops/check-unit.sh
	CARGO_TARGET_DIR=$(TARGET_DIR) ops/check-dockerfile.py
	ops/check-alerts.py

# The e2e tests start a real Dovecot (IMAP) and a real aiosmtpd (SMTP) per
# test. Installs them only when missing (Debian, as root); silent otherwise.
test-deps: ## Install the test peers (dovecot-imapd, python aiosmtpd) and systemd-analyze if missing
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
	@command -v systemd-analyze >/dev/null 2>&1 && /usr/bin/python3 -c 'import yaml, seccomp' >/dev/null 2>&1 || { \
	  echo "test-deps: installing systemd (systemd-analyze), python3-yaml and python3-seccomp for make check-ops"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends systemd python3-yaml python3-seccomp; \
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
