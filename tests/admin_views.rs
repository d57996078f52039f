//! Operators' SQL (migration 0012): the views of the schema `admin` answer the operators'
//! questions from real data of two workspaces (rooms by activity, users by last seen, messages
//! per day, denied access this week), and a login in the role `huddle_readonly` reads them and
//! nothing else: every write, every DDL and every read of a table fails, and no row changes.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{spawn_app, tenancy, TestApp};
use serde_json::{json, Value};
use sqlx::{postgres::PgConnectOptions, Connection, PgConnection};
use uuid::{NoContext, Timestamp, Uuid};

const DAY: u64 = 24 * 3600;

/// A row of admin.rooms_by_activity: workspace, room, visibility, messages in 24 hours, in 7
/// days, in all, members, and whether its last message is recent.
type RoomRow = (String, String, String, i64, i64, i64, i64, bool);
/// A row of admin.users_by_last_seen: workspace, username, seconds since last seen, live
/// sessions, whether it sent a message this week and whether it refreshed.
type UserRow = (String, String, Option<f64>, i64, bool, bool);
/// A row of admin.messages_per_day: workspace, day, messages, senders, rooms, deleted.
type DayRow = (String, String, i64, i64, i64, i64);
/// A row of admin.denied_access_this_week: workspace, kind, attempted, username, room name.
type DeniedRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A login role in `huddle_readonly`, as an operator would make one; dropped at the end, even
/// when the test fails (roles belong to the whole cluster, not to the test's database).
struct Login(String);

impl Login {
    async fn create(app: &TestApp) -> Login {
        let name = format!("ro_{}", Uuid::new_v4().simple());
        sqlx::query(&format!("create role {name} login in role huddle_readonly"))
            .execute(&app.db)
            .await
            .unwrap();
        Login(name)
    }

    async fn connect(&self, app: &TestApp) -> PgConnection {
        let options: PgConnectOptions = app.database_url.parse().unwrap();
        PgConnection::connect_with(&options.username(&self.0))
            .await
            .unwrap()
    }
}

impl Drop for Login {
    fn drop(&mut self) {
        common::on_server(format!("drop role if exists {}", self.0));
    }
}

/// Moves a message `days` back in time: its `created_at`, and its id (a UUIDv7 of that time, as
/// the server would have made then).
async fn age(app: &TestApp, room: &Value, seq: i64, days: u64) {
    let at =
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap() - Duration::from_secs(days * DAY);
    let id = Uuid::new_v7(Timestamp::from_unix(NoContext, at.as_secs(), 0));
    let done = sqlx::query(
        "update messages set id = $1, created_at = to_timestamp($2::float8)
         where room_id = $3 and seq = $4",
    )
    .bind(id)
    .bind(at.as_secs() as f64)
    .bind(room_id(room))
    .bind(seq)
    .execute(&app.db)
    .await
    .unwrap();
    assert_eq!(done.rows_affected(), 1);
}

fn room_id(room: &Value) -> Uuid {
    room["id"].as_str().unwrap().parse().unwrap()
}

/// The SQLSTATE of a failed statement run as the read-only login (panics if it succeeded).
async fn refused(ro: &mut PgConnection, sql: &str) -> String {
    match sqlx::query(sql).execute(&mut *ro).await {
        Ok(_) => panic!("the read-only role ran: {sql}"),
        Err(err) => err
            .as_database_error()
            .and_then(|e| e.code())
            .unwrap_or_else(|| panic!("{sql}: not a database error: {err}"))
            .into_owned(),
    }
}

#[tokio::test]
async fn the_readonly_role_reads_the_admin_views_and_nothing_else() {
    let app = spawn_app().await;
    let acme = huddle::workspaces::create(&app.state, "acme", "Acme Inc.")
        .await
        .unwrap();

    // default: ann's rooms. lobby: one message 10 days old, one 3 days old, two now; secret:
    // two now, one deleted since.
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let lobby = app.create_room(&ann, "lobby", "public").await;
    let secret = app.create_room(&ann, "secret", "private").await;
    app.seed_messages(&lobby, &ann, 4).await;
    age(&app, &lobby, 1, 10).await;
    age(&app, &lobby, 2, 3).await;
    app.seed_messages(&secret, &ann, 2).await;
    let second: Uuid = sqlx::query_scalar("select id from messages where room_id = $1 and seq = 2")
        .bind(room_id(&secret))
        .fetch_one(&app.db)
        .await
        .unwrap();
    app.delete(
        &format!("/api/rooms/{}/messages/{second}", room_id(&secret)),
        Some(&ann.access),
    )
    .await
    .ok(204);
    // bob is turned away from ann's private room and from an admin route; he logged in two
    // days ago and has not been back.
    app.get(
        &format!("/api/rooms/{}", room_id(&secret)),
        Some(&bob.access),
    )
    .await
    .error(404, "not_found");
    app.post(
        &format!("/api/admin/users/{}/disable", ann.id),
        Some(&bob.access),
        json!({}),
    )
    .await
    .error(403, "forbidden");
    sqlx::query("update sessions set created_at = now() - interval '2 days' where user_id = $1")
        .bind(bob.id)
        .execute(&app.db)
        .await
        .unwrap();

    // acme: cyd's lobby (one message 40 days old, one now); dee's refresh token comes back a
    // second time; eve has no session left; a refusal of 8 days ago.
    let cyd = tenancy::register_in(&app, "acme", "cyd").await;
    let acme_lobby = app.create_room(&cyd, "lobby", "public").await;
    app.seed_messages(&acme_lobby, &cyd, 2).await;
    age(&app, &acme_lobby, 1, 40).await;
    let dee = tenancy::register_in(&app, "acme", "dee").await;
    for status in [200, 401] {
        let reply = app
            .post(
                "/api/auth/refresh",
                None,
                json!({"refresh_token": dee.refresh}),
            )
            .await;
        assert_eq!(reply.status.as_u16(), status, "{}", reply.body);
    }
    let eve = tenancy::register_in(&app, "acme", "eve").await;
    sqlx::query("delete from sessions where user_id = $1")
        .bind(eve.id)
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query(
        "insert into audit_log (workspace_id, action, actor_id, room_name, detail, at)
         values ($1, 'access_denied', $2, 'lobby', '{\"action\": \"joinRoom\"}',
                 now() - interval '8 days')",
    )
    .bind(acme.id.as_uuid())
    .bind(cyd.id)
    .execute(&app.db)
    .await
    .unwrap();

    // The role: no login, no attribute, and exactly these grants in this database.
    let attributes: (bool, bool, bool, bool) = sqlx::query_as(
        "select rolcanlogin, rolsuper, rolcreatedb or rolcreaterole, rolbypassrls
         from pg_roles where rolname = 'huddle_readonly'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(attributes, (false, false, false, false));
    let grants: Vec<(String, String)> = sqlx::query_as(
        "select c.oid::regclass::text, a.privilege_type
         from pg_class c, aclexplode(c.relacl) a
         where a.grantee = 'huddle_readonly'::regrole
         union all
         select n.nspname, a.privilege_type
         from pg_namespace n, aclexplode(n.nspacl) a
         where a.grantee = 'huddle_readonly'::regrole
         union all
         select c.oid::regclass::text || '.' || t.attname, a.privilege_type
         from pg_attribute t join pg_class c on c.oid = t.attrelid, aclexplode(t.attacl) a
         where a.grantee = 'huddle_readonly'::regrole
         union all
         select p.oid::regprocedure::text, a.privilege_type
         from pg_proc p, aclexplode(p.proacl) a
         where a.grantee = 'huddle_readonly'::regrole
         order by 1, 2",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let grant = |object: &str, privilege: &str| (object.to_owned(), privilege.to_owned());
    assert_eq!(
        grants,
        [
            grant("admin", "USAGE"),
            grant("admin.denied_access_this_week", "SELECT"),
            grant("admin.messages_per_day", "SELECT"),
            grant("admin.rooms_by_activity", "SELECT"),
            grant("admin.users_by_last_seen", "SELECT"),
        ]
    );
    // Every view shows the workspace, and every column says what it is.
    let views: Vec<(String, bool, bool, i64)> = sqlx::query_as(
        "select c.relname::text, obj_description(c.oid, 'pg_class') is not null,
                bool_or(a.attname = 'workspace'),
                count(*) filter (where col_description(c.oid, a.attnum) is null)
         from pg_class c join pg_attribute a on a.attrelid = c.oid and a.attnum > 0
         where c.relnamespace = 'admin'::regnamespace
         group by c.oid, c.relname order by 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let view = |name: &str| (name.to_owned(), true, true, 0);
    assert_eq!(
        views,
        [
            view("denied_access_this_week"),
            view("messages_per_day"),
            view("rooms_by_activity"),
            view("users_by_last_seen"),
        ]
    );

    let login = Login::create(&app).await;
    let mut ro = login.connect(&app).await;

    // Rooms by activity: busiest in the last 7 days first.
    let rooms: Vec<RoomRow> = sqlx::query_as(
        "select workspace, room, visibility, messages_24h, messages_7d, messages_total, members,
                coalesce(last_message_at > now() - interval '1 hour', false)
         from admin.rooms_by_activity",
    )
    .fetch_all(&mut ro)
    .await
    .unwrap();
    let room = |ws: &str, name: &str, vis: &str, counts: [i64; 4], recent: bool| -> RoomRow {
        let [d1, d7, total, members] = counts;
        let (ws, name, vis) = (ws.to_owned(), name.to_owned(), vis.to_owned());
        (ws, name, vis, d1, d7, total, members, recent)
    };
    assert_eq!(
        rooms,
        [
            room("default", "lobby", "public", [2, 3, 4, 1], true),
            room("default", "secret", "private", [2, 2, 2, 1], true),
            room("acme", "lobby", "public", [1, 1, 2, 1], true),
            room("acme", "general", "public", [0, 0, 0, 0], false),
            room("default", "general", "public", [0, 0, 0, 0], false),
        ]
    );
    let empty: i64 = sqlx::query_scalar(
        "select count(*) from admin.rooms_by_activity
         where room = 'general' and last_message_at is null",
    )
    .fetch_one(&mut ro)
    .await
    .unwrap();
    assert_eq!(empty, 2, "a room without messages has no last message");

    // Users by last seen: the most recent first, the never seen last.
    let users: Vec<UserRow> = sqlx::query_as(
        "select workspace, username, extract(epoch from now() - last_seen_at)::float8,
                live_sessions, last_message_at is not null, last_refresh_at is not null
         from admin.users_by_last_seen",
    )
    .fetch_all(&mut ro)
    .await
    .unwrap();
    let names: Vec<(&str, &str)> = users.iter().map(|u| (u.0.as_str(), u.1.as_str())).collect();
    assert_eq!(
        names,
        [
            ("acme", "dee"),
            ("acme", "cyd"),
            ("default", "ann"),
            ("default", "bob"),
            ("acme", "eve"),
        ]
    );
    let seen = |name: &str| users.iter().find(|u| u.1 == name).unwrap();
    for recent in ["dee", "cyd", "ann"] {
        assert!(seen(recent).2.unwrap() < 600.0, "{:?}", seen(recent));
    }
    let bob_ago = seen("bob").2.unwrap();
    assert!(
        (2.0 * DAY as f64 - 600.0..2.0 * DAY as f64 + 600.0).contains(&bob_ago),
        "bob was last seen {bob_ago} s ago"
    );
    assert_eq!(seen("eve").2, None);
    // Live sessions; who sent a message this week; who refreshed (dee, before the replay
    // revoked the session).
    let details: Vec<(&str, i64, bool, bool)> = users
        .iter()
        .map(|u| (u.1.as_str(), u.3, u.4, u.5))
        .collect();
    assert_eq!(
        details,
        [
            ("dee", 0, false, true),
            ("cyd", 1, true, false),
            ("ann", 1, true, false),
            ("bob", 1, false, false),
            ("eve", 0, false, false),
        ]
    );

    // Messages per day: what a plain count over the table says, for the last 30 days (acme's
    // message of 40 days ago is outside).
    let per_day: Vec<DayRow> = sqlx::query_as(
        "select workspace, day::text, messages, senders, rooms, deleted from admin.messages_per_day",
    )
    .fetch_all(&mut ro)
    .await
    .unwrap();
    let counted: Vec<DayRow> = sqlx::query_as(
        "select w.slug, (m.created_at at time zone 'UTC')::date::text as day, count(*),
                count(distinct m.sender_id), count(distinct m.room_id),
                count(*) filter (where m.deleted_at is not null)
         from messages m join workspaces w on w.id = m.workspace_id
         where m.created_at >= (date_trunc('day', now() at time zone 'UTC') - interval '29 days')
                               at time zone 'UTC'
         group by 1, 2 order by 2 desc, 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(per_day, counted);
    let shape: Vec<(&str, i64, i64)> = per_day.iter().map(|d| (d.0.as_str(), d.2, d.5)).collect();
    assert_eq!(
        shape,
        [
            ("acme", 1, 0),
            ("default", 4, 1),
            ("default", 1, 0),
            ("default", 1, 0)
        ]
    );

    // Denied access this week: newest first, each kind, the workspace and who.
    let denied: Vec<DeniedRow> = sqlx::query_as(
        "select workspace, kind, attempted, username, room_name
             from admin.denied_access_this_week",
    )
    .fetch_all(&mut ro)
    .await
    .unwrap();
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        denied,
        [
            (
                "acme".to_owned(),
                "refresh_token_reused".to_owned(),
                some("refresh"),
                some("dee"),
                None
            ),
            (
                "default".to_owned(),
                "admin_only".to_owned(),
                some("disable_user"),
                some("bob"),
                None
            ),
            (
                "default".to_owned(),
                "room".to_owned(),
                some("get_room"),
                some("bob"),
                some("secret")
            ),
        ]
    );

    // The queries the README shows run as they are, as the role.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## Operators' SQL").expect("README section")..];
    let queries = &section[section
        .find("-- The busiest rooms")
        .expect("README queries")..];
    let queries = &queries[..queries.find("```").unwrap()];
    let mut ran = 0;
    for sql in queries.split(';').filter(|q| !q.trim().is_empty()) {
        let rows = sqlx::query(sql).fetch_all(&mut ro).await.unwrap();
        assert!(!rows.is_empty(), "no rows: {sql}");
        ran += 1;
    }
    assert_eq!(ran, 4);

    // Nothing else: no table can be read (password hashes, token hashes, secrets, message
    // text), nothing written, nothing made or changed.
    let before = tenancy::fingerprint(&app.db).await;
    let denied_statements = [
        "select password_hash from users",
        "select * from sessions",
        "select * from api_keys",
        "select secret from webhooks",
        "select body from messages",
        "select * from audit_log",
        "select * from workspaces",
        "select * from message_view",
        "insert into workspaces (id, slug, name) values (gen_random_uuid(), 'ro-was-here', 'x')",
        "insert into audit_log (workspace_id, action) \
         values ('00000000-0000-0000-0000-000000000001', 'user_enabled')",
        "update users set is_admin = true",
        "update rooms set topic = 'ro was here'",
        "delete from messages",
        "delete from sessions",
        "truncate audit_log",
        "truncate users cascade",
        "select nextval('audit_log_id_seq')",
        "create table ro_was_here (i int)",
        "create table public.ro_was_here (i int)",
        "create table admin.ro_was_here (i int)",
        "create view admin.ro_was_here as select 1",
        "create schema ro_was_here",
        "drop view admin.rooms_by_activity",
        "alter view admin.users_by_last_seen rename to ro_was_here",
        "comment on view admin.messages_per_day is 'ro was here'",
        "grant select on users to public",
    ];
    for sql in denied_statements {
        assert_eq!(refused(&mut ro, sql).await, "42501", "{sql}");
    }
    // The views cannot be written by anyone (joins and aggregates make them not updatable), and
    // the role holds no write privilege on them either.
    for view in [
        "admin.rooms_by_activity",
        "admin.users_by_last_seen",
        "admin.messages_per_day",
        "admin.denied_access_this_week",
    ] {
        for sql in [
            format!("insert into {view} (workspace) values ('default')"),
            format!("update {view} set workspace = 'x'"),
            format!("delete from {view}"),
        ] {
            assert_eq!(refused(&mut ro, &sql).await, "55000", "{sql}");
        }
        let truncate = format!("truncate {view}");
        assert_eq!(refused(&mut ro, &truncate).await, "42809", "{truncate}");
        let writable: bool = sqlx::query_scalar(
            "select has_table_privilege('huddle_readonly', $1,
                                        'insert, update, delete, truncate, references, trigger')",
        )
        .bind(view)
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert!(!writable, "{view}");
    }
    assert_eq!(
        before,
        tenancy::fingerprint(&app.db).await,
        "nothing changed"
    );

    ro.close().await.unwrap();
    drop(login);
}
