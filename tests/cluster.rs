//! Three nodes as one: server processes on free ports sharing the machine's Postgres and Redis,
//! with clients spread over them.

mod common;

use std::time::Duration;

use common::{
    cluster::TestCluster,
    seqs,
    sio::{ack_error, ack_ok, Transport},
};
use reqwest::Method;
use serde_json::json;

async fn cluster(env: &[(&str, &str)]) -> TestCluster {
    TestCluster::start_on_test_redis(3, env).await
}

/// The transport of every socket here: what these tests check happens between the nodes.
const WS: Transport = Transport::WebSocket;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_is_ready_with_redis() {
    let c = cluster(&[]).await;
    for node in &c.nodes {
        let ready = node.get("/readyz", None).await;
        assert_eq!(ready.ok(200)["redis"], "ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_on_one_node_reach_the_others_in_commit_order() {
    let c = cluster(&[]).await;
    let ann = c.node(0).register("ann").await;
    let bob = c.node(1).register("bob").await;
    let cat = c.node(2).register("cat").await;
    let a = c.node(0).in_room(&ann, "general", WS).await;
    let b = c.node(1).in_room(&bob, "general", WS).await;
    let k = c.node(2).in_room(&cat, "general", WS).await;
    a.send_burst("general", 0..100).await;
    for s in [&b, &k] {
        let mut seqs = Vec::new();
        while seqs.len() < 100 {
            let m = s.until("message", |m| m["kind"] == "user").await;
            seqs.push(m["seq"].as_i64().unwrap());
        }
        assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    }
    // And back the other way.
    ack_ok(
        &k.call("sendMessage", json!({"room": "general", "body": "from C"}))
            .await,
    );
    assert_eq!(
        a.until("message", |m| m["kind"] == "user" && m["body"] == "from C")
            .await["seq"],
        101
    );
    // The bus's cost, per node: what node 0 published, every node read (each has a socket in
    // the room).
    let published = common::metric(c.node(0), "huddle_bus_published_total")
        .await
        .unwrap();
    assert!(published >= 100, "{published}");
    for node in &c.nodes {
        let received = common::metric(node, "huddle_bus_received_total")
            .await
            .unwrap();
        assert!(received >= 100, "{received}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_list_online_count_sockets_on_every_node() {
    let c = cluster(&[]).await;
    let ann = c.node(0).register("ann").await;
    let bob = c.node(0).register("bob").await;
    let a = c.node(0).in_room(&ann, "general", WS).await;

    let b1 = c.node(1).in_room(&bob, "general", WS).await;
    let joined = a.until("presence", |_| true).await;
    assert_eq!(
        (
            joined["status"].as_str(),
            joined["user"]["username"].as_str()
        ),
        (Some("joined"), Some("bob"))
    );
    // Bob's second socket, on a third node: welcomed, but bob was already there.
    let b2 = c.node(2).in_room(&bob, "general", WS).await;
    a.until("message", |m| {
        m["body"] == "Welcome bob to the general room!"
    })
    .await;
    a.assert_silent("presence", Duration::from_millis(300))
        .await;

    let online = b2.call("listOnline", json!({"room": "general"})).await;
    let names: Vec<&str> = online["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ann", "bob"]);

    // Bob's first socket goes: he is still there through the other node.
    b1.disconnect().await;
    a.assert_silent("presence", Duration::from_millis(300))
        .await;
    b2.disconnect().await;
    let left = a.until("presence", |_| true).await;
    assert_eq!(
        (left["status"].as_str(), left["user"]["username"].as_str()),
        (Some("left"), Some("bob"))
    );
    let online = a.call("listOnline", json!("general")).await;
    assert_eq!(online["users"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicks_and_room_deletion_act_on_every_node() {
    let c = cluster(&[]).await;
    let owner = c.node(0).register("owner").await;
    let bob = c.node(0).register("bob").await;
    let room = c.node(0).create_room(&owner, "crew", "private").await;
    let id = room["id"].as_str().unwrap().to_owned();
    c.node(0).grant(&owner, &room, &bob, "member").await.ok(200);
    let o = c.node(0).socket(&owner.access, WS).await;
    let b1 = c.node(1).socket(&bob.access, WS).await;
    let b2 = c.node(2).socket(&bob.access, WS).await;
    for s in [&o, &b1, &b2] {
        ack_ok(&s.call("joinPrivateRoom", json!({"roomId": id})).await);
    }
    o.until("presence", |p| p["user"]["username"] == "bob")
        .await;

    // Kicked through node 0; bob's sockets are on nodes 1 and 2.
    c.node(0)
        .delete(
            &format!("/api/rooms/{id}/members/{}", bob.id),
            Some(&owner.access),
        )
        .await
        .ok(204);
    for s in [&b1, &b2] {
        assert_eq!(s.until("removed", |_| true).await["reason"], "kicked");
    }
    assert_eq!(o.until("presence", |_| true).await["status"], "left");
    ack_ok(
        &o.call("sendMessage", json!({"room": id, "body": "members only"}))
            .await,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    for s in [&b1, &b2] {
        assert!(
            s.drain("message").iter().all(|m| m["kind"] == "system"),
            "no user message after the kick"
        );
    }
    ack_error(
        &b2.call("sendMessage", json!({"room": id, "body": "x"}))
            .await,
        "forbidden",
    );

    // A public room deleted through node 2 empties on node 0 and 1.
    let town = c.node(2).create_room(&owner, "town", "public").await;
    for s in [&o, &b1] {
        ack_ok(&s.call("joinRoom", json!("town")).await);
    }
    c.node(2)
        .delete(
            &format!("/api/rooms/{}", town["id"].as_str().unwrap()),
            Some(&owner.access),
        )
        .await
        .ok(204);
    for s in [&o, &b1] {
        assert_eq!(
            s.until("removed", |r| r["room"]["name"] == "town").await["reason"],
            "room_deleted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_password_change_and_disabling_act_on_every_node() {
    let c = cluster(&[]).await;
    let ann = c.node(0).register("ann").await;
    // One session with sockets on two nodes.
    let s1 = c.node(1).socket(&ann.access, WS).await;
    let s2 = c.node(2).socket(&ann.access, WS).await;
    c.node(0)
        .request(Method::POST, "/api/auth/logout", Some(&ann.access), None)
        .await
        .ok(204);
    s1.wait_disconnected().await;
    s2.wait_disconnected().await;

    // A password change through node 2 drops the other sessions' sockets on node 1.
    let phone = c.node(0).login("ann", &ann.password).await;
    let laptop = c.node(0).login("ann", &ann.password).await;
    let p = c.node(1).socket(&phone.access, WS).await;
    let l = c.node(2).socket(&laptop.access, WS).await;
    c.node(2)
        .post(
            "/api/me/password",
            Some(&laptop.access),
            json!({"current_password": ann.password, "new_password": "another password"}),
        )
        .await
        .ok(204);
    p.wait_disconnected().await;
    assert!(l.is_connected());

    // Disabling through node 0 drops every socket of the user everywhere.
    let boss = c.node(0).register("boss").await;
    sqlx::query("update users set is_admin = true where id = $1")
        .bind(boss.id)
        .execute(&c.db)
        .await
        .unwrap();
    let l2 = c.node(1).socket(&laptop.access, WS).await;
    c.node(0)
        .post(
            &format!("/api/admin/users/{}/disable", ann.id),
            Some(&boss.access),
            json!({}),
        )
        .await
        .ok(204);
    l.wait_disconnected().await;
    l2.wait_disconnected().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_reach_every_socket_of_the_recipient() {
    let c = cluster(&[]).await;
    let ann = c.node(0).register("ann").await;
    let bob = c.node(0).register("bob").await;
    let a = c.node(0).socket(&ann.access, WS).await;
    let b1 = c.node(1).socket(&bob.access, WS).await;
    let b2 = c.node(2).socket(&bob.access, WS).await;
    let ack = a
        .call("directMessage", json!({"to": "bob", "body": "psst"}))
        .await;
    ack_ok(&ack);
    for s in [&b1, &b2, &a] {
        let m = s.until("message", |m| m["kind"] == "user").await;
        assert_eq!(
            (m["body"].as_str(), &m["room"]["id"]),
            (Some("psst"), &ack["room"]["id"])
        );
    }
    // Read positions reach the user's sockets on other nodes too.
    ack_ok(&b1.call("joinRoom", json!(ack["room"]["id"])).await);
    ack_ok(
        &b1.call("markRead", json!({"room": ack["room"]["id"], "seq": 1}))
            .await,
    );
    assert_eq!(b2.until("read", |_| true).await["seq"], 1);
    // Typing crosses nodes too.
    ack_ok(&a.call("joinRoom", json!(ack["room"]["id"])).await);
    ack_ok(
        &a.call("typing", json!({"room": ack["room"]["id"], "typing": true}))
            .await,
    );
    assert_eq!(
        b1.until("typing", |_| true).await["user"]["username"],
        "ann"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_rate_limit_counts_all_nodes_together() {
    let c = cluster(&[("MESSAGE_RATE", "1"), ("MESSAGE_BURST", "3")]).await;
    let ann = c.node(0).register("ann").await;
    let sockets = [
        c.node(0).in_room(&ann, "general", WS).await,
        c.node(1).in_room(&ann, "general", WS).await,
        c.node(2).in_room(&ann, "general", WS).await,
    ];
    for s in &sockets {
        ack_ok(
            &s.call(
                "sendMessage",
                json!({"room": "general", "body": "within the burst"}),
            )
            .await,
        );
    }
    let refused = sockets[0]
        .call(
            "sendMessage",
            json!({"room": "general", "body": "one too many"}),
        )
        .await;
    let error = ack_error(&refused, "rate_limited");
    assert!(
        error["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{refused}"
    );
    assert_eq!(c.count("messages").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_right_after_an_ack_loses_nothing_and_clients_resume_elsewhere() {
    let mut c = cluster(&[]).await;
    let ann = c.node(0).register("ann").await;
    let a = c.node(0).in_room(&ann, "general", WS).await;
    a.send_burst("general", 1..=20).await;
    // SIGKILL: no shutdown, no flushing.
    c.nodes[0].kill();
    a.wait_disconnected().await;
    assert_eq!(
        c.count("messages").await,
        20,
        "every acknowledged message is in Postgres"
    );

    // The client reconnects to another node and resumes after the last seq it saw (say 15).
    let again = c.node(1).socket(&ann.access, WS).await;
    ack_ok(
        &again
            .call("joinRoom", json!({"room": "general", "since": 15}))
            .await,
    );
    let history = again.next("history").await;
    assert_eq!(seqs(&history), [16, 17, 18, 19, 20]);
}

/// The bus routes by room: a node hears a room's traffic only while it has sockets there, so a
/// node whose sockets are elsewhere reads none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_hears_only_the_rooms_it_has_sockets_in() {
    let c = cluster(&[]).await;
    let ann = c.node(0).register("ann").await;
    let bob = c.node(1).register("bob").await;
    let cat = c.node(2).register("cat").await;
    c.node(0).create_room(&ann, "ann-room", "public").await;
    c.node(1).create_room(&bob, "bob-room", "public").await;
    let a = c.node(0).in_room(&ann, "ann-room", WS).await;
    let b = c.node(1).in_room(&bob, "bob-room", WS).await;
    // Joins ask the other nodes about presence; let those settle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut before = Vec::new();
    for node in &c.nodes {
        before.push(
            common::metric(node, "huddle_bus_received_total")
                .await
                .unwrap(),
        );
    }
    let (sent_a, sent_b) = tokio::join!(
        a.send_burst("ann-room", 0..100),
        b.send_burst("bob-room", 0..100)
    );
    assert_eq!((sent_a.len(), sent_b.len()), (100, 100));
    a.until("message", |m| m["body"] == "m99").await;
    b.until("message", |m| m["body"] == "m99").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut heard = Vec::new();
    for (node, before) in c.nodes.iter().zip(before) {
        let after = common::metric(node, "huddle_bus_received_total")
            .await
            .unwrap();
        heard.push(after - before);
    }
    // No node listens to another's room, so nothing of it is even published: each node keeps
    // its rooms' traffic to itself, and reads none of the others'.
    assert!(heard.iter().all(|n| *n < 10), "{heard:?}");
    for node in &c.nodes[..2] {
        let unheard = common::metric(node, "huddle_bus_unheard_total")
            .await
            .unwrap();
        assert!(unheard >= 100, "{unheard}");
    }
    // Once cat joins ann's room from node 2, node 2 hears it, and node 0 publishes it again.
    let k = c.node(2).in_room(&cat, "ann-room", WS).await;
    let before = common::metric(c.node(2), "huddle_bus_received_total")
        .await
        .unwrap();
    a.send_burst("ann-room", 100..110).await;
    k.until("message", |m| m["body"] == "m109").await;
    let after = common::metric(c.node(2), "huddle_bus_received_total")
        .await
        .unwrap();
    assert!(after - before >= 10, "{before} {after}");
    // Each holds the channels of its sockets' rooms: a room, a user and a session.
    for node in &c.nodes[..2] {
        let held = common::metric(node, "huddle_bus_channels").await.unwrap();
        assert!(held >= 3, "{held}");
    }
}
