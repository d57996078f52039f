#!/usr/bin/env bash
# Three Huddle nodes on one machine, routing the bus by room (issue 16): four measurements, each
# RUNS times, in one sitting.
#
#   bench/scale.sh                                  # ENGINE=redis, RUNS=3, all four
#   ENGINE=cluster BASELINE=../base/target/release/huddle bench/scale.sh
#
# 1. bus      fanout --placement local: BUS_ROOMS_PER_NODE rooms per node, each room's members
#             and its sender on one node, BUS_RATE msg/s in all; every node's
#             huddle_bus_received_total / huddle_bus_published_total per message sent, for
#             BASELINE (if set) and the new build. Target: each node receives at most 1/10 of
#             what it receives on BASELINE.
# 2. conn     connections: CONN_PER_NODE idle sockets on one node (the other two idle), then
#             3 x CONN_PER_NODE over the three nodes (--processes 3), each on fresh nodes, the
#             users registered on a fourth process (argon2's memory stays in a server's RSS).
#             Target: RSS per socket no worse than with one node (both summed over the three
#             nodes; the first node's own figure is printed too).
# 3. fanout   one room of FAN_MEMBERS members spread over the three nodes, the sender on the
#             first, FAN_RATE msg/s. Target: delivery p99 <= 50 ms, nothing lost.
# 4. cross    one room of CROSS_MEMBERS members over the three nodes at CROSS_RATE msg/s (light
#             load): receivers on the sender's node vs the others (also run on BASELINE if set).
#             Target: cross-node p99 at most 2 ms above same-node.
#
# Every measurement starts three fresh nodes (a database of their own, dropped afterwards, whose
# name also gives their Redis prefix) with the per-user limits off as in compare.sh. ENGINE=redis
# puts them on REDIS_URL (default redis://127.0.0.1:6379); ENGINE=cluster on a Redis Cluster of
# this script's own (3 masters on free ports, REDIS_CLUSTER_URLS). BASELINE, a build of before
# the change, cannot use a cluster: it always runs on REDIS_URL. HUDDLE_BIN is the new build
# (default: cargo build --release, target/release/huddle); both binaries are copied first, so a
# rebuild meanwhile changes nothing. Results: bench/results/scale-<time>.jsonl, one line
# {"measure", "binary", "engine", "run", "result"} per bench run; the medians and the targets
# are printed at the end (bench/scale_summary.py <file> prints them again). ONLY=bus,cross runs
# a subset; the sizes below can be set from the environment (e.g. CONN_PER_NODE=1000 for a
# quick try). Node logs: target/scale-node-*.log; the bench's stderr: target/scale-bench.err.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
ENGINE=${ENGINE:-redis}
ONLY=${ONLY:-bus,conn,fanout,cross}
BASELINE=${BASELINE:-}
HUDDLE_BIN=${HUDDLE_BIN:-}
SHARED_REDIS=${REDIS_URL:-redis://127.0.0.1:6379}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
DURATION=${DURATION:-10}
# Fresh nodes showed a few ~100 ms acks in their first seconds of messages (with 2 s of
# warm-up, the delivery p99 of a 20 msg/s run was 60-110 ms; with 10 s, 10 ms): warm up longer.
WARMUP=${WARMUP:-10}
BUS_ROOMS_PER_NODE=${BUS_ROOMS_PER_NODE:-10}
BUS_MEMBERS=${BUS_MEMBERS:-10}
BUS_RATE=${BUS_RATE:-300}
CONN_PER_NODE=${CONN_PER_NODE:-15000}
CONN_USERS=${CONN_USERS:-20}
CONN_SOURCES=${CONN_SOURCES:-4}
CONN_HOLD=${CONN_HOLD:-5}
FAN_MEMBERS=${FAN_MEMBERS:-3000}
FAN_RATE=${FAN_RATE:-20}
FAN_POOL=${FAN_POOL:-30}
CROSS_MEMBERS=${CROSS_MEMBERS:-30}
CROSS_RATE=${CROSS_RATE:-200}
USER_POOL=${USER_POOL:-20}

case $ENGINE in
  redis) ;;
  cluster)
    grep -q REDIS_CLUSTER_URLS src/config.rs ||
      { echo "ENGINE=cluster: this build has no REDIS_CLUSTER_URLS" >&2; exit 2; } ;;
  *) echo "ENGINE must be redis or cluster" >&2; exit 2 ;;
esac
[ -z "$BASELINE" ] || [ -x "$BASELINE" ] || { echo "BASELINE=$BASELINE is not executable" >&2; exit 2; }

# Each node holds up to CONN_PER_NODE sockets and each bench process up to as many: as many
# open files as allowed, at most 20,000.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 20000 ]; then ulimit -n 20000; else ulimit -n "$hard"; fi
if [ "$CONN_PER_NODE" -gt $(($(ulimit -n) - 200)) ]; then
  echo "CONN_PER_NODE=$CONN_PER_NODE does not fit ulimit -n $(ulimit -n)" >&2
  exit 2
fi

if [ -z "$HUDDLE_BIN" ]; then
  cargo build --release --quiet -p huddle -p huddle-bench
  HUDDLE_BIN=target/release/huddle
else
  cargo build --release --quiet -p huddle-bench
fi
TMP=$(mktemp -d /tmp/huddle-scale.XXXXXX)
cp "$HUDDLE_BIN" "$TMP/huddle-new"
[ -z "$BASELINE" ] || cp "$BASELINE" "$TMP/huddle-baseline"
cp target/release/huddle-bench "$TMP/huddle-bench"
BENCH=$TMP/huddle-bench
mkdir -p bench/results
OUT=bench/results/scale-$(date -u +%Y%m%dT%H%M%SZ).jsonl

node_pids=() redis_pids=() redis_ports=() DB="" seq=0 CLUSTER_URLS="" REG_URL=""
stop_nodes() {
  local p
  for p in "${node_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${node_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  node_pids=()
  if [ -n "$DB" ]; then
    psql -q $PG/postgres -c "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
    DB=""
  fi
}
cleanup() {
  local p
  stop_nodes
  for p in "${redis_ports[@]}"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
  for p in "${redis_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${redis_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# N free TCP ports of 127.0.0.1 (with ANCHOR=10000: whose port + 10000 is free too, for a
# Redis Cluster's bus port).
free_ports() {
  python3 - "$1" "${2:-0}" <<'PY'
import random, socket, sys
n, plus = int(sys.argv[1]), int(sys.argv[2])
held, ports = [], []
while len(ports) < n:
    p = random.randrange(20000, 30000)
    try:
        for q in {p, p + plus}:
            s = socket.socket()
            s.bind(("127.0.0.1", q))
            held.append(s)
        ports.append(p)
    except OSError:
        pass
print(" ".join(map(str, ports)))
PY
}

start_cluster() {
  local p ok=0
  read -ra redis_ports <<<"$(free_ports 3 10000)"
  for p in "${redis_ports[@]}"; do
    redis-server --port "$p" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" \
      --cluster-enabled yes --cluster-config-file "nodes-$p.conf" --cluster-node-timeout 1000 \
      >"$TMP/redis-$p.log" 2>&1 &
    redis_pids+=($!)
  done
  for p in "${redis_ports[@]}"; do
    until redis-cli -p "$p" ping >/dev/null 2>&1; do sleep 0.1; done
  done
  redis-cli --cluster create $(printf '127.0.0.1:%s ' "${redis_ports[@]}") \
    --cluster-replicas 0 --cluster-yes >"$TMP/cluster-create.log" 2>&1
  for _ in $(seq 100); do
    ok=1
    for p in "${redis_ports[@]}"; do
      redis-cli -p "$p" cluster info | grep -q '^cluster_state:ok' || ok=0
    done
    [ $ok = 1 ] && break
    sleep 0.2
  done
  [ $ok = 1 ] || { echo "the Redis Cluster did not reach cluster_state:ok" >&2; exit 1; }
  CLUSTER_URLS=$(printf 'redis://127.0.0.1:%s,' "${redis_ports[@]}")
  CLUSTER_URLS=${CLUSTER_URLS%,}
  echo "Redis Cluster: $CLUSTER_URLS"
}

# Three fresh nodes of binary $1 (new or baseline) on a database of their own; sets URLS, PIDS.
# With $2 = registrar, also a fourth process on the same database, on no bus (not one of the
# nodes), at REG_URL: where `connections` registers its users, since a server keeps the memory
# of argon2's hashes (~300 MB after 20 registrations) and new sockets may reuse it.
start_nodes() {
  local bin=$TMP/huddle-$1 engine_env i p ready
  stop_nodes
  seq=$((seq + 1))
  DB=huddle_scale_$$_$seq
  if [ "$1" = new ] && [ "$ENGINE" = cluster ]; then
    engine_env=(REDIS_CLUSTER_URLS=$CLUSTER_URLS)
  else
    engine_env=(REDIS_URL=$SHARED_REDIS)
  fi
  read -ra ports <<<"$(free_ports 3)"
  for i in 0 1 2; do
    echo "== $(date -u +%FT%TZ) $1 ($ENGINE) on :${ports[$i]}, database $DB" >>"target/scale-node-$((i + 1)).log"
    env -u REDIS_URL -u REDIS_CLUSTER_URLS -u REDIS_PREFIX -u DATABASE_URL \
      JWT_SECRET=bench-secret-bench-secret-bench-secret-0 AUTH_RATE=0 MESSAGE_RATE=0 \
      ROOM_EVENT_RATE=0 ROOMS_PER_HOUR=0 MAX_SOCKETS_PER_USER=100000 \
      MAX_ROOMS_PER_SOCKET=100000 HOST=127.0.0.1 RUST_LOG=warn "${engine_env[@]}" \
      DATABASE_URL=$PG/$DB PORT="${ports[$i]}" \
      "$bin" >>"target/scale-node-$((i + 1)).log" 2>&1 &
    node_pids+=($!)
    # The first node creates the database and runs the migrations alone.
    if [ $i = 0 ] || [ $i = 2 ]; then
      for p in "${ports[@]:0:$((i + 1))}"; do
        ready=0
        for _ in $(seq 300); do
          curl -sf "127.0.0.1:$p/readyz" >/dev/null && { ready=1; break; }
          sleep 0.2
        done
        [ $ready = 1 ] || { echo "node on :$p not ready; see target/scale-node-*.log" >&2; exit 1; }
      done
    fi
  done
  if [ "${2:-}" = registrar ]; then
    read -r p <<<"$(free_ports 1)"
    env -u REDIS_URL -u REDIS_CLUSTER_URLS -u REDIS_PREFIX -u DATABASE_URL \
      JWT_SECRET=bench-secret-bench-secret-bench-secret-0 AUTH_RATE=0 HOST=127.0.0.1 \
      RUST_LOG=warn DATABASE_URL=$PG/$DB PORT="$p" \
      "$bin" >>target/scale-node-registrar.log 2>&1 &
    node_pids+=($!)
    until curl -sf "127.0.0.1:$p/readyz" >/dev/null; do sleep 0.2; done
    REG_URL=http://127.0.0.1:$p
  fi
  URLS=$(printf 'http://127.0.0.1:%s,' "${ports[@]}")
  URLS=${URLS%,}
  PIDS=$(IFS=,; echo "${node_pids[*]:0:3}")
}

measure() { # measure binary run, then huddle-bench arguments
  local m=$1 bin=$2 run=$3 out line rc=0
  shift 3
  out=$($BENCH "$@" 2>"$TMP/bench.err") || rc=$?
  { echo "== $m run $run $bin: huddle-bench $*"; cat "$TMP/bench.err"; } >>target/scale-bench.err
  line=${out%%$'\n'*}
  if [[ $line != \{* ]]; then
    echo "$m run $run $bin: FAILED (exit $rc): $(grep -m 1 -A 3 '^Error' "$TMP/bench.err" | tr -s '\n ' ' ')"
    return 0
  fi
  echo "{\"measure\":\"$m\",\"binary\":\"$bin\",\"engine\":\"$ENGINE\",\"run\":$run,\"result\":$line}" >>"$OUT"
  echo "$m run $run $bin: $(python3 bench/scale_summary.py --one "$m" <<<"$line")"
}

has() { [[ ",$ONLY," == *",$1,"* ]]; }
: >target/scale-bench.err
[ "$ENGINE" != cluster ] || start_cluster
binaries=(new)
[ -z "$BASELINE" ] || binaries=(baseline new)
timing=(--duration "$DURATION" --warmup "$WARMUP")

for run in $(seq 1 "$RUNS"); do
  if has bus; then
    for bin in "${binaries[@]}"; do
      start_nodes "$bin"
      measure bus "$bin" "$run" fanout --url "$URLS" --server-pid "$PIDS" --placement local \
        --rooms $((3 * BUS_ROOMS_PER_NODE)) --members "$BUS_MEMBERS" --rate "$BUS_RATE" \
        --user-pool "$USER_POOL" "${timing[@]}"
    done
  fi
  if has conn; then
    start_nodes new registrar
    # RSS summed over the three nodes here too (the idle two answer the first's questions).
    measure conn-1node new "$run" connections --url "${URLS%%,*}" --server-pid "$PIDS" \
      --register-url "$REG_URL" --count "$CONN_PER_NODE" --users "$CONN_USERS" \
      --sources "$CONN_SOURCES" --hold "$CONN_HOLD"
    start_nodes new registrar
    measure conn-3nodes new "$run" connections --url "$URLS" --server-pid "$PIDS" \
      --register-url "$REG_URL" --count $((3 * CONN_PER_NODE)) --processes 3 \
      --users "$CONN_USERS" --sources "$CONN_SOURCES" --hold "$CONN_HOLD"
  fi
  if has fanout; then
    start_nodes new
    measure fanout new "$run" fanout --url "$URLS" --server-pid "$PIDS" --rooms 1 \
      --members "$FAN_MEMBERS" --rate "$FAN_RATE" --user-pool "$FAN_POOL" "${timing[@]}"
  fi
  if has cross; then
    for bin in "${binaries[@]}"; do
      start_nodes "$bin"
      measure cross "$bin" "$run" fanout --url "$URLS" --server-pid "$PIDS" --rooms 1 \
        --members "$CROSS_MEMBERS" --rate "$CROSS_RATE" --user-pool "$USER_POOL" "${timing[@]}"
    done
  fi
done
stop_nodes
echo "results: $OUT"
[ ! -s "$OUT" ] || python3 bench/scale_summary.py "$OUT"
