-- The product's own backend: API keys for the server API, and the users it provisions.
--
-- A key's secret is 32 random bytes; what is stored is its SHA-256, never the secret. A slow
-- hash (argon2) protects low-entropy passwords against guessing; a 256-bit random secret needs
-- none, and a plain digest can be looked up by an index on every request.

create table api_keys (
    id           uuid primary key,
    -- Null: a platform key, which may create workspaces and act in any of them.
    workspace_id uuid constraint api_keys_workspace_id_fkey references workspaces (id),
    name         text not null
                 constraint api_keys_name_length check (char_length(name) between 1 and 64),
    prefix       text not null,
    secret_hash  bytea not null constraint api_keys_secret_hash_key unique,
    created_by   uuid,
    created_at   timestamptz not null default now(),
    last_used_at timestamptz,
    uses         bigint not null default 0,
    revoked_at   timestamptz,
    constraint api_keys_created_by_fkey
        foreign key (workspace_id, created_by) references users (workspace_id, id)
        on delete set null (created_by)
);
create index api_keys_workspace_id_created_at_idx on api_keys (workspace_id, created_at);

comment on table api_keys is 'Keys of the server API (/api/server/*), held by the product''s backend. A key belongs to one workspace, or (platform key) to none.';
comment on column api_keys.id is 'Key id (UUID), as listed and revoked over REST.';
comment on column api_keys.workspace_id is 'The workspace the key acts in; null for a platform key (it names a workspace with the Huddle-Workspace header, default: default).';
comment on column api_keys.name is 'What the key is for, 1-64 characters, chosen by whoever made it.';
comment on column api_keys.prefix is 'The first characters of the secret (hk_ and 8 more), shown in lists so that a key can be recognised; not enough to use it.';
comment on column api_keys.secret_hash is 'SHA-256 of the whole secret. The secret itself is shown once, at creation, and stored nowhere.';
comment on column api_keys.created_by is 'The admin who made the key over REST; null when made with `huddle api-key create`.';
comment on column api_keys.created_at is 'When the key was made.';
comment on column api_keys.last_used_at is 'When the key last authenticated a request; null if never.';
comment on column api_keys.uses is 'How many requests the key has authenticated.';
comment on column api_keys.revoked_at is 'When the key was revoked; from then on it is refused (401). Null while it is valid.';

-- Users the product provisions: its own id for them, bots, its own data; perhaps no password.
alter table users
    add column external_id text
        constraint users_external_id_length check (char_length(external_id) between 1 and 128),
    add column is_bot boolean not null default false,
    add column metadata jsonb not null default '{}'
        constraint users_metadata_object check (jsonb_typeof(metadata) = 'object');
alter table users alter column password_hash drop not null;
create unique index users_external_id_key on users (workspace_id, external_id)
    where external_id is not null;

comment on column users.external_id is 'The product''s own id for the user (1-128 characters), unique within the workspace (index users_external_id_key); set by PUT /api/server/users/{external_id}. Null for users who registered themselves.';
comment on column users.is_bot is 'A bot account of the product (shown to clients, so they can render it differently).';
comment on column users.metadata is 'The product''s own JSON object for the user, at most 4 KiB serialised; {} by default.';
comment on column users.password_hash is 'argon2id PHC string (algorithm, parameters, salt and hash). Never the password. Null for a user provisioned by the server API without one: password login then fails as for an unknown user.';

-- Keys made and revoked are access changes: they go to the audit log.
alter table audit_log drop constraint audit_log_action_known;
alter table audit_log add constraint audit_log_action_known check (action in (
    'room_created', 'room_deleted',
    'member_granted', 'role_changed', 'member_removed',
    'user_disabled', 'user_enabled',
    'access_denied',
    'password_changed', 'refresh_token_reused',
    'api_key_created', 'api_key_revoked'
));
comment on column audit_log.action is
    'room_created, room_deleted, member_granted, role_changed, member_removed, user_disabled, user_enabled, access_denied (a refused join or request), password_changed, refresh_token_reused (a session revoked because an old refresh token came back), api_key_created, api_key_revoked (detail: the key''s id, name and prefix; actor: the admin, or null for the CLI and the server API).';
