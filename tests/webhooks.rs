//! Webhooks against a real HTTP receiver on 127.0.0.1: every event type delivered once and
//! verified by the Standard Webhooks library from npm; a failing receiver gets everything once
//! it recovers, without holding back another webhook; redirects are not followed; internal
//! addresses are refused at registration and at delivery; a receiver that is down while the
//! node is SIGKILLed gets everything after the restart; three nodes stream one webhook's events
//! without sending any twice.

mod common;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use base64::{engine::general_purpose::STANDARD, Engine};
use common::{
    cluster::{wait_ready, Node, TestCluster},
    drop_database, postgres_server_url,
    receiver::{verify_all, Answer, Got, Receiver},
    server::{insert_key, workspace_key},
    sio::{ack_ok, Transport},
    spawn_app, spawn_app_with, tenancy, Api, TestApp,
};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

const WS: Transport = Transport::WebSocket;

async fn app() -> TestApp {
    spawn_app_with(&[
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ("WEBHOOK_RETRY_BASE_MS", "100"),
    ])
    .await
}

/// Registers a webhook; returns it and its secret.
async fn register(api: &Api, key: &str, url: &str, events: Value) -> (Value, String) {
    let reply = api
        .server(
            Method::POST,
            "/api/server/webhooks",
            key,
            None,
            Some(json!({"url": url, "events": events})),
        )
        .await;
    let body = reply.ok(201).clone();
    (
        body["webhook"].clone(),
        body["secret"].as_str().unwrap().to_owned(),
    )
}

/// The event log after `after`, every page.
async fn log_after(api: &Api, key: &str, mut after: i64) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let path = format!("/api/server/events?after={after}&limit=1000");
        let body = api.server(Method::GET, &path, key, None, None).await;
        let body = body.ok(200).clone();
        all.extend(body["events"].as_array().unwrap().iter().cloned());
        after = body["last_position"].as_i64().unwrap();
        if !body["has_more"].as_bool().unwrap() {
            return all;
        }
    }
}

async fn last_position(api: &Api, key: &str) -> i64 {
    log_after(api, key, 0)
        .await
        .last()
        .map_or(0, |e| e["position"].as_i64().unwrap())
}

/// How many 2xx deliveries each event id got.
fn per_id(got: &[Got]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for g in got {
        *out.entry(g.id.clone()).or_insert(0) += 1;
    }
    out
}

#[tokio::test]
async fn every_event_type_is_delivered_once_signed_as_the_standard_says() {
    let app = app().await;
    let key = workspace_key(&app.state, None).await;
    let receiver = Receiver::start().await;
    let start = last_position(&app.api, &key).await;
    let (webhook, secret) = register(&app.api, &key, &receiver.url(), json!([])).await;
    assert!(secret.starts_with("whsec_"));
    assert!(STANDARD.decode(&secret["whsec_".len()..]).unwrap().len() >= 24);
    assert_eq!(webhook["active"], true);
    assert_eq!(webhook["events"], json!([]));

    // One change of every kind the contract names an event for.
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
    let s = app.in_room(&ann, "team", WS).await;
    let sent = s
        .call("sendMessage", json!({"room": "team", "body": "hello"}))
        .await;
    let id = ack_ok(&sent)["message"]["id"].clone();
    for (event, payload) in [
        (
            "editMessage",
            json!({"room": "team", "id": id, "body": "hello!"}),
        ),
        (
            "react",
            json!({"room": "team", "id": id, "emoji": "👍", "on": true}),
        ),
        (
            "react",
            json!({"room": "team", "id": id, "emoji": "👍", "on": false}),
        ),
        ("deleteMessage", json!({"room": "team", "id": id})),
    ] {
        ack_ok(&s.call(event, payload).await);
    }
    app.delete(
        &format!("/api/rooms/{room_id}/members/{}", bob.id),
        Some(&ann.access),
    )
    .await
    .ok(204);
    app.patch("/api/me", Some(&ann.access), json!({"display_name": "Ann"}))
        .await
        .ok(200);
    for action in ["disable", "enable"] {
        let path = format!("/api/server/users/ext-bob/{action}");
        app.server(Method::POST, &path, &key, None, None)
            .await
            .ok(204);
    }
    let scratch = app.create_room(&ann, "scratch", "public").await;
    app.delete(
        &format!("/api/rooms/{}", tenancy::id(&scratch)),
        Some(&ann.access),
    )
    .await
    .ok(204);

    let log = log_after(&app.api, &key, start).await;
    let types: HashSet<&str> = log.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.len(), 15, "every type: {types:?}");
    let wanted: HashSet<String> = log
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let got = receiver
        .wait_for(Duration::from_secs(20), |got| {
            per_id(got).len() >= wanted.len()
        })
        .await;
    // Once each (a healthy receiver is never sent one twice), and nothing else.
    let counts = per_id(&got);
    assert_eq!(counts.keys().cloned().collect::<HashSet<_>>(), wanted);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    // The library receivers use accepts every one, and each body is the log's event.
    let by_id: HashMap<&str, &Value> = log.iter().map(|e| (e["id"].as_str().unwrap(), e)).collect();
    for (g, verified) in got.iter().zip(verify_all(&secret, &got)) {
        let payload = verified.unwrap_or_else(|why| panic!("{} refused: {why}", g.id));
        let event = by_id[g.id.as_str()];
        assert_eq!(payload["id"], g.id);
        for field in ["type", "position", "workspace_id", "created_at"] {
            assert_eq!(payload[field], event[field], "{field}");
        }
    }
    // A wrong secret is refused by the same library.
    let wrong = format!("whsec_{}", STANDARD.encode([7u8; 32]));
    assert!(verify_all(&wrong, &got[..1])[0].is_err());

    // The deliveries, newest first, as the contract shapes them; every attempt is a row.
    let path = format!(
        "/api/server/webhooks/{}/deliveries",
        webhook["id"].as_str().unwrap()
    );
    let deliveries = app.server(Method::GET, &path, &key, None, None).await;
    let deliveries = deliveries.ok(200)["deliveries"].as_array().unwrap().clone();
    assert_eq!(deliveries.len(), wanted.len());
    for d in &deliveries {
        assert_eq!(d["status"], "delivered");
        assert_eq!(d["attempt"], 1);
        assert_eq!(d["response_status"], 204);
        assert!(d["latency_ms"].as_i64().unwrap() >= 0);
        assert!(d["error"].is_null());
        let mut keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "attempt",
                "created_at",
                "error",
                "event_id",
                "id",
                "latency_ms",
                "response_status",
                "status"
            ]
        );
    }
    let created: Vec<&str> = deliveries
        .iter()
        .map(|d| d["created_at"].as_str().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first");
    assert_eq!(app.count("webhook_attempts").await, wanted.len() as i64);
    let other: i64 = sqlx::query_scalar(
        "select count(*) from webhook_attempts
         where workspace_id <> '00000000-0000-0000-0000-000000000001'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(other, 0, "every attempt carries its delivery's workspace");
}

#[tokio::test]
async fn a_failing_receiver_gets_everything_once_it_recovers_and_holds_back_no_one() {
    let app = app().await;
    let key = workspace_key(&app.state, None).await;
    let failing = Receiver::start().await;
    failing.answer(Answer::Status(500));
    let healthy = Receiver::start().await;
    let redirecting = Receiver::start().await;
    redirecting.answer(Answer::Redirect(healthy.url()));
    let (failing_hook, _) = register(&app.api, &key, &failing.url(), json!([])).await;
    register(&app.api, &key, &healthy.url(), json!(["message.created"])).await;
    let (redirect_hook, _) = register(
        &app.api,
        &key,
        &redirecting.url(),
        json!(["message.created"]),
    )
    .await;

    let ann = app.register("ann").await;
    let s = app.in_room(&ann, "general", WS).await;
    for n in 0..5 {
        ack_ok(
            &s.call(
                "sendMessage",
                json!({"room": "general", "body": format!("m{n}")}),
            )
            .await,
        );
    }
    // The healthy webhook gets its five while the other one fails.
    healthy
        .wait_for(Duration::from_secs(10), |got| got.len() == 5)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(failing.got().len() >= 6, "attempted, and retried");
    assert!(failing.delivered().is_empty());
    // The redirect was not followed: the healthy receiver got only its own five.
    assert_eq!(healthy.got().len(), 5);
    assert!(!redirecting.got().is_empty());

    failing.answer(Answer::Status(200));
    // user.created and the five messages.
    let got = failing
        .wait_for(Duration::from_secs(30), |got| per_id(got).len() == 6)
        .await;
    assert_eq!(
        got.iter()
            .filter(|g| g.event()["type"] == "message.created")
            .count(),
        5
    );
    let path = format!(
        "/api/server/webhooks/{}/deliveries",
        failing_hook["id"].as_str().unwrap()
    );
    let reply = app.server(Method::GET, &path, &key, None, None).await;
    let deliveries = reply.ok(200)["deliveries"].as_array().unwrap().clone();
    assert_eq!(deliveries.len(), 6);
    for d in &deliveries {
        assert_eq!(d["status"], "delivered");
        assert!(d["attempt"].as_i64().unwrap() >= 2, "{d}");
    }
    // Every attempt was written down: the failures with their status and why.
    let failures: i64 = sqlx::query_scalar(
        "select count(*) from webhook_attempts where response_status = 500 and error like '%500%'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(failures >= 6);
    let path = format!(
        "/api/server/webhooks/{}/deliveries",
        redirect_hook["id"].as_str().unwrap()
    );
    let reply = app.server(Method::GET, &path, &key, None, None).await;
    for d in reply.ok(200)["deliveries"].as_array().unwrap() {
        assert_eq!(d["status"], "pending");
        assert_eq!(d["response_status"], 302);
    }
}

#[tokio::test]
async fn webhooks_are_registered_changed_and_removed_within_their_workspace() {
    // No WEBHOOK_ALLOW_PRIVATE here: internal addresses are refused.
    let app = spawn_app().await;
    let key = workspace_key(&app.state, None).await;
    let post = |body: Value| {
        let api = app.api.clone();
        let key = key.clone();
        async move {
            api.server(Method::POST, "/api/server/webhooks", &key, None, Some(body))
                .await
        }
    };
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "ftp://93.184.216.34/hook",
        "not a url",
        "http://user:pw@93.184.216.34/hook",
    ] {
        post(json!({ "url": url }))
            .await
            .error(400, "invalid_input");
    }
    post(json!({"url": "http://93.184.216.34/hook", "events": ["message.sent"]}))
        .await
        .error(400, "invalid_input");
    post(json!({"events": []}))
        .await
        .error(400, "invalid_input");
    let reply = post(json!({"url": "http://93.184.216.34/hook",
                            "events": ["message.created", "room.deleted"],
                            "description": "crm sync"}))
    .await;
    let hook = reply.ok(201)["webhook"].clone();
    let id = hook["id"].as_str().unwrap().to_owned();
    assert_eq!(hook["events"], json!(["message.created", "room.deleted"]));
    let list = app
        .server(Method::GET, "/api/server/webhooks", &key, None, None)
        .await;
    assert_eq!(list.ok(200)["webhooks"][0]["id"], id.as_str());
    assert!(list.ok(200)["webhooks"][0].get("secret").is_none());

    let path = format!("/api/server/webhooks/{id}");
    let patched = app
        .server(
            Method::PATCH,
            &path,
            &key,
            None,
            Some(json!({"active": false, "events": []})),
        )
        .await;
    assert_eq!(patched.ok(200)["active"], false);
    assert_eq!(patched.ok(200)["events"], json!([]));
    assert_eq!(patched.ok(200)["url"], "http://93.184.216.34/hook");
    app.server(
        Method::PATCH,
        &path,
        &key,
        None,
        Some(json!({"url": "http://127.0.0.1/x"})),
    )
    .await
    .error(400, "invalid_input");

    // Another workspace's key sees none of it.
    let other = Uuid::new_v4();
    sqlx::query("insert into workspaces (id, slug, name) values ($1, 'other', 'Other')")
        .bind(other)
        .execute(&app.db)
        .await
        .unwrap();
    let other_key = insert_key(&app.db, Some(other)).await;
    let theirs = app
        .server(Method::GET, "/api/server/webhooks", &other_key, None, None)
        .await;
    assert_eq!(theirs.ok(200), &json!({"webhooks": []}));
    for method in [Method::PATCH, Method::DELETE] {
        app.server(method, &path, &other_key, None, Some(json!({})))
            .await
            .error(404, "not_found");
    }
    app.server(
        Method::GET,
        &format!("{path}/deliveries"),
        &other_key,
        None,
        None,
    )
    .await
    .error(404, "not_found");

    // Bodies of the wrong shape, and ids that are not ids.
    for body in [
        json!({"active": "yes"}),
        json!({"events": "message.created"}),
        json!({"url": 7}),
    ] {
        app.server(Method::PATCH, &path, &key, None, Some(body))
            .await
            .error(400, "invalid_input");
    }
    post(json!({"url": "http://93.184.216.34/hook", "description": "d".repeat(257)}))
        .await
        .error(400, "invalid_input");
    for (method, bad) in [
        (Method::PATCH, "/api/server/webhooks/nope"),
        (Method::DELETE, "/api/server/webhooks/nope"),
        (Method::GET, "/api/server/webhooks/nope/deliveries"),
    ] {
        app.server(method, bad, &key, None, Some(json!({})))
            .await
            .error(404, "not_found");
    }

    app.server(Method::DELETE, &path, &key, None, None)
        .await
        .ok(204);
    app.server(Method::DELETE, &path, &key, None, None)
        .await
        .error(404, "not_found");
}

#[tokio::test]
async fn a_host_that_resolves_to_an_internal_address_is_never_delivered_to() {
    let app = spawn_app_with(&[("WEBHOOK_RETRY_BASE_MS", "100")]).await;
    let key = workspace_key(&app.state, None).await;
    let receiver = Receiver::start().await;
    // As if the name had resolved elsewhere at registration and to 127.0.0.1 now.
    let url = format!("http://localhost:{}/hooks", receiver.addr.port());
    let hook = Uuid::new_v4();
    sqlx::query(
        "insert into webhooks (id, workspace_id, url, secret, event_cursor)
         values ($1, '00000000-0000-0000-0000-000000000001', $2, '\\x00', 0)",
    )
    .bind(hook)
    .bind(&url)
    .execute(&app.db)
    .await
    .unwrap();
    app.register("ann").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let error = loop {
        let error: Option<String> = sqlx::query_scalar(
            "select error from webhook_attempts a join webhook_deliveries d on d.id = a.delivery_id
             where d.webhook_id = $1 limit 1",
        )
        .bind(hook)
        .fetch_optional(&app.db)
        .await
        .unwrap()
        .flatten();
        if let Some(error) = error {
            break error;
        }
        assert!(std::time::Instant::now() < deadline, "no attempt was made");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        error.contains("refused") || error.contains("address"),
        "{error}"
    );
    assert!(receiver.got().is_empty());
    let _ = key;
}

#[tokio::test]
async fn a_receiver_down_while_the_node_is_killed_gets_everything_after_the_restart() {
    let db_name = format!("huddle_test_{}", Uuid::new_v4().simple());
    let database_url = format!("{}/{db_name}", postgres_server_url());
    let env = [
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ("WEBHOOK_RETRY_BASE_MS", "200"),
    ];
    let mut node = Node::spawn(&database_url, None, &env);
    wait_ready(&node).await;
    let db = sqlx::PgPool::connect(&database_url).await.unwrap();
    let key = insert_key(&db, Some(Uuid::from_u128(1))).await;
    let mut receiver = Receiver::start().await;
    let start = last_position(&node.api, &key).await;
    register(&node.api, &key, &receiver.url(), json!([])).await;
    receiver.down();

    let ann = node.register("ann").await;
    let s = node.in_room(&ann, "general", WS).await;
    for n in 0..20 {
        ack_ok(
            &s.call(
                "sendMessage",
                json!({"room": "general", "body": format!("m{n}")}),
            )
            .await,
        );
    }
    drop(s);
    // Attempts are failing against the closed port; then the node dies mid-flight.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let attempted: i64 = sqlx::query_scalar("select count(*) from webhook_attempts")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(
        attempted > 0,
        "the worker tried while the receiver was down"
    );
    node.kill();

    let node = Node::spawn(&database_url, None, &env);
    wait_ready(&node).await;
    receiver.up().await;
    let wanted: HashSet<String> = log_after(&node.api, &key, start)
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(wanted.len(), 21, "user.created and 20 messages");
    // The killed node's stream lock went with its database session: the new node streams
    // from the cursor at once, and retries the deliveries its predecessor wrote down.
    let got = receiver
        .wait_for(Duration::from_secs(120), |got| {
            per_id(got).keys().filter(|id| wanted.contains(*id)).count() == wanted.len()
        })
        .await;
    assert!(per_id(&got).keys().all(|id| wanted.contains(id)));
    drop(node);
    db.close().await;
    drop_database(db_name);
}

#[tokio::test]
async fn a_paused_webhook_gets_nothing_until_it_is_active_again_then_catches_up() {
    let app = app().await;
    let key = workspace_key(&app.state, None).await;
    let receiver = Receiver::start().await;
    let (hook, _) = register(&app.api, &key, &receiver.url(), json!(["message.created"])).await;
    let path = format!("/api/server/webhooks/{}", hook["id"].as_str().unwrap());
    let set_active = |active: bool| {
        let api = app.api.clone();
        let key = key.clone();
        let path = path.clone();
        async move {
            api.server(
                Method::PATCH,
                &path,
                &key,
                None,
                Some(json!({ "active": active })),
            )
            .await
            .ok(200)
            .clone()
        }
    };
    let ann = app.register("ann").await;
    let s = app.in_room(&ann, "general", WS).await;
    ack_ok(
        &s.call("sendMessage", json!({"room": "general", "body": "before"}))
            .await,
    );
    receiver
        .wait_for(Duration::from_secs(10), |got| got.len() == 1)
        .await;
    assert_eq!(set_active(false).await["active"], false);
    for body in ["paused 1", "paused 2"] {
        ack_ok(
            &s.call("sendMessage", json!({"room": "general", "body": body}))
                .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.got().len(), 1, "nothing while paused");
    set_active(true).await;
    let got = receiver
        .wait_for(Duration::from_secs(10), |got| got.len() == 3)
        .await;
    let bodies: HashSet<String> = got
        .iter()
        .map(|g| {
            g.event()["data"]["message"]["body"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(bodies.contains("paused 1") && bodies.contains("paused 2"));
}

#[tokio::test]
async fn three_nodes_deliver_each_event_once_from_whichever_node_committed_it() {
    let prefix = format!("huddle-test-{}", Uuid::new_v4().simple());
    let cluster = TestCluster::start_on_test_redis(
        3,
        &[("REDIS_PREFIX", &prefix), ("WEBHOOK_ALLOW_PRIVATE", "true")],
    )
    .await;
    let key = insert_key(&cluster.db, Some(Uuid::from_u128(1))).await;
    let receiver = Receiver::start().await;
    let start = last_position(&cluster.node(0).api, &key).await;
    register(&cluster.node(0).api, &key, &receiver.url(), json!([])).await;
    let mut writers = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let user = node.register(&format!("writer{i}")).await;
        let socket = node.in_room(&user, "general", WS).await;
        writers.push(tokio::spawn(async move {
            for n in 0..40 {
                ack_ok(
                    &socket
                        .call(
                            "sendMessage",
                            json!({"room": "general", "body": format!("m{n}")}),
                        )
                        .await,
                );
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let wanted: HashSet<String> = log_after(&cluster.node(2).api, &key, start)
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(wanted.len(), 3 + 120, "three user.created and 120 messages");
    let got = receiver
        .wait_for(Duration::from_secs(30), |got| {
            per_id(got).keys().filter(|id| wanted.contains(*id)).count() == wanted.len()
        })
        .await;
    // Each webhook's stream runs on one node at a time: nothing was sent twice (nothing
    // failed, so nothing needed to be).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts = per_id(&receiver.got());
    assert_eq!(counts.len(), wanted.len());
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    assert_eq!(got.len(), wanted.len());
    let rows: i64 = sqlx::query_scalar(
        "select count(*) from webhook_deliveries where status = 'delivered' and attempts = 1",
    )
    .fetch_one(&cluster.db)
    .await
    .unwrap();
    assert_eq!(rows, wanted.len() as i64);
}

#[tokio::test]
async fn events_and_finished_deliveries_past_the_retention_are_deleted() {
    let app = spawn_app_with(&[
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ("WEBHOOK_RETRY_BASE_MS", "60000"),
        ("EVENT_RETENTION_DAYS", "1"),
    ])
    .await;
    let key = workspace_key(&app.state, None).await;
    let receiver = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.answer(Answer::Status(500));
    register(&app.api, &key, &receiver.url(), json!(["message.created"])).await;
    register(&app.api, &key, &failing.url(), json!(["message.created"])).await;
    let ann = app.register("ann").await;
    let s = app.in_room(&ann, "general", WS).await;
    ack_ok(
        &s.call("sendMessage", json!({"room": "general", "body": "old"}))
            .await,
    );
    receiver
        .wait_for(Duration::from_secs(10), |got| got.len() == 1)
        .await;
    // The failing one's first attempt written down too (pending, its retry a minute away).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.count("webhook_deliveries").await < 2 {
        assert!(std::time::Instant::now() < deadline, "deliveries written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two days pass for everything so far.
    for sql in [
        "update events set created_at = created_at - interval '2 days'",
        "update webhook_deliveries set created_at = created_at - interval '2 days'",
    ] {
        sqlx::query(sql).execute(&app.db).await.unwrap();
    }
    ack_ok(
        &s.call("sendMessage", json!({"room": "general", "body": "new"}))
            .await,
    );
    receiver
        .wait_for(Duration::from_secs(10), |got| got.len() == 2)
        .await;
    let recent = last_position(&app.api, &key).await;

    let events = huddle::housekeeping::purge_old_events(&app.state)
        .await
        .unwrap();
    assert!(events >= 2, "user.created and the old message.created");
    let deliveries = huddle::housekeeping::purge_old_deliveries(&app.state)
        .await
        .unwrap();
    assert_eq!(
        deliveries, 1,
        "the old delivered one; the pending one stays"
    );
    let left = log_after(&app.api, &key, 0).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["position"].as_i64().unwrap(), recent);
    let statuses: Vec<String> =
        sqlx::query_scalar("select status from webhook_deliveries order by created_at")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(statuses, ["pending", "delivered"]);
    // The old delivery's attempt went with it.
    let attempts: i64 = sqlx::query_scalar(
        "select count(*) from webhook_attempts a
         where not exists (select from webhook_deliveries d where d.id = a.delivery_id)",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(attempts, 0);
    assert_eq!(app.count("webhook_attempts").await, 2);
}
