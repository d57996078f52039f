-- What happened, by whom, to whom: kept for people, never read by the server.

create table audit_log (
    id             bigint generated always as identity primary key,
    at             timestamptz not null default now(),
    action         text not null
                   constraint audit_log_action_known check (action in (
                       'room_created', 'room_deleted',
                       'member_granted', 'role_changed', 'member_removed',
                       'user_disabled', 'user_enabled',
                       'access_denied',
                       'password_changed', 'refresh_token_reused'
                   )),
    actor_id       uuid references users (id) on delete set null,
    target_user_id uuid references users (id) on delete set null,
    -- No foreign key: the log outlives deleted rooms, so the name is kept beside the id.
    room_id        uuid,
    room_name      text,
    detail         jsonb not null default '{}'
);

create index audit_log_at_idx on audit_log (at);
create index audit_log_room_id_at_idx on audit_log (room_id, at) where room_id is not null;
create index audit_log_target_user_id_at_idx on audit_log (target_user_id, at) where target_user_id is not null;

comment on table audit_log is 'Append-only record of access changes and refusals, for admins reading with psql.';
comment on column audit_log.id is 'Order of writing.';
comment on column audit_log.at is 'When it happened.';
comment on column audit_log.action is
    'room_created, room_deleted, member_granted, role_changed, member_removed, user_disabled, user_enabled, access_denied (a refused join or request), password_changed, refresh_token_reused (a session revoked because an old refresh token came back).';
comment on column audit_log.actor_id is 'Who did it (or who was refused); null for the system.';
comment on column audit_log.target_user_id is 'Whom it was done to (the member granted or removed, the user disabled); null if nobody.';
comment on column audit_log.room_id is 'The room concerned, if any. Not a foreign key: deleted rooms stay in the log.';
comment on column audit_log.room_name is 'The room''s name at the time (or, for a refusal, what the client asked for).';
comment on column audit_log.detail is 'Anything else worth keeping, e.g. {"role": "moderator"} or {"event": "joinRoom"}.';
