#!/usr/bin/env bash
# Starts a cobrowse cluster on this machine, from a fresh clone, with one
# command: Redis (redis.conf), two nodes (node1.toml, node2.toml) fronting
# the bundled demo site, and nginx as the load balancer (nginx.conf).
# Prints the URLs; Ctrl-C stops everything.
#
#   examples/cluster/run.sh
#   COBROWSE_BIN=target/release/cobrowse examples/cluster/run.sh   (skip the build)
#
# Builds the release binary with cargo. Needs redis-server and nginx: run
# as root on Debian or Ubuntu it installs what is missing with apt-get (as
# tests/run.sh does) and says so; otherwise it prints the command to run.
# Logs, pid files and Redis's data are in examples/cluster/run/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
run="$here/run"

# --- what it needs --------------------------------------------------------
source "$root/tests/need.sh"
need examples/cluster/run.sh redis-server nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# The addresses the configuration files use: nothing else may hold them.
PORTS="6390 8080 8081 8180 8181 8280 8281"
for port in $PORTS; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "run.sh: port $port is in use on 127.0.0.1; the cluster needs $PORTS" >&2
        exit 1
    fi
done

COBROWSE_BIN=${COBROWSE_BIN:-}
if [ -z "$COBROWSE_BIN" ]; then
    echo "run.sh: building cobrowse (cargo build --release)"
    (cd "$root" && cargo build --release --locked --quiet --bin cobrowse)
    COBROWSE_BIN="$root/target/release/cobrowse"
fi

mkdir -p "$run"
pids=()
names=()
stop() {
    trap - INT TERM EXIT
    ((${#pids[@]})) || return 0
    echo
    echo "run.sh: stopping"
    # The balancer first, then the nodes (each hands over or ends what it
    # holds), Redis last so the nodes can write to it while they stop.
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    rm -f "$run"/*.pid
}
trap stop EXIT
trap 'stop; exit 130' INT TERM

# start NAME COMMAND... : runs it in the background, output to run/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$run/$name.log" 2>&1 &
    pids+=($!)
    names+=("$name")
    echo $! >"$run/$name.pid"
}

# until_ok WHAT COMMAND... : waits up to 60 s for COMMAND to succeed.
until_ok() {
    local what=$1
    shift
    for _ in $(seq 600); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "run.sh: $what did not come up; its log is in $run" >&2
    exit 1
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start redis redis-server "$here/redis.conf" --dir "$run"
until_ok "redis-server" listening 6390

# Node 1 first: it takes the lead; node 2 then joins as a follower of the
# lease (either may lead later).
start node1 "$COBROWSE_BIN" --config "$here/node1.toml"
until_ok "node 1" listening 8181
start node2 "$COBROWSE_BIN" --config "$here/node2.toml"
until_ok "node 2" listening 8281

run_as=()
[ "$(id -u)" = 0 ] && run_as=(-g "daemon off; user root;")
((${#run_as[@]})) || run_as=(-g "daemon off;")
start nginx "$NGINX" -p "$run" -c "$here/nginx.conf" -e "$run/nginx-error.log" "${run_as[@]}"
until_ok "nginx" listening 8081

cat <<TEXT

cobrowse cluster: two nodes behind nginx, sharing Redis
  customer:          http://127.0.0.1:8080/
  operator console:  http://127.0.0.1:8081/__cobrowse/console
  demo operator:     user \`demo\`, password \`demo\`
  nodes:             127.0.0.1:8180 (console 8181), 127.0.0.1:8280 (console 8281)
  redis:             127.0.0.1:6390 (data in $run)
  logs:              $run/{node1,node2,nginx,redis}.log

Try a failover: kill -9 \$(cat $run/node1.pid)
Ctrl-C stops everything.
TEXT

# Runs until Ctrl-C; says when one of the processes ends on its own (a node
# killed for a failover test leaves the others running).
while ((${#pids[@]})); do
    wait -n "${pids[@]}" 2>/dev/null || true
    alive_pids=()
    alive_names=()
    for i in "${!pids[@]}"; do
        if kill -0 "${pids[i]}" 2>/dev/null; then
            alive_pids+=("${pids[i]}")
            alive_names+=("${names[i]}")
        else
            echo "run.sh: ${names[i]} exited (its log: $run/${names[i]}.log)"
        fi
    done
    pids=("${alive_pids[@]}")
    names=("${alive_names[@]}")
done
