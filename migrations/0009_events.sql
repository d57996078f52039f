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
    -- Random (UUIDv4), so unique without an index to keep.
    id           uuid not null,
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
-- Retention deletes by age; rows arrive in time order, so a BRIN index (a few pages, next to
-- nothing to maintain per insert) finds them.
create index events_created_at_idx on events using brin (created_at);

comment on table events is 'The event log: what GET /api/server/events pages through and webhooks deliver. Kept EVENT_RETENTION_DAYS days.';
comment on column events.workspace_id is 'The workspace the event belongs to.';
comment on column events.position is 'Dense per workspace and in commit order: the cursor of GET /api/server/events?after=.';
comment on column events.id is 'Stable random id: receivers de-duplicate by it; it is the webhook-id header.';
comment on column events.type is 'message.created, message.updated, message.deleted, reaction.added, reaction.removed, member.added, member.role_changed, member.removed, room.created, room.updated, room.deleted, user.created, user.updated, user.disabled, user.enabled.';
comment on column events.created_at is 'When the change''s transaction began.';
comment on column events.data is 'The event''s data as delivered: {room, message} for messages and reactions, {room, member, reason?} for members, {room} for rooms, {user} for users. A deleted message''s text is erased here too.';
comment on column events.quoted_id is 'The message quoted by the event''s message (reply_to), if any (index events_quoted_id_idx): deleting it erases the quote''s text in this event too.';
comment on column events.message_id is 'The message the event shows, if any (index events_message_id_idx), so that deleting the message erases its body from every earlier event.';

-- A timestamp as the API writes it (RFC 3339 in UTC, "Z", the fraction without trailing zeros),
-- for events made by SQL statements rather than from the Rust types.
create function huddle_rfc3339(t timestamptz) returns text
language sql stable parallel safe as $$
    select to_char(t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || case when extract(microseconds from t)::bigint % 1000000 = 0 then ''
                else '.' || rtrim(to_char(extract(microseconds from t)::bigint % 1000000,
                                          'FM000000'), '0') end
        || 'Z'
$$;
comment on function huddle_rfc3339(timestamptz) is 'A timestamp as the API writes it: RFC 3339 in UTC with Z, the fraction of a second without trailing zeros.';

-- A room and a message as the API writes them (the Rust types' JSON), for the events the
-- message writer makes in SQL. tests/events.rs compares both with what the API answers.
create function huddle_room_json(r rooms) returns jsonb
language sql stable parallel safe as $$
    select jsonb_build_object(
        'id', r.id, 'name', r.name, 'visibility', r.visibility, 'topic', r.topic,
        'created_by', r.created_by, 'created_at', huddle_rfc3339(r.created_at),
        'last_seq', r.last_seq, 'last_rev', r.last_rev, 'metadata', r.metadata)
$$;
comment on function huddle_room_json(rooms) is 'A room as the API writes it (the room object of the contract).';

create function huddle_message_json(v message_view) returns jsonb
language sql stable parallel safe as $$
    select jsonb_build_object(
        'id', v.id, 'room_id', v.room_id, 'seq', v.seq, 'rev', v.rev,
        'sender', jsonb_build_object('id', v.sender_id, 'username', v.sender_username,
                                     'display_name', v.sender_display_name),
        'body', v.body, 'client_id', v.client_id,
        'created_at', huddle_rfc3339(v.created_at),
        'edited_at', huddle_rfc3339(v.edited_at),
        'deleted_at', huddle_rfc3339(v.deleted_at),
        'reply_to', v.reply_to, 'thread_root_id', v.thread_root_id,
        'thread', case when v.thread is null then null else jsonb_build_object(
                      'reply_count', v.thread->'reply_count',
                      'last_reply_at', huddle_rfc3339((v.thread->>'last_reply_at')::timestamptz),
                      'last_reply_seq', v.thread->'last_reply_seq') end,
        'reactions', v.reactions, 'mentions', v.mentions, 'metadata', v.metadata)
$$;
comment on function huddle_message_json(message_view) is 'A message as the API broadcasts it (the message object of the contract, without my_reactions).';

-- Every existing workspace starts at position 0.
insert into event_positions (workspace_id) select id from workspaces;
