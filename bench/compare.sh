#!/usr/bin/env bash
# Huddle against the Node reference peer, every huddle-bench scenario, in one sitting (issue 6).
#
#   bench/compare.sh [runs] [scenario ...]      # default: 3 runs of every scenario
#
# Each run measures Huddle and then the peer with the same command, so the two share the
# machine's state of the moment. Every result goes to bench/results/compare-<time>.jsonl as
# {"scenario", "server", "run", "result"}; bench/summarize.py turns that file into the tables
# of BENCHMARKS.md (medians and ratios). Both servers run as one node, without Redis, with
# the per-user limits off (MESSAGE_RATE=0 AUTH_RATE=0 ROOM_EVENT_RATE=0 ROOMS_PER_HOUR=0, and
# MAX_SOCKETS_PER_USER high enough for the scenarios' many sockets per user), each on a database of its own made fresh at the start.
#
# PEER_DIR (default ../shared/peers/node-seed) is copied to target/peer before `npm ci`,
# since the original may be read-only.
#
# BASELINE=<path of another huddle binary> measures against that build instead of the peer (a
# before/after comparison of a change: build the old commit in a worktree and point here); its
# rows keep the server name "peer", and the tables name it "baseline".
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-3}
shift || true
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(persist-1 persist-window persist-5k fanout join login connections-1k connections-18k react edit resume)
# Scenarios of contract v2's messages (reactions, edits, revs and the change feed): the Node
# reference peer speaks v1 only, so they run against Huddle alone (and against BASELINE if set).
V2_ONLY=" react edit react-5k edit-5k resume "

PEER_DIR=${PEER_DIR:-../shared/peers/node-seed}
BASELINE=${BASELINE:-}
PG=postgres://postgres@127.0.0.1:5432
HUDDLE_PORT=3300 PEER_PORT=3100
BENCH=target/release/huddle-bench
OUT=bench/results/compare-${BASELINE:+baseline-}$(date -u +%Y%m%dT%H%M%SZ).jsonl

cargo build --release --locked --quiet --workspace
if [ -z "$BASELINE" ] && [ ! -d target/peer/node_modules ]; then
  rm -rf target/peer && mkdir -p target/peer && cp -r "$PEER_DIR"/. target/peer/
  (cd target/peer && npm ci --no-audit --no-fund --loglevel=error)
fi
mkdir -p bench/results

common_env=(JWT_SECRET=bench-secret-bench-secret-bench-secret-0 MESSAGE_RATE=0 AUTH_RATE=0
  ROOM_EVENT_RATE=0 ROOMS_PER_HOUR=0 MAX_SOCKETS_PER_USER=100000 MAX_ROOMS_PER_SOCKET=100000
  HOST=127.0.0.1 RUST_LOG=warn)
huddle_pid="" peer_pid=""

start_huddle() {
  env "${common_env[@]}" PORT=$HUDDLE_PORT DATABASE_URL=$PG/huddle_compare \
    target/release/huddle >>target/compare-huddle.log 2>&1 &
  huddle_pid=$!
  until curl -sf localhost:$HUDDLE_PORT/readyz >/dev/null; do sleep 0.2; done
}
start_peer() {
  if [ -n "$BASELINE" ]; then
    env "${common_env[@]}" PORT=$PEER_PORT DATABASE_URL=$PG/huddle_baseline \
      "$BASELINE" >>target/compare-baseline.log 2>&1 &
  else
    (cd target/peer && exec env "${common_env[@]}" PORT=$PEER_PORT \
      DATABASE_URL=$PG/nodeseed_compare node server.js >>../compare-peer.log 2>&1) &
  fi
  peer_pid=$!
  until curl -sf localhost:$PEER_PORT/readyz >/dev/null; do sleep 0.2; done
}
stop() { [ -z "$1" ] || { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }; }
cleanup() { stop "$huddle_pid"; stop "$peer_pid"; }
trap cleanup EXIT

for db in huddle_compare nodeseed_compare huddle_baseline; do
  psql -q $PG/postgres -c "drop database if exists $db with (force)" >/dev/null
done
start_huddle
start_peer

args_for() {
  case $1 in
    persist-1) echo "persist --senders 1 --window 1 --duration 10 --warmup 2" ;;
    persist-window) echo "persist --senders 10 --window 32 --duration 10 --warmup 2" ;;
    persist-5k) echo "persist --senders 10 --rate 5000 --duration 10 --warmup 2" ;;
    fanout) echo "fanout --rooms 1 --members 1000 --rate 50 --duration 10 --warmup 2" ;;
    join) echo "join --users 20 --rate 500 --duration 10 --warmup 2" ;;
    login) echo "login --senders 10 --rate 1000 --login-rate 60 --duration 8 --warmup 2" ;;
    react) echo "react --senders 10 --rate 10000 --duration 10 --warmup 2" ;;
    edit) echo "edit --senders 10 --rate 10000 --duration 10 --warmup 2" ;;
    react-5k) echo "react --senders 10 --rate 5000 --duration 10 --warmup 2" ;;
    edit-5k) echo "edit --senders 10 --rate 5000 --duration 10 --warmup 2" ;;
    resume) echo "resume --changes 2000 --runs 5" ;;
    connections-1k) echo "connections --count 1000 --sources 4 --hold 5" ;;
    connections-18k) echo "connections --count 18000 --sources 4 --hold 5" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}

measure() { # scenario server run port pid
  local out line rc=0 err=target/compare-bench-$2.err
  # A failed run (a server without the scenario's events, or resume's exit 3 when the client
  # missed a change) is reported and the comparison goes on; its JSON line, if any, is kept.
  out=$($BENCH $(args_for "$1") --url "http://127.0.0.1:$4" --server-pid "$5" 2>"$err") || rc=$?
  line=${out%%$'\n'*} # the JSON line; the readable summary follows it
  if [[ $line != \{* ]]; then
    echo "$1 run $3 $2: FAILED (exit $rc): $(grep -m 1 -A 3 '^Error' "$err" | tr -s '\n ' ' ')"
    return 0
  fi
  echo "{\"scenario\":\"$1\",\"server\":\"$2\",\"run\":$3,\"result\":$line}" >>"$OUT"
  echo "$1 run $3 $2: $(python3 bench/summarize.py --one <<<"$line")"
  [ "$rc" = 0 ] || echo "$1 run $3 $2: exit $rc: $(grep -m 1 -E '^(FAILED|Error)' "$err")"
}

for scenario in "${SCENARIOS[@]}"; do
  for run in $(seq 1 "$RUNS"); do
    if [[ $scenario == connections-* ]]; then
      # Memory per socket is read on a server that has done nothing else.
      stop "$huddle_pid"; stop "$peer_pid"
      start_huddle; start_peer
    fi
    measure "$scenario" huddle "$run" $HUDDLE_PORT "$huddle_pid"
    if [ -n "$BASELINE" ] || [[ $V2_ONLY != *" ${scenario%%-*} "* ]]; then
      measure "$scenario" peer "$run" $PEER_PORT "$peer_pid"
    fi
  done
done
echo "results: $OUT"
python3 bench/summarize.py "$OUT" ${BASELINE:+--against baseline}
