// The client's state and its one socket: rooms, their messages, presence and typing, kept in
// step with the server through the contract's events, and resumed after a disconnect with
// `since`/`since_rev` so that nothing sent or changed while away is missed.
import { io, type Socket } from 'socket.io-client';
import type {
  Ack,
  ChangesPage,
  ClientToServerEvents,
  HistoryEvent,
  HistoryPage,
  Message,
  MyRoom,
  MyRoomsResponse,
  PublicRoomsPage,
  Role,
  Room,
  RoomRef,
  ServerToClientEvents,
  User,
  UserRef,
} from '@huddle/types';
import * as api from './api';

type HuddleSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

export interface Notice {
  key: string;
  body: string;
  /** Shown after the message with this seq: notices are not stored and have none. */
  afterSeq: number;
}

export interface RoomState {
  room: Room;
  /** `null`: a public room the user joined over the socket without being a member. */
  role: Role | null;
  lastReadSeq: number;
  unread: number;
  mentions: number;
  /** Every message held, thread replies included, by id. */
  messages: Map<string, Message>;
  /** The history has been loaded once (the first join's replay). */
  loaded: boolean;
  /** The `before` cursor for older pages, and whether there are any. */
  floor: number;
  hasOlder: boolean;
  /** The highest seq and rev seen: what a rejoin resumes from. */
  maxSeq: number;
  maxRev: number;
  joined: boolean;
  online: Map<string, UserRef>;
  typing: Map<string, { user: UserRef; until: number }>;
  notices: Notice[];
  /** When this client started holding the room (a room list read before then may lack it). */
  addedAt: number;
}

export interface Thread {
  roomId: string;
  rootId: string;
  loaded: boolean;
  hasOlder: boolean;
}

export type Connection = 'connecting' | 'online' | 'offline';

export const state = {
  me: null as User | null,
  workspaceName: '',
  rooms: new Map<string, RoomState>(),
  active: null as string | null,
  thread: null as Thread | null,
  connection: 'connecting' as Connection,
  /** Users seen anywhere (senders, members, presence), by lower-cased username: the contract
   * has no user search, so adding a member by name works for users this client has met. */
  known: new Map<string, UserRef>(),
  /** Set while the user is editing a message: its id and draft. */
  editing: null as { id: string; draft: string } | null,
};

type Listener = () => void;
const listeners: Listener[] = [];
let queued = false;

/** Asks the view to render on the next frame (many events in one frame: one render). */
export function changed(): void {
  if (queued) return;
  queued = true;
  requestAnimationFrame(() => {
    queued = false;
    for (const l of listeners) l();
  });
}

export function onChange(l: Listener): void {
  listeners.push(l);
}

let noticeHandler: (text: string) => void = () => {};
export function onNotice(handler: (text: string) => void): void {
  noticeHandler = handler;
}
export function notify(text: string): void {
  noticeHandler(text);
}

let socket: HuddleSocket | null = null;
const ACK_TIMEOUT = 10_000;

type Payload<E extends keyof ClientToServerEvents> = Parameters<ClientToServerEvents[E]>[0];
/** An event's acknowledgement, as @huddle/types declares it, and its successful half. */
type AckOf<E extends keyof ClientToServerEvents> = Parameters<Parameters<ClientToServerEvents[E]>[1]>[0];
type Acked<E extends keyof ClientToServerEvents> = Extract<AckOf<E>, { ok: true }>;

/** Rejects if the acknowledgement takes longer than ACK_TIMEOUT. (socket.io-client's own
 * `timeout()` would do, but its typings lose the acknowledgement's type on the way.) */
function timed<T>(promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('The server did not answer in time.')), ACK_TIMEOUT);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Sends an event and waits for its acknowledgement; a timeout or a refusal throws. */
async function ask<E extends keyof ClientToServerEvents>(event: E, payload: Payload<E>): Promise<Acked<E>> {
  if (!socket?.connected) throw new Error('Not connected: try again in a moment.');
  // socket.io-client's typings cannot follow a generic event name to its parameters, hence the
  // cast; `Payload` and `AckOf` still take both from the event's declaration.
  const untyped = socket as unknown as { emitWithAck(event: E, payload: Payload<E>): Promise<Ack> };
  const ack = await timed(untyped.emitWithAck(event, payload));
  if (!ack.ok) throw new Error(ack.error.message);
  return ack as Acked<E>;
}

// ------------------------------------------------------------------ state helpers

function remember(user: UserRef): void {
  if (user.id !== state.me?.id) state.known.set(user.username.toLowerCase(), user);
}

export function userById(id: string): UserRef | undefined {
  for (const u of state.known.values()) if (u.id === id) return u;
  return undefined;
}

function roomState(room: Room, role: Role | null): RoomState {
  const existing = state.rooms.get(room.id);
  if (existing) {
    existing.room = room;
    if (role) existing.role = role;
    return existing;
  }
  const rs: RoomState = {
    room,
    role,
    lastReadSeq: room.last_seq,
    unread: 0,
    mentions: 0,
    messages: new Map(),
    loaded: false,
    floor: 0,
    hasOlder: false,
    maxSeq: 0,
    maxRev: 0,
    joined: false,
    online: new Map(),
    typing: new Map(),
    notices: [],
    addedAt: Date.now(),
  };
  state.rooms.set(room.id, rs);
  return rs;
}

function withReadState(rs: RoomState, mine: MyRoom): void {
  rs.role = mine.role;
  rs.lastReadSeq = mine.last_read_seq;
  rs.unread = rs.room.id === state.active ? 0 : mine.unread;
  rs.mentions = rs.room.id === state.active ? 0 : mine.unread_mentions;
}

/**
 * Stores a message unless a newer state of it is held (`rev` orders the states). Broadcasts
 * carry no `my_reactions`: the ones held are kept.
 */
function put(rs: RoomState, incoming: Message): void {
  const { kind: _k, room: _r, ...message } = incoming as Message & { kind?: unknown; room?: unknown };
  const held = rs.messages.get(message.id);
  if (held && held.rev > message.rev) return;
  if (!message.my_reactions) message.my_reactions = held?.my_reactions ?? [];
  rs.messages.set(message.id, message);
  rs.maxSeq = Math.max(rs.maxSeq, message.seq);
  rs.maxRev = Math.max(rs.maxRev, message.rev);
  rs.room.last_seq = Math.max(rs.room.last_seq, message.seq);
  remember(message.sender);
  for (const u of message.mentions) remember(u);
}

function recountUnread(rs: RoomState): void {
  rs.unread = rs.room.id === state.active ? 0 : Math.max(0, rs.room.last_seq - rs.lastReadSeq);
}

/** The messages of the main timeline (thread replies are shown under their root), by seq. */
export function timeline(rs: RoomState): Message[] {
  return [...rs.messages.values()].filter((m) => !m.thread_root_id).sort((a, b) => a.seq - b.seq);
}

export function threadReplies(rs: RoomState, rootId: string): Message[] {
  return [...rs.messages.values()].filter((m) => m.thread_root_id === rootId).sort((a, b) => a.seq - b.seq);
}

/** A direct room's other user's id: `dm:` + the two user ids (36 characters each) sorted and
 * joined by `-`. */
function dmPeerId(rs: RoomState): string | undefined {
  if (rs.room.visibility !== 'direct') return undefined;
  return [rs.room.name.slice(3, 39), rs.room.name.slice(40)].find((id) => id !== state.me?.id);
}

/** A direct room's other user, when known. */
export function dmPeer(rs: RoomState): UserRef | undefined {
  const other = dmPeerId(rs);
  return other ? userById(other) : undefined;
}

export function roomLabel(rs: RoomState): string {
  if (rs.room.visibility !== 'direct') return `#${rs.room.name}`;
  const peer = dmPeer(rs);
  return peer ? `@${peer.display_name}` : '@…';
}

// ------------------------------------------------------------------ loading

const JOINED_KEY = () => `huddle.joined.${state.me?.id}`;

/** Public rooms joined without membership, kept per user in this browser (the server keeps
 * only members). `null`: never stored, so the first visit joins `general`. */
function joinedPublic(): string[] | null {
  const raw = localStorage.getItem(JOINED_KEY());
  return raw ? (JSON.parse(raw) as string[]) : null;
}

function storeJoinedPublic(): void {
  const ids = [...state.rooms.values()].filter((r) => r.role === null && r.room.visibility === 'public').map((r) => r.room.id);
  localStorage.setItem(JOINED_KEY(), JSON.stringify(ids));
}

/** After login: who am I, my workspace, my rooms; then the socket. */
export async function boot(): Promise<void> {
  state.me = await api.call<User>('GET', '/api/me');
  api.call<{ name: string }>('GET', '/api/workspace').then(
    (w) => {
      state.workspaceName = w.name;
      changed();
    },
    () => {},
  );
  await refreshRooms();
  const stored = joinedPublic();
  if (stored === null) {
    const general = await api.call<{ rooms: Room[] }>('GET', '/api/rooms?limit=200').then(
      (page) => page.rooms.find((r) => r.name === 'general'),
      () => undefined,
    );
    if (general) roomState(general, null);
    storeJoinedPublic();
  } else {
    for (const id of stored) {
      if (state.rooms.has(id)) continue;
      const room = await api.call<Room>('GET', `/api/rooms/${id}`).catch(() => null);
      if (room) roomState(room, null);
    }
  }
  if (!state.active) state.active = [...state.rooms.keys()][0] ?? null;
  connect();
  changed();
  setInterval(() => void refreshRooms().catch(() => {}), 10_000);
}

let refreshingRooms: Promise<void> | null = null;

/** `GET /api/me/rooms`: rooms the user was added to meanwhile (no socket event says so), and
 * the server's unread and mention counts. */
export function refreshRooms(): Promise<void> {
  refreshingRooms ??= (async () => {
    try {
      const asked = Date.now();
      const { rooms } = await api.call<MyRoomsResponse>('GET', '/api/me/rooms');
      const ids = new Set(rooms.map((r) => r.id));
      // Removed while this client was away (no `removed` reached it).
      for (const rs of [...state.rooms.values()]) {
        if (rs.role === null || ids.has(rs.room.id) || rs.addedAt >= asked) continue;
        if (rs.room.visibility === 'public') rs.role = null;
        else dropRoom(rs.room.id);
      }
      for (const mine of rooms) {
        const isNew = !state.rooms.has(mine.id);
        const { role: _role, last_read_seq: _l, unread: _u, unread_mentions: _m, ...room } = mine;
        const rs = roomState(room, mine.role);
        withReadState(rs, mine);
        if (isNew && socket?.connected) void join(rs);
        if (room.visibility === 'direct') void learnPeer(rs);
      }
      changed();
    } finally {
      refreshingRooms = null;
    }
  })();
  return refreshingRooms;
}

/** A direct room's peer is named in the room's name by id only: the members list says who. */
async function learnPeer(rs: RoomState): Promise<void> {
  if (dmPeer(rs)) return;
  const { members } = await api.call<{ members: { user: UserRef }[] }>('GET', `/api/rooms/${rs.room.id}/members`);
  for (const m of members) remember(m.user);
  changed();
}

// ------------------------------------------------------------------ the socket

function connect(): void {
  socket = io({
    // Asked at every (re)connect, so a reconnect presents the current token.
    auth: (cb) => cb({ token: api.accessToken() }),
    reconnectionDelayMax: 5000,
  });
  const s = socket;

  s.on('connect', () => {
    state.connection = 'online';
    for (const rs of state.rooms.values()) void join(rs);
    changed();
  });
  s.on('disconnect', (reason) => {
    // The server ends sockets on logout, a password change, a disable, or a session's token
    // reused: if the session still refreshes it was another session's doing; reconnect.
    if (reason === 'io server disconnect') void api.refresh().then((ok) => ok && s.connect());
    state.connection = navigator.onLine ? 'connecting' : 'offline';
    for (const rs of state.rooms.values()) {
      rs.joined = false;
      rs.online.clear();
      rs.typing.clear();
    }
    changed();
  });
  s.on('connect_error', async (err) => {
    // A refused handshake is not retried by socket.io-client: refresh the token and go again.
    if (s.active) return;
    if (err.message === 'unauthorized') {
      if (await api.refresh()) s.connect();
    } else {
      setTimeout(() => s.connect(), 5000);
    }
  });

  s.on('session', ({ user }) => {
    state.me = user;
  });
  s.on('history', (h) => void applyHistory(h));
  s.on('message', (m) => {
    const rs = state.rooms.get(m.room.id);
    if (m.kind === 'system') {
      if (rs) {
        rs.notices.push({ key: `${m.created_at}-${rs.notices.length}`, body: m.body, afterSeq: rs.maxSeq });
        rs.notices = rs.notices.slice(-20);
        changed();
      }
      return;
    }
    if (!rs) {
      // A direct message opening a room this client does not hold yet.
      void adoptRoom(m.room);
      return;
    }
    put(rs, m);
    if (rs.room.id !== state.active) {
      recountUnread(rs);
    } else {
      scheduleRead();
    }
    changed();
  });
  s.on('messageUpdated', ({ room, message }) => {
    const rs = state.rooms.get(room.id);
    if (!rs) return;
    put(rs, message);
    changed();
  });
  s.on('messageDeleted', ({ room, id, rev }) => {
    const rs = state.rooms.get(room.id);
    const held = rs?.messages.get(id);
    if (!rs || !held || held.rev >= rev) return;
    Object.assign(held, {
      body: '',
      deleted_at: new Date().toISOString(),
      reactions: [],
      mentions: [],
      metadata: {},
      my_reactions: [],
      rev,
    });
    rs.maxRev = Math.max(rs.maxRev, rev);
    if (state.editing?.id === id) state.editing = null;
    changed();
  });
  s.on('reaction', (r) => {
    const rs = state.rooms.get(r.room.id);
    const held = rs?.messages.get(r.message_id);
    if (!rs || !held || held.rev >= r.rev) return;
    const others = held.reactions.filter((x) => x.emoji !== r.emoji);
    held.reactions = r.count > 0 ? [...others, { emoji: r.emoji, count: r.count }] : others;
    // Most used first; the sort is stable, so equal counts keep their order.
    held.reactions.sort((a, b) => b.count - a.count);
    if (r.user.id === state.me?.id) {
      const mine = new Set(held.my_reactions);
      if (r.on) mine.add(r.emoji);
      else mine.delete(r.emoji);
      held.my_reactions = [...mine];
    }
    held.rev = r.rev;
    rs.maxRev = Math.max(rs.maxRev, r.rev);
    remember(r.user);
    changed();
  });
  s.on('mentioned', ({ room, message }) => {
    const rs = state.rooms.get(room.id);
    if (rs && room.id !== state.active && message.seq > rs.lastReadSeq) {
      rs.mentions += 1;
      changed();
    }
  });
  s.on('read', ({ room, seq }) => {
    const rs = state.rooms.get(room.id);
    if (!rs) return;
    rs.lastReadSeq = Math.max(rs.lastReadSeq, seq);
    recountUnread(rs);
    // The mention count depends on which mentions lie past the new position: ask the server.
    void refreshRooms().catch(() => {});
    changed();
  });
  s.on('typing', ({ room, user, typing }) => {
    const rs = state.rooms.get(room.id);
    if (!rs) return;
    if (typing) rs.typing.set(user.id, { user, until: Date.now() + 6000 });
    else rs.typing.delete(user.id);
    remember(user);
    changed();
  });
  s.on('presence', ({ room, user, status }) => {
    const rs = state.rooms.get(room.id);
    if (!rs) return;
    if (status === 'joined') rs.online.set(user.id, user);
    else {
      rs.online.delete(user.id);
      rs.typing.delete(user.id);
    }
    remember(user);
    changed();
  });
  s.on('removed', ({ room, reason }) => {
    const rs = state.rooms.get(room.id);
    if (!rs) return;
    // Kicked from a public room: still open to everyone in the workspace, so it stays.
    if (reason === 'kicked' && rs.room.visibility === 'public') {
      rs.role = null;
      storeJoinedPublic();
    } else {
      dropRoom(room.id);
    }
    const why = { kicked: 'You were removed from', left: 'You left', room_deleted: 'Deleted:' }[reason];
    notify(`${why} ${roomLabel(rs)}`);
    changed();
  });
  s.on('error', (e) => notify(e.message));

  // A dead network can leave the socket "connected" until its heartbeat times out (about 45 s):
  // leave at once so the page says so, and come back at once rather than after the backoff.
  window.addEventListener('offline', () => {
    s.disconnect();
    state.connection = 'offline';
    changed();
  });
  window.addEventListener('online', () => {
    state.connection = 'connecting';
    s.connect();
    changed();
  });
}

function dropRoom(id: string): void {
  state.rooms.delete(id);
  if (state.active === id) state.active = [...state.rooms.keys()][0] ?? null;
  if (state.thread?.roomId === id) state.thread = null;
  storeJoinedPublic();
}

async function adoptRoom(ref: RoomRef): Promise<void> {
  const room = await api.call<Room>('GET', `/api/rooms/${ref.id}`).catch(() => null);
  if (!room || state.rooms.has(room.id)) return;
  const rs = roomState(room, room.visibility === 'public' ? null : 'member');
  rs.lastReadSeq = 0;
  if (room.visibility === 'direct') void learnPeer(rs);
  await join(rs);
  void refreshRooms().catch(() => {});
  changed();
}

/**
 * Joins a room: the first time for the newest page, afterwards from the last seq and rev seen,
 * so the replay holds exactly what was missed (`history` with `updates`). Private rooms use
 * `joinPrivateRoom`, whose notice says so.
 */
async function join(rs: RoomState): Promise<void> {
  const resume = rs.loaded ? { since: rs.maxSeq, since_rev: rs.maxRev } : {};
  try {
    if (rs.room.visibility === 'private') {
      await ask('joinPrivateRoom', { roomId: rs.room.id, ...resume });
    } else {
      await ask('joinRoom', { room: rs.room.id, ...resume });
    }
    rs.joined = true;
    // Typed end to end by socket.io-client's generics: the ack's type comes from @huddle/types.
    const online = await timed(socket!.emitWithAck('listOnline', { room: rs.room.id }));
    if (!online.ok) throw new Error(online.error.message);
    rs.online = new Map(online.users.map((u) => [u.id, u]));
    online.users.forEach(remember);
    if (rs.room.id === state.active) scheduleRead();
  } catch (err) {
    notify(`${roomLabel(rs)}: ${(err as Error).message}`);
  }
  changed();
}

/** A join's replay: the first page, or on a resume the messages and changes missed. */
async function applyHistory(h: HistoryEvent): Promise<void> {
  const rs = state.rooms.get(h.room.id);
  if (!rs) return;
  const first = !rs.loaded;
  for (const m of h.messages) put(rs, m);
  if (first) {
    rs.loaded = true;
    rs.floor = h.messages[0]?.seq ?? 0;
    rs.hasOlder = h.has_more;
  }
  // Changes to messages at or before `since`: only those of messages held matter (older pages
  // are read in their current state when they are loaded).
  const lowest = rs.floor || Infinity;
  const update = (m: Message) => {
    if (rs.messages.has(m.id) || m.seq >= lowest) put(rs, m);
  };
  for (const m of h.updates ?? []) update(m);
  changed();
  try {
    // A resume longer than one page: the rest of the new messages, then of the changes.
    let more = !first && h.has_more;
    while (more) {
      const page = await ask('history', { room: rs.room.id, after: rs.maxSeq, limit: 200 });
      for (const m of page.messages) put(rs, m);
      more = page.has_more && page.messages.length > 0;
    }
    let after = h.updates?.at(-1)?.rev;
    let moreUpdates = h.updates_has_more === true;
    while (moreUpdates && after !== undefined) {
      const page = await api.call<ChangesPage>('GET', `/api/rooms/${rs.room.id}/changes?after_rev=${after}&limit=200`);
      for (const m of page.messages) update(m);
      after = page.last_rev;
      moreUpdates = page.has_more;
    }
  } catch (err) {
    notify(`Catching up on ${roomLabel(rs)} failed: ${(err as Error).message}`);
  }
  if (rs.room.id !== state.active) recountUnread(rs);
  changed();
}

// ------------------------------------------------------------------ read state

let readTimer: ReturnType<typeof setTimeout> | undefined;

/** Marks the active room read up to its newest message, once things settle. */
export function scheduleRead(): void {
  clearTimeout(readTimer);
  readTimer = setTimeout(() => {
    const rs = state.active ? state.rooms.get(state.active) : undefined;
    if (!rs || document.hidden) return;
    rs.unread = 0;
    rs.mentions = 0;
    markRead(rs);
    changed();
  }, 300);
}

/** Tells the server the user has read the room up to its newest message. */
function markRead(rs: RoomState): void {
  // Only members have a read position (a public room's non-member would get `forbidden`).
  if (!rs.joined || rs.role === null || rs.maxSeq <= rs.lastReadSeq) return;
  const seq = rs.maxSeq;
  rs.lastReadSeq = seq;
  ask('markRead', { room: rs.room.id, seq }).catch(() => {});
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden) scheduleRead();
});

// ------------------------------------------------------------------ actions

export function open(roomId: string): void {
  // The room being left was on screen: what arrived in it until now has been seen.
  const previous = state.active ? state.rooms.get(state.active) : undefined;
  if (previous && previous.room.id !== roomId && !document.hidden) markRead(previous);
  state.active = roomId;
  state.editing = null;
  if (state.thread && state.thread.roomId !== roomId) state.thread = null;
  const rs = state.rooms.get(roomId);
  if (rs) {
    rs.unread = 0;
    rs.mentions = 0;
  }
  scheduleRead();
  changed();
}

export async function loadOlder(rs: RoomState): Promise<void> {
  const page = await ask('history', { room: rs.room.id, before: rs.floor, limit: 50 });
  for (const m of page.messages) put(rs, m);
  rs.floor = page.messages[0]?.seq ?? rs.floor;
  rs.hasOlder = page.has_more;
  changed();
}

let sent = 0;
/** A client id per message, so that a resend after a lost ack is stored once. */
function clientId(): string {
  sent += 1;
  return `web-${Date.now().toString(36)}-${sent}`;
}

export async function send(rs: RoomState, body: string, threadRootId?: string): Promise<void> {
  stopTyping(rs);
  const outgoing = { body, client_id: clientId(), ...(threadRootId ? { thread_root_id: threadRootId } : {}) };
  // In a direct room, `directMessage`: it reaches every socket of the other user, also those
  // that have not joined the room yet (the room may be new to them); `sendMessage` would not.
  const peer = dmPeerId(rs);
  const { message } = peer
    ? await ask('directMessage', { to: peer, ...outgoing })
    : await ask('sendMessage', { room: rs.room.id, ...outgoing });
  put(rs, message);
  changed();
}

export async function edit(rs: RoomState, id: string, body: string): Promise<void> {
  const { message } = await ask('editMessage', { room: rs.room.id, id, body });
  state.editing = null;
  put(rs, message);
  changed();
}

export async function remove(rs: RoomState, id: string): Promise<void> {
  await ask('deleteMessage', { room: rs.room.id, id });
}

export async function react(rs: RoomState, message: Message, emoji: string): Promise<void> {
  const on = !(message.my_reactions ?? []).includes(emoji);
  const ack = await ask('react', { room: rs.room.id, id: message.id, emoji, on });
  put(rs, ack.message);
  changed();
}

const typingSent = new Map<string, { at: number; stop: ReturnType<typeof setTimeout> }>();

/** Says "typing" at most every 3 s while keys are pressed (typing shares the message rate
 * limit), and "stopped" after 4 s without one. */
export function typing(rs: RoomState): void {
  if (!rs.joined) return;
  const held = typingSent.get(rs.room.id);
  const now = Date.now();
  if (held) clearTimeout(held.stop);
  const at = held && now - held.at < 3000 ? held.at : now;
  if (at === now) void ask('typing', { room: rs.room.id, typing: true }).catch(() => {});
  typingSent.set(rs.room.id, { at, stop: setTimeout(() => stopTyping(rs), 4000) });
}

function stopTyping(rs: RoomState): void {
  const held = typingSent.get(rs.room.id);
  if (!held) return;
  clearTimeout(held.stop);
  typingSent.delete(rs.room.id);
  if (rs.joined) void ask('typing', { room: rs.room.id, typing: false }).catch(() => {});
}

export async function openThread(rs: RoomState, rootId: string): Promise<void> {
  state.thread = { roomId: rs.room.id, rootId, loaded: false, hasOlder: false };
  changed();
  const page = await api.call<HistoryPage>('GET', `/api/rooms/${rs.room.id}/threads/${rootId}/messages?limit=100`);
  for (const m of page.messages) put(rs, m);
  if (state.thread?.rootId === rootId) {
    state.thread.loaded = true;
    state.thread.hasOlder = page.has_more;
  }
  changed();
}

export async function createRoom(name: string, visibility: 'public' | 'private', topic: string): Promise<void> {
  const room = await api.call<Room>('POST', '/api/rooms', { name, visibility, ...(topic ? { topic } : {}) });
  const rs = roomState(room, 'owner');
  rs.lastReadSeq = 0;
  await join(rs);
  open(room.id);
}

export async function joinPublic(room: Room): Promise<void> {
  const rs = roomState(room, state.rooms.get(room.id)?.role ?? null);
  storeJoinedPublic();
  await join(rs);
  open(room.id);
}

export async function leave(rs: RoomState): Promise<void> {
  if (rs.role && rs.role !== 'owner') {
    // Leaving as a member: the server says `removed` (`left`) to every socket of the user.
    await api.call('DELETE', `/api/rooms/${rs.room.id}/members/${state.me?.id}`);
    return;
  }
  if (rs.joined) await ask('leaveRoom', { room: rs.room.id }).catch(() => {});
  dropRoom(rs.room.id);
  changed();
}

/** Opens (creating on first use) the direct room with a user. */
export async function directRoom(user: UserRef): Promise<void> {
  remember(user);
  const room = await api.call<Room>('POST', `/api/direct/${user.id}`);
  const rs = roomState(room, 'member');
  if (!rs.joined) await join(rs);
  open(room.id);
}

/** A first direct message to a username: the server resolves it and makes the room. */
export async function directMessage(to: string, body: string): Promise<void> {
  const ack = await ask('directMessage', {
    to,
    body,
    client_id: clientId(),
  });
  const rs = roomState(ack.room, 'member');
  put(rs, ack.message);
  void learnPeer(rs);
  if (!rs.joined) await join(rs);
  open(ack.room.id);
}

/** A page of the public room directory (`next`: the name to page on from). */
export function publicRooms(after?: string): Promise<PublicRoomsPage> {
  return api.call<PublicRoomsPage>('GET', `/api/rooms?limit=200${after ? `&after=${encodeURIComponent(after)}` : ''}`);
}

export function resolveUser(text: string): UserRef | undefined {
  const t = text.trim().replace(/^@/, '');
  return state.known.get(t.toLowerCase()) ?? userById(t);
}

export async function addMember(rs: RoomState, user: UserRef, role: 'member' | 'moderator'): Promise<void> {
  await api.call('PUT', `/api/rooms/${rs.room.id}/members/${user.id}`, { role });
}

export async function removeMember(rs: RoomState, userId: string): Promise<void> {
  await api.call('DELETE', `/api/rooms/${rs.room.id}/members/${userId}`);
}

export async function members(rs: RoomState): Promise<{ user: UserRef; role: Role }[]> {
  const { members: list } = await api.call<{ members: { user: UserRef; role: Role }[] }>(
    'GET',
    `/api/rooms/${rs.room.id}/members`,
  );
  list.forEach((m) => remember(m.user));
  return list;
}

export async function logout(): Promise<void> {
  await api.call('POST', '/api/auth/logout').catch(() => {});
  socket?.disconnect();
  api.clear();
}

/** Typing indicators that were never switched off expire. */
setInterval(() => {
  const now = Date.now();
  let any = false;
  for (const rs of state.rooms.values()) {
    for (const [id, t] of rs.typing) {
      if (t.until < now) {
        rs.typing.delete(id);
        any = true;
      }
    }
  }
  if (any) changed();
}, 1000);
