-- Operators' SQL: views in a schema `admin` for the questions operators ask (which rooms are
-- busy, who was last seen when, how many messages a day each workspace sends, who was turned
-- away this week), and a read-only role, huddle_readonly, that may read those views and nothing
-- else. An operator gets a login of their own in that role:
--
--     create role ops login password '...' in role huddle_readonly;
--
-- A view reads its tables with its owner's rights (the user that ran this migration), so the
-- role needs no grant on any table: it sees what the views show (no password hash, token hash,
-- key or webhook secret, no message text) and cannot write anything. Every view names the
-- workspace by its slug.
--
-- Windows over messages find their rows through the primary key: message ids are UUIDv7, whose
-- first 48 bits are the Unix time in milliseconds, so "messages since t" is a range of
-- messages_pkey starting at the id made of t (less an hour, for the clocks of the nodes that
-- make the ids and for queueing; created_at then decides). Their cost grows with the window's
-- traffic, not with the table.
--
-- Views are marked security_barrier: a function of the reader's own (one can be made in pg_temp)
-- in a where clause is applied to the rows the view returns, never to the rows it filters out.

create schema admin;
comment on schema admin is 'Read-only views for operators (see docs/schema.md#operators-sql-the-admin-views); readable by the role huddle_readonly.';

-- Rooms, busiest first.
create view admin.rooms_by_activity with (security_barrier) as
with recent as (
    select m.room_id,
           count(*) filter (where m.created_at >= now() - interval '24 hours') as messages_24h,
           count(*) as messages_7d
    from messages m
    where m.id >= (lpad(to_hex(floor(extract(epoch from now() - interval '7 days 1 hour') * 1000)::bigint), 12, '0')
                   || '00000000000000000000')::uuid
      and m.created_at >= now() - interval '7 days'
    group by m.room_id
)
select w.slug as workspace,
       r.id as room_id,
       r.name as room,
       r.visibility,
       coalesce(a.messages_24h, 0) as messages_24h,
       coalesce(a.messages_7d, 0) as messages_7d,
       r.last_seq as messages_total,
       (select l.created_at from messages l
        where l.room_id = r.id and l.seq = r.last_seq) as last_message_at,
       (select count(*) from room_members rm where rm.room_id = r.id) as members,
       r.created_at
from rooms r
join workspaces w on w.id = r.workspace_id
left join recent a on a.room_id = r.id
order by messages_7d desc, messages_24h desc, last_message_at desc nulls last, workspace, room;

comment on view admin.rooms_by_activity is
    'Every room with its messages in the last 24 hours and 7 days, its total and its newest message, busiest (last 7 days) first.';
comment on column admin.rooms_by_activity.workspace is 'The room''s workspace (slug).';
comment on column admin.rooms_by_activity.room_id is 'The room id.';
comment on column admin.rooms_by_activity.room is 'The room''s name (dm:<user id>-<user id> for a direct room).';
comment on column admin.rooms_by_activity.visibility is 'public, private or direct.';
comment on column admin.rooms_by_activity.messages_24h is 'Messages sent in the last 24 hours (deleted ones included).';
comment on column admin.rooms_by_activity.messages_7d is 'Messages sent in the last 7 days (deleted ones included).';
comment on column admin.rooms_by_activity.messages_total is 'Messages ever sent to the room (its last seq; deleted ones included).';
comment on column admin.rooms_by_activity.last_message_at is 'When its newest message was sent; null if it has none.';
comment on column admin.rooms_by_activity.members is 'Rows of its ACL (room_members): everyone let into a private or direct room; in a public room, its owner and the members granted a role (joining adds no row).';
comment on column admin.rooms_by_activity.created_at is 'When the room was created.';

-- Users, most recently seen first.
create view admin.users_by_last_seen with (security_barrier) as
with sessions_seen as (
    select s.workspace_id, s.user_id,
           max(s.created_at) as last_login_at,
           max(s.refreshed_at) as last_refresh_at,
           max(s.revoked_at) filter (where s.revoked_reason = 'logout') as last_logout_at,
           count(*) filter (where s.revoked_at is null and s.expires_at > now()) as live_sessions
    from sessions s
    group by s.workspace_id, s.user_id
), sent as (
    select m.workspace_id, m.sender_id, max(m.created_at) as last_message_at
    from messages m
    where m.id >= (lpad(to_hex(floor(extract(epoch from now() - interval '7 days 1 hour') * 1000)::bigint), 12, '0')
                   || '00000000000000000000')::uuid
      and m.created_at >= now() - interval '7 days'
    group by m.workspace_id, m.sender_id
)
select w.slug as workspace,
       u.id as user_id,
       u.username,
       u.display_name,
       greatest(s.last_login_at, s.last_refresh_at, s.last_logout_at, m.last_message_at) as last_seen_at,
       s.last_login_at,
       s.last_refresh_at,
       m.last_message_at,
       coalesce(s.live_sessions, 0) as live_sessions,
       u.is_admin,
       u.is_bot,
       u.external_id,
       u.disabled_at,
       u.created_at
from users u
join workspaces w on w.id = u.workspace_id
left join sessions_seen s on s.workspace_id = u.workspace_id and s.user_id = u.id
left join sent m on m.workspace_id = u.workspace_id and m.sender_id = u.id
order by last_seen_at desc nulls last, workspace, u.username;

comment on view admin.users_by_last_seen is
    'Every user with the last time Huddle saw them: a login, a token refresh, a logout or a message. Sessions are kept while live and for 7 days after they end, messages are looked at for 7 days: null means not seen in that time.';
comment on column admin.users_by_last_seen.workspace is 'The user''s workspace (slug).';
comment on column admin.users_by_last_seen.user_id is 'The user id.';
comment on column admin.users_by_last_seen.username is 'The login name.';
comment on column admin.users_by_last_seen.display_name is 'The name shown to others.';
comment on column admin.users_by_last_seen.last_seen_at is 'The latest of last_login_at, last_refresh_at, a logout and last_message_at; null if none is known. An open socket alone leaves no trace, but a client refreshes its access token every ACCESS_TOKEN_TTL (15 minutes by default) while in use.';
comment on column admin.users_by_last_seen.last_login_at is 'When the newest of its kept sessions began (a login, a registration or a session minted by the server API).';
comment on column admin.users_by_last_seen.last_refresh_at is 'The last refresh-token rotation of its kept sessions; null if none.';
comment on column admin.users_by_last_seen.last_message_at is 'When the user last sent a message, if in the last 7 days; null otherwise.';
comment on column admin.users_by_last_seen.live_sessions is 'Sessions neither revoked nor expired.';
comment on column admin.users_by_last_seen.is_admin is 'An admin of its workspace.';
comment on column admin.users_by_last_seen.is_bot is 'A bot account of the product.';
comment on column admin.users_by_last_seen.external_id is 'The product''s own id for the user (server API); null for users who registered themselves.';
comment on column admin.users_by_last_seen.disabled_at is 'When an admin disabled the account; null while it is enabled.';
comment on column admin.users_by_last_seen.created_at is 'When the account was made.';

-- Messages per UTC day per workspace, over the last 30 days.
create view admin.messages_per_day with (security_barrier) as
select w.slug as workspace,
       d.day,
       d.messages,
       d.senders,
       d.rooms,
       d.deleted
from (
    select m.workspace_id,
           (m.created_at at time zone 'UTC')::date as day,
           count(*) as messages,
           count(distinct m.sender_id) as senders,
           count(distinct m.room_id) as rooms,
           count(*) filter (where m.deleted_at is not null) as deleted
    from messages m
    where m.id >= (lpad(to_hex(floor(extract(epoch from
                       (date_trunc('day', now() at time zone 'UTC') - interval '29 days 1 hour') at time zone 'UTC')
                       * 1000)::bigint), 12, '0') || '00000000000000000000')::uuid
      and m.created_at >= (date_trunc('day', now() at time zone 'UTC') - interval '29 days') at time zone 'UTC'
    group by m.workspace_id, (m.created_at at time zone 'UTC')::date
) d
join workspaces w on w.id = d.workspace_id
order by d.day desc, workspace;

comment on view admin.messages_per_day is
    'Messages sent per workspace per day (UTC), today and the 29 days before; days without a message have no row.';
comment on column admin.messages_per_day.workspace is 'The workspace (slug).';
comment on column admin.messages_per_day.day is 'The day (UTC) the messages were sent.';
comment on column admin.messages_per_day.messages is 'Messages sent that day (deleted ones included).';
comment on column admin.messages_per_day.senders is 'Distinct users who sent them.';
comment on column admin.messages_per_day.rooms is 'Distinct rooms they were sent to.';
comment on column admin.messages_per_day.deleted is 'How many of them have been deleted since.';

-- Refusals in the last 7 days, newest first.
create view admin.denied_access_this_week with (security_barrier) as
select a.at,
       w.slug as workspace,
       case when a.action = 'refresh_token_reused' then 'refresh_token_reused'
            when a.room_id is null then 'admin_only'
            else 'room' end as kind,
       case when a.action = 'refresh_token_reused' then 'refresh'
            else a.detail ->> 'action' end as attempted,
       coalesce(a.actor_id, a.target_user_id) as user_id,
       u.username,
       a.room_id,
       a.room_name,
       a.detail
from audit_log a
join workspaces w on w.id = a.workspace_id
left join users u on u.workspace_id = a.workspace_id and u.id = coalesce(a.actor_id, a.target_user_id)
where a.at >= now() - interval '7 days'
  and a.action in ('access_denied', 'refresh_token_reused')
order by a.at desc, a.id desc;

comment on view admin.denied_access_this_week is
    'Refusals of the last 7 days from the audit log: a room refused to a user, an admin route refused to a non-admin, and refresh tokens presented a second time (their session is revoked). Each is written at most 6 times a minute per user, room and action on each node, so a flood shows as fewer rows. Failed logins and refused API keys are not recorded in the database.';
comment on column admin.denied_access_this_week.at is 'When it happened.';
comment on column admin.denied_access_this_week.workspace is 'The workspace (slug).';
comment on column admin.denied_access_this_week.kind is 'room (a room the user may not enter, or a room action their role does not allow), admin_only (an admin route called by a non-admin) or refresh_token_reused (an already used refresh token came back: probably copied; its session was revoked).';
comment on column admin.denied_access_this_week.attempted is 'What was refused: the REST action or socket event (get_room, history, joinRoom, grant_member, disable_user, create_api_key...), or refresh.';
comment on column admin.denied_access_this_week.user_id is 'Who was refused (for refresh_token_reused: the session''s user); null if the user is gone.';
comment on column admin.denied_access_this_week.username is 'Their username, as it is now.';
comment on column admin.denied_access_this_week.room_id is 'The room, for kind room (it may have been deleted since).';
comment on column admin.denied_access_this_week.room_name is 'The room''s name at the time.';
comment on column admin.denied_access_this_week.detail is 'The audit line''s detail: {"action": ...}, or {"session_id": ...} for refresh_token_reused.';

-- The role. Roles belong to the whole cluster, and every database of a Huddle on it runs this
-- migration (tests run many at once): the first makes the role, the others find it made
-- (duplicate_object, or unique_violation when two make it at the same moment). A database user
-- without the right to make roles (CREATEROLE) skips it with a notice: the server still starts,
-- and an operator makes the role and grants its rights by hand (docs/schema.md says how).
do $$
begin
    create role huddle_readonly nologin;
    comment on role huddle_readonly is
        'Huddle operators: reads the views of the schema admin, in each database that granted it, and nothing else. Give a login this role: create role ops login password ''...'' in role huddle_readonly.';
exception
    when duplicate_object or unique_violation then
        null;
    when insufficient_privilege then
        raise notice 'role huddle_readonly not created (%): make it and grant it the views by hand, see docs/schema.md', sqlerrm;
end
$$;

do $$
begin
    if exists (select from pg_roles where rolname = 'huddle_readonly') then
        grant usage on schema admin to huddle_readonly;
        grant select on admin.rooms_by_activity, admin.users_by_last_seen,
                        admin.messages_per_day, admin.denied_access_this_week
            to huddle_readonly;
    end if;
end
$$;
