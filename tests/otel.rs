//! The `otel` feature: spans reach a real OTLP/HTTP receiver. Built and run by CI with
//! `cargo test --features otel --test otel`; without the feature this file is empty.
#![cfg(feature = "otel")]

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{body::Bytes, extract::State, http::HeaderMap, routing::post, Router};
use common::cluster::Node;

/// What the receiver got: content type and body of each POST to /v1/traces.
type Got = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn traces(State(got): State<Got>, headers: HeaderMap, body: Bytes) {
    let kind = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    got.lock().unwrap().push((kind, body.to_vec()));
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn request_spans_are_exported_to_the_collector_with_their_ids() {
    let got: Got = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .with_state(got.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let db = format!(
        "{}/huddle_test_{}",
        common::postgres_server_url(),
        uuid::Uuid::new_v4().simple()
    );
    let mut node = Node::spawn(
        &db,
        None,
        &[
            ("RUST_LOG", "info"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
        ],
    );
    common::cluster::wait_ready(&node).await;
    let ada = node.register("ada").await;
    let res = node
        .client
        .get(node.url("/api/me"))
        .bearer_auth(&ada.access)
        .header("x-request-id", "otel-check-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A graceful stop flushes what the batch processor still holds.
    node.stop();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bodies = got.lock().unwrap().clone();
        let all: Vec<u8> = bodies.iter().flat_map(|(_, b)| b.clone()).collect();
        if contains(&all, "otel-check-42") {
            assert!(
                bodies
                    .iter()
                    .all(|(kind, _)| kind == "application/x-protobuf"),
                "{:?}",
                bodies.iter().map(|(k, _)| k).collect::<Vec<_>>()
            );
            assert!(contains(&all, "huddle"), "no service name");
            assert!(contains(&all, "/api/me"), "no route");
            assert!(contains(&all, &ada.id.to_string()), "no user id");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the collector got no span of the request ({} posts)",
            bodies.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    common::drop_database(db.rsplit('/').next().unwrap().to_owned());
}
