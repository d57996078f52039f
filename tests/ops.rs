//! Operations endpoints and the behaviour of the HTTP surface as a whole: unknown routes, wrong
//! methods, CORS, and a Postgres that is down.

mod common;

use common::{spawn_app, spawn_app_with, spawn_with_state};
use huddle::{app::AppState, config::Config};
use reqwest::Method;
use std::collections::HashMap;

#[tokio::test]
async fn healthz_and_readyz_answer_while_postgres_is_up() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz", None).await.ok(200)["status"], "ok");
    assert_eq!(app.get("/readyz", None).await.ok(200)["status"], "ready");
}

#[tokio::test]
async fn with_postgres_down_readyz_and_requests_answer_503() {
    // A pool pointed at a port where nothing listens: Postgres is "down".
    let vars: HashMap<String, String> = [
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:9/huddle"),
        ("JWT_SECRET", common::TEST_JWT_SECRET),
        ("AUTH_RATE", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = Config::from_vars(&vars).unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(500))
        .connect_lazy(&config.database_url)
        .unwrap();
    let state = AppState::with_pool(config, pool).unwrap();
    let app = spawn_with_state(state, String::new(), String::new()).await;

    app.get("/healthz", None).await.ok(200);
    app.get("/readyz", None).await.error(503, "unavailable");
    app.register_raw("nora", "password-1")
        .await
        .error(503, "unavailable");
    app.login_raw("nora", "password-1")
        .await
        .error(503, "unavailable");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_contracts_shape() {
    let app = spawn_app().await;
    app.get("/nope", None).await.error(404, "not_found");
    app.get("/api/auth/login", None)
        .await
        .error(404, "not_found");
    app.request(Method::DELETE, "/api/me", None, None)
        .await
        .error(404, "not_found");
}

#[tokio::test]
async fn cors_allows_any_origin_by_default() {
    let app = spawn_app().await;
    let res = app
        .client
        .request(Method::OPTIONS, app.url("/api/auth/login"))
        .header("origin", "https://chat.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization,x-request-id",
        )
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    let allowed = res.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("x-request-id"), "{allowed}");
    // And a cross-origin script may read the id a response carries.
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "https://chat.example")
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("x-request-id"));
    assert_eq!(
        res.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase(),
        "x-request-id"
    );
}

#[tokio::test]
async fn cors_origins_restricts_origins() {
    let app = spawn_app_with(&[("CORS_ORIGINS", "https://chat.example")]).await;
    let allowed = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "https://chat.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://chat.example"
    );
    let other = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn serve_creates_a_missing_database_and_migrates_it() {
    let app = spawn_app().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "select table_name::text from information_schema.tables where table_schema = 'public' order by 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    for table in [
        "audit_log",
        "messages",
        "room_members",
        "rooms",
        "sessions",
        "users",
    ] {
        assert!(tables.iter().any(|t| t == table), "{table} in {tables:?}");
    }
    // Every table and column is commented for the admins reading it with psql.
    let uncommented: Vec<String> = sqlx::query_scalar(
        "select c.table_name || '.' || c.column_name from information_schema.columns c
         join pg_class t on t.relname = c.table_name and t.relnamespace = 'public'::regnamespace
         where c.table_schema = 'public' and c.table_name <> '_sqlx_migrations'
           and col_description(t.oid, c.ordinal_position) is null",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert!(
        uncommented.is_empty(),
        "columns without a comment: {uncommented:?}"
    );
}

#[tokio::test]
async fn metrics_count_sockets_messages_denials_and_requests() {
    use common::sio::{ack_error, ack_ok, Transport};
    use serde_json::json;

    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let owner = app.register("owner").await;
    app.create_room(&owner, "secret", "private").await;
    let s = app.socket(&ann.access, Transport::WebSocket).await;
    ack_ok(&s.call("joinRoom", json!("general")).await);
    ack_ok(
        &s.call("sendMessage", json!({"room": "general", "body": "hi"}))
            .await,
    );
    ack_error(&s.call("joinRoom", json!("secret")).await, "forbidden");
    s.next("message").await;

    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = res.text().await.unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("huddle_sockets_connected"), 1.0);
    assert_eq!(value("huddle_messages_persisted_total"), 1.0);
    assert_eq!(value("huddle_join_denials_total"), 1.0);
    assert!(value("huddle_deliveries_total") >= 1.0);
    assert!(value("huddle_http_request_duration_seconds_count") >= 3.0);
}
