-- People and their logins.

create table users (
    id            uuid primary key,
    username      text not null
                  constraint users_username_format check (username ~ '^[A-Za-z0-9_.-]{3,32}$'),
    display_name  text not null
                  constraint users_display_name_length check (char_length(display_name) between 1 and 64),
    password_hash text not null,
    is_admin      boolean not null default false,
    disabled_at   timestamptz,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);

-- Usernames are unique whatever their case ("Alice" and "alice" are one person), but kept as typed.
create unique index users_username_key on users (lower(username));

create trigger users_set_updated_at before update on users
    for each row execute function set_updated_at();

comment on table users is 'Everyone who can log in. A row is never deleted; disabling sets disabled_at.';
comment on column users.id is 'User id (UUID), as seen by clients.';
comment on column users.username is 'Login name as the user typed it; unique case-insensitively (index users_username_key).';
comment on column users.display_name is 'Name shown to others; defaults to the username.';
comment on column users.password_hash is 'argon2id PHC string (algorithm, parameters, salt and hash). Never the password.';
comment on column users.is_admin is 'Admins may disable users and delete any room. Set with `huddle user create --admin`.';
comment on column users.disabled_at is 'When an admin disabled the account; null while it is enabled. A disabled user cannot log in.';
comment on column users.created_at is 'When the account was registered.';
comment on column users.updated_at is 'Last change to the row (display name, password, admin flag, disabling).';

create table sessions (
    id                 uuid primary key,
    user_id            uuid not null references users (id) on delete cascade,
    refresh_token_hash bytea not null
                       constraint sessions_refresh_token_hash_key unique,
    user_agent         text,
    created_at         timestamptz not null default now(),
    refreshed_at       timestamptz,
    expires_at         timestamptz not null,
    revoked_at         timestamptz,
    revoked_reason     text
                       constraint sessions_revoked_reason_known check (revoked_reason in
                           ('logout', 'password_changed', 'refresh_token_reused', 'user_disabled')),
    constraint sessions_revoked_has_reason check ((revoked_at is null) = (revoked_reason is null))
);

create index sessions_user_id_idx on sessions (user_id) where revoked_at is null;

comment on table sessions is
    'One row per login: the refresh-token chain of one device. Access tokens name their session (claim sid) and die with it.';
comment on column sessions.id is 'Session id: the sid claim of every access token issued to it.';
comment on column sessions.user_id is 'Whose session this is.';
comment on column sessions.refresh_token_hash is 'SHA-256 of the current refresh token. The token itself is never stored.';
comment on column sessions.user_agent is 'User-Agent header of the login, to help a person recognise their devices.';
comment on column sessions.created_at is 'When the user logged in (or registered).';
comment on column sessions.refreshed_at is 'Last time the refresh token was rotated; null if never.';
comment on column sessions.expires_at is 'When the current refresh token stops working (REFRESH_TOKEN_TTL after issue).';
comment on column sessions.revoked_at is 'When the session was ended; null while it is live. Its tokens stop working at once.';
comment on column sessions.revoked_reason is 'Why it ended: logout, password_changed, refresh_token_reused (a stolen token was detected) or user_disabled.';

create table rotated_refresh_tokens (
    token_hash bytea primary key,
    session_id uuid not null references sessions (id) on delete cascade,
    rotated_at timestamptz not null default now()
);

create index rotated_refresh_tokens_session_id_idx on rotated_refresh_tokens (session_id);

comment on table rotated_refresh_tokens is
    'Refresh tokens that were already exchanged. Presenting one again means it was copied: the whole session is revoked.';
comment on column rotated_refresh_tokens.token_hash is 'SHA-256 of a refresh token that has been rotated away.';
comment on column rotated_refresh_tokens.session_id is 'The session the token belonged to.';
comment on column rotated_refresh_tokens.rotated_at is 'When it was exchanged for a new one.';
