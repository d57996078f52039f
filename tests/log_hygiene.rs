//! M-9: access tokens, API keys and message bodies never reach the logs, even with
//! `RUST_LOG=trace`. Runs
//! the real binary (its own process, so its own logging set-up) and reads everything it printed.

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    cluster::free_port,
    postgres_server_url,
    sio::{ack_ok, Transport},
    Api, TEST_JWT_SECRET,
};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn trace_logging_prints_neither_tokens_nor_keys_nor_message_bodies() {
    let db_name = format!("huddle_test_{}", Uuid::new_v4().simple());
    let log_path = std::env::temp_dir().join(format!("{db_name}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_huddle"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "DATABASE_URL",
            format!("{}/{db_name}", postgres_server_url()),
        )
        .env("JWT_SECRET", TEST_JWT_SECRET)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("AUTH_RATE", "0")
        .env("MESSAGE_RATE", "0")
        .env("DATABASE_MAX_CONNECTIONS", "5")
        .env("RUST_LOG", "trace")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let api = Api::new(format!("http://127.0.0.1:{port}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !api
        .client
        .get(api.url("/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let wendy = api.register("wendy").await;
    let mut bodies = Vec::new();
    for t in Transport::ALL {
        let socket = api.in_room(&wendy, "general", t).await;
        let body = format!("the-secret-body-{}", Uuid::new_v4().simple());
        let ack = socket
            .call("sendMessage", json!({"room": "general", "body": body}))
            .await;
        ack_ok(&ack);
        bodies.push(body);
    }
    api.get("/api/me", Some(&wendy.access)).await.ok(200);
    // An API key, made over REST and used on the server API, and a session it mints.
    let db = sqlx::PgPool::connect(&format!("{}/{db_name}", postgres_server_url()))
        .await
        .unwrap();
    sqlx::query("update users set is_admin = true where id = $1")
        .bind(wendy.id)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let created = api
        .post(
            "/api/admin/api-keys",
            Some(&wendy.access),
            json!({"name": "logs"}),
        )
        .await;
    let key = created.ok(201)["secret"].as_str().unwrap().to_owned();
    api.provision(&key, "ext-1", json!({"username": "kim"}))
        .await;
    let kim = api.minted(&key, "ext-1").await;

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let printed = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    common::drop_database(db_name);

    // Trace logging was on (our own debug lines are there), and still nothing secret.
    assert!(printed.contains("socket connected"), "{printed}");
    // The token's signature is its secret part; the whole token would contain it.
    let signature = wendy.access.rsplit('.').next().unwrap();
    assert!(!printed.contains(signature), "the access token was logged");
    assert!(
        !printed.contains(&wendy.refresh),
        "the refresh token was logged"
    );
    // A key's prefix is meant to be shown; the rest of it never is.
    assert!(!printed.contains(&key[11..]), "an API key was logged");
    let minted = kim.access.rsplit('.').next().unwrap();
    assert!(
        !printed.contains(minted),
        "a minted access token was logged"
    );
    assert!(
        !printed.contains(&kim.refresh),
        "a minted refresh token was logged"
    );
    for body in &bodies {
        assert!(
            !printed.contains(body.as_str()),
            "a message body was logged"
        );
    }
}
