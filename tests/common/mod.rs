//! The shared test harness: a real server on a random port of 127.0.0.1, on a database of its
//! own (created and migrated for the test, dropped after it), with typed helpers.
#![allow(dead_code)]

use std::{collections::HashMap, net::SocketAddr};

use huddle::{app::AppState, config::Config};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

pub mod cluster;
pub mod messages;
pub mod postgres;
pub mod receiver;
pub mod redis_cluster;
pub mod server;
pub mod sio;
pub mod tenancy;

/// The JWT secret every test server uses, so tests can forge tokens.
pub const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// The Postgres server tests create their databases on.
pub fn postgres_server_url() -> String {
    std::env::var("HUDDLE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// REST helpers bound to this server (`app.register(..)`, `app.get(..)`, `app.base`...).
    pub api: Api,
    pub db: PgPool,
    pub state: AppState,
    pub database_url: String,
    db_name: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A server with the test defaults (rate limits off).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// A server with some settings overridden, e.g. `[("AUTH_RATE", "3")]`.
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        huddle::telemetry::init(huddle::config::LogFormat::Text);
    }
    let db_name = format!("huddle_test_{}", Uuid::new_v4().simple());
    let database_url = format!("{}/{db_name}", postgres_server_url());
    let mut vars: HashMap<String, String> = [
        ("DATABASE_URL", database_url.as_str()),
        ("JWT_SECRET", TEST_JWT_SECRET),
        ("AUTH_RATE", "0"),
        ("MESSAGE_RATE", "0"),
        ("DATABASE_MAX_CONNECTIONS", "5"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in overrides {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    let config = Config::from_vars(&vars).expect("test config");
    let state = AppState::connect(config).await.expect("test app state");
    spawn_with_state(state, db_name, database_url).await
}

/// Serves an already-built state (e.g. one whose pool points at a dead Postgres).
pub async fn spawn_with_state(state: AppState, db_name: String, database_url: String) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = state.clone();
    tokio::spawn(async move {
        huddle::app::serve(listener, served, async {
            let _ = rx.await;
        })
        .await
        .expect("server");
    });
    TestApp {
        addr,
        api: Api::new(format!("http://{addr}")),
        db: state.db.clone(),
        state,
        database_url,
        db_name,
        shutdown: Some(tx),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if self.db_name.is_empty() {
            return;
        }
        drop_database(std::mem::take(&mut self.db_name));
    }
}

/// Drops a test database (see `on_server`).
pub fn drop_database(name: String) {
    on_server(format!("drop database if exists {name} with (force)"));
}

/// Runs one best-effort statement on the Postgres server's `postgres` database, from a thread
/// with its own runtime (so it works in `Drop`, inside or outside an async test).
pub fn on_server(statement: String) {
    let server = postgres_server_url();
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            if let Ok(mut conn) = PgConnection::connect(&format!("{server}/postgres")).await {
                let _ = sqlx::query(&statement).execute(&mut conn).await;
            }
        });
    })
    .join();
}

/// A reply: status, headers and the JSON body (Null when there is none).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts an error reply of the contract's shape and returns its `error` object.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        let error = &self.body["error"];
        assert_eq!(error["code"], code, "body: {}", self.body);
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "body: {}",
            self.body
        );
        error
    }

    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        &self.body
    }
}

/// A registered user with a live session.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: Uuid,
    pub username: String,
    pub password: String,
    pub access: String,
    pub refresh: String,
}

/// REST calls to one server, with typed helpers.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl std::ops::Deref for TestApp {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Api {
    pub fn new(base: String) -> Self {
        Api {
            base,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        into_reply(req.send().await.expect("request")).await
    }

    /// Sends raw bytes with a chosen content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        let mut req = self.client.request(method, self.url(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        into_reply(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.request(Method::POST, path, token, Some(body)).await
    }

    pub async fn register_raw(&self, username: &str, password: &str) -> Reply {
        self.post(
            "/api/auth/register",
            None,
            json!({"username": username, "password": password}),
        )
        .await
    }

    pub async fn login_raw(&self, username: &str, password: &str) -> Reply {
        self.post(
            "/api/auth/login",
            None,
            json!({"username": username, "password": password}),
        )
        .await
    }

    /// Registers `username` with a fixed good password.
    pub async fn register(&self, username: &str) -> Session {
        let password = format!("{username}-password");
        let reply = self.register_raw(username, &password).await;
        session_of(reply.ok(201), username, &password)
    }

    pub async fn login(&self, username: &str, password: &str) -> Session {
        let reply = self.login_raw(username, password).await;
        session_of(reply.ok(200), username, password)
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.request(Method::PUT, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.request(Method::PATCH, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.request(Method::DELETE, path, token, None).await
    }

    /// Creates a room as `owner`; returns its JSON.
    pub async fn create_room(&self, owner: &Session, name: &str, visibility: &str) -> Value {
        let reply = self
            .post(
                "/api/rooms",
                Some(&owner.access),
                json!({"name": name, "visibility": visibility}),
            )
            .await;
        reply.ok(201).clone()
    }

    /// Grants `user` access to a room as `by`.
    pub async fn grant(&self, by: &Session, room: &Value, user: &Session, role: &str) -> Reply {
        let path = format!(
            "/api/rooms/{}/members/{}",
            room["id"].as_str().unwrap(),
            user.id
        );
        self.put(&path, Some(&by.access), json!({"role": role}))
            .await
    }
}

impl TestApp {
    /// Stores `n` messages from `sender` in a room ("message 1" to "message n"), bypassing the
    /// socket layer but not the production write: one `insert_batch`, the statement the writer
    /// commits socket messages with, so seeded rows get their seqs the way sent ones do.
    pub async fn seed_messages(&self, room: &Value, sender: &Session, n: usize) {
        use huddle::store::messages::{insert_batch, BatchOutcome, NewMessage};

        let room_id: Uuid = room["id"].as_str().unwrap().parse().unwrap();
        let batch: Vec<NewMessage> = (1..=n)
            .map(|i| NewMessage {
                id: Uuid::now_v7(),
                room_id,
                sender_id: sender.id,
                body: format!("message {i}"),
                ..NewMessage::default()
            })
            .collect();
        let outcomes = insert_batch(&self.db, &batch, huddle::store::messages::Log::InStatement)
            .await
            .unwrap();
        assert_eq!(outcomes.len(), n);
        for outcome in outcomes {
            assert!(
                matches!(outcome, BatchOutcome::New(_)),
                "seeding stored nothing: {outcome:?}"
            );
        }
    }

    /// Makes a registered user an admin (as `huddle user create --admin` would).
    pub async fn make_admin(&self, who: &Session) {
        sqlx::query("update users set is_admin = true where id = $1")
            .bind(who.id)
            .execute(&self.db)
            .await
            .unwrap();
    }

    /// How many audit lines with this action exist.
    pub async fn audits(&self, action: &str) -> i64 {
        sqlx::query_scalar("select count(*) from audit_log where action = $1")
            .bind(action)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&self.db)
            .await
            .unwrap()
    }
}

/// The seqs of a page's `messages`, in its order: a REST page, a `history` ack or event.
pub fn seqs(page: &Value) -> Vec<i64> {
    page["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages in {page}"))
        .iter()
        .map(|m| m["seq"].as_i64().unwrap_or_else(|| panic!("no seq in {m}")))
        .collect()
}

fn session_of(body: &Value, username: &str, password: &str) -> Session {
    Session {
        id: body["user"]["id"].as_str().unwrap().parse().unwrap(),
        username: username.to_owned(),
        password: password.to_owned(),
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
    }
}

pub async fn into_reply(res: reqwest::Response) -> Reply {
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "non-JSON body ({status}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// Percent-encodes everything but ASCII letters and digits, for query strings of any text.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A counter's value in a node's `/metrics`, if it is there.
#[allow(dead_code)] // not every test binary reads metrics
pub async fn metric(node: &Api, name: &str) -> Option<u64> {
    let text = node
        .client
        .get(node.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}
