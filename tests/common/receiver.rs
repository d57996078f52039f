//! A real HTTP receiver of webhooks on a free port of 127.0.0.1: it records every request
//! (headers and body) and answers as the test tells it (2xx, an error status, a redirect, or
//! slowly); it can go down (its port refuses connections) and come back on the same port.

use std::{
    io::Write,
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Router,
};
use serde_json::{json, Value};

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Got {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    pub answered: u16,
}

impl Got {
    pub fn event(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// How the receiver answers.
#[derive(Clone, Debug)]
pub enum Answer {
    Status(u16),
    /// A 302 to this URL (which must never be followed).
    Redirect(String),
    /// 200 after this long.
    Slow(Duration),
}

struct Inner {
    got: Vec<Got>,
    answer: Answer,
}

#[derive(Clone)]
struct Shared(Arc<Mutex<Inner>>);

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Shared,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    /// Starts a receiver that answers 204.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Shared(Arc::new(Mutex::new(Inner {
            got: Vec::new(),
            answer: Answer::Status(204),
        })));
        let mut receiver = Receiver {
            addr,
            shared,
            server: None,
        };
        receiver.serve(listener);
        receiver
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = Router::new()
            .fallback(receive)
            .with_state(self.shared.clone());
        self.server = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    pub fn answer(&self, answer: Answer) {
        self.shared.0.lock().unwrap().answer = answer;
    }

    /// Every request so far.
    pub fn got(&self) -> Vec<Got> {
        self.shared.0.lock().unwrap().got.clone()
    }

    /// The requests answered 2xx.
    pub fn delivered(&self) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| (200..300).contains(&g.answered))
            .collect()
    }

    /// Goes down: the port refuses connections (open ones are cut).
    pub fn down(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    /// Comes back on the same port.
    pub async fn up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(err) => {
                    assert!(Instant::now() < deadline, "rebinding {}: {err}", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.serve(listener);
    }

    /// Waits (up to `within`) until `done` holds for the deliveries so far.
    pub async fn wait_for(&self, within: Duration, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + within;
        loop {
            let delivered = self.delivered();
            if done(&delivered) {
                return delivered;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver got {} deliveries, not what was expected",
                delivered.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let answer = shared.0.lock().unwrap().answer.clone();
    let (status, response) = match answer {
        Answer::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap();
            (code, status.into_response())
        }
        Answer::Redirect(to) => (302, (StatusCode::FOUND, [("location", to)]).into_response()),
        Answer::Slow(wait) => {
            tokio::time::sleep(wait).await;
            (200, StatusCode::OK.into_response())
        }
    };
    shared.0.lock().unwrap().got.push(Got {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: String::from_utf8_lossy(&body).into_owned(),
        answered: status,
    });
    response
}

/// Verifies deliveries with the Standard Webhooks library from npm (what receivers use), in one
/// run of node; returns each one's verified payload, or why it was refused.
pub fn verify_all(secret: &str, got: &[Got]) -> Vec<Result<Value, String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhooks-js");
    if !dir.join("node_modules/standardwebhooks").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed to install standardwebhooks (Node.js 20+)");
        assert!(status.success(), "npm ci failed in tests/webhooks-js");
    }
    let input: Vec<Value> = got
        .iter()
        .map(|g| {
            json!({"secret": secret, "id": g.id, "timestamp": g.timestamp,
                   "signature": g.signature, "body": g.body})
        })
        .collect();
    let mut child = Command::new("node")
        .arg("verify-all.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is needed to run the Standard Webhooks library (Node.js 20+)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::from(input).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "verify-all.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    results
        .into_iter()
        .map(|r| match r.get("payload") {
            Some(payload) => Ok(payload.clone()),
            None => Err(r["error"].as_str().unwrap_or_default().to_owned()),
        })
        .collect()
}
