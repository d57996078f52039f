#!/usr/bin/env bash
# What webhooks cost the message path, and how late they arrive (issue 14), in one sitting.
#
#   bench/webhooks.sh [runs]        # default: 3 runs of each configuration
#
# Per configuration, a fresh Huddle node (release build, WEBHOOK_ALLOW_PRIVATE=true, limits off
# as in compare.sh) on an empty database with a workspace API key made by `huddle api-key
# create`; per run, the configurations one after the other so that they share the machine's
# state of the moment:
#   - persist-window load (10 senders, 32 in flight each) with 0, 1 and 3 webhooks attached:
#     acked msgs/s and ack p99 (target: within 10% of 0 webhooks);
#   - 2,000 msg/s open loop with 1 webhook: delivery lag p50/p99 (scheduled send -> receiver);
#   - 2,000 msg/s with 0 webhooks and with 1 receiver that takes 2 s to answer: ack p99.
# Results go to bench/results/webhooks-<time>.jsonl; the medians are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-3}
ONLY=${ONLY:-}
PG=postgres://postgres@127.0.0.1:5432
PORT=${PORT:-3990}
BENCH=target/release/huddle-bench
OUT=bench/results/webhooks-$(date -u +%Y%m%dT%H%M%SZ).jsonl
mkdir -p bench/results

env_vars=(JWT_SECRET=bench-secret-bench-secret-bench-secret-0 MESSAGE_RATE=0 AUTH_RATE=0
  ROOM_EVENT_RATE=0 ROOMS_PER_HOUR=0 MAX_SOCKETS_PER_USER=100000 MAX_ROOMS_PER_SOCKET=100000
  HOST=127.0.0.1 RUST_LOG=warn WEBHOOK_ALLOW_PRIVATE=true DATABASE_URL=$PG/huddle_webhooks)
pid=
stop() { if [ -n "$pid" ]; then kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; fi; pid=; }
trap stop EXIT
# Each configuration starts from an empty database and a fresh node: otherwise one inherits
# the previous one's clean-up (deleted webhooks' rows, autovacuum of millions of them) and the
# comparison measures that instead.
fresh() {
  stop
  psql -q $PG/postgres -c "drop database if exists huddle_webhooks with (force)" >/dev/null
  env "${env_vars[@]}" PORT=$PORT target/release/huddle >>target/webhooks-huddle.log 2>&1 &
  pid=$!
  until curl -sf localhost:$PORT/readyz >/dev/null; do sleep 0.2; done
  export HUDDLE_BENCH_KEY=$(env "${env_vars[@]}" target/release/huddle api-key create --name bench 2>/dev/null)
  psql -q $PG/huddle_webhooks -c "checkpoint" >/dev/null
}

measure() { # label, then huddle-bench arguments
  local label=$1 out line
  shift
  fresh
  out=$($BENCH webhooks "$@" --url "http://127.0.0.1:$PORT" --server-pid "$pid" 2>target/webhooks-bench.err)
  line=${out%%$'\n'*}
  echo "{\"config\":\"$label\",\"result\":$line}" >>"$OUT"
  python3 - "$label" "$line" <<'PY'
import json, sys
r = json.loads(sys.argv[2])
lag = r["delivery_lag"]
print(f'{sys.argv[1]:<22} acked/s {r["acked_per_s"]:>9,.0f}  ack p50 {r["ack_latency"].get("p50_ms", 0):6.2f} ms  '
      f'p99 {r["ack_latency"].get("p99_ms", 0):6.2f} ms  delivered {r["delivered_min"]}/{r["acked_total"]}  '
      f'lag p50 {lag.get("p50_ms", 0):7.1f} ms  p99 {lag.get("p99_ms", 0):7.1f} ms')
PY
}

window=(--senders 10 --window 32 --duration 10 --warmup 2)
rate=(--senders 10 --rate 2000 --duration 10 --warmup 2)
for run in $(seq 1 "$RUNS"); do
  echo "run $run"
  measure window-0 "${window[@]}" --webhooks 0
  measure window-1 "${window[@]}" --webhooks 1
  measure window-3 "${window[@]}" --webhooks 3
  measure rate2000-0 "${rate[@]}" --webhooks 0
  measure rate2000-1 "${rate[@]}" --webhooks 1
  measure rate2000-slow "${rate[@]}" --webhooks 1 --receiver-delay-ms 2000 --drain-s 1
done
echo "results: $OUT"
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["config"], []).append(r["result"])
base = {}
print(f'{"config":<16} {"acked/s":>9} {"ack p99 ms":>10} {"lag p50 ms":>10} {"lag p99 ms":>10}  (medians of {len(by["window-0"])})')
for config, rs in by.items():
    acked = statistics.median(r["acked_per_s"] for r in rs)
    p99 = statistics.median(r["ack_latency"].get("p99_ms", 0) for r in rs)
    lag50 = statistics.median(r["delivery_lag"].get("p50_ms", 0) for r in rs)
    lag99 = statistics.median(r["delivery_lag"].get("p99_ms", 0) for r in rs)
    group = config.rsplit("-", 1)[0]
    base.setdefault(group, (acked, p99))
    b = base[group]
    print(f'{config:<16} {acked:>9,.0f} {p99:>10.2f} {lag50:>10.1f} {lag99:>10.1f}  '
          f'acked x{acked / b[0]:.2f}, p99 x{p99 / b[1]:.2f} of {group}-0')
PY
