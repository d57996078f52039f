-- Rooms, who may enter them (the ACL), and what was said in them.

create table rooms (
    id         uuid primary key,
    name       text not null
               constraint rooms_name_key unique,
    visibility text not null
               constraint rooms_visibility_known check (visibility in ('public', 'private', 'direct')),
    topic      text
               constraint rooms_topic_length check (char_length(topic) <= 256),
    created_by uuid references users (id) on delete set null,
    last_seq   bigint not null default 0
               constraint rooms_last_seq_not_negative check (last_seq >= 0),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    -- Direct rooms are named dm:<user id>-<user id> (the two ids sorted); every other room is a
    -- plain name, which therefore can never collide with a direct room's.
    constraint rooms_name_format check (
        case visibility
            when 'direct' then name ~ '^dm:[0-9a-f-]{36}-[0-9a-f-]{36}$'
            else name ~ '^[a-z0-9_-]{1,64}$'
        end
    )
);

create trigger rooms_set_updated_at before update on rooms
    for each row execute function set_updated_at();

comment on table rooms is 'Chat rooms: public (anyone may join), private (members only) and direct (two users).';
comment on column rooms.id is 'Room id (UUID), as seen by clients.';
comment on column rooms.name is 'Unique name: 1-64 of [a-z0-9_-], or dm:<id>-<id> for a direct room.';
comment on column rooms.visibility is 'public: anyone may join; private: only users in room_members; direct: the two users in room_members.';
comment on column rooms.topic is 'Optional topic, up to 256 characters.';
comment on column rooms.created_by is 'Who created the room; null for rooms made at startup (DEFAULT_ROOMS) or by a deleted user.';
comment on column rooms.last_seq is 'seq of the newest message in the room (0 when empty). The next message gets last_seq + 1.';
comment on column rooms.created_at is 'When the room was created.';
comment on column rooms.updated_at is 'Last change to the row (topic, last_seq).';

create table room_members (
    room_id       uuid not null references rooms (id) on delete cascade,
    user_id       uuid not null references users (id) on delete cascade,
    role          text not null
                  constraint room_members_role_known check (role in ('owner', 'moderator', 'member')),
    added_by      uuid references users (id) on delete set null,
    added_at      timestamptz not null default now(),
    last_read_seq bigint not null default 0
                  constraint room_members_last_read_seq_not_negative check (last_read_seq >= 0),
    primary key (room_id, user_id)
);

-- "Which rooms is this user in?" (the primary key serves "who is in this room?").
create index room_members_user_id_idx on room_members (user_id);
-- At most one owner per room.
create unique index room_members_one_owner on room_members (room_id) where role = 'owner';

comment on table room_members is
    'The ACL: a row lets a user into a private or direct room, with a role. Joining a public room adds no row.';
comment on column room_members.room_id is 'The room.';
comment on column room_members.user_id is 'The member.';
comment on column room_members.role is 'owner (the creator; one per room), moderator (may add and remove members) or member.';
comment on column room_members.added_by is 'Who granted access; null for the creator and for both users of a direct room.';
comment on column room_members.added_at is 'When access was granted.';
comment on column room_members.last_read_seq is 'The member has read the room up to this message seq (never moves backwards).';

create table messages (
    id         uuid primary key,
    room_id    uuid not null references rooms (id) on delete cascade,
    seq        bigint not null
               constraint messages_seq_positive check (seq >= 1),
    sender_id  uuid not null references users (id),
    body       text not null
               constraint messages_body_length check (char_length(body) between 1 and 4000),
    client_id  text
               constraint messages_client_id_length check (char_length(client_id) between 1 and 64),
    created_at timestamptz not null default now(),
    edited_at  timestamptz,
    -- One seq per message per room; also the index behind history pages (newest first is a
    -- backward scan of it).
    constraint messages_room_seq_key unique (room_id, seq)
);

-- Exactly-once sends: a client_id is used once per sender per room.
create unique index messages_client_id_key on messages (room_id, sender_id, client_id)
    where client_id is not null;

comment on table messages is 'Every message ever acknowledged, per room, numbered by seq. System notices are not stored.';
comment on column messages.id is 'Message id: a UUIDv7, so ids sort by creation time.';
comment on column messages.room_id is 'The room the message was sent to.';
comment on column messages.seq is 'Position in the room: 1, 2, 3, ... in commit order, without gaps. The cursor for history and read state.';
comment on column messages.sender_id is 'Who sent it.';
comment on column messages.body is 'The text, trimmed, 1-4000 characters.';
comment on column messages.client_id is 'Optional id chosen by the sending client; a repeat from the same sender to the same room is not stored twice.';
comment on column messages.created_at is 'When the message was committed.';
comment on column messages.edited_at is 'When the body was last edited; null if never.';
