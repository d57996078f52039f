-- The event log: one row per change a workspace's backend may want to hear of (messages,
-- reactions, rooms, members, users), written in the same transaction as the change, read by
-- position over GET /api/server/events and carried by webhooks.
--
-- Positions are handed out 1, 2, 3, ... per workspace in commit order: a transaction takes its
-- positions from event_positions as its very last step, holding that row's lock until it
-- commits, so a transaction that takes the next positions cannot commit before it. A reader that
-- has seen position p has therefore seen every committed event below p and will see every later
-- one above it: paging with `after` never skips an event, however transactions interleave.
--
-- A new message's event is a few fixed-size columns (no JSON): the message is read from
-- `messages` when the event is read, until its first change stores the event's view of it
-- (see docs/schema.md).

create table event_positions (
    workspace_id  uuid primary key
                  constraint event_positions_workspace_id_fkey references workspaces (id) on delete cascade,
    last_position bigint not null default 0
);
comment on table event_positions is 'The newest event position of each workspace. Its row lock, taken last in each transaction that writes events and held until commit, orders positions by commit.';
comment on column event_positions.workspace_id is 'The workspace.';
comment on column event_positions.last_position is 'The position of the workspace''s newest event (0 before the first).';

create table events (
    -- No foreign key: its check would be a trigger per row, and a message's event is written
    -- for every message. Rows are only ever written with the workspace of a row that has one
    -- (the message, the room, the user, event_positions).
    workspace_id uuid not null,
    position     bigint not null,
    -- Random (v4 from gen_random_uuid() where SQL makes the event, v7 where Rust does): unique
    -- without a unique index to keep up on every message.
    id           uuid not null,
    type         text not null
                 constraint events_type_known check (type in (
                     'message.created', 'message.updated', 'message.deleted',
                     'reaction.added', 'reaction.removed',
                     'member.added', 'member.role_changed', 'member.removed',
                     'room.created', 'room.updated', 'room.deleted',
                     'user.created', 'user.updated', 'user.disabled', 'user.enabled')),
    created_at   timestamptz not null default now(),
    -- What the event shows that is not read when the event is read (see the column's comment).
    data         jsonb,
    -- The message an event shows (message.* and reaction.* events).
    message_id   uuid,
    -- The message quoted by the message that `data` holds, if any.
    quoted_id    uuid,
    primary key (workspace_id, position),
    constraint events_data_or_message check (data is not null or message_id is not null)
);
-- Message ids are UUIDv7 (time-ordered): this index grows at its right edge, as the primary key
-- does, which keeps its cost per message small. With the type, the writer finds a message's
-- message.created event without walking its other events (a popular message has thousands of
-- reactions).
create index events_message_id_idx on events (message_id, type) where message_id is not null;
create index events_quoted_id_idx on events (quoted_id) where quoted_id is not null;
-- Retention deletes by age; rows arrive in time order, so a BRIN index (a few pages, next to
-- nothing to maintain per insert) finds them.
create index events_created_at_idx on events using brin (created_at);

comment on table events is 'The event log: what GET /api/server/events pages through and webhooks deliver. Kept EVENT_RETENTION_DAYS days; a deleted room''s message and reaction events go with its messages.';
comment on column events.workspace_id is 'The workspace the event belongs to.';
comment on column events.position is 'Handed out 1, 2, 3, ... per workspace in commit order (event_positions): the cursor of GET /api/server/events?after=.';
comment on column events.id is 'Stable random id: receivers de-duplicate by it; it is the webhook-id header.';
comment on column events.type is 'message.created, message.updated, message.deleted, reaction.added, reaction.removed, member.added, member.role_changed, member.removed, room.created, room.updated, room.deleted, user.created, user.updated, user.disabled, user.enabled.';
comment on column events.created_at is 'When the change''s transaction began.';
comment on column events.data is 'room.*: {room}; member.*: {room, member, reason?}; user.*: {user}. message.* and reaction.*: {message}, the message after the change, the room being added when the event is read; or null while the message is still as the event left it (message.created until its first change, message.deleted always, and every event of a deleted message: its text is gone), the message then being read from messages when the event is read.';
comment on column events.message_id is 'The message a message.* or reaction.* event shows (index events_message_id_idx).';
comment on column events.quoted_id is 'The message quoted in data (reply_to), if any (index events_quoted_id_idx): deleting it erases the quote''s text in data too.';

-- Every existing workspace starts at position 0.
insert into event_positions (workspace_id) select id from workspaces;
