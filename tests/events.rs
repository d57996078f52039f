//! The event log: every change writes its event in its own transaction, positions are dense
//! and follow commit order, a reader paging with `after` never skips one (interleaved
//! transactions, three nodes writing at once), and a deleted message's text leaves the log too.

mod common;

use std::{collections::HashSet, time::Duration};

use common::{
    cluster::TestCluster,
    server::{insert_key, platform_key, workspace_key},
    sio::{ack_ok, Transport},
    spawn_app, tenancy, Api,
};
use huddle::{
    store::events::{append, NewEvent},
    workspaces::WorkspaceId,
};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

const WS: Transport = Transport::WebSocket;

/// Every event after `after`, paging with the log's own cursor; checks each page's shape.
async fn read_all(api: &Api, key: &str, workspace: Option<&str>, mut after: i64) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let path = format!("/api/server/events?after={after}&limit=7");
        let page = api.server(Method::GET, &path, key, workspace, None).await;
        let body = page.ok(200).clone();
        let events = body["events"].as_array().unwrap().clone();
        let last = body["last_position"].as_i64().unwrap();
        match events.last() {
            Some(e) => assert_eq!(e["position"].as_i64().unwrap(), last),
            None => assert_eq!(last, after),
        }
        all.extend(events);
        after = last;
        if !body["has_more"].as_bool().unwrap() {
            return all;
        }
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn every_change_writes_its_event_in_commit_order() {
    let app = spawn_app().await;
    let key = workspace_key(&app.state, None).await;
    // What the default workspace's start-up made (its DEFAULT_ROOMS) comes first.
    let start = read_all(&app.api, &key, None, 0).await;
    assert_eq!(types(&start), ["room.created"]);
    assert_eq!(start[0]["data"]["room"]["name"], "general");

    let ann = app.register("ann").await;
    app.provision(&key, "ext-bob", json!({"username": "bob"}))
        .await;
    let bob = app.minted(&key, "ext-bob").await;
    let room = app.create_room(&ann, "team", "private").await;
    let room_id = tenancy::id(&room);
    app.grant(&ann, &room, &bob, "member").await.ok(200);
    app.grant(&ann, &room, &bob, "moderator").await.ok(200);
    app.patch(
        &format!("/api/rooms/{room_id}"),
        Some(&ann.access),
        json!({"topic": "t"}),
    )
    .await
    .ok(200);
    // Refused changes write nothing.
    app.post(
        "/api/rooms",
        Some(&bob.access),
        json!({"name": "team", "visibility": "public"}),
    )
    .await
    .error(409, "conflict");
    let s = app.in_room(&ann, "team", WS).await;
    let sent = s
        .call("sendMessage", json!({"room": "team", "body": "hello"}))
        .await;
    let id = ack_ok(&sent)["message"]["id"].clone();
    ack_ok(
        &s.call(
            "editMessage",
            json!({"room": "team", "id": id, "body": "hello!"}),
        )
        .await,
    );
    ack_ok(
        &s.call(
            "react",
            json!({"room": "team", "id": id, "emoji": "👍", "on": true}),
        )
        .await,
    );
    ack_ok(
        &s.call(
            "react",
            json!({"room": "team", "id": id, "emoji": "👍", "on": false}),
        )
        .await,
    );
    // The reaction events show the counts after each change (read now: the deletion below
    // erases what the message's earlier events showed).
    let so_far = read_all(&app.api, &key, None, 0).await;
    let reactions: Vec<&Value> = so_far
        .iter()
        .filter(|e| e["type"].as_str().unwrap().starts_with("reaction."))
        .map(|e| &e["data"]["message"]["reactions"])
        .collect();
    assert_eq!(
        reactions,
        [&json!([{"emoji": "👍", "count": 1}]), &json!([])]
    );
    ack_ok(
        &s.call(
            "sendMessage",
            json!({"room": "team", "body": "in thread", "thread_root_id": id}),
        )
        .await,
    );
    ack_ok(
        &s.call("deleteMessage", json!({"room": "team", "id": id}))
            .await,
    );
    app.delete(
        &format!("/api/rooms/{room_id}/members/{}", bob.id),
        Some(&ann.access),
    )
    .await
    .ok(204);
    app.patch("/api/me", Some(&ann.access), json!({"display_name": "Ann"}))
        .await
        .ok(200);
    app.server(
        Method::POST,
        "/api/server/users/ext-bob/disable",
        &key,
        None,
        None,
    )
    .await
    .ok(204);
    app.server(
        Method::POST,
        "/api/server/users/ext-bob/enable",
        &key,
        None,
        None,
    )
    .await
    .ok(204);
    let all = read_all(&app.api, &key, None, 0).await;
    assert_eq!(
        types(&all[1..]),
        [
            "user.created",
            "user.created",
            "room.created",
            "member.added",
            "member.added",
            "member.role_changed",
            "room.updated",
            "message.created",
            "message.updated",
            "reaction.added",
            "reaction.removed",
            "message.created",
            "message.updated",
            "message.deleted",
            "member.removed",
            "user.updated",
            "user.disabled",
            "user.enabled",
        ]
    );
    // Dense positions from 1, unique ids, the envelope of the contract.
    let positions: Vec<i64> = all
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert_eq!(positions, (1..=all.len() as i64).collect::<Vec<_>>());
    let ids: HashSet<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), all.len());
    for e in &all {
        let mut keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "created_at",
                "data",
                "id",
                "position",
                "type",
                "workspace_id"
            ]
        );
        assert_eq!(e["workspace_id"], "00000000-0000-0000-0000-000000000001");
    }
    // Data: the room as a room object and the message after the change.
    let by_type = |t: &str| all.iter().filter(|e| e["type"] == t).collect::<Vec<_>>();
    let created = by_type("message.created")[0];
    assert_eq!(created["data"]["room"]["id"], room_id);
    assert_eq!(created["data"]["room"]["visibility"], "private");
    assert_eq!(created["data"]["message"]["id"], id);
    assert!(created["data"]["message"].get("my_reactions").is_none());
    let updated = by_type("message.updated");
    // Erased by the deletion: the edit's event keeps no text.
    assert_eq!(updated[0]["data"]["message"]["body"], "");
    assert!(updated[0]["data"]["message"]["edited_at"].is_string());
    assert_eq!(updated[1]["data"]["message"]["thread"]["reply_count"], 1);
    let deleted = by_type("message.deleted")[0];
    assert_eq!(deleted["data"]["message"]["body"], "");
    assert!(deleted["data"]["message"]["deleted_at"].is_string());
    let member_removed = by_type("member.removed")[0];
    assert_eq!(member_removed["data"]["reason"], "kicked");
    assert_eq!(member_removed["data"]["member"]["user"]["username"], "bob");
    assert_eq!(member_removed["data"]["member"]["role"], "moderator");
    assert_eq!(
        by_type("member.added")[1]["data"]["member"]["role"],
        "member"
    );
    let provisioned = &all[2];
    assert_eq!(provisioned["data"]["user"]["external_id"], "ext-bob");
    // Every event of the log is in the table once: nothing is written twice.
    assert_eq!(app.count("events").await, all.len() as i64);

    // Deleting the room takes its messages' events with its messages; the rest stays, and the
    // room's deletion comes last.
    app.delete(&format!("/api/rooms/{room_id}"), Some(&ann.access))
        .await
        .ok(204);
    let after = read_all(&app.api, &key, None, 0).await;
    let kept: Vec<&Value> = all
        .iter()
        .filter(|e| {
            let t = e["type"].as_str().unwrap();
            !t.starts_with("message.") && !t.starts_with("reaction.")
        })
        .collect();
    assert_eq!(after.len(), kept.len() + 1);
    for (a, b) in after.iter().zip(&kept) {
        assert_eq!(&a, b);
    }
    let last = after.last().unwrap();
    assert_eq!(last["type"], "room.deleted");
    assert_eq!(last["data"]["room"]["name"], "team");
    assert_eq!(last["position"], all.len() as i64 + 1);
    assert_eq!(app.count("events").await, after.len() as i64);
}

#[tokio::test]
async fn a_message_event_shows_the_message_as_that_change_left_it() {
    let app = spawn_app().await;
    let key = workspace_key(&app.state, None).await;
    let ann = app.register("ann").await;
    let s = app.in_room(&ann, "general", WS).await;
    let plain = s
        .call("sendMessage", json!({"room": "general", "body": "v1"}))
        .await;
    let id = ack_ok(&plain)["message"]["id"].clone();
    // Before any change, the new message's event is read from the message itself.
    let events = read_all(&app.api, &key, None, 0).await;
    let created = events.last().unwrap();
    assert_eq!(created["type"], "message.created");
    assert_eq!(created["data"]["message"], {
        let mut m = ack_ok(&plain)["message"].clone();
        m.as_object_mut().unwrap().remove("my_reactions");
        m
    });
    assert_eq!(created["data"]["room"]["name"], "general");
    for (body, emoji) in [("v2", "👍"), ("v3", "🎉")] {
        ack_ok(
            &s.call(
                "react",
                json!({"room": "general", "id": id, "emoji": emoji, "on": true}),
            )
            .await,
        );
        ack_ok(
            &s.call(
                "editMessage",
                json!({"room": "general", "id": id, "body": body}),
            )
            .await,
        );
    }
    ack_ok(
        &s.call(
            "sendMessage",
            json!({"room": "general", "body": "reply", "thread_root_id": id}),
        )
        .await,
    );
    let events = read_all(
        &app.api,
        &key,
        None,
        created["position"].as_i64().unwrap() - 1,
    )
    .await;
    let seen: Vec<(&str, &str, usize, i64)> = events
        .iter()
        .map(|e| {
            let m = &e["data"]["message"];
            (
                e["type"].as_str().unwrap(),
                m["body"].as_str().unwrap(),
                m["reactions"].as_array().unwrap().len(),
                m["thread"]["reply_count"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("message.created", "v1", 0, 0),
            ("reaction.added", "v1", 1, 0),
            ("message.updated", "v2", 1, 0),
            ("reaction.added", "v2", 2, 0),
            ("message.updated", "v3", 2, 0),
            ("message.created", "reply", 0, 0),
            ("message.updated", "v3", 2, 1),
        ]
    );
    // Each message event's rev is that change's.
    let revs: Vec<i64> = events
        .iter()
        .map(|e| e["data"]["message"]["rev"].as_i64().unwrap())
        .collect();
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");
}

#[tokio::test]
async fn a_deleted_messages_text_leaves_the_log_too() {
    let app = spawn_app().await;
    let key = workspace_key(&app.state, None).await;
    let ann = app.register("ann").await;
    let s = app.in_room(&ann, "general", WS).await;
    let sent = s
        .call(
            "sendMessage",
            json!({"room": "general", "body": "the launch code is 0000",
                   "metadata": {"secret": "launch"}}),
        )
        .await;
    let id = ack_ok(&sent)["message"]["id"].clone();
    ack_ok(
        &s.call(
            "editMessage",
            json!({"room": "general", "id": id, "body": "the launch code is 1234"}),
        )
        .await,
    );
    ack_ok(
        &s.call(
            "sendMessage",
            json!({"room": "general", "body": "noted", "reply_to": id}),
        )
        .await,
    );
    let leaks = |needle: &'static str| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("select count(*) from events where data::text like $1")
                .bind(format!("%{needle}%"))
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    // The new message's event read the message until the edit stored its first text; the
    // reply's event reads its quote when it is read.
    assert_eq!(leaks("launch code").await, 2, "created and updated");
    ack_ok(
        &s.call("deleteMessage", json!({"room": "general", "id": id}))
            .await,
    );
    assert_eq!(leaks("launch code").await, 0);
    assert_eq!(leaks("secret").await, 0);
    let all = read_all(&app.api, &key, None, 0).await;
    let quote = all
        .iter()
        .find(|e| e["data"]["message"]["body"] == "noted")
        .unwrap();
    assert_eq!(quote["data"]["message"]["reply_to"]["body"], "");
    assert_eq!(types(&all).last(), Some(&"message.deleted"));
}

#[tokio::test]
async fn the_log_pages_by_position_and_refuses_bad_cursors() {
    let app = spawn_app().await;
    let key = workspace_key(&app.state, None).await;
    let ann = app.register("ann").await;
    for name in ["bob", "cyd"] {
        app.register(name).await;
    }
    // 4 events: general's room.created and three users.
    let page = app
        .server(Method::GET, "/api/server/events?limit=3", &key, None, None)
        .await;
    let body = page.ok(200);
    assert_eq!(body["events"].as_array().unwrap().len(), 3);
    assert_eq!(
        (body["has_more"].clone(), body["last_position"].clone()),
        (json!(true), json!(3))
    );
    let rest = app
        .server(Method::GET, "/api/server/events?after=3", &key, None, None)
        .await;
    let body = rest.ok(200);
    assert_eq!(body["events"][0]["position"], 4);
    assert_eq!(
        (body["has_more"].clone(), body["last_position"].clone()),
        (json!(false), json!(4))
    );
    // Past the end: empty, and the cursor stays where it was.
    let empty = app
        .server(Method::GET, "/api/server/events?after=40", &key, None, None)
        .await;
    assert_eq!(
        empty.ok(200),
        &json!({"events": [], "has_more": false, "last_position": 40})
    );
    for query in [
        "after=-1",
        "after=x",
        "limit=0",
        "limit=1001",
        "limit=1.5",
        "after=1&after=2",
    ] {
        app.server(
            Method::GET,
            &format!("/api/server/events?{query}"),
            &key,
            None,
            None,
        )
        .await
        .error(400, "invalid_input");
    }
    // A user's token is no key.
    app.get("/api/server/events", Some(&ann.access))
        .await
        .error(401, "unauthorized");
}

#[tokio::test]
async fn each_workspace_reads_only_its_own_log() {
    let app = spawn_app().await;
    let platform = platform_key(&app.state).await;
    app.server(
        Method::POST,
        "/api/server/workspaces",
        &platform,
        None,
        Some(json!({"slug": "acme", "name": "Acme"})),
    )
    .await
    .ok(201);
    tenancy::register_in(&app.api, "acme", "ann").await;
    app.register("zed").await;
    let acme = read_all(&app.api, &platform, Some("acme"), 0).await;
    assert_eq!(types(&acme), ["room.created", "user.created"]);
    assert_eq!(acme[0]["position"], 1);
    assert_eq!(acme[1]["data"]["user"]["username"], "ann");
    let default = read_all(&app.api, &platform, None, 0).await;
    assert_eq!(types(&default), ["room.created", "user.created"]);
    assert_eq!(default[1]["data"]["user"]["username"], "zed");
}

/// Two transactions that write events interleave: the one that takes its positions first
/// holds the second until it commits, so positions follow commit order and a reader never sees
/// a later position before an earlier one.
#[tokio::test]
async fn interleaved_transactions_commit_their_positions_in_order() {
    let app = spawn_app().await;
    let key = workspace_key(&app.state, None).await;
    let base = read_all(&app.api, &key, None, 0).await.len() as i64;
    let event = |n: i64| NewEvent {
        id: Uuid::now_v7(),
        kind: "user.updated",
        data: Some(json!({ "n": n })),
        message_id: None,
        quoted_id: None,
    };
    let ws = WorkspaceId::DEFAULT;

    let mut first = app.db.begin().await.unwrap();
    append(&mut first, ws, &[event(1)]).await.unwrap();
    // The second transaction starts after the first took its position; it must wait.
    let db = app.db.clone();
    let second = tokio::spawn(async move {
        let mut tx = db.begin().await.unwrap();
        append(&mut tx, ws, &[event(2)]).await.unwrap();
        tx.commit().await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second transaction waits for the first"
    );
    // Neither is visible yet: a reader sees nothing past the base.
    assert_eq!(read_all(&app.api, &key, None, base).await.len(), 0);
    first.commit().await.unwrap();
    second.await.unwrap();
    let after = read_all(&app.api, &key, None, base).await;
    let got: Vec<(i64, i64)> = after
        .iter()
        .map(|e| {
            (
                e["position"].as_i64().unwrap(),
                e["data"]["n"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [(base + 1, 1), (base + 2, 2)]);

    // A transaction that rolls back leaves no event and no hole.
    let mut doomed = app.db.begin().await.unwrap();
    append(&mut doomed, ws, &[event(3)]).await.unwrap();
    doomed.rollback().await.unwrap();
    let mut tx = app.db.begin().await.unwrap();
    append(&mut tx, ws, &[event(4)]).await.unwrap();
    tx.commit().await.unwrap();
    let last = read_all(&app.api, &key, None, base + 2).await;
    assert_eq!(last.len(), 1);
    assert_eq!(
        (last[0]["position"].as_i64(), last[0]["data"]["n"].as_i64()),
        (Some(base + 3), Some(4))
    );
}

/// Three nodes write at once (messages on each, room changes through the server API) while a
/// reader follows the log with `after`: it ends with every event exactly once, in order.
#[tokio::test]
async fn a_reader_following_the_log_misses_nothing_while_three_nodes_write() {
    let prefix = format!("huddle-test-{}", Uuid::new_v4().simple());
    let cluster = TestCluster::start_on_test_redis(3, &[("REDIS_PREFIX", &prefix)]).await;
    let key = insert_key(&cluster.db, Some(Uuid::from_u128(1))).await;
    let mut writers = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let user = node.register(&format!("writer{i}")).await;
        let socket = node.in_room(&user, "general", WS).await;
        let api = node.api.clone();
        let key = key.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..60 {
                ack_ok(
                    &socket
                        .call(
                            "sendMessage",
                            json!({"room": "general", "body": format!("m{n}")}),
                        )
                        .await,
                );
                if n % 10 == 0 {
                    let ext = format!("ext-{i}-{n}");
                    api.provision(&key, &ext, json!({"username": format!("u{i}x{n}")}))
                        .await;
                }
            }
        }));
    }
    let reader_api = cluster.node(1).api.clone();
    let mut seen: Vec<Value> = Vec::new();
    let mut after = 0;
    while writers.iter().any(|w| !w.is_finished()) {
        let page = read_all(&reader_api, &key, None, after).await;
        if let Some(last) = page.last() {
            after = last["position"].as_i64().unwrap();
        }
        seen.extend(page);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    seen.extend(read_all(&reader_api, &key, None, after).await);
    let positions: Vec<i64> = seen
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert_eq!(
        positions,
        (1..=seen.len() as i64).collect::<Vec<_>>(),
        "dense, in order, once"
    );
    let in_table: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&cluster.db)
        .await
        .unwrap();
    assert_eq!(seen.len() as i64, in_table);
    let messages = seen
        .iter()
        .filter(|e| e["type"] == "message.created")
        .count();
    assert_eq!(messages, 180);
    let provisioned = seen
        .iter()
        .filter(|e| e["type"] == "user.created" && !e["data"]["user"]["external_id"].is_null())
        .count();
    assert_eq!(provisioned, 18);
}

/// The message writer's plain batch statement takes its positions the same way: while another
/// transaction holds the workspace's counter, a message is neither committed nor acknowledged,
/// and once that transaction commits the message's event comes after its event.
#[tokio::test]
async fn the_writers_batch_statement_waits_its_turn_for_positions() {
    let app = spawn_app().await;
    let key = workspace_key(&app.state, None).await;
    let ann = app.register("ann").await;
    let s = app.in_room(&ann, "general", WS).await;
    let base = read_all(&app.api, &key, None, 0).await.len() as i64;

    let mut holder = app.db.begin().await.unwrap();
    append(
        &mut holder,
        WorkspaceId::DEFAULT,
        &[NewEvent {
            id: Uuid::now_v7(),
            kind: "user.updated",
            data: Some(json!({ "n": 1 })),
            message_id: None,
            quoted_id: None,
        }],
    )
    .await
    .unwrap();
    let send = tokio::spawn(async move {
        let ack = s
            .call("sendMessage", json!({"room": "general", "body": "later"}))
            .await;
        (s, ack)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!send.is_finished(), "the message waits for the counter");
    assert_eq!(app.count("messages").await, 0, "and is not committed");
    holder.commit().await.unwrap();
    let (_s, ack) = send.await.unwrap();
    ack_ok(&ack);
    let after = read_all(&app.api, &key, None, base).await;
    assert_eq!(types(&after), ["user.updated", "message.created"]);
    assert_eq!(after[1]["position"], base + 2);
    assert_eq!(after[1]["data"]["message"]["body"], "later");
}
