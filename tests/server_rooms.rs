//! The server API's rooms, members and messages: the product's backend manages every room of
//! its workspace and sends messages in its users' names, through the same rules, writer and live
//! effects as users, on one node and across three.

mod common;

use std::time::Duration;

use common::{
    cluster::TestCluster,
    server::{insert_key, workspace_key},
    sio::{ack_ok, Transport},
    spawn_app, tenancy, Session, TestApp,
};
use reqwest::Method;
use serde_json::{json, Value};

const WS: Transport = Transport::WebSocket;
const SHORT: Duration = Duration::from_millis(300);

/// A workspace key and three provisioned users with sessions: owner, ann and bob.
async fn arrange(app: &TestApp) -> (String, Session, Session, Session) {
    let key = workspace_key(&app.state, None).await;
    let mut sessions = Vec::new();
    for (id, name) in [
        ("ext-owner", "olive"),
        ("ext-ann", "ann"),
        ("ext-bob", "bob"),
    ] {
        app.provision(&key, id, json!({"username": name})).await;
        sessions.push(app.minted(&key, id).await);
    }
    let bob = sessions.pop().unwrap();
    let ann = sessions.pop().unwrap();
    let owner = sessions.pop().unwrap();
    (key, owner, ann, bob)
}

#[tokio::test]
async fn the_backend_creates_a_room_with_its_owner_and_members_in_one_go() {
    let app = spawn_app().await;
    let (key, owner, ann, bob) = arrange(&app).await;
    let created = app
        .server(
            Method::POST,
            "/api/server/rooms",
            &key,
            None,
            Some(
                json!({"name": "deal-42", "visibility": "private", "topic": "The deal",
                        "metadata": {"deal": 42}, "owner": "ext-owner",
                        "members": [{"external_id": "ext-ann", "role": "moderator"},
                                    {"external_id": "ext-bob", "role": "member"},
                                    {"external_id": "ext-owner", "role": "member"}]}),
            ),
        )
        .await;
    let room = created.ok(201).clone();
    assert_eq!(room["visibility"], "private");
    assert_eq!(room["metadata"], json!({"deal": 42}));
    assert_eq!(room["created_by"], owner.id.to_string());
    let members = app
        .get(
            &format!("/api/rooms/{}/members", tenancy::id(&room)),
            Some(&bob.access),
        )
        .await;
    let mut roles: Vec<(String, String)> = members.ok(200)["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user"]["username"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        [("ann", "moderator"), ("bob", "member"), ("olive", "owner")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let _ = ann;

    // Without an owner: a room the backend alone manages.
    let bare = app
        .server(
            Method::POST,
            "/api/server/rooms",
            &key,
            None,
            Some(json!({"name": "announcements", "visibility": "public"})),
        )
        .await;
    assert!(bare.ok(201)["created_by"].is_null());

    // Refusals change nothing.
    let before = tenancy::fingerprint(&app.db).await;
    for (body, status, code) in [
        (
            json!({"name": "x1", "visibility": "public", "owner": "nobody"}),
            404,
            "not_found",
        ),
        (
            json!({"name": "x1", "visibility": "public", "members": [{"external_id": "ext-ann", "role": "member"}, {"external_id": "ghost", "role": "member"}]}),
            404,
            "not_found",
        ),
        (
            json!({"name": "x1", "visibility": "public", "members": [{"external_id": "ext-ann", "role": "owner"}]}),
            400,
            "invalid_input",
        ),
        (
            json!({"name": "x1", "visibility": "direct"}),
            400,
            "invalid_input",
        ),
        (
            json!({"name": "Bad Name", "visibility": "public"}),
            400,
            "invalid_input",
        ),
        (
            json!({"name": "deal-42", "visibility": "public"}),
            409,
            "conflict",
        ),
        (
            json!({"name": "x1", "visibility": "public", "metadata": "no"}),
            400,
            "invalid_input",
        ),
    ] {
        app.server(
            Method::POST,
            "/api/server/rooms",
            &key,
            None,
            Some(body.clone()),
        )
        .await
        .error(status, code);
    }
    assert_eq!(tenancy::fingerprint(&app.db).await, before);
}

#[tokio::test]
async fn the_backend_grants_and_removes_members_with_their_live_effects() {
    let app = spawn_app().await;
    let (key, owner, ann, _bob) = arrange(&app).await;
    let room = app
        .server(
            Method::POST,
            "/api/server/rooms",
            &key,
            None,
            Some(json!({"name": "team", "visibility": "private", "owner": "ext-owner"})),
        )
        .await
        .ok(201)
        .clone();
    let id = tenancy::id(&room);
    let member = |ext: &str| format!("/api/server/rooms/{id}/members/{ext}");

    // ann cannot enter until the backend adds her.
    let socket = app.socket(&ann.access, WS).await;
    let ack = socket.call("joinRoom", json!("team")).await;
    assert_eq!(ack["ok"], false, "{ack}");
    let granted = app
        .server(
            Method::PUT,
            &member("ext-ann"),
            &key,
            None,
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(granted.ok(200)["role"], "member");
    assert_eq!(granted.body["user"]["username"], "ann");
    ack_ok(&socket.call("joinRoom", json!("team")).await);
    // Its own join's welcome is not what this test listens for.
    socket.drain("message");
    let promoted = app
        .server(
            Method::PUT,
            &member("ext-ann"),
            &key,
            None,
            Some(json!({"role": "moderator"})),
        )
        .await;
    assert_eq!(promoted.ok(200)["role"], "moderator");
    let detail: Value =
        sqlx::query_scalar("select detail from audit_log where action = 'role_changed'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(detail["api_key"].is_string(), "{detail}");

    // The owner's row never changes; bad roles, rooms and users are refused.
    app.server(
        Method::PUT,
        &member("ext-owner"),
        &key,
        None,
        Some(json!({"role": "member"})),
    )
    .await
    .error(403, "forbidden");
    app.server(Method::DELETE, &member("ext-owner"), &key, None, None)
        .await
        .error(403, "forbidden");
    app.server(
        Method::PUT,
        &member("ext-bob"),
        &key,
        None,
        Some(json!({"role": "owner"})),
    )
    .await
    .error(400, "invalid_input");
    app.server(
        Method::PUT,
        &member("nobody"),
        &key,
        None,
        Some(json!({"role": "member"})),
    )
    .await
    .error(404, "not_found");
    app.server(Method::DELETE, &member("ext-bob"), &key, None, None)
        .await
        .error(404, "not_found");
    let elsewhere = format!("/api/server/rooms/{}/members/ext-bob", uuid::Uuid::now_v7());
    app.server(
        Method::PUT,
        &elsewhere,
        &key,
        None,
        Some(json!({"role": "member"})),
    )
    .await
    .error(404, "not_found");

    // Removed: her socket is told and taken out of the room at once.
    app.server(Method::DELETE, &member("ext-ann"), &key, None, None)
        .await
        .ok(204);
    let removed = socket.next("removed").await;
    assert_eq!(removed["reason"], "kicked");
    assert_eq!(removed["room"]["name"], "team");
    let owner_socket = app.in_room(&owner, "team", WS).await;
    ack_ok(
        &owner_socket
            .call(
                "sendMessage",
                json!({"room": "team", "body": "still there?"}),
            )
            .await,
    );
    socket.assert_silent("message", SHORT).await;
}

#[tokio::test]
async fn the_backend_deletes_any_room_and_its_sockets_are_told() {
    let app = spawn_app().await;
    let (key, _owner, ann, _bob) = arrange(&app).await;
    let room = app
        .server(
            Method::POST,
            "/api/server/rooms",
            &key,
            None,
            Some(json!({"name": "temp", "visibility": "public"})),
        )
        .await
        .ok(201)
        .clone();
    let socket = app.in_room(&ann, "temp", WS).await;
    let path = format!("/api/server/rooms/{}", tenancy::id(&room));
    app.server(Method::DELETE, &path, &key, None, None)
        .await
        .ok(204);
    assert_eq!(socket.next("removed").await["reason"], "room_deleted");
    app.server(Method::DELETE, &path, &key, None, None)
        .await
        .error(404, "not_found");
    assert_eq!(app.audits("room_deleted").await, 1);
}

#[tokio::test]
async fn a_message_from_the_backend_is_committed_broadcast_and_stored_once_per_client_id() {
    let app = spawn_app().await;
    let (key, owner, ann, bob) = arrange(&app).await;
    app.provision(
        &key,
        "ext-bot",
        json!({"username": "helper-bot", "is_bot": true}),
    )
    .await;
    let general = app.get("/api/rooms", Some(&ann.access)).await;
    let general_id = general.ok(200)["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "general")
        .map(tenancy::id)
        .unwrap();
    let listener = app.in_room(&ann, "general", WS).await;
    let path = format!("/api/server/rooms/{general_id}/messages");

    // The bot is no member of the public room and has no socket: it may still write there.
    let sent = app
        .server(
            Method::POST,
            &path,
            &key,
            None,
            Some(json!({"sender": "ext-bot", "body": "Build #7 passed @ann",
                        "client_id": "build-7", "metadata": {"build": 7}})),
        )
        .await;
    let message = sent.ok(201).clone();
    assert_eq!(message["sender"]["username"], "helper-bot");
    assert_eq!(message["metadata"], json!({"build": 7}));
    assert_eq!(message["mentions"][0]["username"], "ann");
    let heard = listener.next("message").await;
    assert_eq!(heard["id"], message["id"]);
    assert_eq!(heard["seq"], message["seq"]);
    // Committed before the answer.
    let stored: i64 =
        sqlx::query_scalar("select count(*) from messages where client_id = 'build-7'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(stored, 1);

    // Retried with the same client_id: 200 with the first message, nothing stored or sent again.
    let again = app
        .server(
            Method::POST,
            &path,
            &key,
            None,
            Some(json!({"sender": "ext-bot", "body": "Build #7 passed @ann", "client_id": "build-7"})),
        )
        .await;
    assert_eq!(again.ok(200)["id"], message["id"]);
    listener.assert_silent("message", SHORT).await;
    assert_eq!(app.count("messages").await, 1);

    // A thread reply from the backend raises its root's summary, as a user's would.
    let reply = app
        .server(
            Method::POST,
            &path,
            &key,
            None,
            Some(json!({"sender": "ext-ann", "body": "thanks",
                        "thread_root_id": message["id"], "reply_to": message["id"]})),
        )
        .await;
    assert_eq!(reply.ok(201)["thread_root_id"], message["id"]);
    let root = listener
        .until("messageUpdated", |m| m["message"]["id"] == message["id"])
        .await;
    assert_eq!(root["message"]["thread"]["reply_count"], 1);

    // A private room: members only (403 for others); unknown senders and rooms are 404; bad
    // input is 400. None of these stores anything.
    let private = app
        .server(
            Method::POST,
            "/api/server/rooms",
            &key,
            None,
            Some(json!({"name": "staff", "visibility": "private", "owner": "ext-owner"})),
        )
        .await
        .ok(201)
        .clone();
    let staff = format!("/api/server/rooms/{}/messages", tenancy::id(&private));
    let before = app.count("messages").await;
    for (path, body, status, code) in [
        (
            &staff,
            json!({"sender": "ext-bob", "body": "let me in"}),
            403,
            "forbidden",
        ),
        (
            &staff,
            json!({"sender": "ghost", "body": "boo"}),
            404,
            "not_found",
        ),
        (
            &format!("/api/server/rooms/{}/messages", uuid::Uuid::now_v7()),
            json!({"sender": "ext-bob", "body": "hi"}),
            404,
            "not_found",
        ),
        (
            &staff,
            json!({"sender": "ext-owner", "body": ""}),
            400,
            "invalid_input",
        ),
        (
            &staff,
            json!({"sender": "ext-owner", "body": "x".repeat(4001)}),
            400,
            "invalid_input",
        ),
        (&staff, json!({"body": "who am I"}), 400, "invalid_input"),
        (
            &staff,
            json!({"sender": "ext-owner", "body": "hi", "reply_to": uuid::Uuid::now_v7()}),
            404,
            "not_found",
        ),
    ] {
        app.server(Method::POST, path, &key, None, Some(body))
            .await
            .error(status, code);
    }
    assert_eq!(app.count("messages").await, before);
    let owner_says = app
        .server(
            Method::POST,
            &staff,
            &key,
            None,
            Some(json!({"sender": "ext-owner", "body": "hi"})),
        )
        .await;
    assert_eq!(owner_says.ok(201)["seq"], 1);

    // A disabled sender may not write.
    app.server(
        Method::POST,
        "/api/server/users/ext-owner/disable",
        &key,
        None,
        None,
    )
    .await
    .ok(204);
    app.server(
        Method::POST,
        &staff,
        &key,
        None,
        Some(json!({"sender": "ext-owner", "body": "hi"})),
    )
    .await
    .error(403, "forbidden");
    let _ = (owner, bob);
}

/// Three nodes: what the backend does through one node reaches sockets on the others.
#[tokio::test]
async fn what_the_backend_does_on_one_node_reaches_sockets_on_every_node() {
    let prefix = format!("huddle-test-{}", uuid::Uuid::new_v4().simple());
    let cluster = TestCluster::start_on_test_redis(3, &[("REDIS_PREFIX", &prefix)]).await;
    let key = insert_key(&cluster.db, Some(uuid::Uuid::from_u128(1))).await;
    let (a, b, c) = (cluster.node(0), cluster.node(1), cluster.node(2));
    a.provision(&key, "ext-ann", json!({"username": "ann"}))
        .await;
    a.provision(&key, "ext-bob", json!({"username": "bob"}))
        .await;
    let ann = b.minted(&key, "ext-ann").await;
    let room = a
        .server(
            Method::POST,
            "/api/server/rooms",
            &key,
            None,
            Some(json!({"name": "ops", "visibility": "private",
                        "members": [{"external_id": "ext-ann", "role": "member"}]})),
        )
        .await
        .ok(201)
        .clone();
    let on_b = b.in_room(&ann, "ops", WS).await;
    let on_c = c.in_room(&ann, "ops", WS).await;
    let sent = a
        .server(
            Method::POST,
            &format!("/api/server/rooms/{}/messages", tenancy::id(&room)),
            &key,
            None,
            Some(json!({"sender": "ext-ann", "body": "from the backend"})),
        )
        .await
        .ok(201)
        .clone();
    for s in [&on_b, &on_c] {
        s.until("message", |m| m["id"] == sent["id"]).await;
    }
    c.server(
        Method::DELETE,
        &format!("/api/server/rooms/{}/members/ext-ann", tenancy::id(&room)),
        &key,
        None,
        None,
    )
    .await
    .ok(204);
    for s in [&on_b, &on_c] {
        assert_eq!(s.next("removed").await["reason"], "kicked");
    }
    // Disabling the user through a third node disconnects their sockets on the other two.
    a.server(
        Method::POST,
        "/api/server/users/ext-ann/disable",
        &key,
        None,
        None,
    )
    .await
    .ok(204);
    for s in [&on_b, &on_c] {
        s.wait_disconnected().await;
    }
    b.get("/api/me", Some(&ann.access))
        .await
        .error(401, "unauthorized");
}
