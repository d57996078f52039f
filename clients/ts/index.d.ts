// @huddle/types: the Huddle wire contract (v1 and v2) as TypeScript types.
//
// Types only: nothing here exists at run time, so importing it (with `import type`) adds no
// bytes to a bundle. Every shape follows `shared/contract.md` and `docs/api.md`; the web client
// in `clients/web` is type-checked against this file, so the two cannot drift apart.
//
//   import { io, type Socket } from 'socket.io-client';
//   import type { ServerToClientEvents, ClientToServerEvents } from '@huddle/types';
//   const socket: Socket<ServerToClientEvents, ClientToServerEvents> =
//     io('https://chat.example.com', { auth: { token: accessToken } });
//   const ack = await socket.emitWithAck('sendMessage', { room: 'general', body: 'hi' });
//   if (ack.ok) console.log(ack.message.seq);
//
// (`socket.timeout(ms).emitWithAck(...)` works too, but socket.io-client 4.8's typings type its
// answer `any`: to keep the acknowledgement's type, race `emitWithAck` against a timer of your
// own, as clients/web/src/chat.ts does.)

// ------------------------------------------------------------------ scalars

/** A UUID string. Message ids are UUIDv7 (time-ordered); every other id is opaque. */
export type Id = string;

/** An RFC 3339 time in UTC, e.g. `2026-11-24T21:07:19.106404Z`. */
export type Timestamp = string;

/**
 * A message's position in its room: 1, 2, 3, ... in commit order, never a gap (deleted messages
 * keep theirs). The cursor for history pages, resume (`since`) and read state.
 */
export type Seq = number;

/**
 * A room's change counter: every change to a room's timeline (a new message, an edit, a
 * deletion, a reaction added or removed, a thread summary change) takes the room's next rev.
 * No two messages of a room share one. The cursor of the change feed and of `since_rev`.
 */
export type Rev = number;

/**
 * The app's own JSON object on users, rooms and messages (attachments' URLs, a ticket id...):
 * at most 4096 bytes serialised, `{}` by default.
 */
export type Metadata = { [key: string]: unknown };

// ------------------------------------------------------------------ errors

/**
 * Every error code, REST and Socket.IO alike. Branch on the code, never on `message` (which is
 * for people and may change). `not_joined` only ever comes in a socket acknowledgement.
 */
export type ErrorCode =
  | 'invalid_input'
  | 'unauthorized'
  | 'invalid_credentials'
  | 'forbidden'
  | 'account_disabled'
  | 'not_found'
  | 'conflict'
  | 'payload_too_large'
  | 'rate_limited'
  | 'not_joined'
  | 'internal'
  | 'unavailable';

/** The object under `error` in every failure: a REST error body or a failed acknowledgement. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
  /** On `invalid_input` where a field is to blame: its name (or a dotted path) -> why. */
  fields?: { [field: string]: string };
  /** On `rate_limited`: how long to wait. REST also sends a `retry-after` header (seconds). */
  retry_after_ms?: number;
}

/** The body of every non-2xx REST response. */
export interface ErrorResponse {
  error: ErrorBody;
}

/**
 * The `message` of a refused Socket.IO handshake (`connect_error`): a missing, bad, expired or
 * revoked token; Postgres unreachable while checking it; or the user already has
 * `MAX_SOCKETS_PER_USER` sockets. On `unauthorized`, refresh the token and connect again.
 */
export type ConnectErrorMessage = 'unauthorized' | 'unavailable' | 'too_many_connections';

// ------------------------------------------------------------------ objects

export interface Workspace {
  id: Id;
  /** 2-32 of `[a-z0-9-]`, unique; what `register` and `login` name as `workspace`. */
  slug: string;
  name: string;
  created_at: Timestamp;
}

export interface User {
  id: Id;
  workspace_id: Id;
  /** 3-32 of `[A-Za-z0-9_.-]`, unique in its workspace whatever its case, kept as typed. */
  username: string;
  display_name: string;
  /** Admin of its own workspace only. */
  is_admin: boolean;
  /** Set by the product's backend (server API); `null` for users who registered themselves. */
  external_id: string | null;
  is_bot: boolean;
  metadata: Metadata;
  created_at: Timestamp;
}

/** A user as other objects name them. */
export interface UserRef {
  id: Id;
  username: string;
  display_name: string;
}

export type Visibility = 'public' | 'private' | 'direct';

export interface Room {
  id: Id;
  /**
   * 1-64 of `[a-z0-9_-]`, unique in the workspace. A direct room is named `dm:` + the two user
   * ids sorted and joined by `-` (so both users get the same room).
   */
  name: string;
  visibility: Visibility;
  topic: string | null;
  /** `null` for the `DEFAULT_ROOMS` (and rooms the server API made without an owner). */
  created_by: Id | null;
  created_at: Timestamp;
  /** The seq of the room's newest message (0 when empty). */
  last_seq: Seq;
  /** The rev of the room's newest change (0 when none). */
  last_rev: Rev;
  metadata: Metadata;
}

/** A member's role; a member row is the ACL of private and direct rooms (in public ones it only gives a role). */
export type Role = 'owner' | 'moderator' | 'member';

/** A room as `GET /api/me/rooms` shows it: with the caller's role and read state. */
export interface MyRoom extends Room {
  role: Role;
  last_read_seq: Seq;
  /** `last_seq - last_read_seq`. */
  unread: number;
  /** Mentions of the caller in messages with a seq above `last_read_seq`. */
  unread_mentions: number;
}

/** How events name a room: enough to find it in a client's list. */
export interface RoomRef {
  id: Id;
  name: string;
}

export interface Member {
  user: UserRef;
  role: Role;
  added_at: Timestamp;
}

/** A quoted message (`reply_to`). */
export interface MessageRef {
  id: Id;
  seq: Seq;
  sender: UserRef;
  /**
   * Cut to 200 characters; `""` once that message is deleted. Read with its message (history,
   * the change feed, joins) it is the quoted message as it is now; the live `message` event
   * carries it as it was when the reply was sent.
   */
  body: string;
}

/** On a thread root: `null` until its first reply. */
export interface ThreadSummary {
  reply_count: number;
  last_reply_at: Timestamp | null;
  last_reply_seq: Seq | null;
}

export interface ReactionCount {
  emoji: string;
  count: number;
}

export interface Message {
  id: Id;
  room_id: Id;
  seq: Seq;
  /** The rev of this message's latest change. */
  rev: Rev;
  sender: UserRef;
  /** Trimmed, 1-4000 characters; `""` on a deleted message (a tombstone). */
  body: string;
  client_id: string | null;
  created_at: Timestamp;
  edited_at: Timestamp | null;
  /** Set on a tombstone: the row stays (so seqs have no gap) but its content is erased. */
  deleted_at: Timestamp | null;
  reply_to: MessageRef | null;
  /** Set on a thread reply: the id of its root. Clients show replies under their root. */
  thread_root_id: Id | null;
  /** On a thread root once it has replies; always `null` on a thread reply itself. */
  thread: ThreadSummary | null;
  /** One entry per emoji, most used first; `[]` when none (and on a tombstone). */
  reactions: ReactionCount[];
  mentions: UserRef[];
  metadata: Metadata;
  /**
   * The reader's own reactions. Present where one user reads a message (history and thread
   * pages, the change feed, a join's replay, acks, REST answers); absent from broadcasts
   * (`message`, `messageUpdated`, `mentioned`), which go to many readers at once.
   */
  my_reactions?: string[];
}

/** Tokens as every login, register, refresh and minted session returns them. */
export interface Tokens {
  /** An HS256 JWT (claims `sub`, `sid`, `wid`, `iat`, `exp`); `Authorization: Bearer ...`. */
  access_token: string;
  /** Opaque; rotates on every refresh. Presenting an already-used one revokes the session. */
  refresh_token: string;
  token_type: 'Bearer';
  /** The access token's lifetime in seconds (`ACCESS_TOKEN_TTL`, default 900). */
  expires_in: number;
}

// ------------------------------------------------------------------ REST: requests and answers

/** `POST /api/auth/register` body; `workspace` is a slug, absent means `default`. */
export interface RegisterRequest {
  workspace?: string;
  username: string;
  password: string;
  display_name?: string;
}

/** `POST /api/auth/login` body. */
export interface LoginRequest {
  workspace?: string;
  username: string;
  password: string;
}

/** Register (201), login (200) and a server-minted session (201). */
export interface AuthResponse extends Tokens {
  user: User;
}

/** `POST /api/auth/refresh` body; answered with a new `Tokens` pair. */
export interface RefreshRequest {
  refresh_token: string;
}

/** `PATCH /api/me` body; an absent (or null) field is left as it is. */
export interface UpdateMeRequest {
  display_name?: string | null;
}

/** `POST /api/me/password` body (204). */
export interface ChangePasswordRequest {
  current_password: string;
  new_password: string;
}

/** `POST /api/workspaces` body (only while `WORKSPACE_SIGNUP=open`, else 403 `forbidden`). */
export interface WorkspaceSignupRequest {
  slug: string;
  name: string;
  owner: { username: string; password: string; display_name?: string };
}

/** `POST /api/workspaces` answer (201): the owner is the workspace's first admin, logged in. */
export interface WorkspaceSignupResponse extends AuthResponse {
  workspace: Workspace;
}

/** `POST /api/rooms` body. Direct rooms are made with `POST /api/direct/{user_id}` instead. */
export interface CreateRoomRequest {
  name: string;
  visibility: 'public' | 'private';
  topic?: string | null;
  metadata?: Metadata;
}

/** `PATCH /api/rooms/{id}` body: an absent topic is kept, `null` or `""` clears it. */
export interface UpdateRoomRequest {
  topic?: string | null;
  metadata?: Metadata;
}

/** `GET /api/rooms?limit=&after=`: public rooms by name; `next` (a name) while more remain. */
export interface PublicRoomsPage {
  rooms: Room[];
  next?: string;
}

/** `GET /api/me/rooms`. */
export interface MyRoomsResponse {
  rooms: MyRoom[];
}

/** `GET /api/rooms/{id}/members`: owner first, then moderators, then members by username. */
export interface MembersResponse {
  members: Member[];
}

/** `PUT /api/rooms/{id}/members/{user_id}` body (answered with the `Member`). */
export interface SetMemberRequest {
  role: 'member' | 'moderator';
}

/** Query of the history and thread pages: `before` and `after` together are refused. */
export interface PageQuery {
  before?: Seq;
  after?: Seq;
  /** 1-200, default 50. */
  limit?: number;
}

/**
 * A history or thread page, oldest first. Without `after`: the newest messages below `before`
 * and `has_more` says older ones remain; with `after`: the oldest above it and `has_more` says
 * newer ones remain. A page may stop early (256 KiB of bodies) with `has_more: true`.
 */
export interface HistoryPage {
  messages: Message[];
  has_more: boolean;
}

/** `GET /api/rooms/{id}/changes?after_rev=&limit=`: messages changed after `after_rev`, in rev order. */
export interface ChangesPage {
  messages: Message[];
  has_more: boolean;
  /** The `after_rev` to ask next: the page's newest rev, or the room's `last_rev` when done. */
  last_rev: Rev;
}

/** `PUT /api/rooms/{id}/read` body (204). Never moves backwards; capped at `last_seq`. */
export interface MarkReadBody {
  seq: Seq;
}

/** `PATCH /api/rooms/{id}/messages/{message_id}` body: `metadata`, when given, replaces. */
export interface EditMessageBody {
  body: string;
  metadata?: Metadata;
}

/** `GET /healthz`. */
export interface Health {
  status: 'ok';
}

/** `GET /readyz` (200); a dependency that does not answer makes it 503 `unavailable`. */
export interface Readiness {
  status: 'ready';
  postgres: 'ok';
  redis?: 'ok';
}

// ------------------------------------------------------------------ REST: admin and server API

/** An API key of the server API; never its secret. */
export interface ApiKey {
  id: Id;
  name: string;
  /** The secret's first 11 characters, to recognise it by. */
  prefix: string;
  created_at: Timestamp;
  last_used_at: Timestamp | null;
  revoked_at: Timestamp | null;
}

/** `POST /api/admin/api-keys` answer (201): the secret (`hk_...`) is shown this once. */
export interface CreatedApiKey {
  key: ApiKey;
  secret: string;
}

/** `GET /api/admin/api-keys`: newest first, revoked ones included. */
export interface ApiKeysResponse {
  keys: ApiKey[];
}

/** `GET /api/server/workspaces` (platform keys). */
export interface WorkspacesResponse {
  workspaces: Workspace[];
}

/** `PUT /api/server/users/{external_id}` body; on an update, absent fields keep their value. */
export interface ServerUserRequest {
  username: string;
  display_name?: string;
  is_admin?: boolean;
  is_bot?: boolean;
  metadata?: Metadata;
}

/** `POST /api/server/rooms` body; users are named by their `external_id`. */
export interface ServerRoomRequest {
  name: string;
  visibility: 'public' | 'private';
  topic?: string | null;
  metadata?: Metadata;
  owner?: string;
  members?: { external_id: string; role: 'member' | 'moderator' }[];
}

/** `POST /api/server/rooms/{id}/messages` body: 201 when stored, 200 for a repeated `client_id`. */
export interface ServerMessageRequest {
  sender: string;
  body: string;
  client_id?: string;
  reply_to?: Id;
  thread_root_id?: Id;
  metadata?: Metadata;
}

export type EventType =
  | 'message.created'
  | 'message.updated'
  | 'message.deleted'
  | 'reaction.added'
  | 'reaction.removed'
  | 'member.added'
  | 'member.role_changed'
  | 'member.removed'
  | 'room.created'
  | 'room.updated'
  | 'room.deleted'
  | 'user.created'
  | 'user.updated'
  | 'user.disabled'
  | 'user.enabled';

interface EventBase<T extends EventType, D> {
  /** Stable: receivers de-duplicate by it (it is also the `webhook-id` header). */
  id: Id;
  type: T;
  /** The workspace-wide cursor: page the log with `after=<last position seen>`. */
  position: number;
  workspace_id: Id;
  created_at: Timestamp;
  data: D;
}

/**
 * An entry of the event log (`GET /api/server/events`) and a webhook's body. The message is as
 * the change left it (no `my_reactions`); the room as it stands when the event is read.
 */
export type HuddleEvent =
  | EventBase<
      'message.created' | 'message.updated' | 'message.deleted' | 'reaction.added' | 'reaction.removed',
      { room: Room; message: Message }
    >
  | EventBase<'member.added' | 'member.role_changed', { room: Room; member: Member }>
  | EventBase<'member.removed', { room: Room; member: Member; reason: 'kicked' | 'left' }>
  | EventBase<'room.created' | 'room.updated' | 'room.deleted', { room: Room }>
  | EventBase<'user.created' | 'user.updated' | 'user.disabled' | 'user.enabled', { user: User }>;

/** `GET /api/server/events?after=&limit=`. */
export interface EventsPage {
  events: HuddleEvent[];
  has_more: boolean;
  /** The `after` to ask next: the last event's position, or `after` itself on an empty page. */
  last_position: number;
}

export interface Webhook {
  id: Id;
  url: string;
  /** Empty: every type. */
  events: EventType[];
  description: string | null;
  active: boolean;
  created_at: Timestamp;
}

/** `POST /api/server/webhooks` body. */
export interface CreateWebhookRequest {
  url: string;
  events?: EventType[];
  description?: string;
}

/** `POST /api/server/webhooks` answer (201): the `whsec_...` secret is shown this once. */
export interface CreatedWebhook {
  webhook: Webhook;
  secret: string;
}

/** `PATCH /api/server/webhooks/{id}` body; `active: false` pauses, `true` catches up. */
export interface UpdateWebhookRequest {
  url?: string;
  events?: EventType[];
  active?: boolean;
}

export interface WebhooksResponse {
  webhooks: Webhook[];
}

export interface Delivery {
  id: Id;
  event_id: Id;
  /** How many POSTs so far. */
  attempt: number;
  status: 'delivered' | 'failed' | 'pending';
  response_status: number | null;
  latency_ms: number | null;
  error: string | null;
  created_at: Timestamp;
}

/** `GET /api/server/webhooks/{id}/deliveries`: the newest 100, newest first. */
export interface DeliveriesResponse {
  deliveries: Delivery[];
}

// ------------------------------------------------------------------ Socket.IO: acknowledgements

/**
 * Every acknowledgement: `{ok: true, ...T}` or `{ok: false, error}`. Test `ok` before reading
 * the data: TypeScript then narrows to the right half.
 */
export type Ack<T extends object = {}> = ({ ok: true } & T) | { ok: false; error: ErrorBody };

/** The acknowledgement callback of an event; `ack` is whatever the server answered. */
export type AckCallback<T extends object = {}> = (ack: Ack<T>) => void;

// ------------------------------------------------------------------ Socket.IO: client to server

/** `joinRoom` as an object: a room name or id, and where to resume from. */
export interface JoinRoomRequest {
  room: string;
  /** The last seq seen: the join replays only the messages after it. */
  since?: Seq;
  /**
   * The highest rev seen; needs `since` (else `invalid_input`). The `history` event then also
   * carries `updates`: the messages at or before `since` that changed after it.
   */
  since_rev?: Rev;
}

/** `joinPrivateRoom`: as `joinRoom`, named by id (a bare id string works too). */
export interface JoinPrivateRoomRequest {
  roomId: Id;
  since?: Seq;
  since_rev?: Rev;
}

export interface SendMessageRequest {
  /** A room the socket has joined (name or id). */
  room: string;
  body: string;
  /** 1-64 characters: re-sending the same one stores nothing twice (the ack has the first). */
  client_id?: string;
  /** A message of the same room to quote. */
  reply_to?: Id;
  /** A message of the same room that is not itself a thread reply: this becomes its reply. */
  thread_root_id?: Id;
  metadata?: Metadata;
}

export interface DirectMessageRequest {
  /** A user id or a username of the caller's workspace (not oneself). */
  to: string;
  body: string;
  client_id?: string;
  reply_to?: Id;
  thread_root_id?: Id;
  metadata?: Metadata;
}

export interface EditMessageRequest {
  room: string;
  id: Id;
  body: string;
  /** When given, replaces the old metadata; when absent it is kept. */
  metadata?: Metadata;
}

export interface DeleteMessageRequest {
  room: string;
  id: Id;
}

export interface ReactRequest {
  room: string;
  id: Id;
  /** 1-32 Unicode scalar values, no white space or control characters. */
  emoji: string;
  /** `true` adds the caller's reaction, `false` removes it (both idempotent). */
  on: boolean;
}

export interface HistoryRequest extends PageQuery {
  room: string;
}

export interface MarkReadRequest {
  room: string;
  seq: Seq;
}

export interface TypingRequest {
  room: string;
  typing: boolean;
}

/**
 * What a client emits, for `Socket<ServerToClientEvents, ClientToServerEvents>`. Every event
 * takes an acknowledgement callback as its last argument (`emitWithAck` returns it as a promise);
 * the callback is declared required so that `emitWithAck` can infer the answer's type (which
 * socket.io-client 4.8 loses after `timeout()`: see the top of this file).
 * Room events (`joinRoom`, `joinPrivateRoom`, `leaveRoom`, `history`, `listOnline`) draw from
 * one rate-limit bucket; the message events (`sendMessage`, `directMessage`, `editMessage`,
 * `deleteMessage`, `react`, `typing`) from another. Over either: `rate_limited`.
 */
export interface ClientToServerEvents {
  /**
   * Joins a room (public, or one whose ACL lists the user). The socket then gets `history`, the
   * room a welcome `message` and, for the user's first socket there, `presence`; the ack last.
   */
  joinRoom: (room: string | JoinRoomRequest, ack: AckCallback<{ room: Room }>) => void;
  /** The private-room join (its notice reads "<username> has joined the private discussion."). */
  joinPrivateRoom: (room: Id | JoinPrivateRoomRequest, ack: AckCallback<{ room: Room }>) => void;
  leaveRoom: (room: string | { room: string }, ack: AckCallback) => void;
  /** Acknowledged after the commit; broadcast as `message` to the room, the sender included. */
  sendMessage: (message: SendMessageRequest, ack: AckCallback<{ message: Message }>) => void;
  /** Only the sender; a deleted message cannot be edited. The room gets `messageUpdated`. */
  editMessage: (edit: EditMessageRequest, ack: AckCallback<{ message: Message }>) => void;
  /** The sender, an owner or moderator, or an admin; twice is `{ok: true}` again. */
  deleteMessage: (target: DeleteMessageRequest, ack: AckCallback) => void;
  react: (reaction: ReactRequest, ack: AckCallback<{ message: Message }>) => void;
  /** As the REST history; needs only the right to join, not a join. */
  history: (query: HistoryRequest, ack: AckCallback<HistoryPage>) => void;
  /** Members only (`forbidden` for a public room's non-member); the user's other sockets get `read`. */
  markRead: (read: MarkReadRequest, ack: AckCallback) => void;
  typing: (typing: TypingRequest, ack: AckCallback) => void;
  /** Creates the direct room on first use; both users' sockets get the `message`, joined or not. */
  directMessage: (message: DirectMessageRequest, ack: AckCallback<{ message: Message; room: Room }>) => void;
  /** The distinct users with a socket in the room, on every node. */
  listOnline: (room: string | { room: string }, ack: AckCallback<{ users: UserRef[] }>) => void;
}

// ------------------------------------------------------------------ Socket.IO: server to client

/** `session`: on connect. */
export interface SessionEvent {
  user: User;
}

/** `message` for a stored user message: the message, `kind: "user"` and its room. */
export interface UserMessageEvent extends Message {
  kind: 'user';
  room: RoomRef;
}

/** `message` for a join notice; not stored, so it has no id and no seq. */
export interface SystemNoticeEvent {
  kind: 'system';
  room: RoomRef;
  body: string;
  created_at: Timestamp;
}

/** Test `kind` to tell the two apart. */
export type RoomMessageEvent = UserMessageEvent | SystemNoticeEvent;

/**
 * `history`: a join's replay, oldest first (de-duplicate by seq: it may overlap what arrives
 * live). `updates` and `updates_has_more` are present only when the join gave `since_rev`;
 * page on with `history {after}` while `has_more`, and with the change feed (from the last
 * update's rev) while `updates_has_more`.
 */
export interface HistoryEvent {
  room: RoomRef;
  messages: Message[];
  has_more: boolean;
  updates?: Message[];
  updates_has_more?: boolean;
}

/** `messageUpdated` (an edit, or a thread root's new summary) and `mentioned`. */
export interface MessageChangedEvent {
  room: RoomRef;
  message: Message;
}

export interface MessageDeletedEvent {
  room: RoomRef;
  id: Id;
  seq: Seq;
  rev: Rev;
}

export interface ReactionEvent {
  room: RoomRef;
  message_id: Id;
  seq: Seq;
  rev: Rev;
  emoji: string;
  user: UserRef;
  on: boolean;
  /** The emoji's count after the change: set it, never add to it. */
  count: number;
}

export interface ReadEvent {
  room: RoomRef;
  /** The stored read position. */
  seq: Seq;
}

export interface TypingEvent {
  room: RoomRef;
  user: UserRef;
  typing: boolean;
}

export interface PresenceEvent {
  room: RoomRef;
  user: UserRef;
  /** `joined`: the user's first socket entered; `left`: the last one left (a disconnect too). */
  status: 'joined' | 'left';
}

export type RemovalReason = 'kicked' | 'left' | 'room_deleted';

export interface RemovedEvent {
  room: RoomRef;
  reason: RemovalReason;
}

/** `error`: beside a refused join's acknowledgement. */
export interface SocketErrorEvent {
  code: ErrorCode;
  message: string;
  /** What the client sent as the room. */
  room?: string;
}

/** What the server emits, for `Socket<ServerToClientEvents, ClientToServerEvents>`. */
export interface ServerToClientEvents {
  session: (session: SessionEvent) => void;
  message: (message: RoomMessageEvent) => void;
  history: (history: HistoryEvent) => void;
  messageUpdated: (update: MessageChangedEvent) => void;
  messageDeleted: (deletion: MessageDeletedEvent) => void;
  reaction: (reaction: ReactionEvent) => void;
  /** To every socket of a newly mentioned user, joined to the room or not. */
  mentioned: (mention: MessageChangedEvent) => void;
  /** The user's read position moved (after `markRead` on another socket, or `PUT .../read`). */
  read: (read: ReadEvent) => void;
  /** Another socket in the room typed (never echoed to the typing socket). */
  typing: (typing: TypingEvent) => void;
  presence: (presence: PresenceEvent) => void;
  /** To every socket of the removed user, joined or not; or to a deleted room's sockets. */
  removed: (removal: RemovedEvent) => void;
  error: (error: SocketErrorEvent) => void;
}
