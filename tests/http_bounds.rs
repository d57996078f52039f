//! HTTP hardening (issue 11): header read and idle timeouts, security headers on every
//! response, and the paginated public room list.

mod common;

use std::time::Duration;

use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{timeout, Instant},
};

use common::{spawn_app, spawn_app_with};

/// Reads until the server closes the connection (or `within` passes); returns what was read
/// and whether it closed.
async fn read_until_closed(tcp: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into(), false),
        }
    }
}

/// A client that trickles its headers, one line every half second, never finishing them, is
/// cut off after `HTTP_HEADER_TIMEOUT`.
#[tokio::test]
async fn a_client_trickling_headers_is_cut_off() {
    let app = spawn_app_with(&[("HTTP_HEADER_TIMEOUT", "2")]).await;
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut cut = false;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if tcp
            .write_all(format!("X-Slow-{i}: still here\r\n").as_bytes())
            .await
            .is_err()
        {
            cut = true;
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(Ok(0)) = timeout(Duration::from_millis(1), tcp.read(&mut probe)).await {
            cut = true;
            break;
        }
    }
    assert!(
        cut,
        "the connection stayed open for {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A kept-alive connection that sits idle is closed after `HTTP_HEADER_TIMEOUT`.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = spawn_app_with(&[("HTTP_HEADER_TIMEOUT", "2")]).await;
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(closed, "the idle connection stayed open");
}

/// Every response carries the security headers; private ones are not cached; HSTS only when
/// configured.
#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let client = &app.client;
    let responses = vec![
        client.get(app.url("/healthz")).send().await.unwrap(),
        client.get(app.url("/api/rooms")).send().await.unwrap(),
        client.get(app.url("/no/such/route")).send().await.unwrap(),
        client
            .post(app.url("/api/auth/login"))
            .json(&json!({ "username": "alice", "password": "wrong-password" }))
            .send()
            .await
            .unwrap(),
        client
            .get(app.url("/api/me"))
            .bearer_auth(&alice.access)
            .send()
            .await
            .unwrap(),
        client
            .get(app.url("/socket.io/?EIO=4&transport=polling"))
            .send()
            .await
            .unwrap(),
    ];
    for res in &responses {
        let h = res.headers();
        let at = res.url().path();
        assert_eq!(h["x-content-type-options"], "nosniff", "{at}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{at}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{at}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{at}: {csp}");
        assert!(!h.contains_key("strict-transport-security"), "{at}");
    }
    assert_eq!(responses[3].headers()["cache-control"], "no-store");
    assert_eq!(responses[4].headers()["cache-control"], "no-store");
    assert!(!responses[1].headers().contains_key("cache-control"));

    let app = spawn_app_with(&[("HSTS_MAX_AGE", "31536000")]).await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000"
    );
}

/// `GET /api/rooms` pages by name: without parameters the first page in the v1 shape, `next`
/// when more remain, `after` to page on.
#[tokio::test]
async fn the_public_room_list_is_paginated() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    for i in 0..4 {
        app.create_room(&alice, &format!("room-{i}"), "public")
            .await;
    }
    app.create_room(&alice, "secret", "private").await;
    let token = Some(alice.access.as_str());
    let names = |page: &serde_json::Value| -> Vec<String> {
        page["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = app.get("/api/rooms", token).await;
    let all = all.ok(200);
    assert_eq!(
        names(all),
        ["general", "room-0", "room-1", "room-2", "room-3"]
    );
    assert!(all.get("next").is_none(), "{all}");

    let first = app.get("/api/rooms?limit=2", token).await;
    let first = first.ok(200);
    assert_eq!(names(first), ["general", "room-0"]);
    assert_eq!(first["next"], "room-0");
    let second = app.get("/api/rooms?limit=2&after=room-0", token).await;
    let second = second.ok(200);
    assert_eq!(names(second), ["room-1", "room-2"]);
    let last = app.get("/api/rooms?limit=2&after=room-2", token).await;
    let last = last.ok(200);
    assert_eq!(names(last), ["room-3"]);
    assert!(last.get("next").is_none());

    app.get("/api/rooms?limit=0", token)
        .await
        .error(400, "invalid_input");
    app.get("/api/rooms?limit=201", token)
        .await
        .error(400, "invalid_input");
}
