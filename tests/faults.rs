//! Faults of the process itself and of its database: a graceful stop (SIGTERM) under load, and
//! Postgres stopped and restarted under the feet of a running node. Each test starts what it
//! breaks on free ports of 127.0.0.1.

mod common;

use std::{
    collections::{BTreeSet, HashSet},
    time::{Duration, Instant},
};

use common::{
    cluster::{wait_ready, Node, TestCluster},
    postgres::OwnPostgres,
    sio::{SioClient, Transport},
};
use futures::future::join_all;
use serde_json::{json, Value};

/// Sends `n` messages with client ids `<tag>-<i>` without waiting for their acks.
fn fire(s: &SioClient, tag: &str, n: usize) -> Vec<impl std::future::Future<Output = Value>> {
    (0..n)
        .map(|i| {
            let send = json!({"room": "general", "body": format!("{tag} {i}"), "client_id": format!("{tag}-{i}")});
            s.call_later("sendMessage", send)
        })
        .collect()
}

/// SIGTERM while messages are in flight: each one is answered before the process exits, either
/// acknowledged (and then stored) or refused as `unavailable` (and then not stored). None is
/// dropped without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_answers_every_message_in_flight() {
    let mut c = TestCluster::start_on_test_redis(1, &[]).await;
    let ann = c.node(0).register("ann").await;
    let bob = c.node(0).register("bob").await;
    let a = c
        .node(0)
        .in_room(&ann, "general", Transport::WebSocket)
        .await;
    let b = c
        .node(0)
        .in_room(&bob, "general", Transport::WebSocket)
        .await;
    let mut acks = fire(&a, "ann", 500);
    acks.extend(fire(&b, "bob", 500));
    tokio::task::block_in_place(|| c.nodes[0].stop());

    let mut acked = HashSet::new();
    let mut refused = 0;
    for ack in join_all(acks).await {
        if ack["ok"] == true {
            acked.insert(ack["message"]["client_id"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
            refused += 1;
        }
    }
    eprintln!(
        "SIGTERM with 1000 sends in flight: {} acknowledged, {refused} refused",
        acked.len()
    );
    assert_eq!(acked.len() + refused, 1000);
    let stored: Vec<String> = sqlx::query_scalar("select client_id from messages")
        .fetch_all(&c.db)
        .await
        .unwrap();
    let stored: HashSet<String> = stored.into_iter().collect();
    assert_eq!(stored, acked, "stored exactly what was acknowledged");
}

/// Postgres stopped under a running node and started again: sends are answered `unavailable`
/// while it is away and `/readyz` says 503; the same process recovers by itself; a client that
/// resends what was refused (same `client_id`) gets it stored; nothing acknowledged is lost and
/// nothing is stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_and_back_loses_nothing_and_stores_nothing_twice() {
    let pg = OwnPostgres::start();
    let node = Node::spawn(&pg.url("huddle"), None, &[]);
    wait_ready(&node).await;
    let ann = node.register("ann").await;
    let s = node.in_room(&ann, "general", Transport::WebSocket).await;
    let send = |i: usize| {
        let message =
            json!({"room": "general", "body": format!("m{i}"), "client_id": format!("c{i}")});
        s.call_later("sendMessage", message)
    };

    // Under load: a window of sends in flight, before, during and after the outage.
    let (mut acked, mut refused) = (BTreeSet::new(), BTreeSet::new());
    let mut record = |i: usize, ack: Value| {
        if ack["ok"] == true {
            assert_eq!(ack["message"]["client_id"], format!("c{i}"));
            acked.insert(i);
        } else {
            assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
            refused.insert(i);
        }
    };
    for (i, ack) in join_all((0..200).map(send)).await.into_iter().enumerate() {
        assert_eq!(ack["ok"], true, "stored while Postgres is up: {ack}");
        record(i, ack);
    }

    pg.stop();
    let during: Vec<_> = (200..300).map(send).collect();
    node.get("/readyz", None).await.error(503, "unavailable");
    for (i, ack) in (200..300).zip(join_all(during).await) {
        record(i, ack);
    }
    eprintln!(
        "Postgres stopped: {} of 100 sends refused as unavailable",
        refused.len()
    );
    assert!(
        refused.len() >= 90,
        "sends are refused while Postgres is away ({} refused)",
        refused.len()
    );

    pg.resume();
    // The same process finds Postgres again by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.get("/readyz", None).await.status != 200u16 {
        assert!(Instant::now() < deadline, "the node did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The client resends what was refused, with the same client ids, and sends more.
    let again: Vec<usize> = refused.iter().copied().chain(300..400).collect();
    let acks = join_all(again.iter().map(|&i| send(i))).await;
    for (&i, ack) in again.iter().zip(acks) {
        assert_eq!(ack["ok"], true, "message {i} after recovery: {ack}");
        acked.insert(i);
    }
    assert_eq!(acked.len(), 400);

    let db = sqlx::PgPool::connect(&pg.url("huddle")).await.unwrap();
    let stored: Vec<(String, i64)> =
        sqlx::query_as("select client_id, count(*) from messages group by client_id")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(stored.len(), 400, "every acknowledged message is stored");
    assert!(stored.iter().all(|(_, n)| *n == 1), "none is stored twice");
    let seqs: Vec<i64> = sqlx::query_scalar("select seq from messages order by seq")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(
        seqs,
        (1..=400).collect::<Vec<_>>(),
        "and the seqs have no gap"
    );
    db.close().await;
}
