#!/usr/bin/env bash
# cobrowse against nginx's sub_filter, both in front of the same static nginx
# serving the catalogue fixture (82 KB, ~1,000 absolute links to the
# upstream). nginx injects the agent tag after <head> and replaces the
# upstream origin everywhere; cobrowse does the full rewrite. Reports the
# median requests/s of several wrk runs for each, and the ratio.
#
# Installs nginx and wrk from Debian when missing (needs root). Builds the
# release binary. Not a test: numbers depend on the machine and its load.
#
#   benches/vs-nginx.sh [seconds per run, default 5] [runs, default 3]
#   COBROWSE_BIN=path/to/cobrowse benches/vs-nginx.sh   (skip the build)
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${1:-5}
RUNS=${2:-3}
CONNECTIONS=32
UPSTREAM_PORT=18081
NGINX_PORT=18082
COBROWSE_PORT=18083

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "needs: ${missing[*]} (sudo apt-get install -y ${missing[*]})" >&2
        exit 1
    fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# COBROWSE_BIN: a binary already built, to skip the release build.
COBROWSE_BIN=${COBROWSE_BIN:-}
if [ -z "$COBROWSE_BIN" ]; then
    cargo build --release --quiet --bin cobrowse
    COBROWSE_BIN=target/release/cobrowse
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/www" "$work/logs"
sed "s#https://shop.example#http://127.0.0.1:$UPSTREAM_PORT#g" tests/fixtures/proxy/catalogue.html > "$work/www/index.html"
chmod -R a+rX "$work"
# As root, nginx's workers would run as nobody and could not use the
# scratch directory.
run_as=""
[ "$(id -u)" = 0 ] && run_as="user root;"
cat > "$work/nginx.conf" <<CONF
$run_as
worker_processes auto;
pid $work/nginx.pid;
error_log $work/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type text/html;
    client_body_temp_path $work/tmp-body;
    proxy_temp_path $work/tmp-proxy;
    fastcgi_temp_path $work/tmp-fcgi;
    uwsgi_temp_path $work/tmp-uwsgi;
    scgi_temp_path $work/tmp-scgi;
    upstream static { server 127.0.0.1:$UPSTREAM_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        root $work/www;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://static;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Accept-Encoding "";
            sub_filter_once off;
            sub_filter '<head>' '<head><script src="/__cobrowse/agent.js"></script>';
            sub_filter 'http://127.0.0.1:$UPSTREAM_PORT' 'http://127.0.0.1:$NGINX_PORT';
        }
    }
}
CONF
"$NGINX" -p "$work" -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)
RUST_LOG=warn "$COBROWSE_BIN" --upstream "http://127.0.0.1:$UPSTREAM_PORT" --listen "127.0.0.1:$COBROWSE_PORT" >"$work/logs/cobrowse.log" 2>&1 &
pids+=($!)

for port in $UPSTREAM_PORT $NGINX_PORT $COBROWSE_PORT; do
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
        sleep 0.1
    done
done
check() {
    local body
    body=$(curl -fs "http://127.0.0.1:$1/")
    grep -q '/__cobrowse/agent.js' <<<"$body" || { echo "port $1: no agent in the page" >&2; exit 1; }
    grep -q "http://127.0.0.1:$1/product/1\"" <<<"$body" || { echo "port $1: links not mapped" >&2; exit 1; }
}
check $NGINX_PORT
check $COBROWSE_PORT

median_rps() {
    local port=$1 results=()
    for _ in $(seq "$RUNS"); do
        results+=("$(wrk -t2 -c$CONNECTIONS -d"${SECONDS_PER_RUN}s" "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')")
    done
    printf '%s\n' "${results[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

echo "page: $(wc -c <"$work/www/index.html") bytes; wrk -t2 -c$CONNECTIONS, $RUNS runs of ${SECONDS_PER_RUN}s, median requests/s"
static=$(median_rps $UPSTREAM_PORT)
nginx=$(median_rps $NGINX_PORT)
cobrowse=$(median_rps $COBROWSE_PORT)
printf '%-34s %10s\n' "static nginx (the upstream)" "$static" "nginx sub_filter proxy" "$nginx" "cobrowse proxy" "$cobrowse"
awk -v c="$cobrowse" -v n="$nginx" 'BEGIN { printf "cobrowse / nginx sub_filter: %.2f\n", c / n }'
