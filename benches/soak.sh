#!/usr/bin/env bash
# Soak: moderate mixed load on one cobrowse process for a long time (30
# minutes by default), then checks that its memory and descriptors come back
# flat once the load stops.
#
# Load: page loops (curl) through the proxy against the bundled demo site,
# and hub sessions from examples/load.rs (customers call, operators
# respond, typing, scrolling, pointer and drawing both ways, a second tab
# joins, hang-ups and new calls in cycles).
#
# Reports the process's RSS, open files and sockets at start, every minute
# and at the end (after the load stopped and the idle timeouts passed), the
# page loops' request counts and the hub's delivery latency. Exits non-zero
# when the descriptors do not come back to their start or the resident
# memory grew by more than SOAK_MAX_GROWTH_MIB over the first minute's.
# Not a test: numbers depend on the machine and its load.
#
#   benches/soak.sh [minutes, default 30]
#   SOAK_MINUTES=5 SOAK_SESSIONS=8 SOAK_RATE=10 SOAK_PAGE_LOOPS=4 benches/soak.sh
#   COBROWSE_BIN=target/release/cobrowse LOAD_BIN=target/release/examples/load benches/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${1:-${SOAK_MINUTES:-30}}
SESSIONS=${SOAK_SESSIONS:-8}
RATE=${SOAK_RATE:-10}          # commands per second per participant
CYCLE=${SOAK_CYCLE:-30}        # seconds a session lasts before its hang-up
PAGE_LOOPS=${SOAK_PAGE_LOOPS:-4}
PAGE_PAUSE=${SOAK_PAGE_PAUSE:-0.1}  # seconds between one loop's requests
# Seconds of quiet before the final reading: past the upstream client's
# idle pool timeout (90 s, checked every 90 s, so up to 180 s), so its
# keep-alive connections are closed too.
SETTLE=${SOAK_SETTLE:-200}
MAX_GROWTH_MIB=${SOAK_MAX_GROWTH_MIB:-32}
PORT=${SOAK_PORT:-18090}
PASSWORD=soak-password

case $MINUTES in
    '' | *[!0-9.]*) echo "minutes must be a number, got '$MINUTES'" >&2; exit 2 ;;
esac
SECONDS_TOTAL=$(awk "BEGIN { printf \"%d\", $MINUTES * 60 }")
((SECONDS_TOTAL > 0)) || { echo "the duration must be positive" >&2; exit 2; }
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }

COBROWSE_BIN=${COBROWSE_BIN:-}
LOAD_BIN=${LOAD_BIN:-}
if [ -z "$COBROWSE_BIN" ] || [ -z "$LOAD_BIN" ]; then
    cargo build --release --quiet --bin cobrowse --example load
    COBROWSE_BIN=${COBROWSE_BIN:-target/release/cobrowse}
    LOAD_BIN=${LOAD_BIN:-target/release/examples/load}
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

hash=$(printf '%s' "$PASSWORD" | "$COBROWSE_BIN" hash-password)
{
    printf 'listen = "127.0.0.1:%s"\n[demo]\nenabled = true\n' "$PORT"
    for i in $(seq 1 "$SESSIONS"); do
        printf '[[operators]]\nuser = "load%s"\nname = "Load operator %s"\npassword_hash = "%s"\n' "$i" "$i" "$hash"
    done
} > "$work/proxy.toml"
"$COBROWSE_BIN" check --config "$work/proxy.toml" >/dev/null

"$COBROWSE_BIN" --config "$work/proxy.toml" > "$work/cobrowse.log" 2>&1 &
server=$!
pids+=("$server")
for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/__cobrowse/healthz" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$work/cobrowse.log" >&2; exit 1; }
    sleep 0.1
done

# rss_kib fds sockets established
reading() {
    local rss fds sockets conns
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$server/status")
    fds=$(find "/proc/$server/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    sockets=$(find "/proc/$server/fd" -mindepth 1 -maxdepth 1 -lname 'socket:*' 2>/dev/null | wc -l)
    conns=$(ss -Htn state established "( sport = :$PORT )" 2>/dev/null | wc -l)
    echo "$rss $fds $sockets $conns"
}
report() {
    local label=$1 r
    read -r -a r <<< "$(reading)"
    printf '%-14s rss %7.1f MiB  open files %5d  sockets %5d  client connections %5d\n' \
        "$label" "$(awk "BEGIN { print ${r[0]} / 1024 }")" "${r[1]}" "${r[2]}" "${r[3]}"
}

echo "soak: $MINUTES min, $SESSIONS sessions at $RATE commands/s per participant, $PAGE_LOOPS page loops; $(nproc) cores"
read -r -a start <<< "$(reading)"
report "start"

# Page loops: every demo page and the stylesheet, in turn.
pages=(/ /form.html /controls.html /frames.html /long.html /component.html /app/ /style.css)
end_at=$(($(date +%s) + SECONDS_TOTAL))
for l in $(seq 1 "$PAGE_LOOPS"); do
    (
        n=0
        bad=0
        while (($(date +%s) < end_at)); do
            for p in "${pages[@]}"; do
                code=$(curl -s -o /dev/null -w '%{http_code}' --compressed "http://127.0.0.1:$PORT$p" || echo 000)
                n=$((n + 1))
                [ "$code" = 200 ] || bad=$((bad + 1))
                sleep "$PAGE_PAUSE"
            done
        done
        echo "$n $bad" > "$work/pages.$l"
    ) &
    pids+=($!)
done

"$LOAD_BIN" --addr "127.0.0.1:$PORT" --sessions "$SESSIONS" --rate "$RATE" --cycle "$CYCLE" \
    --duration "$SECONDS_TOTAL" --operator-prefix load --password "$PASSWORD" > "$work/load.log" 2>&1 &
load=$!
pids+=("$load")

minute=0
first_minute_rss=""
while (($(date +%s) < end_at)); do
    sleep $((end_at - $(date +%s) < 60 ? end_at - $(date +%s) : 60)) || true
    kill -0 "$server" 2>/dev/null || { echo "cobrowse exited" >&2; tail -50 "$work/cobrowse.log" >&2; exit 1; }
    minute=$((minute + 1))
    report "minute $minute"
    [ -n "$first_minute_rss" ] || first_minute_rss=$(reading | cut -d' ' -f1)
done

load_status=0
wait "$load" || load_status=$?
for l in $(seq 1 "$PAGE_LOOPS"); do
    while [ ! -s "$work/pages.$l" ]; do sleep 0.2; done
done
report "load stopped"
sleep "$SETTLE"
read -r -a final <<< "$(reading)"
report "after ${SETTLE}s idle"

requests=$(cat "$work"/pages.* | awk '{ n += $1; bad += $2 } END { print n, bad }')
echo "pages: ${requests% *} requests, ${requests#* } not 200"
echo "hub:   $(grep '^total' "$work/load.log" || echo 'no total')"
grep -E 'stopped|error' "$work/load.log" | sort | uniq -c | sort -rn | head -5 || true
warnings=$(grep -c -E 'WARN|ERROR' "$work/cobrowse.log" || true)
echo "cobrowse log: $warnings warnings and errors"
grep -E 'WARN|ERROR' "$work/cobrowse.log" | sed -E 's/^[^ ]+ +//' | cut -c1-160 | sort | uniq -c | sort -rn | head -5 || true

verdict=0
growth_kib=$((final[0] - ${first_minute_rss:-${start[0]}}))
if ((growth_kib > MAX_GROWTH_MIB * 1024)); then
    echo "NOT FLAT: resident memory grew by $((growth_kib / 1024)) MiB after the first minute (limit $MAX_GROWTH_MIB MiB)"
    verdict=1
fi
if ((final[1] > start[1] + 2 || final[2] > start[2] + 2)); then
    echo "NOT FLAT: open files ${start[1]} -> ${final[1]}, sockets ${start[2]} -> ${final[2]}"
    verdict=1
fi
((load_status == 0)) || { echo "the load generator failed ($load_status)"; tail -20 "$work/load.log"; verdict=1; }
((verdict == 0)) && echo "flat: memory and descriptors came back after the load"
exit "$verdict"
