//! Resource bounds (issue 11): what one client can make the server hold, and the per-user
//! quotas on sockets, rooms and room events.

mod common;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
use uuid::Uuid;

use common::{
    cluster::TestCluster,
    sio::{ack_error, ack_ok, Auth, SioClient, Transport},
    spawn_app, spawn_app_with,
};

/// The pid of the spawned node listening on `port` (found by its environment).
fn pid_of_node(port: u16) -> u32 {
    let wanted = format!("PORT={port}");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes()) {
            return pid;
        }
    }
    panic!("no process with {wanted}");
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A client that asks for 1000 large history pages and never reads the answers is
/// disconnected, and the server's memory stays bounded meanwhile (before the fix the server
/// queued up to 1024 pages of over 3 MiB each for it; now pages stop at 256 KiB and come no
/// faster than the room-event rate).
#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_and_costs_bounded_memory() {
    let cluster = TestCluster::start_on_test_redis(1, &[]).await;
    let node = cluster.node(0);
    let alice = node.register("alice").await;
    let rooms = node.get("/api/rooms", Some(&alice.access)).await;
    let general = rooms.ok(200)["rooms"][0].clone();
    let room_id: Uuid = general["id"].as_str().unwrap().parse().unwrap();
    // 200 messages of 4000 four-byte characters: 3.2 MB of bodies in one unbounded page.
    let body = "\u{1F600}".repeat(4000);
    let batch: Vec<_> = (0..200)
        .map(|_| huddle::store::messages::NewMessage {
            id: Uuid::now_v7(),
            room_id,
            sender_id: alice.id,
            body: body.clone(),
            ..Default::default()
        })
        .collect();
    huddle::store::messages::insert_batch(
        &cluster.db,
        &batch,
        huddle::store::messages::Log::InStatement,
    )
    .await
    .unwrap();

    let pid = pid_of_node(node.port);
    let before = rss_kib(pid);

    // A raw websocket with a small receive buffer, so the kernel holds little for it.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket
        .connect(format!("127.0.0.1:{}", node.port).parse().unwrap())
        .await
        .unwrap();
    let url = format!(
        "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket",
        node.port
    );
    let (mut ws, _) = tokio_tungstenite::client_async(url.into_client_request().unwrap(), stream)
        .await
        .unwrap();
    let open = ws.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with('0'), "{open:?}");
    ws.send(Message::text(format!(
        "40{}",
        json!({ "token": alice.access })
    )))
    .await
    .unwrap();
    loop {
        let msg = timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if msg.to_text().unwrap_or_default().starts_with("40") {
            break;
        }
    }
    for id in 0..1000 {
        let ask = json!(["history", { "room": "general", "limit": 200 }]);
        ws.send(Message::text(format!("42{id}{ask}")))
            .await
            .unwrap();
    }

    // Not reading for 35 s (past the heartbeat that closes a socket whose queue is full),
    // watching the server's memory.
    let mut peak = before;
    let deadline = Instant::now() + Duration::from_secs(35);
    while Instant::now() < deadline {
        peak = peak.max(rss_kib(pid));
        assert!(
            peak < before + 200 * 1024,
            "the server grew from {before} KiB to {peak} KiB for one client that does not read"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Reading again: whatever was queued arrives, then the connection ends (the client never
    // answered a ping).
    let mut answered = 0;
    let ended = timeout(Duration::from_secs(30), async {
        while let Some(Ok(msg)) = ws.next().await {
            match msg {
                Message::Text(text) if text.starts_with("43") => answered += 1,
                Message::Close(_) => break,
                _ => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection stayed open");
    eprintln!("memory: {before} KiB before, peak {peak} KiB; {answered} acks read");
}

/// A socket whose outgoing queue fills (it stopped reading while its room is busy) is
/// disconnected as a slow consumer instead of silently missing messages.
#[tokio::test]
async fn a_socket_that_falls_behind_is_disconnected() {
    let app = spawn_app_with(&[]).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let sender = app.in_room(&alice, "general", Transport::WebSocket).await;

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.addr).await.unwrap();
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr);
    let (mut ws, _) = tokio_tungstenite::client_async(url.into_client_request().unwrap(), stream)
        .await
        .unwrap();
    ws.next().await.unwrap().unwrap();
    ws.send(Message::text(format!(
        "40{}",
        json!({ "token": bob.access })
    )))
    .await
    .unwrap();
    // As socket.io-client does, the first event waits for the namespace's CONNECT answer.
    loop {
        let msg = ws.next().await.unwrap().unwrap();
        if msg.to_text().unwrap_or_default().starts_with("40") {
            break;
        }
    }
    ws.send(Message::text(format!(
        "420{}",
        json!(["joinRoom", "general"])
    )))
    .await
    .unwrap();
    loop {
        let msg = ws.next().await.unwrap().unwrap();
        if msg.to_text().unwrap_or_default().starts_with("430") {
            break;
        }
    }
    // Bob stops reading; the room gets more messages than his queue holds. How many that takes
    // depends on the kernel too: besides the 1,024 packets of his queue, the server's send
    // buffer (autotuned up to `net.ipv4.tcp_wmem`'s max, 4 MiB here: about 256 of these
    // 16 KiB messages) takes some before the queue starts to fill. So the room gets messages
    // until the overflow is counted, at most 4,000 of them.
    let body = "\u{1F600}".repeat(4000);
    let slow = |text: &str| text.contains("huddle_slow_consumers_total 1\n");
    let metrics = || async {
        let response = app.client.get(app.url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    };
    let mut sent = 0;
    let mut text = String::new();
    while sent < 4000 {
        for _ in 0..100 {
            ack_ok(
                &sender
                    .call("sendMessage", json!({ "room": "general", "body": body }))
                    .await,
            );
        }
        sent += 100;
        if sent >= 1200 {
            // Delivery follows the acks on a task of its own: the overflow may come a moment
            // after the last ack.
            tokio::time::sleep(Duration::from_millis(200)).await;
            text = metrics().await;
            if slow(&text) {
                break;
            }
        }
    }
    assert!(
        slow(&text),
        "slow consumer not counted after {sent} messages: {text}"
    );
    // Bob's socket is no longer in the room: what he reads now ends before the last messages.
    let mut delivered = 0;
    let _ = timeout(Duration::from_secs(40), async {
        while let Some(Ok(msg)) = ws.next().await {
            match msg {
                Message::Text(text) if text.starts_with("42[\"message\"") => delivered += 1,
                Message::Close(_) => break,
                _ => {}
            }
        }
    })
    .await;
    eprintln!("disconnected after {sent} messages, {delivered} of them read");
    assert!(
        delivered < sent,
        "all {delivered} of {sent} messages were delivered"
    );
}

/// A history page and a join replay stop at `PAGE_BYTES` of bodies, with `has_more`.
#[tokio::test]
async fn a_history_page_is_bounded_in_bytes() {
    let app = spawn_app_with(&[("HISTORY_LIMIT", "200")]).await;
    let alice = app.register("alice").await;
    let room = app.create_room(&alice, "big", "public").await;
    let room_id: Uuid = room["id"].as_str().unwrap().parse().unwrap();
    let body = "\u{1F600}".repeat(4000);
    let batch: Vec<_> = (0..100)
        .map(|_| huddle::store::messages::NewMessage {
            id: Uuid::now_v7(),
            room_id,
            sender_id: alice.id,
            body: body.clone(),
            ..Default::default()
        })
        .collect();
    huddle::store::messages::insert_batch(
        &app.db,
        &batch,
        huddle::store::messages::Log::InStatement,
    )
    .await
    .unwrap();
    let page = app
        .get(
            &format!("/api/rooms/{room_id}/messages?limit=200"),
            Some(&alice.access),
        )
        .await;
    let page = page.ok(200);
    let seqs = common::seqs(page);
    // 16 000 bytes each: 16 fit in 256 KiB; the newest ones, ending at seq 100.
    assert_eq!(seqs.len(), 16, "{seqs:?}");
    assert_eq!(seqs.last(), Some(&100));
    assert_eq!(page["has_more"], true);
    let forward = app
        .get(
            &format!("/api/rooms/{room_id}/messages?after=0&limit=200"),
            Some(&alice.access),
        )
        .await;
    let forward = forward.ok(200);
    assert_eq!(common::seqs(forward), (1..=16).collect::<Vec<_>>());
    assert_eq!(forward["has_more"], true);

    let socket = app.socket(&alice.access, Transport::WebSocket).await;
    ack_ok(&socket.call("joinRoom", json!("big")).await);
    let replay = socket.next("history").await;
    assert_eq!(replay["messages"].as_array().unwrap().len(), 16);
    assert_eq!(replay["has_more"], true);
}

/// 1000 join/leave pairs from one user are rate limited; the others in the room hear a bounded
/// number of notices.
#[tokio::test]
async fn join_and_leave_floods_are_rate_limited() {
    let app = spawn_app_with(&[]).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let watcher = app.in_room(&bob, "general", Transport::WebSocket).await;
    watcher.drain("message");
    watcher.drain("presence");
    let flooder = app.socket(&alice.access, Transport::WebSocket).await;
    let mut limited = 0;
    for _ in 0..1000 {
        for event in ["joinRoom", "leaveRoom"] {
            let ack = flooder.call(event, json!("general")).await;
            if ack["ok"] == false {
                let code = ack["error"]["code"].as_str().unwrap_or_default().to_owned();
                assert!(
                    code == "rate_limited" || code == "not_joined",
                    "unexpected refusal: {ack}"
                );
                if code == "rate_limited" {
                    limited += 1;
                }
            }
        }
    }
    assert!(limited > 1000, "only {limited} of 2000 events were limited");
    // history and listOnline draw from the same bucket, still empty.
    for event in ["history", "listOnline"] {
        let mut refused = 0;
        for _ in 0..20 {
            let ack = flooder.call(event, json!({ "room": "general" })).await;
            if ack["ok"] == false {
                ack_error(&ack, "rate_limited");
                refused += 1;
            }
        }
        assert!(refused > 0, "{event} was never limited");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let notices = watcher.drain("message").len() + watcher.drain("presence").len();
    assert!(
        notices < 400,
        "the room heard {notices} notices from one user's flood"
    );
}

/// A direct room of two other users answers a socket exactly as a room that does not exist.
#[tokio::test]
async fn someone_elses_direct_room_looks_like_no_room() {
    let app = spawn_app_with(&[]).await;
    let alice = app.register("alice").await;
    app.register("bob").await;
    let eve = app.register("eve").await;
    let a = app.socket(&alice.access, Transport::WebSocket).await;
    let sent = a
        .call("directMessage", json!({ "to": "bob", "body": "hi" }))
        .await;
    let room = ack_ok(&sent)["room"].clone();
    let dm_name = room["name"].as_str().unwrap().to_owned();
    let dm_id = room["id"].as_str().unwrap().to_owned();

    let e = app.socket(&eve.access, Transport::WebSocket).await;
    let unknown = format!("dm:{}-{}", Uuid::now_v7(), Uuid::now_v7());
    let mut answers = Vec::new();
    for asked in [unknown.as_str(), dm_name.as_str(), dm_id.as_str()] {
        let ack = e.call("joinRoom", json!(asked)).await;
        let error = ack_error(&ack, "not_found").clone();
        let event = e.next("error").await;
        answers.push((error, event["code"].clone(), event["message"].clone()));
        let ack = e.call("history", json!({ "room": asked })).await;
        ack_error(&ack, "not_found");
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
    assert_eq!(answers[0].0["message"], "Room not found.");
}

/// The socket after `MAX_SOCKETS_PER_USER` is refused at the handshake.
#[tokio::test]
async fn a_users_sockets_are_capped() {
    let app = spawn_app_with(&[("MAX_SOCKETS_PER_USER", "3")]).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(app.socket(&alice.access, Transport::WebSocket).await);
    }
    let refused = SioClient::connect(&app.base, Auth::Token(&alice.access), Transport::Polling)
        .await
        .err();
    assert_eq!(refused.as_deref(), Some("too_many_connections"));
    // Others are not affected, and a closed socket frees its place.
    let _bob = app.socket(&bob.access, Transport::WebSocket).await;
    let first = open.remove(0);
    first.disconnect().await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _again = app.socket(&alice.access, Transport::WebSocket).await;
}

/// The default cap is 20.
#[tokio::test]
async fn the_twenty_first_socket_is_refused() {
    let app = spawn_app_with(&[]).await;
    let alice = app.register("alice").await;
    let mut open = Vec::new();
    for _ in 0..20 {
        open.push(app.socket(&alice.access, Transport::WebSocket).await);
    }
    let refused = SioClient::connect(&app.base, Auth::Token(&alice.access), Transport::WebSocket)
        .await
        .err();
    assert_eq!(refused.as_deref(), Some("too_many_connections"));
}

/// An Engine.IO session that never sends its Socket.IO CONNECT is closed within seconds.
#[tokio::test]
async fn a_session_without_connect_is_closed() {
    let app = spawn_app_with(&[]).await;
    let client = &app.client;
    let open = client
        .get(app.url("/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let open: Value = serde_json::from_str(open.trim_start_matches('0')).unwrap();
    let sid = open["sid"].as_str().unwrap();
    let started = Instant::now();
    // Long-polls until the server ends the session (a close packet, or an unknown sid).
    loop {
        let res = client
            .get(app.url(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}")))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        if !status.is_success() || text.contains('1') {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the session stayed open"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "closed only after {:?}",
        started.elapsed()
    );
}

/// A socket may be in `MAX_ROOMS_PER_SOCKET` rooms at once.
#[tokio::test]
async fn rooms_per_socket_are_capped() {
    let app = spawn_app_with(&[("MAX_ROOMS_PER_SOCKET", "2")]).await;
    let alice = app.register("alice").await;
    app.create_room(&alice, "one", "public").await;
    app.create_room(&alice, "two", "public").await;
    let s = app.socket(&alice.access, Transport::WebSocket).await;
    ack_ok(&s.call("joinRoom", json!("one")).await);
    ack_ok(&s.call("joinRoom", json!("two")).await);
    ack_error(&s.call("joinRoom", json!("general")).await, "invalid_input");
    ack_ok(&s.call("leaveRoom", json!("one")).await);
    ack_ok(&s.call("joinRoom", json!("general")).await);
}

/// Rooms created per user per hour are bounded (429 with retry-after).
#[tokio::test]
async fn room_creation_is_bounded_per_hour() {
    let app = spawn_app_with(&[("ROOMS_PER_HOUR", "2")]).await;
    let alice = app.register("alice").await;
    app.create_room(&alice, "one", "public").await;
    app.create_room(&alice, "two", "private").await;
    let res = app
        .client
        .post(app.url("/api/rooms"))
        .bearer_auth(&alice.access)
        .json(&json!({ "name": "three", "visibility": "public" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    // Direct rooms count too; an existing direct room is not a new one.
    let bob = app.register("bob").await;
    app.register("carol").await;
    let s = app.socket(&bob.access, Transport::WebSocket).await;
    ack_ok(
        &s.call("directMessage", json!({ "to": "carol", "body": "1" }))
            .await,
    );
    ack_ok(
        &s.call("directMessage", json!({ "to": "alice", "body": "2" }))
            .await,
    );
    ack_ok(
        &s.call("directMessage", json!({ "to": "carol", "body": "3" }))
            .await,
    );
    app.register("dave").await;
    ack_error(
        &s.call("directMessage", json!({ "to": "dave", "body": "4" }))
            .await,
        "rate_limited",
    );
}

/// An incoming Socket.IO packet over 64 KiB ends the (websocket) connection, though it
/// is far under `MAX_BODY_BYTES`.
#[tokio::test]
async fn incoming_socket_packets_are_capped_at_64_kib() {
    let app = spawn_app_with(&[]).await;
    let alice = app.register("alice").await;
    let s = app.in_room(&alice, "general", Transport::WebSocket).await;
    s.emit(
        "sendMessage",
        json!({ "room": "general", "body": "x".repeat(100 * 1024) }),
    )
    .await;
    s.wait_disconnected().await;

    let s = app.in_room(&alice, "general", Transport::WebSocket).await;
    let ack = s
        .call(
            "sendMessage",
            json!({ "room": "general", "body": "x".repeat(4000) }),
        )
        .await;
    ack_ok(&ack);
}

/// A loop probing a private room is refused every time, but only a few of its refusals per
/// minute (per user, room and action) reach the audit log, which would otherwise grow without
/// bound.
#[tokio::test]
async fn refusals_reach_the_audit_log_a_few_times_a_minute() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let prober = app.register("prober").await;
    let room = app.create_room(&owner, "secret", "private").await;
    let path = format!("/api/rooms/{}", room["id"].as_str().unwrap());
    for _ in 0..50 {
        app.get(&path, Some(&prober.access))
            .await
            .error(404, "not_found");
    }
    assert_eq!(
        app.audits("access_denied").await,
        i64::from(huddle::quotas::AUDITED_DENIALS_PER_MINUTE)
    );
}
