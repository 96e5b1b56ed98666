#!/usr/bin/env bash
# Writes a database fixture of the binary's current schema version, for the
# upgrade test (tests/e2e/upgrade.rs): a daemon of every later version must
# open it, migrate it and serve what is in it.
#
#   scripts/schema-fixture.sh [BINARY]   (default: target/debug/agent-runtime)
#
# Writes tests/fixtures/schema-<version>.sqlite and prints the ids the test
# looks for. Run it once per schema version, with the binary of that version,
# before the next migration lands; never regenerate an existing fixture.
set -euo pipefail
bin=$(realpath "${1:-target/debug/agent-runtime}")
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
export AGENT_RUNTIME_DATA_DIR="$dir/data" AGENT_RUNTIME_HTTP_ADDR=127.0.0.1:0 \
  AGENT_RUNTIME_LLM_PROVIDER=openai AGENT_RUNTIME_LLM_BASE_URL=http://127.0.0.1:9/v1 \
  AGENT_RUNTIME_LLM_API_KEY=fixture AGENT_RUNTIME_LLM_MODEL=fixture-model
"$bin" serve >"$dir/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do "$bin" health >/dev/null 2>&1 && break; sleep 0.2; done
"$bin" health >/dev/null
# The kill switch first: the tasks below stay queued (no model is reachable).
"$bin" agent pause --reason "schema fixture" >/dev/null
"$bin" task create --title "fixture task one" --run-key fixture-1 "summarise the notes folder" >/dev/null
"$bin" task create --title "fixture task two" --connector telegram --external-id 4242 "second queued task" >/dev/null
"$bin" chat --external-id fixture-chat -m "hello from the fixture" >/dev/null || true
"$bin" pairing start --connector telegram --user-id 777 --display-name "Fixture Person" >/dev/null
ctx=$("$bin" workspace contexts --json | python3 -c 'import json,sys; v=json.load(sys.stdin); v=v.get("items", v) if isinstance(v, dict) else v; print([c["id"] for c in v if c.get("external_id")=="fixture-chat"][0])')
"$bin" objective create --context-id "$ctx" --title "fixture weekly digest" --prompt "digest the week" --cron "0 9 * * 1" --paused >/dev/null
"$bin" context budget "$ctx" --daily-tokens 12345 >/dev/null
kill -TERM "$pid"; wait "$pid" || true
db="$dir/data/agent-runtime/meta.sqlite"
version=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("PRAGMA user_version").fetchone()[0])' "$db")
out="$root/tests/fixtures/schema-$version.sqlite"
[ ! -e "$out" ] || { echo "$out exists: a fixture is never regenerated" >&2; exit 1; }
python3 -c 'import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute("VACUUM INTO ?", (sys.argv[2],))' "$db" "$out"
echo "wrote $out (schema $version)"
