//! Proves the test Socket.IO client (tests/common/sio.rs) against the real server, on both
//! transports. The server's full contract is tested elsewhere.

mod common;

use std::time::Duration;

use common::{
    sio::{ack_error, ack_ok, both_transports, Auth, SioClient, Transport},
    spawn_app, TestApp,
};
use reqwest::Method;
use serde_json::json;

// Several worker threads, so that the client's own tasks (reader, writer, pongs) run on other
// threads than the test that drives it.
both_transports!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    a_token_in_the_payload_or_a_header_connects_and_refusals_are_connect_errors,
    acks_find_their_calls_events_wait_in_a_buffer_and_sends_keep_their_order,
    client_and_server_disconnects_end_the_socket_on_both_sides,
);

async fn a_token_in_the_payload_or_a_header_connects_and_refusals_are_connect_errors(t: Transport) {
    let app = spawn_app().await;
    let alice = app.register("alice").await;

    let s = app.socket(&alice.access, t).await;
    assert!(s.is_connected() && !s.sid().is_empty());
    let session = s.next("session").await;
    assert_eq!(session["user"]["id"], alice.id.to_string());
    assert_eq!(session["user"]["username"], "alice");

    for refused in [
        Auth::None,
        Auth::Token("not-a-token"),
        Auth::Payload(json!({"token": 42})),
    ] {
        let err = SioClient::connect(&app.base, refused.clone(), t)
            .await
            .err();
        assert_eq!(err.as_deref(), Some("unauthorized"), "{refused:?}");
    }

    let by_header = SioClient::connect(&app.base, Auth::Header(&alice.access), t)
        .await
        .expect("header auth");
    assert_eq!(by_header.next("session").await["user"]["username"], "alice");
    assert_ne!(by_header.sid(), s.sid());
}

async fn acks_find_their_calls_events_wait_in_a_buffer_and_sends_keep_their_order(t: Transport) {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let s = app.socket(&alice.access, t).await;
    // The server may drop an event sent the instant CONNECT arrives (a server race, not the
    // client's): `session` comes once the server counts the socket as connected.
    s.next("session").await;

    let joined = s.call("joinRoom", json!("general")).await;
    assert_eq!(ack_ok(&joined)["room"]["name"], "general");
    // Taken out of order: `history` came first and waits in the buffer meanwhile.
    assert_eq!(s.next("message").await["kind"], "system");
    let history = s.drain("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["room"]["name"], "general");

    let pending: Vec<_> = (0..200)
        .map(|i| {
            s.call_later(
                "sendMessage",
                json!({"room": "general", "body": format!("m{i}")}),
            )
        })
        .collect();
    for (i, ack) in futures::future::join_all(pending).await.iter().enumerate() {
        ack_ok(ack);
        assert_eq!(ack["message"]["body"], format!("m{i}"));
        assert_eq!(ack["message"]["seq"], i as u64 + 1);
    }
    for i in 0..200 {
        assert_eq!(s.next("message").await["body"], format!("m{i}"));
    }

    ack_error(&s.call_no_args("joinRoom").await, "invalid_input");
    s.assert_silent("message", Duration::from_millis(300)).await;
    assert!(s
        .next_within("history", Duration::from_millis(100))
        .await
        .is_none());
}

async fn client_and_server_disconnects_end_the_socket_on_both_sides(t: Transport) {
    let app = spawn_app().await;
    let alice = app.register("alice").await;

    // A client-side disconnect and a dropped client both end the socket on the server.
    for how in ["disconnect", "drop"] {
        let s = app.socket(&alice.access, t).await;
        wait_sockets(&app, 1).await;
        if how == "disconnect" {
            s.disconnect().await;
            assert!(!s.is_connected());
        } else {
            drop(s);
        }
        wait_sockets(&app, 0).await;
    }

    // Logout disconnects the session's sockets from the server side.
    let s = app.socket(&alice.access, t).await;
    s.next("session").await;
    let out = app
        .request(Method::POST, "/api/auth/logout", Some(&alice.access), None)
        .await;
    out.ok(204);
    s.wait_disconnected().await;
    assert!(!s.is_connected());
}

/// Waits until the server counts `n` connected sockets (`/metrics`).
async fn wait_sockets(app: &TestApp, n: u64) {
    let want = format!("huddle_sockets_connected {n}\n");
    for _ in 0..100 {
        let text = app.client.get(app.url("/metrics")).send().await.unwrap();
        if text.text().await.unwrap().contains(&want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server never counted {n} connected sockets");
}

/// A connection idle through two server pings (25 s apart) stays up: run with `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "takes a minute"]
async fn an_idle_connection_survives_the_servers_pings() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let ws = app.socket(&alice.access, Transport::WebSocket).await;
    let polling = app.socket(&alice.access, Transport::Polling).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    for s in [&ws, &polling] {
        assert!(s.is_connected());
        ack_ok(&s.call("joinRoom", json!("general")).await);
    }
}
