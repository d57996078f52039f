//! Removal from a room as live sockets see it (the contract's clarified lines): every socket of a
//! removed user hears `removed`, joined to the room or not, on every node; and a socket that was
//! kicked from a private room, or left it, is answered `forbidden` there, never `not_joined`.

mod common;

use std::time::Duration;

use common::{
    cluster::TestCluster,
    sio::{ack_error, ack_ok, both_transports, Transport},
    spawn_app, Session, TestApp,
};
use serde_json::{json, Value};

both_transports!(
    every_socket_of_a_removed_user_hears_removed_joined_or_not,
    a_socket_kicked_from_a_private_room_or_that_left_it_is_forbidden_there,
);

const SHORT: Duration = Duration::from_millis(300);

fn member_path(room: &Value, user: &Session) -> String {
    format!(
        "/api/rooms/{}/members/{}",
        room["id"].as_str().unwrap(),
        user.id
    )
}

/// A private room `crew` of `owner` with `bob` as a member.
async fn crew(app: &TestApp) -> (Session, Session, Value) {
    let owner = app.register("owner").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&owner, "crew", "private").await;
    app.grant(&owner, &room, &bob, "member").await.ok(200);
    (owner, bob, room)
}

async fn every_socket_of_a_removed_user_hears_removed_joined_or_not(t: Transport) {
    let app = spawn_app().await;
    let (owner, bob, room) = crew(&app).await;
    let id = room["id"].as_str().unwrap();
    let in_room = app.socket(&bob.access, t).await;
    let elsewhere = app.socket(&bob.access, t).await;
    ack_ok(&in_room.call("joinPrivateRoom", json!({"roomId": id})).await);

    app.delete(&member_path(&room, &bob), Some(&owner.access))
        .await
        .ok(204);
    let expected = json!({"room": {"id": id, "name": "crew"}, "reason": "kicked"});
    assert_eq!(in_room.next("removed").await, expected);
    assert_eq!(elsewhere.next("removed").await, expected);
    // Once each, and the socket that had joined is out of the room.
    in_room.assert_silent("removed", SHORT).await;
    elsewhere.assert_silent("removed", Duration::ZERO).await;
    let o = app.socket(&owner.access, t).await;
    ack_ok(&o.call("joinPrivateRoom", json!({"roomId": id})).await);
    ack_ok(
        &o.call("sendMessage", json!({"room": id, "body": "after"}))
            .await,
    );
    assert!(in_room
        .drain("message")
        .iter()
        .all(|m| m["kind"] == "system"));
    in_room.assert_silent("message", SHORT).await;

    // Removing oneself: every socket hears `left`, even one that never joined.
    let carl = app.register("carl").await;
    app.grant(&owner, &room, &carl, "member").await.ok(200);
    let phone = app.socket(&carl.access, t).await;
    let laptop = app.socket(&carl.access, t).await;
    ack_ok(&laptop.call("joinPrivateRoom", json!({"roomId": id})).await);
    app.delete(&member_path(&room, &carl), Some(&carl.access))
        .await
        .ok(204);
    for s in [&phone, &laptop] {
        let removed = s.next("removed").await;
        assert_eq!(
            (removed["reason"].as_str(), removed["room"]["id"].as_str()),
            (Some("left"), Some(id))
        );
    }

    // The owner's socket, in the room throughout, heard none of it.
    o.assert_silent("removed", Duration::ZERO).await;
}

async fn a_socket_kicked_from_a_private_room_or_that_left_it_is_forbidden_there(t: Transport) {
    let app = spawn_app().await;
    let (owner, bob, room) = crew(&app).await;
    let id = room["id"].as_str().unwrap();
    let carl = app.register("carl").await;
    app.grant(&owner, &room, &carl, "member").await.ok(200);
    let b = app.socket(&bob.access, t).await;
    let c = app.socket(&carl.access, t).await;
    for s in [&b, &c] {
        ack_ok(&s.call("joinPrivateRoom", json!({"roomId": id})).await);
    }
    app.delete(&member_path(&room, &bob), Some(&owner.access))
        .await
        .ok(204);
    app.delete(&member_path(&room, &carl), Some(&carl.access))
        .await
        .ok(204);
    b.next("removed").await;
    c.next("removed").await;

    for s in [&b, &c] {
        // By id and by name alike.
        for named in [json!(id), json!("crew")] {
            let send = json!({"room": named, "body": "still here?"});
            ack_error(&s.call("sendMessage", send).await, "forbidden");
            let typing = json!({"room": named, "typing": true});
            ack_error(&s.call("typing", typing).await, "forbidden");
            let read = json!({"room": named, "seq": 0});
            ack_error(&s.call("markRead", read).await, "forbidden");
        }
    }
    // Nothing was stored.
    assert_eq!(app.count("messages").await, 0);

    // A public room's socket that left it is `not_joined` there: it may join again.
    ack_ok(&b.call("joinRoom", json!("general")).await);
    ack_ok(&b.call("leaveRoom", json!("general")).await);
    let send = json!({"room": "general", "body": "x"});
    ack_error(&b.call("sendMessage", send).await, "not_joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_users_sockets_on_every_node_hear_removed_joined_or_not() {
    let c = TestCluster::start_on_test_redis(3, &[]).await;
    let owner = c.node(0).register("owner").await;
    let bob = c.node(0).register("bob").await;
    let room = c.node(0).create_room(&owner, "crew", "private").await;
    let id = room["id"].as_str().unwrap();
    c.node(0).grant(&owner, &room, &bob, "member").await.ok(200);
    let joined = c.node(1).socket(&bob.access, Transport::WebSocket).await;
    let not_joined = c.node(2).socket(&bob.access, Transport::WebSocket).await;
    ack_ok(&joined.call("joinPrivateRoom", json!({"roomId": id})).await);

    c.node(0)
        .delete(&member_path(&room, &bob), Some(&owner.access))
        .await
        .ok(204);
    for s in [&joined, &not_joined] {
        let removed = s.until("removed", |_| true).await;
        assert_eq!(
            removed,
            json!({"room": {"id": id, "name": "crew"}, "reason": "kicked"})
        );
        let send = json!({"room": id, "body": "x"});
        ack_error(&s.call("sendMessage", send).await, "forbidden");
    }
}
