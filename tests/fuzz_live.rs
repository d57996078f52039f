//! Fuzzing a live server: over both Socket.IO transports, 10,000 random and mutated packets
//! (events of the contract with payloads of every shape, broken packets, unknown packet types);
//! and random requests to every REST route. No panic, no 500, and the traffic of well-behaved
//! clients alongside goes through untouched.

mod common;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Once,
    },
    time::Duration,
};

use common::server::{platform_key, workspace_key};
use common::{
    sio::{ack_ok, SioClient, Transport},
    spawn_app, spawn_app_with, urlencode, TestApp,
};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};

/// Panics anywhere in this test binary (the server runs in it), counted.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

const EVENTS: [&str; 15] = [
    "joinRoom",
    "joinPrivateRoom",
    "leaveRoom",
    "sendMessage",
    "directMessage",
    "history",
    "markRead",
    "typing",
    "listOnline",
    "editMessage",
    "deleteMessage",
    "react",
    "connect",
    "disconnect",
    "",
];

fn random_json(rng: &mut StdRng, depth: u32) -> Value {
    match rng.gen_range(0..if depth > 2 { 7 } else { 9 }) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(rng.gen_range(-3..300)),
        4 => json!(rng.gen::<f64>() * 1e6),
        5 => json!(random_text(rng)),
        6 => json!(["general", "dm:x", "", "\u{0}", "🙂"].choose(rng).unwrap()),
        7 => Value::Array(
            (0..rng.gen_range(0..5))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let keys = [
                "room",
                "roomId",
                "since",
                "body",
                "client_id",
                "to",
                "before",
                "after",
                "limit",
                "seq",
                "typing",
                "id",
                "emoji",
                "on",
                "since_rev",
                "reply_to",
                "thread_root_id",
                "metadata",
                "x",
            ];
            let mut map = serde_json::Map::new();
            for _ in 0..rng.gen_range(0..6) {
                map.insert(
                    keys.choose(rng).unwrap().to_string(),
                    random_json(rng, depth + 1),
                );
            }
            Value::Object(map)
        }
    }
}

fn random_text(rng: &mut StdRng) -> String {
    let len = rng.gen_range(0..40);
    (0..len)
        .map(|_| match rng.gen_range(0..10) {
            0 => char::from_u32(rng.gen_range(0..0x20)).unwrap(),
            1 => char::from_u32(rng.gen_range(0x80..0x3000)).unwrap_or('?'),
            _ => rng.gen_range(b' '..=b'~') as char,
        })
        .collect()
}

/// One Engine.IO packet: mostly events of the contract with random payloads (some with an ack
/// id), the rest broken in every way a packet can be.
fn random_packet(rng: &mut StdRng) -> String {
    let event = EVENTS.choose(rng).unwrap();
    let mut args = vec![json!(event)];
    for _ in 0..rng.gen_range(0..3) {
        args.push(random_json(rng, 0));
    }
    let ack = if rng.gen_bool(0.5) {
        rng.gen_range(0..100_000).to_string()
    } else {
        String::new()
    };
    let valid = format!("42{ack}{}", Value::Array(args));
    match rng.gen_range(0..10) {
        0 => {
            // Truncated.
            let cut = rng.gen_range(0..valid.len());
            valid.chars().take(cut).collect()
        }
        1 => {
            // A few characters changed.
            let mut chars: Vec<char> = valid.chars().collect();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..chars.len());
                chars[i] = rng.gen_range(b' '..=b'~') as char;
            }
            chars.into_iter().collect()
        }
        2 => format!("{}{}", rng.gen_range(0..10), random_text(rng)),
        3 => format!("4{}{}", rng.gen_range(0..7), random_text(rng)),
        _ => valid,
    }
}

async fn fuzz_sockets(app: &TestApp, t: Transport, packets: usize, seed: u64) -> usize {
    let mallory = app.register(&format!("mallory{seed}")).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut socket = app.socket(&mallory.access, t).await;
    let mut reconnects = 0;
    for i in 0..packets {
        if !socket.is_connected() {
            // A broken packet may end the Engine.IO session; a fuzzer comes back.
            socket = app.socket(&mallory.access, t).await;
            reconnects += 1;
        }
        socket.send_raw(random_packet(&mut rng));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    reconnects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_random_socket_packets_break_nothing() {
    count_panics();
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let a = app.in_room(&ann, "general", Transport::WebSocket).await;
    let b = app.in_room(&bob, "general", Transport::Polling).await;

    let well_behaved = async {
        for i in 0..100 {
            let send = json!({"room": "general", "body": format!("ann {i}")});
            ack_ok(&a.call("sendMessage", send).await);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let fuzzing = async {
        let ws = fuzz_sockets(&app, Transport::WebSocket, 6_000, 1);
        let polling = fuzz_sockets(&app, Transport::Polling, 4_000, 2);
        tokio::join!(ws, polling)
    };
    let (_, (ws_reconnects, polling_reconnects)) = tokio::join!(well_behaved, fuzzing);
    eprintln!("fuzzer reconnects: websocket {ws_reconnects}, polling {polling_reconnects}");

    // Bob got all of ann's messages, in order, whatever else reached the room.
    for i in 0..100 {
        let body = format!("ann {i}");
        b.until("message", |m| {
            m["body"] == body && m["sender"]["username"] == "ann"
        })
        .await;
    }
    let after = SioClient::connect_token(&app.base, &bob.access, Transport::WebSocket).await;
    ack_ok(&after.call("joinRoom", json!("general")).await);
    app.get("/healthz", None).await.ok(200);
    app.get("/api/me", Some(&ann.access)).await.ok(200);
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a panic during fuzzing");
}

/// Random methods, paths, bodies, content types and query strings against every REST route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_to_every_route_get_contract_answers() {
    count_panics();
    // Signup open, so that its bodies are read past the door.
    let app = spawn_app_with(&[("WORKSPACE_SIGNUP", "open")]).await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let carl = app.register("carl").await;
    let room = app.create_room(&ann, "fuzzed", "private").await;
    let room_id = room["id"].as_str().unwrap().to_owned();
    app.seed_messages(&room, &ann, 3).await;
    let page = app
        .get(&format!("/api/rooms/{room_id}/messages"), Some(&ann.access))
        .await;
    let seeded: Vec<String> = page.ok(200)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    // Message ids (and things that are not), and emoji as a path carries them.
    let mids = [
        seeded[0].clone(),
        seeded[1].clone(),
        seeded[2].clone(),
        room_id.clone(),
        "not-a-uuid".into(),
    ];
    let emoji = ["%F0%9F%91%8D", "x", "%20", "%00", "a%0Ab", "%E2%80%AE"];
    // Mostly real ids, so that requests get past routing into the handlers.
    let ids = [
        room_id.clone(),
        room_id.clone(),
        bob.id.to_string(),
        ann.id.to_string(),
        "not-a-uuid".into(),
        "%00".into(),
    ];
    // Every route with the methods it has.
    let routes: [(&str, &[Method]); 35] = [
        ("/api/auth/register", &[Method::POST]),
        ("/api/workspace", &[Method::GET]),
        ("/api/workspaces", &[Method::POST]),
        ("/api/auth/login", &[Method::POST]),
        ("/api/auth/refresh", &[Method::POST]),
        ("/api/auth/logout", &[Method::POST]),
        ("/api/me", &[Method::GET, Method::PATCH]),
        ("/api/me/password", &[Method::POST]),
        ("/api/rooms", &[Method::GET, Method::POST]),
        ("/api/me/rooms", &[Method::GET]),
        (
            "/api/rooms/{id}",
            &[Method::GET, Method::PATCH, Method::DELETE],
        ),
        ("/api/rooms/{id}/members", &[Method::GET]),
        (
            "/api/rooms/{id}/members/{uid}",
            &[Method::PUT, Method::DELETE],
        ),
        ("/api/rooms/{id}/messages", &[Method::GET]),
        (
            "/api/rooms/{id}/messages/{mid}",
            &[Method::GET, Method::PATCH, Method::DELETE],
        ),
        (
            "/api/rooms/{id}/messages/{mid}/reactions/{emoji}",
            &[Method::PUT, Method::DELETE],
        ),
        ("/api/rooms/{id}/threads/{mid}/messages", &[Method::GET]),
        ("/api/rooms/{id}/changes", &[Method::GET]),
        ("/api/rooms/{id}/read", &[Method::PUT]),
        ("/api/direct/{uid}", &[Method::POST]),
        ("/api/admin/users/{uid}/disable", &[Method::POST]),
        ("/api/admin/users/{uid}/enable", &[Method::POST]),
        ("/api/admin/api-keys", &[Method::GET, Method::POST]),
        ("/api/admin/api-keys/{id}", &[Method::DELETE]),
        ("/api/server/workspaces", &[Method::GET, Method::POST]),
        ("/api/server/users/{ext}", &[Method::PUT]),
        ("/api/server/users/{ext}/sessions", &[Method::POST]),
        ("/api/server/users/{ext}/disable", &[Method::POST]),
        ("/api/server/users/{ext}/enable", &[Method::POST]),
        ("/api/server/rooms", &[Method::POST]),
        ("/api/server/rooms/{id}", &[Method::DELETE]),
        (
            "/api/server/rooms/{id}/members/{ext}",
            &[Method::PUT, Method::DELETE],
        ),
        ("/api/server/rooms/{id}/messages", &[Method::POST]),
        ("/readyz", &[Method::GET]),
        ("/nowhere", &[Method::GET]),
    ];
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    // The server API: keys of both kinds, a provisioned user, and external ids as paths carry
    // them (and things no external id can be).
    let key = workspace_key(&app.state, None).await;
    let platform = platform_key(&app.state).await;
    app.provision(
        &key,
        "ext-1",
        json!({"username": "bot-one", "is_bot": true}),
    )
    .await;
    let long_ext = "e".repeat(200);
    let exts = [
        "ext-1",
        "ext-1",
        "nobody",
        "%00",
        "a%0Ab",
        "%F0%9F%91%8D",
        long_ext.as_str(),
    ];
    let mut rng = StdRng::seed_from_u64(7);
    let mut answers = std::collections::BTreeMap::new();
    for _ in 0..1500 {
        let (route, its_methods) = routes.choose(&mut rng).unwrap();
        let mut path = route.replace("{id}", ids.choose(&mut rng).unwrap());
        path = path.replace("{uid}", ids.choose(&mut rng).unwrap());
        path = path.replace("{mid}", mids.choose(&mut rng).unwrap());
        path = path.replace("{emoji}", emoji.choose(&mut rng).unwrap());
        path = path.replace("{ext}", exts.choose(&mut rng).unwrap());
        if rng.gen_bool(0.3) {
            let cursor = ["before", "after", "after_rev"].choose(&mut rng).unwrap();
            path.push_str(&format!(
                "?{cursor}={}&limit={}",
                urlencode(&random_text(&mut rng)),
                rng.gen_range(-5..300)
            ));
        }
        let body = match rng.gen_range(0..4) {
            0 => random_json(&mut rng, 0).to_string(),
            1 => random_text(&mut rng),
            _ => {
                // A plausible body with one field of a wrong kind.
                let mut b = json!({"username": "x", "password": "password-1", "name": "r",
                    "visibility": "public", "topic": "t", "role": "member", "seq": 1,
                    "display_name": "d", "refresh_token": "r",
                    "current_password": "password-1", "new_password": "password-2",
                    "body": "edited", "metadata": {"k": 1}, "sender": "ext-1",
                    "owner": "ext-1", "members": [{"external_id": "ext-1", "role": "member"}],
                    "slug": "fuzzed-ws", "is_bot": true});
                let key = [
                    "username",
                    "password",
                    "name",
                    "visibility",
                    "topic",
                    "role",
                    "seq",
                    "display_name",
                    "body",
                    "metadata",
                    "sender",
                    "owner",
                    "members",
                    "slug",
                    "is_bot",
                ]
                .choose(&mut rng)
                .unwrap();
                b[*key] = random_json(&mut rng, 0);
                b.to_string()
            }
        };
        // Logging out (or changing the password) ends sessions: only carl's, so that ann's
        // and bob's tokens stay good for the rest of the run.
        let ends_sessions = route.ends_with("/logout") || route.ends_with("/password");
        let token = if ends_sessions {
            Some(carl.access.as_str())
        } else if route.starts_with("/api/server/") {
            let (k, p) = (Some(key.as_str()), Some(platform.as_str()));
            [k, k, k, p, Some(ann.access.as_str()), None, Some("hk_junk")]
                .choose(&mut rng)
                .copied()
                .flatten()
        } else {
            let (a, b) = (Some(ann.access.as_str()), Some(bob.access.as_str()));
            [a, a, a, b, b, None, Some("junk")]
                .choose(&mut rng)
                .copied()
                .flatten()
        };
        let method = if rng.gen_bool(0.9) {
            its_methods.choose(&mut rng).unwrap().clone()
        } else {
            methods.choose(&mut rng).unwrap().clone()
        };
        let mut req = app.client.request(method.clone(), app.url(&path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if rng.gen_bool(0.8) {
            req = req.header("content-type", "application/json");
        }
        if rng.gen_bool(0.1) {
            let slug = ["default", "fuzzed-ws", "nowhere", "%00", "NOT A SLUG"]
                .choose(&mut rng)
                .unwrap();
            req = req.header("Huddle-Workspace", *slug);
        }
        let res = req.body(body.clone()).send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        assert_ne!(status, 500, "{method} {path} {body}: {text}");
        if status >= 400 {
            let error: Value = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
            assert!(
                error["error"]["code"].is_string(),
                "{method} {path}: {text}"
            );
        }
        *answers.entry(status).or_insert(0) += 1;
    }
    eprintln!("statuses: {answers:?}");
    app.get("/healthz", None).await.ok(200);
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a panic during fuzzing");
}
