//! The contract's guarantees, under concurrency: send order, delivery order, exactly-once,
//! no gap between history and live delivery, and resume across a server restart.

mod common;

use std::collections::BTreeSet;

use common::{
    seqs,
    sio::{ack_ok, both_transports, SioClient, Transport},
    spawn_app, spawn_app_with, spawn_with_state,
};
use futures::future::join_all;
use huddle::app::AppState;
use serde_json::{json, Value};

// Two worker threads, so that the server's tasks and the clients' really run at once.
both_transports!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    one_sockets_unawaited_sends_commit_in_send_order,
    every_socket_receives_a_rooms_messages_in_seq_order,
    a_repeated_client_id_is_stored_and_broadcast_once,
    nothing_falls_between_history_and_live_delivery,
);

fn seq(v: &Value) -> i64 {
    v["seq"].as_i64().unwrap_or_else(|| panic!("no seq in {v}"))
}

/// The user messages a socket received so far, in arrival order.
fn received_seqs(s: &SioClient) -> Vec<i64> {
    s.drain("message")
        .iter()
        .filter(|m| m["kind"] == "user")
        .map(seq)
        .collect()
}

async fn one_sockets_unawaited_sends_commit_in_send_order(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let a = app.in_room(&ann, "general", t).await;
    let b = app.in_room(&bob, "general", t).await;

    let acks = a.send_burst("general", 0..300).await;
    for (i, ack) in acks.iter().enumerate() {
        assert_eq!(ack["message"]["body"], format!("m{i}"));
        assert_eq!(
            seq(&ack["message"]),
            i as i64 + 1,
            "the i-th send got the i-th seq"
        );
    }
    // The receiver saw them all, in seq order.
    let mut seen = Vec::new();
    while seen.len() < 300 {
        let m = b.next("message").await;
        if m["kind"] == "user" {
            seen.push(seq(&m));
        }
    }
    assert_eq!(seen, (1..=300).collect::<Vec<_>>());
}

async fn every_socket_receives_a_rooms_messages_in_seq_order(t: Transport) {
    let app = spawn_app().await;
    let mut senders = Vec::new();
    for name in ["sender1", "sender2", "sender3"] {
        let who = app.register(name).await;
        senders.push(app.in_room(&who, "general", t).await);
    }
    let mut receivers = Vec::new();
    for name in ["receiver1", "receiver2"] {
        let who = app.register(name).await;
        receivers.push(app.in_room(&who, "general", t).await);
    }
    let mut pending = Vec::new();
    for i in 0..100 {
        for (n, s) in senders.iter().enumerate() {
            pending.push(s.call_later(
                "sendMessage",
                json!({"room": "general", "body": format!("{n}-{i}")}),
            ));
        }
    }
    for ack in join_all(pending).await {
        ack_ok(&ack);
    }
    for r in receivers.iter().chain(senders.iter()) {
        let mut seen = received_seqs(r);
        while seen.len() < 300 {
            let m = r.next("message").await;
            if m["kind"] == "user" {
                seen.push(seq(&m));
            }
        }
        assert_eq!(
            seen,
            (1..=300).collect::<Vec<_>>(),
            "in seq order, none missing, none twice"
        );
    }
}

async fn a_repeated_client_id_is_stored_and_broadcast_once(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let a = app.in_room(&ann, "general", t).await;
    let a2 = app.in_room(&ann, "general", t).await;
    // Last, so that nothing of the others' joins comes its way.
    let b = app.in_room(&bob, "general", t).await;
    let payload = json!({"room": "general", "body": "once", "client_id": "retry-me"});
    let mut pending: Vec<_> = (0..20)
        .map(|_| a.call_later("sendMessage", payload.clone()))
        .collect();
    // The same user's other socket retries too (e.g. after a reconnect).
    pending.extend((0..5).map(|_| a2.call_later("sendMessage", payload.clone())));
    let acks = join_all(pending).await;
    let ids: BTreeSet<String> = acks
        .iter()
        .map(|a| a["message"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "every ack names the first message: {acks:?}");
    assert_eq!(app.count("messages").await, 1);
    let first = b.next("message").await;
    assert_eq!(first["body"], "once");
    b.assert_silent("message", std::time::Duration::from_millis(400))
        .await;

    // Another user may use the same client_id: it is per sender.
    let other = b.call("sendMessage", payload).await;
    ack_ok(&other);
    assert_ne!(
        other["message"]["id"].as_str().unwrap(),
        ids.first().unwrap()
    );
    // And the next message has the next seq: duplicates used none up.
    assert_eq!(seq(&other["message"]), 2);
}

async fn nothing_falls_between_history_and_live_delivery(t: Transport) {
    let app = spawn_app_with(&[("HISTORY_LIMIT", "1000")]).await;
    let ann = app.register("ann").await;
    let joiner = app.register("joiner").await;
    let a = app.in_room(&ann, "general", t).await;
    let total = 400;
    let sending = tokio::spawn(a.send_burst("general", 0..total));

    // Join while the sends are being committed.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let j = app.socket(&joiner.access, t).await;
    ack_ok(&j.call("joinRoom", json!("general")).await);
    sending.await.unwrap();

    let history = j.next("history").await;
    let mut covered: BTreeSet<i64> = seqs(&history).into_iter().collect();
    let replayed = covered.len();
    let last_replayed = covered.iter().max().copied().unwrap_or(0);
    let mut live = received_seqs(&j);
    covered.extend(live.iter().copied());
    while !covered.contains(&total) {
        let m = j.next("message").await;
        if m["kind"] == "user" {
            live.push(seq(&m));
            covered.insert(seq(&m));
        }
    }
    assert_eq!(
        covered,
        (1..=total).collect::<BTreeSet<_>>(),
        "history ({replayed} up to {last_replayed}) + live leave no gap"
    );
    assert!(
        live.windows(2).all(|w| w[0] < w[1]),
        "live messages arrive in seq order"
    );
}

#[tokio::test]
async fn an_acked_message_survives_a_restart_and_since_resumes_after_it() {
    // `owner` holds the database; the servers below come and go on it.
    let owner = spawn_app().await;
    let config = owner.state.config.as_ref().clone();
    let first = spawn_with_state(
        AppState::connect(config.clone()).await.unwrap(),
        String::new(),
        String::new(),
    )
    .await;
    let ann = first.register("ann").await;
    let a = first.in_room(&ann, "general", Transport::WebSocket).await;
    for i in 1..=5 {
        let ack = a
            .call(
                "sendMessage",
                json!({"room": "general", "body": format!("m{i}")}),
            )
            .await;
        assert_eq!(seq(&ack["message"]), i);
    }
    drop(first);
    a.wait_disconnected().await;

    let second = spawn_with_state(
        AppState::connect(config).await.unwrap(),
        String::new(),
        String::new(),
    )
    .await;
    // Tokens survive the restart (same JWT_SECRET); resume after seq 2 misses nothing.
    let again = second.socket(&ann.access, Transport::Polling).await;
    ack_ok(
        &again
            .call("joinRoom", json!({"room": "general", "since": 2}))
            .await,
    );
    let history = again.next("history").await;
    assert_eq!(seqs(&history), [3, 4, 5]);
    let next = again
        .call("sendMessage", json!({"room": "general", "body": "m6"}))
        .await;
    assert_eq!(seq(&next["message"]), 6);
}
