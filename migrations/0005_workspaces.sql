-- Workspaces: one deployment serves many customer organisations, each fully isolated.
--
-- Every tenant-owned row names its workspace, and every reference between tenant-owned rows
-- goes through a composite foreign key (workspace_id, id): a member row, a message or a session
-- whose two ends are in different workspaces cannot be stored, whatever the code does.
--
-- A v1 database moves into the workspace `default` without rewriting a row: its id is fixed,
-- and a column added with a constant default is filled from the catalogue, not by an update.
-- The defaults are dropped at the end, so from here on every insert must name its workspace.

create table workspaces (
    id         uuid primary key,
    slug       text not null
               constraint workspaces_slug_key unique
               constraint workspaces_slug_format check (slug ~ '^[a-z0-9-]{2,32}$'),
    name       text not null
               constraint workspaces_name_length check (char_length(name) between 1 and 64),
    created_at timestamptz not null default now()
);

comment on table workspaces is 'Tenants: a customer organisation. Users, rooms, messages and the rest belong to exactly one.';
comment on column workspaces.id is 'Workspace id (UUID), the wid claim of access tokens. The default workspace is 00000000-0000-0000-0000-000000000001.';
comment on column workspaces.slug is 'Unique short name, 2-32 of [a-z0-9-]; what register and login name (default: "default").';
comment on column workspaces.name is 'Display name, 1-64 characters.';
comment on column workspaces.created_at is 'When the workspace was created.';

insert into workspaces (id, slug, name)
values ('00000000-0000-0000-0000-000000000001', 'default', 'Default');

-- Users: unique per workspace, and referable together with their workspace.
alter table users
    add column workspace_id uuid not null default '00000000-0000-0000-0000-000000000001'
        constraint users_workspace_id_fkey references workspaces (id);
alter table users add constraint users_workspace_id_id_key unique (workspace_id, id);
drop index users_username_key;
create unique index users_username_key on users (workspace_id, lower(username));
comment on column users.workspace_id is 'The workspace the user belongs to; usernames are unique within it.';
comment on column users.username is 'Login name as the user typed it; unique case-insensitively within the workspace (index users_username_key).';
comment on column users.is_admin is 'Admin of the user''s own workspace: may disable its users and delete any of its rooms. Set with `huddle user create --admin`.';

-- Sessions belong to their user's workspace.
alter table sessions
    add column workspace_id uuid not null default '00000000-0000-0000-0000-000000000001';
alter table sessions drop constraint sessions_user_id_fkey;
alter table sessions add constraint sessions_user_fkey
    foreign key (workspace_id, user_id) references users (workspace_id, id) on delete cascade;
comment on column sessions.workspace_id is 'The user''s workspace: the wid claim of the session''s access tokens.';

-- Rooms: names unique per workspace.
alter table rooms
    add column workspace_id uuid not null default '00000000-0000-0000-0000-000000000001'
        constraint rooms_workspace_id_fkey references workspaces (id);
alter table rooms add constraint rooms_workspace_id_id_key unique (workspace_id, id);
alter table rooms drop constraint rooms_name_key;
alter table rooms add constraint rooms_name_key unique (workspace_id, name);
alter table rooms drop constraint rooms_created_by_fkey;
alter table rooms add constraint rooms_created_by_fkey
    foreign key (workspace_id, created_by) references users (workspace_id, id)
    on delete set null (created_by);
comment on column rooms.workspace_id is 'The workspace the room belongs to; room names (and direct rooms) are unique within it.';
comment on column rooms.name is 'Name, unique within the workspace: 1-64 of [a-z0-9_-], or dm:<id>-<id> for a direct room.';

-- Members: the room and the user are in the member row's workspace.
alter table room_members
    add column workspace_id uuid not null default '00000000-0000-0000-0000-000000000001';
alter table room_members drop constraint room_members_room_id_fkey;
alter table room_members drop constraint room_members_user_id_fkey;
alter table room_members drop constraint room_members_added_by_fkey;
alter table room_members add constraint room_members_room_fkey
    foreign key (workspace_id, room_id) references rooms (workspace_id, id) on delete cascade;
alter table room_members add constraint room_members_user_fkey
    foreign key (workspace_id, user_id) references users (workspace_id, id) on delete cascade;
alter table room_members add constraint room_members_added_by_fkey
    foreign key (workspace_id, added_by) references users (workspace_id, id)
    on delete set null (added_by);
comment on column room_members.workspace_id is 'The workspace of the room and of the member (one and the same, by the foreign keys).';

-- Messages: the room and the sender are in the message's workspace.
alter table messages
    add column workspace_id uuid not null default '00000000-0000-0000-0000-000000000001';
alter table messages drop constraint messages_room_id_fkey;
alter table messages drop constraint messages_sender_id_fkey;
alter table messages add constraint messages_room_fkey
    foreign key (workspace_id, room_id) references rooms (workspace_id, id) on delete cascade;
alter table messages add constraint messages_sender_fkey
    foreign key (workspace_id, sender_id) references users (workspace_id, id);
comment on column messages.workspace_id is 'The workspace of the room and of the sender (one and the same, by the foreign keys).';

-- The audit log: every row belongs to a workspace; the people it names are of that workspace.
alter table audit_log
    add column workspace_id uuid not null default '00000000-0000-0000-0000-000000000001'
        constraint audit_log_workspace_id_fkey references workspaces (id);
alter table audit_log drop constraint audit_log_actor_id_fkey;
alter table audit_log drop constraint audit_log_target_user_id_fkey;
alter table audit_log add constraint audit_log_actor_fkey
    foreign key (workspace_id, actor_id) references users (workspace_id, id)
    on delete set null (actor_id);
alter table audit_log add constraint audit_log_target_user_fkey
    foreign key (workspace_id, target_user_id) references users (workspace_id, id)
    on delete set null (target_user_id);
create index audit_log_workspace_id_at_idx on audit_log (workspace_id, at);
comment on column audit_log.workspace_id is 'The workspace the entry belongs to.';

-- From here on, every row names its workspace explicitly.
alter table users alter column workspace_id drop default;
alter table sessions alter column workspace_id drop default;
alter table rooms alter column workspace_id drop default;
alter table room_members alter column workspace_id drop default;
alter table messages alter column workspace_id drop default;
alter table audit_log alter column workspace_id drop default;
