// Type tests: payloads as the server sends them (shapes from docs/api.md) must be accepted, and
// the mistakes a client author would make must not be. Checked by `npm run check`; never run.
import type {
  Ack,
  ClientToServerEvents,
  ErrorResponse,
  HistoryEvent,
  HuddleEvent,
  Message,
  MyRoom,
  RoomMessageEvent,
  ServerToClientEvents,
} from '../index';

const alice = { id: '0193a0c4-7d7a-7d1e-9d6a-1f2e3d4c5b6a', username: 'alice', display_name: 'Alice' };

const message: Message = {
  id: '0193a0c4-7d7a-7d1e-9d6a-000000000001',
  room_id: '0193a0c4-7d7a-7d1e-9d6a-00000000000a',
  seq: 7,
  rev: 12,
  sender: alice,
  body: 'hello @bob',
  client_id: null,
  created_at: '2026-11-24T21:07:19.106404Z',
  edited_at: null,
  deleted_at: null,
  reply_to: { id: '0193a0c4-7d7a-7d1e-9d6a-000000000000', seq: 6, sender: alice, body: 'earlier' },
  thread_root_id: null,
  thread: { reply_count: 2, last_reply_at: '2026-11-24T21:08:00Z', last_reply_seq: 9 },
  reactions: [{ emoji: '👍', count: 2 }],
  mentions: [{ id: '0193a0c4-7d7a-7d1e-9d6a-1f2e3d4c5b6b', username: 'bob', display_name: 'bob' }],
  metadata: { ticket: 'T-1' },
  my_reactions: ['👍'],
};

const myRoom: MyRoom = {
  id: message.room_id,
  name: 'war-room',
  visibility: 'private',
  topic: null,
  created_by: alice.id,
  created_at: message.created_at,
  last_seq: 9,
  last_rev: 14,
  metadata: {},
  role: 'owner',
  last_read_seq: 7,
  unread: 2,
  unread_mentions: 0,
};

const history: HistoryEvent = {
  room: { id: myRoom.id, name: myRoom.name },
  messages: [message],
  has_more: false,
  updates: [],
  updates_has_more: false,
};

const notice: RoomMessageEvent = {
  kind: 'system',
  room: history.room,
  body: 'Welcome alice to the war-room room!',
  created_at: message.created_at,
};

const failure: ErrorResponse = {
  error: { code: 'invalid_input', message: 'body must be 1-4000 characters', fields: { body: 'must be 1-4000 characters' } },
};

// An acknowledgement narrows on `ok`.
function seqOf(ack: Ack<{ message: Message }>): number {
  if (ack.ok) return ack.message.seq;
  // @ts-expect-error: a failed ack has no message
  return ack.message.seq + ack.error.code.length;
}

// The event maps have the shape socket.io-client's generics expect.
type Params<E extends keyof ClientToServerEvents> = Parameters<ClientToServerEvents[E]>;
const join: Params<'joinRoom'>[0] = { room: 'general', since: 7, since_rev: 12 };
const bare: Params<'joinRoom'>[0] = 'general';
// @ts-expect-error: seqs are numbers, never strings
const badSince: Params<'joinRoom'>[0] = { room: 'general', since: '7' };
// @ts-expect-error: `react` needs `on`
const badReact: Params<'react'>[0] = { room: 'general', id: message.id, emoji: '👍' };
type SendAck = Parameters<Params<'sendMessage'>[1]>[0];
const sent: SendAck = { ok: true, message };
const refused: SendAck = { ok: false, error: { code: 'rate_limited', message: 'slow down', retry_after_ms: 120 } };

const onMessage: ServerToClientEvents['message'] = (m) => {
  // A system notice has no seq: reading it needs `kind` first.
  // @ts-expect-error
  void m.seq;
  if (m.kind === 'user') void m.seq;
};

const event: HuddleEvent = {
  id: '0193a0c4-7d7a-7d1e-9d6a-0000000000ee',
  type: 'member.removed',
  position: 42,
  workspace_id: alice.id,
  created_at: message.created_at,
  data: { room: myRoom, member: { user: alice, role: 'member', added_at: message.created_at }, reason: 'kicked' },
};

export { bare, badReact, badSince, event, failure, join, notice, onMessage, refused, sent, seqOf };
