// Cross-node delivery latency: one sender on node A; one receiver on A (same node) and one on
// node B (across Redis). Sends N messages at a fixed rate (open loop: each is sent at its
// scheduled time whether or not earlier ones were acked) and measures, per receiver, the time
// from the scheduled send to the `message` event. All clients live in this process, so one clock
// measures both ends.
//
// Usage: node bench/cross_node_latency.mjs <node A url> <node B url> [messages=2000] [rate=200]
// Needs socket.io-client (npm ci in tests/js). Prints a JSON line and a summary.
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';

const require = createRequire(new URL('../tests/js/package.json', import.meta.url));
const { io } = require('socket.io-client');

const [a, b, n = '2000', r = '200'] = process.argv.slice(2);
if (!a || !b) {
  console.error('usage: node bench/cross_node_latency.mjs <node A url> <node B url> [messages] [rate]');
  process.exit(2);
}
const total = Number(n);
const rate = Number(r);

async function api(base, path, body, token) {
  const res = await fetch(base + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token && { authorization: `Bearer ${token}` }) },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

function connect(base, token) {
  const socket = io(base, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
  return new Promise((resolve, reject) => {
    socket.once('session', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

const tag = Math.random().toString(36).slice(2, 8);
const user = await api(a, '/api/auth/register', { username: `bench_${tag}`, password: 'bench-password' });
const room = await api(a, '/api/rooms', { name: `bench-${tag}`, visibility: 'public' }, user.access_token);
const sender = await connect(a, user.access_token);
const local = await connect(a, user.access_token);
const remote = await connect(b, user.access_token);
for (const s of [sender, local, remote]) await s.timeout(5000).emitWithAck('joinRoom', room.name);

const scheduled = new Map(); // client_id -> scheduled send time
const latencies = { local: [], remote: [] };
const done = new Promise((resolve) => {
  let finished = 0;
  for (const [name, socket] of [['local', local], ['remote', remote]]) {
    socket.on('message', (m) => {
      if (m.kind !== 'user') return;
      latencies[name].push(performance.now() - scheduled.get(m.client_id));
      if (latencies[name].length === total && ++finished === 2) resolve();
    });
  }
});

const start = performance.now() + 100;
for (let i = 0; i < total; i += 1) {
  const at = start + (i * 1000) / rate;
  const wait = at - performance.now();
  if (wait > 1) await new Promise((res) => setTimeout(res, wait));
  const id = `b-${i}`;
  scheduled.set(id, at);
  sender.emit('sendMessage', { room: room.name, body: `m${i}`, client_id: id }, () => {});
}
await Promise.race([done, new Promise((res) => setTimeout(res, 30000))]);

const pct = (xs, p) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};
const summary = {};
for (const name of ['local', 'remote']) {
  const xs = latencies[name];
  summary[name] = { received: xs.length, p50_ms: +pct(xs, 50).toFixed(2), p99_ms: +pct(xs, 99).toFixed(2), max_ms: +Math.max(...xs).toFixed(2) };
}
console.log(JSON.stringify({ scenario: 'cross_node_latency', messages: total, rate, ...summary }));
console.log(`same node:   p50 ${summary.local.p50_ms} ms, p99 ${summary.local.p99_ms} ms (${summary.local.received}/${total})`);
console.log(`across nodes: p50 ${summary.remote.p50_ms} ms, p99 ${summary.remote.p99_ms} ms (${summary.remote.received}/${total})`);
for (const s of [sender, local, remote]) s.disconnect();
process.exit(0);
