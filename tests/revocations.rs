//! Revocations that the bus never delivers: Redis is killed at the moment of a kick, a logout and
//! a disabled account, so the node holding the sockets does not hear of them. The writer refuses
//! the kicked user's sends at once (the access rule applied at commit), and the node's re-check
//! of its live sockets (`REVALIDATE_SECS`, 2 s here) takes them out within the bound anyway.

mod common;

use std::time::{Duration, Instant};

use common::{
    cluster::{OwnRedis, TestCluster},
    sio::{ack_error, ack_ok, Transport},
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_lose_what_their_users_lost_even_when_the_signal_is_lost() {
    let mut redis = OwnRedis::start().await;
    let c = TestCluster::start(2, &redis.url(), &[("REVALIDATE_SECS", "2")]).await;
    let (a, b) = (c.node(0), c.node(1));
    let owner = a.register("owner").await;
    let bob = a.register("bob").await;
    let carl = a.register("carl").await;
    let dan = a.register("dan").await;
    let admin = a.register("admin").await;
    sqlx::query("update users set is_admin = true where id = $1")
        .bind(admin.id)
        .execute(&c.db)
        .await
        .unwrap();
    let room = a.create_room(&owner, "crew", "private").await;
    let id = room["id"].as_str().unwrap();
    a.grant(&owner, &room, &bob, "member").await.ok(200);

    // Every socket lives on node 1; every revocation goes through node 0.
    let bob_s = b.socket(&bob.access, Transport::WebSocket).await;
    ack_ok(&bob_s.call("joinPrivateRoom", json!({"roomId": id})).await);
    let carl_s = b.socket(&carl.access, Transport::Polling).await;
    let dan_s = b.socket(&dan.access, Transport::WebSocket).await;

    redis.kill();
    let killed = Instant::now();
    a.delete(
        &format!("/api/rooms/{id}/members/{}", bob.id),
        Some(&owner.access),
    )
    .await
    .ok(204);
    a.post("/api/auth/logout", Some(&carl.access), json!({}))
        .await
        .ok(204);
    a.post(
        &format!("/api/admin/users/{}/disable", dan.id),
        Some(&admin.access),
        json!({}),
    )
    .await
    .ok(204);

    // Node 1 heard nothing, but the writer checks membership at commit: refused at once.
    let send = json!({"room": id, "body": "am I still in?"});
    ack_error(&bob_s.call("sendMessage", send).await, "forbidden");

    // Within the re-check period (plus a query), every socket loses what its user lost.
    let removed = bob_s.until("removed", |_| true).await;
    assert_eq!(
        removed,
        json!({"room": {"id": id, "name": "crew"}, "reason": "kicked"})
    );
    carl_s.wait_disconnected().await;
    dan_s.wait_disconnected().await;
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "re-checking took {took:?} with REVALIDATE_SECS=2"
    );
    let send = json!({"room": id, "body": "and now?"});
    ack_error(&bob_s.call("sendMessage", send).await, "forbidden");
    let stored: i64 = sqlx::query_scalar("select count(*) from messages")
        .fetch_one(&c.db)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}
