-- The event log: one row per change a workspace's backend may want to hear of (messages,
-- reactions, rooms, members, users), written in the same transaction as the change, read by
-- position over GET /api/server/events and carried by webhooks.
--
-- Positions are dense per workspace (1, 2, 3, ...) and follow commit order: a transaction takes
-- its positions from event_positions as its very last step, holding that row's lock until it
-- commits, so a transaction that takes the next positions cannot commit before it. A reader that
-- has seen position p has therefore seen every committed event below p and will see every later
-- one above it: paging with `after` never skips an event, however transactions interleave.

create table event_positions (
    workspace_id  uuid primary key
                  constraint event_positions_workspace_id_fkey references workspaces (id) on delete cascade,
    last_position bigint not null default 0
);
comment on table event_positions is 'The newest event position of each workspace. Its row lock, taken last in each transaction that writes events and held until commit, orders positions by commit.';
comment on column event_positions.workspace_id is 'The workspace.';
comment on column event_positions.last_position is 'The position of the workspace''s newest event (0 before the first).';

create table events (
    workspace_id uuid not null
                 constraint events_workspace_id_fkey references workspaces (id) on delete cascade,
    position     bigint not null,
    id           uuid not null constraint events_id_key unique,
    type         text not null
                 constraint events_type_known check (type in (
                     'message.created', 'message.updated', 'message.deleted',
                     'reaction.added', 'reaction.removed',
                     'member.added', 'member.role_changed', 'member.removed',
                     'room.created', 'room.updated', 'room.deleted',
                     'user.created', 'user.updated', 'user.disabled', 'user.enabled')),
    created_at   timestamptz not null default now(),
    data         jsonb not null,
    -- The message an event shows, so that deleting it can erase its text from earlier events.
    message_id   uuid,
    -- The message that message quotes (its reply_to), whose text the event also shows.
    quoted_id    uuid,
    primary key (workspace_id, position)
);
create index events_message_id_idx on events (message_id) where message_id is not null;
create index events_quoted_id_idx on events (quoted_id) where quoted_id is not null;
create index events_created_at_idx on events (created_at);

comment on table events is 'The event log: what GET /api/server/events pages through and webhooks deliver. Kept EVENT_RETENTION_DAYS days.';
comment on column events.workspace_id is 'The workspace the event belongs to.';
comment on column events.position is 'Dense per workspace and in commit order: the cursor of GET /api/server/events?after=.';
comment on column events.id is 'Stable id (UUIDv7): receivers de-duplicate by it; it is the webhook-id header.';
comment on column events.type is 'message.created, message.updated, message.deleted, reaction.added, reaction.removed, member.added, member.role_changed, member.removed, room.created, room.updated, room.deleted, user.created, user.updated, user.disabled, user.enabled.';
comment on column events.created_at is 'When the change''s transaction began.';
comment on column events.data is 'The event''s data as delivered: {room, message} for messages and reactions, {room, member, reason?} for members, {room} for rooms, {user} for users. A deleted message''s text is erased here too.';
comment on column events.quoted_id is 'The message quoted by the event''s message (reply_to), if any (index events_quoted_id_idx): deleting it erases the quote''s text in this event too.';
comment on column events.message_id is 'The message the event shows, if any (index events_message_id_idx), so that deleting the message erases its body from every earlier event.';

-- Every existing workspace starts at position 0.
insert into event_positions (workspace_id) select id from workspaces;
