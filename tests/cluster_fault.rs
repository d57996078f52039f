//! Redis going away and coming back: nodes keep serving, nothing acknowledged is lost, `/readyz`
//! tells, and cross-node delivery resumes by itself. Uses a Redis process of the test's own.

mod common;

use std::time::{Duration, Instant};

use common::{
    cluster::{OwnRedis, TestCluster},
    sio::{ack_ok, Transport},
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_loses_nothing_and_delivery_resumes_by_itself() {
    let mut redis = OwnRedis::start().await;
    let c = TestCluster::start(2, &redis.url(), &[]).await;
    let ann = c.node(0).register("ann").await;
    let bob = c.node(0).register("bob").await;
    let a = c
        .node(0)
        .in_room(&ann, "general", Transport::WebSocket)
        .await;
    let b = c.node(1).in_room(&bob, "general", Transport::Polling).await;
    ack_ok(
        &a.call("sendMessage", json!({"room": "general", "body": "before"}))
            .await,
    );
    b.until("message", |m| m["body"] == "before").await;

    redis.kill();

    // Both nodes live on and say they are not ready.
    for node in &c.nodes {
        node.get("/healthz", None).await.ok(200);
        let ready = node.get("/readyz", None).await;
        ready.error(503, "unavailable");
    }
    // A message sent now is acknowledged after its commit, reaches this node's sockets, and is
    // in Postgres.
    let during = a
        .call(
            "sendMessage",
            json!({"room": "general", "body": "during the outage"}),
        )
        .await;
    let seq = ack_ok(&during)["message"]["seq"].as_i64().unwrap();
    a.until("message", |m| m["body"] == "during the outage")
        .await;
    let stored: i64 =
        sqlx::query_scalar("select count(*) from messages where body = 'during the outage'")
            .fetch_one(&c.db)
            .await
            .unwrap();
    assert_eq!(stored, 1);
    // Stay down long enough for the node's publish (and its retry) to fail for real.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        b.is_connected(),
        "sockets stay connected through the outage"
    );
    c.node(1)
        .get("/readyz", None)
        .await
        .error(503, "unavailable");

    redis.restart().await;

    // Ready again without a restart...
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in &c.nodes {
        while node.get("/readyz", None).await.status.as_u16() != 200 {
            assert!(
                Instant::now() < deadline,
                "node not ready after Redis returned"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // ...and cross-node delivery resumes (the subscriber reconnects with backoff of at most 2 s).
    let mut resumed = false;
    for i in 0..40 {
        let body = format!("after {i}");
        ack_ok(
            &a.call("sendMessage", json!({"room": "general", "body": body}))
                .await,
        );
        if b.next_within("message", Duration::from_millis(500))
            .await
            .is_some_and(|m| m["body"] == body)
        {
            resumed = true;
            break;
        }
        b.drain("message");
    }
    assert!(resumed, "cross-node delivery did not resume");
    for node in &c.nodes {
        let reconnects = common::metric(node, "huddle_bus_reconnects_total").await;
        assert!(reconnects.is_some_and(|n| n >= 1), "{reconnects:?}");
    }
    // What bob missed is there to page in.
    let missed = b
        .call(
            "history",
            json!({"room": "general", "after": seq - 1, "limit": 1}),
        )
        .await;
    assert_eq!(missed["messages"][0]["body"], "during the outage");
}

/// A Redis that stops answering (frozen, not gone: nothing fails fast) must not slow the message
/// path: sends are committed and acknowledged at the usual pace, because publishing to the other
/// nodes never makes the writer wait; delivery to the other node resumes when Redis does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_does_not_slow_sends() {
    let redis = OwnRedis::start().await;
    let c = TestCluster::start(2, &redis.url(), &[]).await;
    let ann = c.node(0).register("ann").await;
    let bob = c.node(0).register("bob").await;
    let a = c
        .node(0)
        .in_room(&ann, "general", Transport::WebSocket)
        .await;
    let b = c
        .node(1)
        .in_room(&bob, "general", Transport::WebSocket)
        .await;

    redis.pause();
    let started = Instant::now();
    for i in 0..30 {
        let send = json!({"room": "general", "body": format!("frozen {i}")});
        ack_ok(&a.call("sendMessage", send).await);
    }
    let took = started.elapsed();
    // What the other nodes could not be told is counted (once the publish in flight gives up),
    // not waited for.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = c.node(0).url("/metrics");
        let metrics = c.node(0).client.get(url).send().await.unwrap();
        let metrics = metrics.text().await.unwrap();
        let unpublished: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("huddle_bus_unpublished_total "))
            .expect("the counter is exposed")
            .parse()
            .unwrap();
        if unpublished > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing counted: {metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    redis.resume();
    // Each send used to wait for its publish to time out (half a second or more).
    assert!(
        took < Duration::from_secs(5),
        "30 sends took {took:?} while Redis was frozen"
    );
    let stored: i64 =
        sqlx::query_scalar("select count(*) from messages where body like 'frozen %'")
            .fetch_one(&c.db)
            .await
            .unwrap();
    assert_eq!(stored, 30);

    // Once Redis answers again (node 0 says it is ready), the other node hears new messages.
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.node(0).get("/readyz", None).await.status != 200u16 {
        assert!(Instant::now() < deadline, "node 0 never saw Redis again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let send = json!({"room": "general", "body": "after"});
    ack_ok(&a.call("sendMessage", send).await);
    b.until("message", |m| m["body"] == "after").await;
}
