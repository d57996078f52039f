//! The limits that must hold across nodes: two server processes sharing the machine's Postgres
//! and Redis, with a client spreading its attempts over both.

mod common;

use std::time::{Duration, Instant};

use common::{
    cluster::{OwnRedis, RedisEngine, TestCluster},
    metric,
    redis_cluster::Subscriber,
    sio::{ack_ok, Auth, SioClient, Transport},
    Api,
};
use serde_json::json;

/// Two nodes with `env` on the test Redis (a Redis Cluster of their own under
/// `TEST_REDIS_CLUSTER=1`), each having found the other in the node registry.
async fn cluster(env: &[(&str, &str)]) -> TestCluster {
    TestCluster::start_on_test_redis(2, env).await
}

/// The Redis prefix the nodes derive from their database name.
async fn prefix(c: &TestCluster) -> String {
    let db: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&c.db)
        .await
        .unwrap();
    format!("huddle:{db}")
}

/// Held for as long as a foreign subscriber should listen.
#[allow(dead_code)] // never read: what matters is that they are subscribed
enum Foreign {
    Single(redis::aio::PubSub),
    Cluster(Vec<Subscriber>),
}

/// Someone else listening to `channel`, as an operator's `redis-cli` may: on one Redis,
/// SUBSCRIBE; on a Redis Cluster, both SUBSCRIBE (on a node) and SSUBSCRIBE (on the node
/// serving the channel's slot), whichever of the two the nodes publish with.
async fn foreign_subscriber(c: &TestCluster, channel: &str) -> Foreign {
    match (&c.redis, &c.own_redis_cluster) {
        (RedisEngine::Single(url), _) => {
            let client = redis::Client::open(url.as_str()).unwrap();
            let mut pubsub = client.get_async_pubsub().await.unwrap();
            pubsub.subscribe(channel).await.unwrap();
            Foreign::Single(pubsub)
        }
        (RedisEngine::Cluster(_), Some(own)) => {
            let owner = own.master_for(channel).await;
            Foreign::Cluster(vec![
                own.subscriber(owner, "SSUBSCRIBE", channel).await,
                own.subscriber((owner + 1) % own.len(), "SUBSCRIBE", channel)
                    .await,
            ])
        }
        (RedisEngine::Cluster(_), None) => unreachable!("the test's clusters own their Redis"),
    }
}

/// A login as seen through a trusted proxy that appended `from`; answers the status.
async fn login_from(node: &Api, from: &str, username: &str, password: &str) -> u16 {
    node.client
        .post(node.url("/api/auth/login"))
        .header("x-forwarded-for", from)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

const WS: Transport = Transport::WebSocket;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_spread_over_the_nodes_are_counted_together() {
    let c = cluster(&[("AUTH_RATE", "1000"), ("TRUST_PROXY", "true")]).await;
    let rosa = c.node(0).register("rosa").await;
    for i in 0..5 {
        let node = c.node(i % 2);
        assert_eq!(
            login_from(node, "203.0.113.66", "Rosa", "wrong-password").await,
            401,
            "failure {i} is answered"
        );
    }
    // The sixth is refused on either node, before the password is looked at.
    for node in &c.nodes {
        assert_eq!(
            login_from(node, "203.0.113.66", "rosa", &rosa.password).await,
            429
        );
    }
    // Someone else's address is not locked out, and a success there takes no cell for good.
    assert_eq!(
        login_from(c.node(1), "198.51.100.1", "rosa", &rosa.password).await,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_on_one_node_forgets_the_failures_counted_on_the_other() {
    let c = cluster(&[("AUTH_RATE", "1000"), ("TRUST_PROXY", "true")]).await;
    let sam = c.node(0).register("sam").await;
    for _ in 0..4 {
        assert_eq!(
            login_from(c.node(0), "203.0.113.7", "sam", "wrong-password").await,
            401
        );
    }
    assert_eq!(
        login_from(c.node(1), "203.0.113.7", "sam", &sam.password).await,
        200
    );
    // The pair's failures are forgotten: five more are answered, the sixth is refused.
    for i in 0..5 {
        assert_eq!(
            login_from(c.node(i % 2), "203.0.113.7", "sam", "wrong-password").await,
            401,
            "failure {i} after the success"
        );
    }
    assert_eq!(
        login_from(c.node(0), "203.0.113.7", "sam", &sam.password).await,
        429
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_request_limit_holds_across_the_nodes() {
    let c = cluster(&[("AUTH_RATE", "4"), ("TRUST_PROXY", "true")]).await;
    // Unknown usernames, each once: only the address's bucket is drawn on.
    for i in 0..4 {
        let status = login_from(c.node(i % 2), "203.0.113.9", &format!("nobody{i}"), "pw").await;
        assert_eq!(status, 401, "request {i}");
    }
    for node in &c.nodes {
        assert_eq!(login_from(node, "203.0.113.9", "nobody9", "pw").await, 429);
    }
    assert_eq!(
        login_from(c.node(1), "198.51.100.9", "nobody9", "pw").await,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_cap_counts_the_users_sockets_on_every_node() {
    let c = cluster(&[("MAX_SOCKETS_PER_USER", "2")]).await;
    let ann = c.node(0).register("ann").await;
    let first = c.node(0).socket(&ann.access, WS).await;
    let _second = c.node(1).socket(&ann.access, WS).await;
    for node in &c.nodes {
        let refused = SioClient::connect(&node.base, Auth::Token(&ann.access), WS)
            .await
            .err();
        assert_eq!(refused.as_deref(), Some("too_many_connections"));
    }
    // Another user is not affected.
    let bob = c.node(1).register("bob").await;
    let _bob = c.node(0).socket(&bob.access, WS).await;
    // A closed socket frees its place, for a socket on the other node.
    first.disconnect().await;
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    let _again = loop {
        match SioClient::connect(&c.node(1).base, Auth::Token(&ann.access), WS).await {
            Ok(socket) => break socket,
            Err(refused) => {
                assert!(
                    Instant::now() < deadline,
                    "still refused after a disconnect: {refused}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hourly_room_quota_counts_rooms_made_on_every_node() {
    let c = cluster(&[("ROOMS_PER_HOUR", "2")]).await;
    let ann = c.node(0).register("ann").await;
    c.node(0).create_room(&ann, "first", "public").await;
    c.node(1).create_room(&ann, "second", "public").await;
    for (i, node) in c.nodes.iter().enumerate() {
        node.post(
            "/api/rooms",
            Some(&ann.access),
            json!({"name": format!("third{i}"), "visibility": "public"}),
        )
        .await
        .error(429, "rate_limited");
    }
    // Another user has a quota of their own.
    let bob = c.node(1).register("bob").await;
    c.node(1).create_room(&bob, "bobs", "public").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_subscriber_on_the_bus_is_not_waited_for() {
    let c = cluster(&[("ROOM_EVENT_RATE", "0")]).await;
    let bus = format!("{}:bus", prefix(&c).await);
    let foreign = foreign_subscriber(&c, &bus).await;

    let ann = c.node(0).register("ann").await;
    let bob = c.node(1).register("bob").await;
    let a = c.node(0).socket(&ann.access, WS).await;
    let b = c.node(1).socket(&bob.access, WS).await;
    let started = Instant::now();
    // Each join and leave asks the other node how many sockets the user has in the room.
    for _ in 0..5 {
        for s in [&a, &b] {
            ack_ok(&s.call("joinRoom", json!("general")).await);
            ack_ok(&s.call("leaveRoom", json!("general")).await);
        }
    }
    let elapsed = started.elapsed();
    // Waiting for the foreign subscriber would cost the full second on each of the 20 events.
    assert!(
        elapsed < Duration::from_secs(5),
        "20 joins and leaves took {elapsed:?}"
    );
    for node in &c.nodes {
        assert_eq!(
            metric(node, "huddle_cluster_query_timeouts_total").await,
            Some(0)
        );
    }
    drop(foreign);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_gracefully_leaves_the_registry_at_once() {
    let mut c = cluster(&[]).await;
    let key = format!("{}:nodes", prefix(&c).await);
    let mut redis = c.redis_for(&key).await;
    c.nodes[1].stop();
    let live: i64 = redis::cmd("ZCARD")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(live, 1, "the stopped node is still registered");
    // Node 0's next refresh (a few seconds at most) drops it from its list; a node that had
    // merely expired would keep node 0's questions waiting for 10 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ann = c.node(0).register("ann").await;
    let a = c.node(0).socket(&ann.access, WS).await;
    let started = Instant::now();
    ack_ok(&a.call("joinRoom", json!("general")).await);
    ack_ok(&a.call("leaveRoom", json!("general")).await);
    assert!(started.elapsed() < Duration::from_millis(900));
    assert_eq!(
        metric(c.node(0), "huddle_cluster_query_timeouts_total").await,
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_each_node_counts_on_its_own() {
    let mut own = OwnRedis::start().await;
    let env = [
        ("AUTH_RATE", "1000"),
        ("TRUST_PROXY", "true"),
        ("MAX_SOCKETS_PER_USER", "1"),
    ];
    let c = TestCluster::start(2, &own.url(), &env).await;
    let vic = c.node(0).register("vic").await;
    own.kill();
    // Refused neither wholesale nor never: node 0's own buckets count its failures.
    for i in 0..5 {
        assert_eq!(
            login_from(c.node(0), "203.0.113.5", "vic", "wrong-password").await,
            401,
            "failure {i}"
        );
    }
    assert_eq!(
        login_from(c.node(0), "203.0.113.5", "vic", &vic.password).await,
        429
    );
    assert_eq!(
        login_from(c.node(1), "203.0.113.5", "vic", &vic.password).await,
        200
    );
    // The socket cap falls back to this node's count.
    let _first = c.node(0).socket(&vic.access, WS).await;
    let _second = c.node(1).socket(&vic.access, WS).await;
    let refused = SioClient::connect(&c.node(0).base, Auth::Token(&vic.access), WS)
        .await
        .err();
    assert_eq!(refused.as_deref(), Some("too_many_connections"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_handshakes_cannot_pass_the_cap_together() {
    let c = cluster(&[("MAX_SOCKETS_PER_USER", "3")]).await;
    let ann = c.node(0).register("ann").await;
    let _elsewhere = c.node(1).socket(&ann.access, WS).await;
    // Each handshake waits for node 1's count; all of them at once must still leave room for
    // two sockets only.
    let base = &c.node(0).base;
    let attempts = (0..8).map(|_| SioClient::connect(base, Auth::Token(&ann.access), WS));
    let results = futures::future::join_all(attempts).await;
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(m) if m == "too_many_connections"))
        .count();
    let timeouts = metric(c.node(0), "huddle_cluster_query_timeouts_total").await;
    let reconnects = metric(c.node(0), "huddle_bus_reconnects_total").await;
    assert_eq!(
        (admitted, refused),
        (2, 6),
        "node 0's questions that timed out: {timeouts:?}; its bus reconnects: {reconnects:?}"
    );
}
