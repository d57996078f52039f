// The official JavaScript client (socket.io-client v4, what browsers use) through a full Huddle
// flow: two users in `general` with the welcome text, messages both ways, a private room with an
// outsider turned away, resume with `since`, a direct message, and a kick.
//
// Usage: node flow.mjs http://127.0.0.1:PORT   (tests/js_client.rs starts the server and runs it)
// Prints one line per check and "N passed, M failed"; exits 1 if anything failed.
import { io } from 'socket.io-client';

const base = process.argv[2];
if (!base) {
  console.error('usage: node flow.mjs <base url>');
  process.exit(2);
}

let passed = 0;
let failed = 0;
function check(name, ok, detail) {
  if (ok) passed += 1;
  else failed += 1;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${ok ? '' : ` -- ${JSON.stringify(detail)}`}`);
}

async function api(method, path, token, body) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body) headers['content-type'] = 'application/json';
  const res = await fetch(base + path, { method, headers, body: body && JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

// Connects and records every event; resolves on `session`.
function connect(token, transports) {
  const socket = io(base, { auth: { token }, transports, reconnection: false, forceNew: true });
  socket.log = [];
  socket.onAny((event, payload) => socket.log.push({ event, payload }));
  return new Promise((resolve, reject) => {
    socket.once('session', (s) => {
      socket.user = s.user;
      resolve(socket);
    });
    socket.once('connect_error', reject);
  });
}

const ask = (socket, event, payload) => socket.timeout(5000).emitWithAck(event, payload);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(socket, event, pred = () => true, ms = 3000) {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(10)) {
    const hit = socket.log.find((e) => e.event === event && pred(e.payload));
    if (hit) return hit.payload;
  }
  return undefined;
}

const sockets = [];
try {
  const tag = Math.random().toString(36).slice(2, 7);
  const reg = async (name) => (await api('POST', '/api/auth/register', null, { username: `${name}_${tag}`, password: 'correct horse' })).body;
  const alice = await reg('alice');
  const bob = await reg('bob');
  const eve = await reg('eve');
  check('three users register', alice.user && bob.user && eve.user, { alice, bob, eve });

  // Refused handshakes.
  const refused = await connect('not-a-token', ['websocket']).then(() => null, (e) => e.message);
  check('a bad token gets connect_error "unauthorized"', refused === 'unauthorized', refused);
  const none = await connect(undefined, ['polling']).then(() => null, (e) => e.message);
  check('no token gets connect_error "unauthorized" (polling)', none === 'unauthorized', none);

  // Alice over websocket, Bob over long-polling.
  const a = await connect(alice.access_token, ['websocket']);
  const b = await connect(bob.access_token, ['polling']);
  sockets.push(a, b);
  check('session carries the user', a.user.username === alice.user.username && b.user.id === bob.user.id, [a.user, b.user]);

  // The seed's own line: socket.emit('joinRoom', 'general').
  const ja = await ask(a, 'joinRoom', 'general');
  check('joinRoom with a bare room name', ja.ok === true && ja.room.name === 'general', ja);
  const hist = await waitFor(a, 'history');
  check('the joiner gets history', hist && hist.room.name === 'general' && Array.isArray(hist.messages), hist);
  const welcomeA = `Welcome ${alice.user.username} to the general room!`;
  check('the welcome notice', (await waitFor(a, 'message', (m) => m.kind === 'system' && m.body === welcomeA)) !== undefined, a.log);

  await ask(b, 'joinRoom', { room: 'general' });
  const welcomeB = `Welcome ${bob.user.username} to the general room!`;
  check('others hear the welcome', (await waitFor(a, 'message', (m) => m.body === welcomeB)) !== undefined, a.log);
  const pres = await waitFor(a, 'presence', (p) => p.user.id === bob.user.id && p.status === 'joined');
  check('presence: joined', pres !== undefined, a.log);

  // Messages both ways, acked after commit, seq in order.
  const s1 = await ask(a, 'sendMessage', { room: 'general', body: '  hello bob  ', client_id: 'a-1' });
  check('sendMessage acks the stored message', s1.ok && s1.message.seq === 1 && s1.message.body === 'hello bob', s1);
  const got = await waitFor(b, 'message', (m) => m.kind === 'user' && m.id === s1.message.id);
  check('bob receives it live', got && got.room.name === 'general' && got.sender.id === alice.user.id, b.log);
  const again = await ask(a, 'sendMessage', { room: 'general', body: 'hello bob', client_id: 'a-1' });
  check('a repeated client_id stores nothing new', again.ok && again.message.id === s1.message.id, again);
  const s2 = await ask(b, 'sendMessage', { room: 'general', body: 'hi alice' });
  check('bob answers with seq 2', s2.ok && s2.message.seq === 2, s2);

  // Typing.
  await ask(b, 'typing', { room: 'general', typing: true });
  const typing = await waitFor(a, 'typing', (t) => t.user.id === bob.user.id);
  check('typing reaches the others', typing && typing.typing === true, a.log);

  // A private room; eve is turned away.
  const room = (await api('POST', '/api/rooms', alice.access_token, { name: `war-${tag}`, visibility: 'private' })).body;
  await api('PUT', `/api/rooms/${room.id}/members/${bob.user.id}`, alice.access_token, { role: 'member' });
  const pa = await ask(a, 'joinPrivateRoom', { roomId: room.id });
  check('the owner joins the private room', pa.ok && pa.room.id === room.id, pa);
  const pb = await ask(b, 'joinPrivateRoom', { roomId: room.id });
  const notice = `${bob.user.username} has joined the private discussion.`;
  check('the private join notice', pb.ok && (await waitFor(a, 'message', (m) => m.body === notice)) !== undefined, a.log);

  const e = await connect(eve.access_token, ['websocket']);
  sockets.push(e);
  const denied = await ask(e, 'joinPrivateRoom', { roomId: room.id });
  check('the outsider is refused with forbidden', denied.ok === false && denied.error.code === 'forbidden', denied);
  const err = await waitFor(e, 'error');
  check('and gets the error event', err && err.message === 'You are not authorized to join this room.' && err.room === room.id, err);
  const secret = await ask(a, 'sendMessage', { room: room.id, body: 'for members only' });
  check('members talk in the private room', secret.ok, secret);
  await sleep(200);
  check('the outsider receives nothing from it', !e.log.some((x) => JSON.stringify(x.payload ?? '').includes('for members only')), e.log);
  const unknown = await ask(e, 'joinRoom', 'no-such-room');
  check('an unknown room is not_found', unknown.ok === false && unknown.error.code === 'not_found', unknown);

  // Resume with since after a reconnect.
  b.disconnect();
  await ask(a, 'sendMessage', { room: room.id, body: 'while bob was away' });
  const b2 = await connect(bob.access_token, ['websocket', 'polling'].reverse());
  sockets.push(b2);
  await ask(b2, 'joinPrivateRoom', { roomId: room.id, since: 1 });
  const resumed = await waitFor(b2, 'history', (h) => h.room.id === room.id);
  check('resume with since replays what was missed', resumed && resumed.messages.map((m) => m.body).includes('while bob was away') && resumed.messages[0].seq === 2, resumed);

  // A direct message reaches both users.
  const dm = await ask(e, 'directMessage', { to: alice.user.username, body: 'psst' });
  check('directMessage acks with the message and room', dm.ok && dm.room.name.startsWith('dm:') && dm.message.body === 'psst', dm);
  check('the recipient gets it', (await waitFor(a, 'message', (m) => m.body === 'psst')) !== undefined, a.log);

  // A kick acts at once.
  const kick = await api('DELETE', `/api/rooms/${room.id}/members/${bob.user.id}`, alice.access_token);
  check('kick answers 204', kick.status === 204, kick);
  const removed = await waitFor(b2, 'removed', (r) => r.room.id === room.id);
  check('the kicked socket gets removed/kicked', removed && removed.reason === 'kicked', b2.log);
  const after = await ask(b2, 'sendMessage', { room: room.id, body: 'still here?' });
  check('and can no longer send there', after.ok === false, after);

  // Logout disconnects.
  const gone = new Promise((resolve) => e.once('disconnect', resolve));
  await api('POST', '/api/auth/logout', eve.access_token);
  const reason = await Promise.race([gone, sleep(3000).then(() => 'timeout')]);
  check('logout disconnects the socket', reason === 'io server disconnect', reason);
} catch (err) {
  check('no exception', false, String(err?.stack ?? err));
} finally {
  for (const s of sockets) s.disconnect();
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
