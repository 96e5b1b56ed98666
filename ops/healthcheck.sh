#!/bin/bash
# The container's HEALTHCHECK (ops/Dockerfile): GET /readyz on the plain
# probe listener (AGENT_RUNTIME_HEALTH_ADDR, loopback inside the container)
# and succeed only on HTTP 200, i.e. the daemon answers and its database
# does. No curl in the image: bash's /dev/tcp. The admin API itself needs a
# client certificate, so it is not used here.
set -u
addr=${AGENT_RUNTIME_HEALTH_ADDR:-}
if [[ -z $addr ]]; then
    echo "AGENT_RUNTIME_HEALTH_ADDR is not set: no probe listener to ask" >&2
    exit 1
fi
host=${addr%:*}
host=${host#[}
host=${host%]}
port=${addr##*:}
if ! { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null; then
    echo "cannot connect to the probe listener at $addr" >&2
    exit 1
fi
printf 'GET /readyz HTTP/1.0\r\nHost: %s\r\n\r\n' "$addr" >&3
status=
IFS= read -r -t 4 status <&3 || true
exec 3<&-
if [[ $status =~ ^HTTP/1\.[01]\ 200 ]]; then
    exit 0
fi
echo "not ready: ${status:-no answer} from $addr/readyz" >&2
exit 1
