#!/usr/bin/env bash
# Cross-node vs same-node delivery latency (issue 5): two release-built nodes on 127.0.0.1
# sharing Postgres and Redis, then bench/cross_node_latency.mjs three times. Prints each run's
# JSON line and summary. Usage: bench/cross-node.sh [messages] [rate]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
[ -d tests/js/node_modules ] || (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

DB=huddle_bench_cross_node
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB REDIS_URL=redis://127.0.0.1:6379
export JWT_SECRET=bench-secret-bench-secret-bench-secret-0 AUTH_RATE=0 MESSAGE_RATE=0 ROOM_EVENT_RATE=0 ROOMS_PER_HOUR=0 MAX_SOCKETS_PER_USER=100000 MAX_ROOMS_PER_SOCKET=100000 HOST=127.0.0.1 RUST_LOG=warn
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  psql -q postgres://postgres@127.0.0.1:5432/postgres -c "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
PORT=3301 target/release/huddle & pids+=($!)
until curl -sf localhost:3301/readyz >/dev/null; do sleep 0.2; done
PORT=3302 target/release/huddle & pids+=($!)
until curl -sf localhost:3302/readyz >/dev/null; do sleep 0.2; done

for run in 1 2 3; do
  echo "run $run"
  node bench/cross_node_latency.mjs http://127.0.0.1:3301 http://127.0.0.1:3302 "${1:-2000}" "${2:-200}"
done
