#!/usr/bin/env bash
# What the sessions in a cluster's Redis take: the sum of `MEMORY USAGE`
# over each session's keys (those carrying its id as the hash tag `{S}`),
# split into the stored commands, the hub's checkpoint (the session and its
# chat) and the driver's kept documents; then the keys of no session, and
# Redis's own `used_memory`. Not a test: run it against a cluster with live
# sessions (examples/cluster/run.sh; docs/scale-out.md, "Sizing Redis per
# session").
#
#   benches/session-size.sh                      # the example cluster's Redis
#   REDIS="-h 10.0.0.5 -p 6379" PREFIX=cobrowse: benches/session-size.sh
set -euo pipefail

read -r -a redis <<<"${REDIS:--p 6390}"
prefix=${PREFIX:-cobrowse:}
command -v redis-cli >/dev/null || { echo "needs redis-cli (sudo apt-get install -y redis-tools)" >&2; exit 1; }

cli() { redis-cli "${redis[@]}" "$@"; }

# key -> bytes, one line each ("bytes key").
cli --scan --pattern "${prefix}*" | while IFS= read -r key; do
    printf '%s %s\n' "$(cli MEMORY USAGE "$key" SAMPLES 0)" "$key"
done | awk -v prefix="$prefix" '
    {
        bytes = $1; key = substr($0, length($1) + 2)
        rest = substr(key, length(prefix) + 1)
        if (rest ~ /^\{[^}]*\}:/) {
            sid = substr(rest, 2, index(rest, "}") - 2)
            part = substr(rest, index(rest, "}") + 2)
            kind = part ~ /^driver:/ ? "documents" : (part ~ /^(hub|chat)$/ ? "hub" : "commands")
            total[sid] += bytes; by[sid, kind] += bytes; keys[sid]++
        } else {
            other += bytes; others++
            printf "  %-40s %8d bytes (no session)\n", key, bytes
        }
    }
    END {
        n = 0
        for (sid in total) {
            n++; sum += total[sid]
            printf "session %s: %d bytes in %d keys (commands %d, hub %d, documents %d)\n", \
                sid, total[sid], keys[sid], by[sid, "commands"], by[sid, "hub"], by[sid, "documents"]
        }
        if (n) printf "%d session(s): %d bytes, %.0f bytes per session\n", n, sum, sum / n
        else print "no session in Redis"
        printf "keys of no session: %d bytes in %d keys\n", other, others
    }'
cli INFO memory | awk -F: '/^used_memory:|^used_memory_human:/ { gsub(/\r/, ""); print "redis " $1 ": " $2 }'
