//! A Redis Cluster losing a master under running nodes (`REDIS_CLUSTER_URLS`): the master serving
//! a room's bus channel is killed (SIGKILL). With a replica, the cluster promotes it; without,
//! the master comes back after a restart. Either way sends are still acknowledged and stored,
//! cross-node delivery resumes by itself, what was missed can be paged in, `/readyz` says ready
//! again, and an eviction whose signal was lost is closed by re-validation. Uses Redis Clusters
//! of the test's own (`OwnRedisCluster`), on free ports.

mod common;

use std::{
    future::Future,
    time::{Duration, Instant},
};

use common::{
    cluster::{RedisEngine, TestCluster},
    redis_cluster::OwnRedisCluster,
    sio::{ack_error, ack_ok, SioClient, Transport},
    Session,
};
use serde_json::{json, Value};

const WS: Transport = Transport::WebSocket;
/// The nodes' re-validation period here (`REVALIDATE_SECS`).
const REVALIDATE: Duration = Duration::from_secs(2);

/// Runs a test body with a hard bound on its duration.
async fn bounded(limit: Duration, body: impl Future<Output = ()>) {
    let started = Instant::now();
    tokio::time::timeout(limit, body)
        .await
        .unwrap_or_else(|_| panic!("the test took over {limit:?}"));
    eprintln!("the test took {:?}", started.elapsed());
}

/// The bus channel of a chat room for nodes on the default prefix.
fn room_channel(c: &TestCluster, room_id: &str) -> String {
    format!("huddle:{}:c:room:{room_id}", c.db_name())
}

/// The bus channel of a user's sockets for nodes on the default prefix.
fn user_channel(c: &TestCluster, user: &Session) -> String {
    format!("huddle:{}:c:user:{}", c.db_name(), user.id)
}

/// Whether a `message` with `body` reaches `socket` within `within` (other messages are
/// dropped).
async fn receives(socket: &SioClient, body: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match socket.next_within("message", left).await {
            Some(m) if m["body"] == body => return true,
            Some(_) => continue,
            None => return false,
        }
    }
}

/// Sends a fresh message from `sender` every round until every receiver gets it within half a
/// second, or `deadline` passes; answers when that happened.
async fn delivery_resumes(
    sender: &SioClient,
    room: &str,
    receivers: &[&SioClient],
    deadline: Instant,
    what: &str,
) -> Instant {
    for round in 0.. {
        let body = format!("{what} {round}");
        ack_ok(
            &sender
                .call("sendMessage", json!({"room": room, "body": body}))
                .await,
        );
        let mut all = true;
        for r in receivers {
            all &= receives(r, &body, Duration::from_millis(500)).await;
        }
        if all {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "cross-node delivery did not resume ({what}, {round} rounds)"
        );
    }
    unreachable!()
}

/// Waits until every node's `/readyz` answers 200.
async fn all_ready(c: &TestCluster, deadline: Instant) {
    for (i, node) in c.nodes.iter().enumerate() {
        loop {
            let ready = node.get("/readyz", None).await;
            if ready.status == 200u16 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} is not ready again: {} {}",
                ready.status,
                ready.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The bodies and seqs of the room's messages with this body prefix, from Postgres.
async fn stored(c: &TestCluster, room_id: &str, prefix: &str) -> Vec<(String, i64)> {
    sqlx::query_as(
        "select body, seq from messages where room_id = $1::uuid and body like $2 order by seq",
    )
    .bind(room_id)
    .bind(format!("{prefix}%"))
    .fetch_all(&c.db)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_lost_to_failover_loses_nothing_and_delivery_resumes_by_itself() {
    bounded(Duration::from_secs(60), async {
        let mut rc = OwnRedisCluster::start(3, 1).await;
        let c = TestCluster::start_on(
            3,
            RedisEngine::Cluster(rc.seeds()),
            &[("REVALIDATE_SECS", "2")],
        )
        .await;
        let (n0, n1, n2) = (c.node(0), c.node(1), c.node(2));
        let ann = n0.register("ann").await;
        let bob = n0.register("bob").await;
        let dan = n0.register("dan").await;
        let room = n0.create_room(&ann, "crew", "private").await;
        let id = room["id"].as_str().unwrap().to_owned();
        let master = rc.master_for(&room_channel(&c, &id)).await;
        // The member to evict: one whose user channel is on the same master as the room's, so
        // that neither signal of the kick can get through while that master is down.
        let mut carl = None;
        for i in 0..12 {
            let candidate = n0.register(&format!("carl{i}")).await;
            if rc.master_for(&user_channel(&c, &candidate)).await == master {
                carl = Some(candidate);
                break;
            }
        }
        let carl = carl.expect("no user channel on the room channel's master in 12 tries");
        for member in [&bob, &carl, &dan] {
            n0.grant(&ann, &room, member, "member").await.ok(200);
        }
        // The sender on node 0; receivers on nodes 1 and 2; carl on node 1.
        let a = n0.in_room(&ann, &id, WS).await;
        let b = n1.in_room(&bob, &id, WS).await;
        let d = n2.in_room(&dan, &id, WS).await;
        let k = n1.in_room(&carl, &id, WS).await;
        let before = json!({"room": id, "body": "before"});
        ack_ok(&a.call("sendMessage", before).await);
        for s in [&b, &d, &k] {
            assert!(receives(s, "before", Duration::from_secs(5)).await);
        }

        rc.kill(master);
        let killed = Instant::now();

        // (e) An eviction decided on node 0 while the master is down: its signals are lost.
        let kick = format!("/api/rooms/{id}/members/{}", carl.id);
        n0.delete(&kick, Some(&ann.access)).await.ok(204);

        // (a) Sends keep being acknowledged, each soon, until the cluster has failed over.
        let mut acked = Vec::new();
        let mut slowest = Duration::ZERO;
        let healthy = rc.wait_healthy();
        tokio::pin!(healthy);
        for i in 0.. {
            let body = format!("during {i}");
            let sent = Instant::now();
            let ack = a
                .call("sendMessage", json!({"room": id, "body": body}))
                .await;
            slowest = slowest.max(sent.elapsed());
            acked.push((body, ack_ok(&ack)["message"]["seq"].as_i64().unwrap()));
            let pause = tokio::time::timeout(Duration::from_millis(200), &mut healthy);
            if pause.await.is_ok() {
                break;
            }
        }
        let failed_over = killed.elapsed();
        assert!(
            slowest < Duration::from_secs(2),
            "a send during the failover took {slowest:?} to be acknowledged"
        );
        let promoted = rc.master_for(&room_channel(&c, &id)).await;
        assert_ne!(promoted, master, "a replica serves the room's channel now");

        // (b) Cross-node delivery resumes by itself, within 15 s of the kill.
        let resumed = delivery_resumes(
            &a,
            &id,
            &[&b, &d],
            killed + Duration::from_secs(15),
            "after",
        )
        .await
            - killed;

        // Every node probes every shard, so each found the lost one and connected again.
        for node in &c.nodes {
            let reconnects = common::metric(node, "huddle_bus_reconnects_total").await;
            assert!(reconnects.is_some_and(|n| n >= 1), "{reconnects:?}");
        }

        // (a) Every acknowledged message is in Postgres.
        assert_eq!(stored(&c, &id, "during ").await, acked);

        // (c) What the receivers missed can be paged in.
        let first = acked[0].1;
        for s in [&b, &d] {
            let page = s
                .call(
                    "history",
                    json!({"room": id, "after": first - 1, "limit": acked.len()}),
                )
                .await;
            let got: Vec<(String, i64)> = page["messages"]
                .as_array()
                .unwrap_or_else(|| panic!("no page: {page}"))
                .iter()
                .map(|m| {
                    (
                        m["body"].as_str().unwrap().to_owned(),
                        m["seq"].as_i64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(got, acked, "history after {}", first - 1);
        }

        // (d) Every node is ready again.
        all_ready(&c, killed + Duration::from_secs(20)).await;
        let ready = killed.elapsed();

        // (e) Carl's socket lost the room, by re-validation if not by the bus, within the
        // period (plus a margin) of the cluster's recovery.
        let recovered = killed + failed_over;
        let limit = (recovered + REVALIDATE + Duration::from_secs(3))
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(500));
        let removed = k.next_within("removed", limit).await.unwrap_or_else(|| {
            panic!(
                "carl's socket on node 1 was not removed within {REVALIDATE:?} + 3 s of the \
                 recovery ({:?} after the kill)",
                killed.elapsed()
            )
        });
        let evicted = killed.elapsed();
        assert_eq!(
            removed,
            json!({"room": {"id": id, "name": "crew"}, "reason": "kicked"})
        );
        k.drain("message");
        let last = json!({"room": id, "body": "not for carl"});
        ack_ok(&a.call("sendMessage", last).await);
        assert!(receives(&b, "not for carl", Duration::from_secs(5)).await);
        k.assert_silent("message", Duration::from_millis(500)).await;
        let send = json!({"room": id, "body": "am I still in?"});
        ack_error(&k.call("sendMessage", send).await, "forbidden");

        eprintln!(
            "master {master} killed: cluster healthy after {failed_over:?} (replica {promoted} \
             promoted), delivery resumed after {resumed:?}, all ready after {ready:?}, carl \
             removed after {evicted:?}; {} sends during the failover, slowest ack {slowest:?}",
            acked.len()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_without_replicas_restarted_brings_delivery_back() {
    bounded(Duration::from_secs(60), async {
        let mut rc = OwnRedisCluster::start(3, 0).await;
        let c = TestCluster::start_on(
            2,
            RedisEngine::Cluster(rc.seeds()),
            &[("REVALIDATE_SECS", "2")],
        )
        .await;
        let ann = c.node(0).register("ann").await;
        let bob = c.node(0).register("bob").await;
        let general: Value = c.node(0).get("/api/rooms", Some(&ann.access)).await.ok(200)["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "general")
            .unwrap()
            .clone();
        let id = general["id"].as_str().unwrap().to_owned();
        let a = c.node(0).in_room(&ann, "general", WS).await;
        let b = c.node(1).in_room(&bob, "general", WS).await;
        ack_ok(
            &a.call("sendMessage", json!({"room": "general", "body": "before"}))
                .await,
        );
        assert!(receives(&b, "before", Duration::from_secs(5)).await);

        let master = rc.master_for(&room_channel(&c, &id)).await;
        rc.kill(master);
        let killed = Instant::now();
        // Sends go on until the cluster has marked the master failed (node timeout 1 s) and
        // refuses keys, and a little after.
        let other = (master + 1) % rc.len();
        let mut acked = Vec::new();
        let mut down_since: Option<Instant> = None;
        for i in 0.. {
            let body = format!("during {i}");
            let ack = a
                .call("sendMessage", json!({"room": "general", "body": body}))
                .await;
            acked.push((body, ack_ok(&ack)["message"]["seq"].as_i64().unwrap()));
            if down_since.is_some_and(|t| t.elapsed() > Duration::from_millis(500)) {
                break;
            }
            if down_since.is_none() {
                let info: String = rc.command(other, &["CLUSTER", "INFO"]).await.unwrap();
                if info.contains("cluster_state:fail") {
                    down_since = Some(Instant::now());
                }
            }
            assert!(
                killed.elapsed() < Duration::from_secs(10),
                "the cluster did not notice its master was gone"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        rc.restart(master).await;
        let restarted = Instant::now();
        rc.wait_healthy().await;
        let healthy = restarted.elapsed();
        assert_eq!(rc.master_for(&room_channel(&c, &id)).await, master);

        let resumed = delivery_resumes(
            &a,
            "general",
            &[&b],
            restarted + Duration::from_secs(15),
            "after",
        )
        .await
            - restarted;
        assert_eq!(stored(&c, &id, "during ").await, acked);
        let page = b
            .call(
                "history",
                json!({"room": "general", "after": acked[0].1 - 1, "limit": acked.len()}),
            )
            .await;
        let bodies: Vec<&str> = page["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("no page: {page}"))
            .iter()
            .map(|m| m["body"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = acked.iter().map(|(b, _)| b.as_str()).collect();
        assert_eq!(bodies, want);
        all_ready(&c, restarted + Duration::from_secs(20)).await;
        eprintln!(
            "master {master} down for {:?}: cluster healthy {healthy:?} after its restart, \
             delivery resumed {resumed:?} after it",
            restarted - killed
        );
    })
    .await;
}

/// The harness itself: a cluster with replicas starts healthy, carries sharded pub/sub, fails
/// over when a master is killed, and takes the old master back as a replica after a restart;
/// one without replicas comes back when its killed master is restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_cluster_starts_fails_over_and_restarts() {
    bounded(Duration::from_secs(60), async {
        let started = Instant::now();
        let mut rc = OwnRedisCluster::start(3, 1).await;
        let took = started.elapsed();
        assert_eq!(rc.len(), 6);
        assert_eq!(rc.seeds().split(',').count(), 3, "{}", rc.seeds());
        let channel = "huddle:selftest:c:room:0190a1b2-0000-7000-8000-000000000001";

        let master = rc.master_for(channel).await;
        let mut sub = rc.subscriber(master, "SSUBSCRIBE", channel).await;
        let receivers: i64 = rc
            .command(master, &["SPUBLISH", channel, "hello"])
            .await
            .unwrap();
        assert_eq!(receivers, 1);
        let got = sub.message_within(Duration::from_secs(2)).await;
        assert_eq!(got.as_deref(), Some("hello"));

        rc.kill(master);
        let killed = Instant::now();
        // The subscriber's connection goes with its node.
        assert_eq!(sub.message_within(Duration::from_secs(2)).await, None);
        rc.wait_healthy().await;
        let failover = killed.elapsed();
        let promoted = rc.master_for(channel).await;
        assert_ne!(promoted, master);
        assert!(rc.is_alive(promoted));
        let mut sub = rc.subscriber(promoted, "SSUBSCRIBE", channel).await;
        let receivers: i64 = rc
            .command(promoted, &["SPUBLISH", channel, "again"])
            .await
            .unwrap();
        assert_eq!(receivers, 1);
        assert_eq!(
            sub.message_within(Duration::from_secs(2)).await.as_deref(),
            Some("again")
        );

        // The old master comes back as the promoted one's replica.
        let back = Instant::now();
        rc.restart(master).await;
        rc.wait_healthy().await;
        let rejoined = back.elapsed();
        assert_eq!(rc.master_for(channel).await, promoted);
        let replication: String = rc.command(master, &["INFO", "replication"]).await.unwrap();
        assert!(replication.contains("role:slave"), "{replication}");
        drop(rc);

        // Without replicas, the killed master's slots are down until it is back.
        let mut rc = OwnRedisCluster::start(3, 0).await;
        let master = rc.master_for(channel).await;
        rc.kill(master);
        let other = (master + 1) % rc.len();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info: String = rc.command(other, &["CLUSTER", "INFO"]).await.unwrap();
            if info.contains("cluster_state:fail") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster never noticed: {info}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Keys on the live masters are refused; sharded pub/sub on them goes on
        // (`cluster-allow-pubsubshard-when-down` is yes by default).
        let mut name = None;
        for i in 0..100 {
            let candidate = format!("elsewhere{i}");
            if rc.master_for(&candidate).await == other {
                name = Some(candidate);
                break;
            }
        }
        let name = name.expect("a name served by another master");
        let refused = rc
            .command::<String>(other, &["SET", &name, "x"])
            .await
            .expect_err("a cluster missing slots refuses keys");
        let refused = refused.to_string();
        assert!(refused.to_lowercase().contains("clusterdown"), "{refused}");
        let published = rc.command::<i64>(other, &["SPUBLISH", &name, "x"]).await;
        assert_eq!(published.ok(), Some(0), "SPUBLISH on a live shard");
        let back = Instant::now();
        rc.restart(master).await;
        rc.wait_healthy().await;
        let recovered = back.elapsed();
        assert_eq!(rc.master_for(channel).await, master);
        let mut sub = rc.subscriber(master, "SSUBSCRIBE", channel).await;
        let receivers: i64 = rc
            .command(master, &["SPUBLISH", channel, "back"])
            .await
            .unwrap();
        assert_eq!(receivers, 1);
        assert_eq!(
            sub.message_within(Duration::from_secs(2)).await.as_deref(),
            Some("back")
        );
        eprintln!(
            "3+3 cluster healthy {took:?} after start; failover {failover:?} after the kill; old \
             master a replica again {rejoined:?} after its restart; 3+0 cluster healthy \
             {recovered:?} after its master's restart"
        );
    })
    .await;
}
