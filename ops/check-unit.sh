#!/bin/bash
# Checks ops/agent-runtime.service (run by `make check-ops`, part of `make test`).
#
# 1. `systemd-analyze verify` in a temp root holding the unit, a stand-in
#    for /usr/local/bin/agent-runtime and systemd's own units: any warning
#    fails (verify itself exits 0 on unknown keys and bad values).
# 2. `systemd-analyze security --offline`: the exposure score must stay at
#    or below MAX_EXPOSURE, and the hardening the operations guide promises
#    must be there.
# 3. With a built binary (AGENT_RUNTIME_BIN, default target/debug/agent-runtime):
#    the real daemon started the way the unit starts it, minus what needs
#    systemd itself (mount namespaces): an unprivileged user with no
#    capabilities, no_new_privs, the unit's UMask and Environment, and its
#    seccomp settings (SystemCallFilter, SystemCallArchitectures,
#    RestrictAddressFamilies, MemoryDenyWriteExecute) rebuilt as systemd
#    applies them by ops/sandbox-exec.py, after a self-test that they bite.
#    It must re-execute itself (GLIBC_TUNABLES) under those with the same
#    PID, answer /readyz, create its files private, survive ExecReload's
#    SIGHUP (TLS files re-read) and stop with exit 0 on SIGTERM.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
unit="$here/agent-runtime.service"
MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}
fail() { echo "check-unit: FAIL: $*" >&2; exit 1; }
say() { echo "check-unit: $*"; }

command -v systemd-analyze >/dev/null || fail "systemd-analyze not found (Debian: apt-get install systemd; make test-deps does)"
work=$(mktemp -d)
daemon_pid=
llm_pid=
cleanup() {
    if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then kill -KILL "$daemon_pid" 2>/dev/null || true; fi
    if [[ -n $llm_pid ]]; then kill "$llm_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# --- 1. verify --------------------------------------------------------------
root="$work/root"
mkdir -p "$root/usr/local/bin" "$root/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd"
printf '#!/bin/sh\nexit 0\n' >"$root/usr/local/bin/agent-runtime"
chmod 0755 "$root/usr/local/bin/agent-runtime"
[[ -x /bin/kill ]] || fail "/bin/kill (ExecReload) does not exist here (Debian: procps)"
cp /bin/kill "$root/bin/kill"
cp -r /lib/systemd/system "$root/usr/lib/systemd/"
cp "$unit" "$root/etc/systemd/system/agent-runtime.service"
out=$(systemd-analyze verify --root="$root" /etc/systemd/system/agent-runtime.service 2>&1) || fail "systemd-analyze verify: $out"
[[ -z $out ]] || fail "systemd-analyze verify warns: $out"
say "systemd-analyze verify: clean"

# --- 2. security --------------------------------------------------------------
report=$(systemd-analyze security --offline=yes "$unit" 2>&1) || true
score=$(sed -n 's/.*Overall exposure level for agent-runtime.service: \([0-9.]*\).*/\1/p' <<<"$report")
[[ -n $score ]] || fail "no exposure score in: $report"
awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }' || fail "exposure $score is above $MAX_EXPOSURE: $report"
say "systemd-analyze security: exposure $score (at most $MAX_EXPOSURE)"
for want in 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' \
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' 'SystemCallFilter=@system-service' \
    'SystemCallArchitectures=native' 'CapabilityBoundingSet=' 'LockPersonality=yes' 'MemoryDenyWriteExecute=yes' \
    'Restart=on-failure' 'ExecReload=/bin/kill -HUP $MAINPID' 'StateDirectory=agent-runtime' 'UMask=0077' 'Type=exec'; do
    grep -qxF "$want" "$unit" || fail "the unit lost '$want'"
done
# Only the state directory is writable: nothing may widen ProtectSystem=strict.
if grep -qE '^(ReadWritePaths|ReadWriteDirectories|BindPaths)=' "$unit"; then fail "the unit makes more than its StateDirectory writable"; fi
say "hardening directives: present"

# --- 3. the real daemon under the unit's constraints ---------------------------
bin=${AGENT_RUNTIME_BIN:-${CARGO_TARGET_DIR:-$here/../target}/debug/agent-runtime}
if [[ ! -x $bin ]]; then
    say "no binary at $bin: skipped the daemon check (run after cargo build, or set AGENT_RUNTIME_BIN)"
    exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v setpriv >/dev/null || ! command -v python3 >/dev/null; then
    say "needs root, setpriv and python3 to drop to an unprivileged user: skipped the daemon check"
    exit 0
fi
# systemd's MemoryDenyWriteExecute (seccomp) also refuses any mprotect that
# adds PROT_EXEC, which an executable stack or text relocations would need.
if command -v readelf >/dev/null; then
    readelf -lW "$bin" | grep -q 'GNU_STACK.* RW ' || fail "$bin asks for an executable stack (MemoryDenyWriteExecute would refuse it)"
    if readelf -dW "$bin" | grep -q TEXTREL; then fail "$bin has text relocations (MemoryDenyWriteExecute would refuse them)"; fi
    say "binary: no executable stack, no text relocations"
fi
umask_value=$(sed -n 's/^UMask=//p' "$unit")
data="$work/state"
# The unprivileged user must reach its files under the (0700) temp dir.
chmod 0755 "$work"
install -d -m 0755 "$work/home"
install -d -o 65534 -g 65534 -m 0700 "$data"
# The binary must be readable by the unprivileged user: run a private copy.
install -m 0755 "$bin" "$work/agent-runtime"
probe_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The unit's Environment= lines, then what this check must change: the data
# dir (its StateDirectory), ports free on this machine, no .env file.
env_args=()
while IFS= read -r line; do env_args+=("$line"); done < <(sed -n 's/^Environment=//p' "$unit")
# A model to call (ops/fake-llm.py), so one agent turn makes an outgoing
# HTTP request from inside the sandbox.
/usr/bin/python3 "$here/fake-llm.py" >"$work/llm.port" &
llm_pid=$!
for _ in $(seq 1 50); do [[ -s $work/llm.port ]] && break; sleep 0.1; done
llm_port=$(cat "$work/llm.port")
[[ -n $llm_port ]] || fail "the fake model did not start"
env_args+=("AGENT_RUNTIME_DATA_DIR=$data" "AGENT_RUNTIME_ENV_FILE=$work/agent-runtime.env"
    "AGENT_RUNTIME_HTTP_ADDR=127.0.0.1:0" "AGENT_RUNTIME_HEALTH_ADDR=127.0.0.1:$probe_port"
    "AGENT_RUNTIME_LLM_BASE_URL=http://127.0.0.1:$llm_port/v1")
: >"$work/agent-runtime.env"
chmod 0644 "$work/agent-runtime.env"
# The unit's seccomp settings as systemd applies them (ops/sandbox-exec.py),
# from copies the unprivileged user can read.
install -m 0755 "$here/sandbox-exec.py" "$work/sandbox-exec.py"
install -m 0644 "$unit" "$work/agent-runtime.service"
probe=$(env -i PATH=/usr/bin:/bin setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs \
    /usr/bin/python3 "$work/sandbox-exec.py" "$work/agent-runtime.service" --self-test 2>&1) \
    || fail "the sandbox does not refuse what the unit forbids: $probe"
say "sandbox self-test: W^X mapping, AF_NETLINK and setuid refused as the unit would: ${probe//$'\n'/ }"
log="$work/serve.log"
(
    cd "$data"
    umask "$umask_value"
    exec env -i PATH=/usr/bin:/bin HOME="$work/home" "${env_args[@]}" \
        setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs \
        /usr/bin/python3 "$work/sandbox-exec.py" "$work/agent-runtime.service" "$work/agent-runtime" serve
) >"$log" 2>&1 &
daemon_pid=$!
ready=
for _ in $(seq 1 100); do
    if AGENT_RUNTIME_HEALTH_ADDR=127.0.0.1:$probe_port "$here/healthcheck.sh" 2>/dev/null; then ready=1; break; fi
    kill -0 "$daemon_pid" 2>/dev/null || fail "the daemon exited at start: $(cat "$log")"
    sleep 0.1
done
[[ -n $ready ]] || fail "no /readyz within 10 s: $(cat "$log")"
status=/proc/$daemon_pid/status
grep -q '^NoNewPrivs:[[:space:]]*1' "$status" || fail "no_new_privs is not set"
grep -q '^CapEff:[[:space:]]*0000000000000000' "$status" || fail "the daemon has capabilities"
grep -qa '^AGENT_RUNTIME_MALLOC_TUNED=1$' <(tr '\0' '\n' <"/proc/$daemon_pid/environ") \
    || fail "the daemon did not re-execute itself with GLIBC_TUNABLES: $(cat "$log")"
recorded=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$data/agent-runtime/serve.json")
[[ $recorded == "$daemon_pid" ]] || fail "serve.json records pid $recorded, not the started $daemon_pid: the PID changed"
say "daemon: ready as uid 65534 without capabilities, with no_new_privs; re-executed with the same PID $daemon_pid"
say "daemon: $(grep -m1 '^sandbox-exec:' "$log")"
reply=$(env -i PATH=/usr/bin:/bin AGENT_RUNTIME_DATA_DIR="$data" "$work/agent-runtime" chat -m ping 2>&1) \
    || fail "a chat turn failed: $reply $(cat "$log")"
[[ $reply == *"pong from the fake model"* ]] || fail "the agent's turn did not reach the model: $reply"
say "daemon: a chat turn called the model over HTTP from inside the sandbox (watcher and index on)"
loose=$(find "$data" -perm /077 -printf '%m %p\n')
[[ -z $loose ]] || fail "with UMask=$umask_value these are readable by others: $loose"
say "daemon: every file it created is private (UMask=$umask_value)"
kill -HUP "$daemon_pid"
for _ in $(seq 1 50); do grep -q 'SIGHUP: reloaded the admin TLS certificates' "$log" && break; sleep 0.1; done
grep -q 'SIGHUP: reloaded the admin TLS certificates' "$log" || fail "no reload after SIGHUP: $(cat "$log")"
kill -0 "$daemon_pid" 2>/dev/null || fail "SIGHUP stopped the daemon"
AGENT_RUNTIME_HEALTH_ADDR=127.0.0.1:$probe_port "$here/healthcheck.sh" || fail "not ready after SIGHUP"
say "daemon: ExecReload (SIGHUP) re-read the TLS files and it kept serving"
kill -TERM "$daemon_pid"
rc=0
wait "$daemon_pid" || rc=$?
daemon_pid=
[[ $rc -eq 0 ]] || fail "SIGTERM: exit $rc, not 0: $(cat "$log")"
say "daemon: SIGTERM drained and exited 0"
# Something the sandbox refused and the daemon only logged would show here.
if grep -E ' ERROR |Operation not permitted|os error 1\)|Address family not supported' "$log"; then
    fail "the daemon logged errors under the sandbox (above)"
fi
say "daemon: no error in its log"
