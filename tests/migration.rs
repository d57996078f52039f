//! Migrations 0005 (workspaces) and 0006 (revisions) on a v1 database: a database built with
//! migrations 0001-0004 and filled the way v1 filled it is migrated by the server's own
//! start-up; every row is kept, in the workspace `default`, each message's rev is its seq, and
//! the v1 API still serves those users.

mod common;

use common::spawn_app_with;
use serde_json::{json, Value};
use sqlx::{migrate::Migrator, Connection, PgConnection, PgPool};
use uuid::Uuid;

/// The tables a v1 database has rows in.
const TABLES: [&str; 7] = [
    "users",
    "sessions",
    "rotated_refresh_tokens",
    "rooms",
    "room_members",
    "messages",
    "audit_log",
];

/// Every row of every v1 table as JSON, without the columns later migrations add
/// (`workspace_id`; `rev` and `last_rev`), in a fixed order.
/// Columns that later migrations add (their values are checked apart, after the migration).
const ADDED: &str = "'{workspace_id,rev,last_rev,metadata,deleted_at,reply_to,thread_root_id,\
                     thread_reply_count,thread_last_reply_at,thread_last_reply_seq,\
                     external_id,is_bot}'::text[]";

async fn rows(db: &PgPool) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for table in TABLES {
        let rows: Vec<Value> = sqlx::query_scalar(&format!(
            "select to_jsonb(t) - {ADDED} from {table} t
             order by (to_jsonb(t) - {ADDED})::text"
        ))
        .fetch_all(db)
        .await
        .unwrap();
        out.push((table.to_owned(), rows));
    }
    out
}

/// A database of its own, dropped at the end.
struct Db(String);

impl Drop for Db {
    fn drop(&mut self) {
        common::drop_database(std::mem::take(&mut self.0));
    }
}

#[tokio::test]
async fn a_v1_database_moves_into_default_and_its_users_still_log_in() {
    let name = format!("huddle_test_{}", Uuid::new_v4().simple());
    let server = common::postgres_server_url();
    let url = format!("{server}/{name}");
    let mut admin = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    sqlx::query(&format!("create database {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let _db = Db(name);
    let v1_db = PgPool::connect(&url).await.unwrap();

    // The schema of v1: migrations 0001-0004 only.
    let mut v1 = Migrator::new(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/migrations"
    )))
    .await
    .unwrap();
    v1.migrations = v1
        .migrations
        .iter()
        .filter(|m| m.version <= 4)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    assert_eq!(v1.migrations.len(), 4);
    v1.run(&v1_db).await.unwrap();

    // v1 rows, written as v1 wrote them (no workspace anywhere).
    let password = "the v1 password";
    let hash = huddle::auth::password::Passwords::new(1, 4)
        .hash(password.to_owned())
        .await
        .unwrap();
    let (ann, bob, cy) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let (general, team, direct) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let session = Uuid::now_v7();
    let refresh_token = "a-v1-refresh-token-a-v1-refresh-token";
    let refresh_hash = huddle::auth::token::hash_refresh_token(refresh_token);
    let direct_name = huddle::rooms::direct_room_name(ann, bob);
    let v1_sql = [
        sqlx::query(
            "insert into users (id, username, display_name, password_hash, is_admin, disabled_at)
             values ($1, 'Ann', 'Ann A.', $4, true, null), ($2, 'bob', 'bob', $4, false, null),
                    ($3, 'cyd', 'cyd', $4, false, now())",
        )
        .bind(ann)
        .bind(bob)
        .bind(cy)
        .bind(&hash),
        sqlx::query(
            "insert into sessions (id, user_id, refresh_token_hash, expires_at, user_agent)
             values ($1, $2, $3, now() + interval '1 day', 'v1 client')",
        )
        .bind(session)
        .bind(ann)
        .bind(&refresh_hash),
        sqlx::query(
            "insert into sessions (id, user_id, refresh_token_hash, expires_at, revoked_at, revoked_reason)
             values ($1, $2, '\\x00', now() + interval '1 day', now(), 'logout')",
        )
        .bind(Uuid::now_v7())
        .bind(bob),
        sqlx::query("insert into rotated_refresh_tokens (token_hash, session_id) values ('\\x01', $1)")
            .bind(session),
        sqlx::query(
            "insert into rooms (id, name, visibility, created_by, last_seq) values
               ($1, 'general', 'public', null, 2), ($2, 'team', 'private', $4, 1),
               ($3, $5, 'direct', $4, 1)",
        )
        .bind(general)
        .bind(team)
        .bind(direct)
        .bind(ann)
        .bind(&direct_name),
        sqlx::query(
            "insert into room_members (room_id, user_id, role, added_by, last_read_seq) values
               ($1, $3, 'owner', null, 1), ($1, $4, 'member', $3, 0),
               ($2, $3, 'member', null, 0), ($2, $4, 'member', null, 1)",
        )
        .bind(team)
        .bind(direct)
        .bind(ann)
        .bind(bob),
        sqlx::query(
            "insert into messages (id, room_id, seq, sender_id, body, client_id) values
               ($1, $5, 1, $8, 'hello general', null), ($2, $5, 2, $9, 'hi ann', 'c-1'),
               ($3, $6, 1, $8, 'team only', null), ($4, $7, 1, $9, 'just us', null)",
        )
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(general)
        .bind(team)
        .bind(direct)
        .bind(ann)
        .bind(bob),
        sqlx::query(
            "insert into audit_log (action, actor_id, target_user_id, room_id, room_name, detail) values
               ('room_created', $1, null, $3, 'team', '{}'),
               ('access_denied', $2, null, $3, 'team', '{\"action\": \"joinRoom\"}'),
               ('user_disabled', $1, $4, null, null, '{}')",
        )
        .bind(ann)
        .bind(bob)
        .bind(team)
        .bind(cy),
    ];
    for statement in v1_sql {
        statement.execute(&v1_db).await.unwrap();
    }
    let before = rows(&v1_db).await;
    v1_db.close().await;

    // The v2 server starts on it: its start-up applies 0005.
    let app = spawn_app_with(&[("DATABASE_URL", &url)]).await;
    assert_eq!(
        before,
        rows(&app.db).await,
        "every v1 row is kept as it was"
    );
    // 0007's columns: every v1 message stands, replies to nothing, is in no thread, has no
    // thread, and rooms and messages have empty metadata; 0008's: no user is provisioned by the
    // server API or a bot, and users have empty metadata.
    let changed: i64 = sqlx::query_scalar(
        "select (select count(*) from messages
                 where deleted_at is not null or reply_to is not null
                    or thread_root_id is not null or thread_reply_count <> 0
                    or thread_last_reply_at is not null or thread_last_reply_seq is not null
                    or metadata <> '{}')
              + (select count(*) from rooms where metadata <> '{}')
              + (select count(*) from users
                 where external_id is not null or is_bot or metadata <> '{}')",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(changed, 0, "added columns hold their defaults");
    for table in TABLES.iter().filter(|t| **t != "rotated_refresh_tokens") {
        let elsewhere: i64 = sqlx::query_scalar(&format!(
            "select count(*) from {table}
             where workspace_id <> '00000000-0000-0000-0000-000000000001'"
        ))
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert_eq!(elsewhere, 0, "{table}: every row is in default");
    }
    let defaults: Vec<(String, String)> = sqlx::query_as("select slug, name from workspaces")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(defaults, [("default".to_owned(), "Default".to_owned())]);
    // Migration 0006: until now every change was a new message, so revisions are the seqs.
    let (messages, off): (i64, i64) =
        sqlx::query_as("select count(*), count(*) filter (where rev <> seq) from messages")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(messages > 0);
    assert_eq!(off, 0, "each v1 message's rev is its seq");
    let off: i64 = sqlx::query_scalar("select count(*) from rooms where last_rev <> last_seq")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(off, 0, "each v1 room's last_rev is its last_seq");

    // The v1 API: a v1 user logs in (any case of the name), sees its rooms and their history.
    let login = app.login_raw("ann", password).await;
    let body = login.ok(200).clone();
    assert_eq!(body["user"]["id"], ann.to_string());
    assert_eq!(
        body["user"]["workspace_id"],
        "00000000-0000-0000-0000-000000000001"
    );
    let token = body["access_token"].as_str().unwrap();
    let mine = app.get("/api/me/rooms", Some(token)).await;
    let names: Vec<&str> = mine.ok(200)["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [direct_name.as_str(), "team"]);
    let history = app
        .get(&format!("/api/rooms/{team}/messages"), Some(token))
        .await;
    assert_eq!(history.ok(200)["messages"][0]["body"], "team only");
    // The direct room is found again, not made twice.
    let again = app
        .post(&format!("/api/direct/{bob}"), Some(token), json!({}))
        .await;
    assert_eq!(again.ok(200)["id"], direct.to_string());
    // A v1 session's refresh token still works, and so does what it gives.
    let refreshed = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": refresh_token}),
        )
        .await;
    let access = refreshed.ok(200)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    app.get("/api/me", Some(&access)).await.ok(200);
    // v1 rules still hold in default: the disabled stay disabled, names stay taken.
    app.login_raw("cyd", password)
        .await
        .error(403, "account_disabled");
    app.register_raw("ANN", "another password")
        .await
        .error(409, "conflict");
    app.get("/api/rooms", Some(token)).await.ok(200);
}
