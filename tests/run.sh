#!/usr/bin/env bash
# The project's test command: installs what the tests need and is missing
# (Debian's chromium for the browser tests, redis-server for the Redis
# store's, nginx as the load balancer of the cluster's), checks formatting
# and lints, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

source tests/need.sh
need tests/run.sh chromium redis-server nginx

# The code is formatted and lint-free before anything runs (rustup's
# rustfmt and clippy components; a toolchain without them is told so).
if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --check
else
    echo "tests/run.sh: rustfmt is not installed (rustup component add rustfmt); formatting not checked" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --locked --all-targets -- -D warnings
else
    echo "tests/run.sh: clippy is not installed (rustup component add clippy); lints not checked" >&2
fi

# The whole suite; the last line sums every test binary's result.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
