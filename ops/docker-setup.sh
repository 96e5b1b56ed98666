#!/bin/sh
# The runtime image's setup steps (ops/Dockerfile runs this as root in the
# image). ROOT (default: none, i.e. /) relocates every step, so that
# ops/check-dockerfile.sh runs exactly these steps in a temp root.
set -eu

ROOT=${ROOT:-}
AR_UID=10001
DATA=/var/lib/agent-runtime

# A user and group with a fixed id (so a bind-mounted data directory
# can be chowned to it on the host), no password, no login shell. Its home
# is the data directory, which is created below, not by useradd.
groupadd ${ROOT:+--root "$ROOT"} --gid "$AR_UID" agent-runtime
useradd ${ROOT:+--root "$ROOT"} --uid "$AR_UID" --gid "$AR_UID" \
    --home-dir "$DATA" --no-create-home --shell /usr/sbin/nologin agent-runtime

# The data directory: the database, workspaces, PKI keys. Only the user may
# enter it (a new named volume copies this owner and mode).
install -d -m 0700 -o "$AR_UID" -g "$AR_UID" "$ROOT$DATA"
