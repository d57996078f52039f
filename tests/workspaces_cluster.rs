//! Workspaces stay isolated across nodes: three server processes share Postgres and Redis, two
//! workspaces hold the same usernames and room names, and each workspace's people and sockets
//! are spread over the nodes. From a node where the other workspace's sockets are not, every
//! route and event aimed at the other workspace answers as for an unknown room or user, the
//! database does not change, and live traffic (messages, presence, `listOnline`) never crosses.

mod common;

use std::time::Duration;

use common::{
    cluster::TestCluster,
    sio::{ack_ok, Transport},
    tenancy::{
        assert_like_unknown, fingerprint, id, register_in, room_events, room_routes, user_routes,
    },
    Api, Session,
};
use serde_json::{json, Value};
use uuid::Uuid;

const WS: Transport = Transport::WebSocket;

/// One workspace's people and rooms, made through `api` (one node).
struct Tenant {
    ann: Session,
    bob: Session,
    general: Value,
    secret: Value,
    direct: Value,
}

async fn populate(api: &Api, slug: &str) -> Tenant {
    let ann = register_in(api, slug, "ann").await;
    let bob = register_in(api, slug, "bob").await;
    let secret = api.create_room(&ann, "secret", "private").await;
    api.grant(&ann, &secret, &bob, "member").await.ok(200);
    let direct = api
        .post(
            &format!("/api/direct/{}", bob.id),
            Some(&ann.access),
            json!({}),
        )
        .await
        .ok(200)
        .clone();
    let general = api.get("/api/rooms", Some(&ann.access)).await.ok(200)["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "general")
        .expect("every workspace has its DEFAULT_ROOMS")
        .clone();
    Tenant {
        ann,
        bob,
        general,
        secret,
        direct,
    }
}

/// The next message a user sent (skipping system notices such as a join's welcome).
async fn next_chat(socket: &common::sio::SioClient) -> Value {
    loop {
        let message = socket.next("message").await;
        if message["kind"] != "system" {
            return message;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspaces_stay_apart_on_three_nodes() {
    let c = TestCluster::start_on_test_redis(
        3,
        &[("WORKSPACE_SIGNUP", "open"), ("ROOM_EVENT_RATE", "0")],
    )
    .await;
    let (n0, n1, n2) = (c.node(0), c.node(1), c.node(2));
    // The second workspace, made over the API on one node, seen by the others.
    n1.post(
        "/api/workspaces",
        None,
        json!({"slug": "acme", "name": "Acme", "owner": {"username": "owner", "password": "owner-password"}}),
    )
    .await
    .ok(201);
    let home = populate(n0, "default").await;
    let other = populate(n1, "acme").await;

    // The other workspace's sockets live on nodes 0 and 1; the caller's on node 2.
    let theirs = n0.in_room(&other.ann, "general", WS).await;
    let theirs_too = n1.in_room(&other.bob, "general", WS).await;
    theirs.drain("presence");
    theirs.drain("message");
    let me = &home.ann;
    let before = fingerprint(&c.db).await;

    // REST by room id, on a node of its own: exactly an unknown room.
    let missing_room = Uuid::now_v7().to_string();
    for room in [&other.general, &other.secret, &other.direct] {
        assert_like_unknown(
            n2,
            &me.access,
            room_routes(&id(room), other.bob.id),
            room_routes(&missing_room, other.bob.id),
        )
        .await;
    }

    assert_eq!(
        before,
        fingerprint(&c.db).await,
        "the room routes changed nothing"
    );

    // REST by user id, as an admin of the caller's own workspace, inside the caller's own room.
    sqlx::query("update users set is_admin = true where id = $1")
        .bind(me.id)
        .execute(&c.db)
        .await
        .unwrap();
    let before = fingerprint(&c.db).await;
    let missing_user = Uuid::now_v7().to_string();
    let own_room = id(&home.secret);
    for user in [&other.ann, &other.bob] {
        assert_like_unknown(
            n2,
            &me.access,
            user_routes(&own_room, &user.id.to_string()),
            user_routes(&own_room, &missing_user),
        )
        .await;
    }

    // Socket.IO on node 2: their rooms by id, and their direct room by name.
    let s = n2.socket(&me.access, WS).await;
    for room in [
        id(&other.general),
        id(&other.secret),
        id(&other.direct),
        other.direct["name"].as_str().unwrap().to_owned(),
    ] {
        let control_room = if room.parse::<Uuid>().is_ok() {
            missing_room.clone()
        } else {
            "no-such-room".to_owned()
        };
        for ((event, data), (_, control)) in room_events(&room)
            .into_iter()
            .zip(room_events(&control_room))
        {
            let got = s.call(event, data.clone()).await;
            let want = s.call(event, control).await;
            assert_eq!(got, want, "{event} {data}");
            assert_eq!(got["error"]["code"], "not_found", "{event} {data}: {got}");
        }
    }
    let got = s
        .call(
            "directMessage",
            json!({"to": other.bob.id.to_string(), "body": "psst"}),
        )
        .await;
    let want = s
        .call("directMessage", json!({"to": missing_user, "body": "psst"}))
        .await;
    assert_eq!(got, want);
    assert_eq!(got["error"]["code"], "not_found", "{got}");

    // listOnline of a room name both workspaces have: only the caller's own workspace, though
    // the other's sockets sit in their `general` on the other two nodes.
    let mine = n2.in_room(me, "general", WS).await;
    let online = ack_ok(&mine.call("listOnline", json!({"room": "general"})).await).clone();
    let ids: Vec<&str> = online["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [me.id.to_string()], "{online}");
    assert_eq!(
        before,
        fingerprint(&c.db).await,
        "nothing changed in the database"
    );

    // Live traffic: a message in each workspace's `general` reaches that workspace's sockets
    // on every node, and never the other's.
    let home_bob = n0.in_room(&home.bob, "general", WS).await;
    for socket in [&theirs, &theirs_too, &mine, &home_bob] {
        socket.drain("presence");
        socket.drain("message");
    }
    ack_ok(
        &mine
            .call(
                "sendMessage",
                json!({"room": "general", "body": "home only"}),
            )
            .await,
    );
    let seen = next_chat(&home_bob).await;
    assert_eq!(seen["body"], "home only");
    assert_eq!(seen["room"]["id"], home.general["id"]);
    ack_ok(
        &theirs
            .call(
                "sendMessage",
                json!({"room": "general", "body": "acme only"}),
            )
            .await,
    );
    let seen = next_chat(&theirs_too).await;
    assert_eq!(seen["body"], "acme only");
    assert_eq!(seen["room"]["id"], other.general["id"]);
    for socket in [&theirs, &theirs_too] {
        socket
            .assert_silent("presence", Duration::from_millis(300))
            .await;
        // Their own room's messages only (a join's welcome notice among them).
        for message in socket.drain("message") {
            assert_eq!(message["room"]["id"], other.general["id"], "{message}");
            assert_ne!(message["body"], "home only", "{message}");
        }
    }
    for socket in [&mine, &home_bob] {
        for message in socket.drain("message") {
            assert_eq!(message["room"]["id"], home.general["id"], "{message}");
            assert_ne!(message["body"], "acme only", "{message}");
        }
    }
}
