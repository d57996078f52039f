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

/// The real binary with its own logging set-up, printing into a file; stopped by `finish`,
/// which returns everything it printed.
struct Logged {
    child: std::process::Child,
    api: Api,
    db_name: String,
    log_path: std::path::PathBuf,
}

async fn start_logged(env: &[(&str, &str)]) -> Logged {
    let db_name = format!("huddle_test_{}", Uuid::new_v4().simple());
    let log_path = std::env::temp_dir().join(format!("{db_name}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_huddle"));
    cmd.env_clear()
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
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
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
    Logged {
        child,
        api,
        db_name,
        log_path,
    }
}

impl Logged {
    fn finish(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let printed = std::fs::read_to_string(&self.log_path).unwrap();
        let _ = std::fs::remove_file(&self.log_path);
        common::drop_database(self.db_name);
        printed
    }
}

#[tokio::test]
async fn trace_logging_prints_neither_tokens_nor_keys_nor_message_bodies() {
    let logged = start_logged(&[("RUST_LOG", "trace")]).await;
    let (api, db_name) = (logged.api.clone(), logged.db_name.clone());
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

    let printed = logged.finish();

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

/// JSON logs carry, on every line a request causes, the request's id (the caller's own
/// `X-Request-Id`, or a new one, returned either way), the route, and the caller's user and
/// workspace and the room it names.
#[tokio::test]
async fn json_logs_name_the_request_user_workspace_and_room() {
    let logged = start_logged(&[("RUST_LOG", "info"), ("LOG_FORMAT", "json")]).await;
    let api = logged.api.clone();
    let ada = api.register("ada").await;
    let room = api
        .post(
            "/api/rooms",
            Some(&ada.access),
            json!({"name": "logged", "visibility": "public"}),
        )
        .await;
    let room_id = room.ok(201)["id"].as_str().unwrap().to_owned();
    let deleted = api
        .client
        .delete(api.url(&format!("/api/rooms/{room_id}")))
        .bearer_auth(&ada.access)
        .header("x-request-id", "proxy-7f3a.1")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(deleted.headers()["x-request-id"], "proxy-7f3a.1");
    // Without one (or with one that is not sane), a new id is made and returned.
    for sent in [None, Some("a b\tc")] {
        let mut req = api.client.get(api.url("/api/me")).bearer_auth(&ada.access);
        if let Some(sent) = sent {
            req = req.header("x-request-id", sent);
        }
        let res = req.send().await.unwrap();
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(Uuid::parse_str(&id).is_ok(), "{id}");
    }
    let printed = logged.finish();

    let lines: Vec<serde_json::Value> = printed
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let deletion = lines
        .iter()
        .find(|l| l["message"] == "room deleted")
        .unwrap_or_else(|| panic!("no 'room deleted' line in:\n{printed}"));
    let span = &deletion["span"];
    assert_eq!(span["name"], "http", "{deletion}");
    assert_eq!(span["request_id"], "proxy-7f3a.1", "{deletion}");
    assert_eq!(span["route"], "/api/rooms/{id}", "{deletion}");
    assert_eq!(span["room.id"], room_id, "{deletion}");
    assert_eq!(span["user.id"], ada.id.to_string(), "{deletion}");
    assert_eq!(
        span["workspace.id"], "00000000-0000-0000-0000-000000000001",
        "{deletion}"
    );
}
