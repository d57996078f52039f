-- Messages as chat products need them: edits (edited_at exists since 0003), deletions as
-- tombstones, quoted replies, threads with a summary on their root, reactions, mentions and the
-- app's own metadata. Every change raises the room's last_rev and the message's rev (0006).
--
-- reply_to and thread_root_id name messages of the same room. They are checked when the message
-- is sent and carry no foreign key: messages are never deleted one by one (a deletion leaves a
-- tombstone), only with their whole room, and a foreign key would cost every insert a lookup
-- and every room deletion an index on each column.

alter table messages
    add column deleted_at timestamptz,
    add column reply_to uuid,
    add column thread_root_id uuid,
    add column thread_reply_count integer not null default 0
        constraint messages_thread_reply_count_not_negative check (thread_reply_count >= 0),
    add column thread_last_reply_at timestamptz,
    add column thread_last_reply_seq bigint,
    add column metadata jsonb not null default '{}'
        constraint messages_metadata_object check (jsonb_typeof(metadata) = 'object');

-- A tombstone keeps its row (and so its seq: no gap) but not its text.
alter table messages drop constraint messages_body_length;
alter table messages add constraint messages_body_length check (
    case when deleted_at is null then char_length(body) between 1 and 4000
         else body = '' and metadata = '{}'::jsonb end);
-- A thread reply is never a root itself: replies have no summary.
alter table messages add constraint messages_thread_reply_has_no_summary
    check (thread_root_id is null or thread_reply_count = 0);

-- Thread pages: one thread's replies by seq, an index walk like the history's.
create index messages_thread_root_id_seq_idx on messages (thread_root_id, seq)
    where thread_root_id is not null;

comment on column messages.deleted_at is 'When the message was deleted; its row stays as a tombstone (body '''', metadata {}, no reactions or mentions). Null while it stands.';
comment on column messages.reply_to is 'The message of the same room that this one quotes (a reply in the main timeline); null if none.';
comment on column messages.thread_root_id is 'The message of the same room whose thread this one belongs to; null for a main-timeline message.';
comment on column messages.thread_reply_count is 'On a thread root: how many replies its thread has (deleted ones included, as tombstones). 0 otherwise.';
comment on column messages.thread_last_reply_at is 'On a thread root: when its newest reply was sent; null until the first.';
comment on column messages.thread_last_reply_seq is 'On a thread root: the seq of its newest reply; null until the first.';
comment on column messages.metadata is 'The app''s own JSON object (attachments, a ticket id, a card), at most 4 KiB serialised; {} by default.';

alter table rooms add column metadata jsonb not null default '{}'
    constraint rooms_metadata_object check (jsonb_typeof(metadata) = 'object');
comment on column rooms.metadata is 'The app''s own JSON object for the room, at most 4 KiB serialised; {} by default.';

create table reactions (
    message_id   uuid not null references messages (id) on delete cascade,
    user_id      uuid not null,
    emoji        text not null
                 constraint reactions_emoji_length check (char_length(emoji) between 1 and 32),
    workspace_id uuid not null,
    room_id      uuid not null,
    created_at   timestamptz not null default now(),
    -- One reaction per user per emoji per message; also the index behind a message's counts.
    primary key (message_id, user_id, emoji),
    constraint reactions_user_fkey
        foreign key (workspace_id, user_id) references users (workspace_id, id) on delete cascade
);
comment on table reactions is 'Who reacted with which emoji to which message. A message''s counts are counted from here when it is read.';
comment on column reactions.message_id is 'The message reacted to.';
comment on column reactions.user_id is 'Who reacted.';
comment on column reactions.emoji is 'The reaction: 1-32 characters, no whitespace or control characters (any text an app uses as an emoji or a shortcode).';
comment on column reactions.workspace_id is 'The workspace of the message and of the user.';
comment on column reactions.room_id is 'The message''s room, for operators'' queries by room.';
comment on column reactions.created_at is 'When the reaction was added (orders equal counts: the first used comes first).';

create table mentions (
    message_id   uuid not null references messages (id) on delete cascade,
    user_id      uuid not null,
    workspace_id uuid not null,
    room_id      uuid not null,
    seq          bigint not null,
    primary key (message_id, user_id),
    constraint mentions_user_fkey
        foreign key (workspace_id, user_id) references users (workspace_id, id) on delete cascade
);
-- Unread mentions: a user's mentions in a room after their read position, an index range.
create index mentions_user_id_room_id_seq_idx on mentions (user_id, room_id, seq);
comment on table mentions is 'Users named with @username in a message, resolved when it was sent or last edited.';
comment on column mentions.message_id is 'The message that names the user.';
comment on column mentions.user_id is 'The user it names (one who could read the room at the time).';
comment on column mentions.workspace_id is 'The workspace of the message and of the user.';
comment on column mentions.room_id is 'The message''s room.';
comment on column mentions.seq is 'The message''s seq, so that unread mentions (seq > last_read_seq) are counted from this table alone.';

-- A message as the API shows it, for operators and for the service's own reads: its sender,
-- reaction counts (most used first), mentioned users, the quoted message (as it is now; '' once
-- deleted) and, on a thread root, the thread summary. The per-row subqueries run only for the
-- rows a query returns, so a page read through this view is still a walk of one index.
create view message_view as
select m.id, m.workspace_id, m.room_id, m.seq, m.rev, m.body, m.client_id, m.created_at,
       m.edited_at, m.deleted_at, m.thread_root_id, m.metadata,
       u.id as sender_id, u.username as sender_username, u.display_name as sender_display_name,
       case when m.reply_to is null then null else (
           select jsonb_build_object(
                      'id', q.id, 'seq', q.seq,
                      'sender', jsonb_build_object('id', qu.id, 'username', qu.username,
                                                   'display_name', qu.display_name),
                      'body', left(q.body, 200))
           from messages q join users qu on qu.id = q.sender_id
           where q.id = m.reply_to) end as reply_to,
       case when m.thread_reply_count = 0 then null
            else jsonb_build_object('reply_count', m.thread_reply_count,
                                    'last_reply_at', m.thread_last_reply_at,
                                    'last_reply_seq', m.thread_last_reply_seq) end as thread,
       coalesce((select jsonb_agg(jsonb_build_object('emoji', c.emoji, 'count', c.n)
                                  order by c.n desc, c.first_at, c.emoji)
                 from (select r.emoji, count(*) as n, min(r.created_at) as first_at
                       from reactions r where r.message_id = m.id group by r.emoji) c),
                '[]'::jsonb) as reactions,
       coalesce((select jsonb_agg(jsonb_build_object('id', mu.id, 'username', mu.username,
                                                     'display_name', mu.display_name)
                                  order by mu.username)
                 from mentions mm join users mu on mu.id = mm.user_id
                 where mm.message_id = m.id),
                '[]'::jsonb) as mentions
from messages m
join users u on u.workspace_id = m.workspace_id and u.id = m.sender_id;
comment on view message_view is 'Messages with their sender, reactions, mentions, quoted message and thread summary, as the API shows them.';
comment on column message_view.id is 'The message id.';
comment on column message_view.workspace_id is 'The message''s workspace.';
comment on column message_view.room_id is 'The message''s room.';
comment on column message_view.seq is 'The message''s position in its room.';
comment on column message_view.rev is 'The room''s rev of the message''s latest change.';
comment on column message_view.body is 'The text ('''' once deleted).';
comment on column message_view.client_id is 'The sending client''s idempotency key, if any.';
comment on column message_view.created_at is 'When the message was committed.';
comment on column message_view.edited_at is 'When the body was last edited; null if never.';
comment on column message_view.deleted_at is 'When the message was deleted; null while it stands.';
comment on column message_view.thread_root_id is 'The thread root this message replies in; null for the main timeline.';
comment on column message_view.metadata is 'The app''s own JSON object.';
comment on column message_view.sender_id is 'Who sent it.';
comment on column message_view.sender_username is 'The sender''s username, as it is now.';
comment on column message_view.sender_display_name is 'The sender''s display name, as it is now.';
comment on column message_view.reply_to is 'The quoted message as the API shows it ({id, seq, sender, body}: body cut to 200 characters); null if none.';
comment on column message_view.thread is 'On a thread root, {reply_count, last_reply_at, last_reply_seq}; null otherwise.';
comment on column message_view.reactions is 'The reaction counts, [{emoji, count}], most used first.';
comment on column message_view.mentions is 'The mentioned users, [{id, username, display_name}], by username.';
