//! Tenancy helpers shared by the one-node and the three-node isolation suites: a user in a
//! named workspace, a fingerprint of every table, and the routes and events that name a room.

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Api, Session};

/// Registers `username` in the workspace with this slug.
pub async fn register_in(api: &Api, slug: &str, username: &str) -> Session {
    let password = format!("{username}-{slug}-password");
    let body = json!({"workspace": slug, "username": username, "password": password});
    let reply = api.post("/api/auth/register", None, body).await;
    let body = reply.ok(201);
    Session {
        id: body["user"]["id"].as_str().unwrap().parse().unwrap(),
        username: username.to_owned(),
        password,
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
    }
}

/// A JSON object's `id`.
pub fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// A checksum of every row of every table: equal before and after means nothing changed.
pub async fn fingerprint(db: &PgPool) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for table in [
        "workspaces",
        "users",
        "sessions",
        "rotated_refresh_tokens",
        "rooms",
        "room_members",
        "messages",
        "audit_log",
    ] {
        let (count, sum): (i64, Option<String>) = sqlx::query_as(&format!(
            "select count(*), md5(string_agg(t::text, '|' order by t::text)) from {table} t"
        ))
        .fetch_one(db)
        .await
        .unwrap();
        out.push((table.to_owned(), count, sum.unwrap_or_default()));
    }
    out
}

/// Every REST route that names a room by id.
pub fn room_routes(room_id: &str, user: Uuid) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, format!("/api/rooms/{room_id}"), None),
        (
            Method::PATCH,
            format!("/api/rooms/{room_id}"),
            Some(json!({"topic": "x"})),
        ),
        (Method::DELETE, format!("/api/rooms/{room_id}"), None),
        (Method::GET, format!("/api/rooms/{room_id}/members"), None),
        (
            Method::PUT,
            format!("/api/rooms/{room_id}/members/{user}"),
            Some(json!({"role": "member"})),
        ),
        (
            Method::PUT,
            format!("/api/rooms/{room_id}/members/{user}"),
            Some(json!({"role": "moderator"})),
        ),
        (
            Method::DELETE,
            format!("/api/rooms/{room_id}/members/{user}"),
            None,
        ),
        (Method::GET, format!("/api/rooms/{room_id}/messages"), None),
        (
            Method::GET,
            format!("/api/rooms/{room_id}/messages?after=0"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/rooms/{room_id}/read"),
            Some(json!({"seq": 1})),
        ),
    ]
}

/// The socket events that name a room, with `room` (an id or a name) in each payload.
pub fn room_events(room: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("joinRoom", json!(room)),
        ("joinRoom", json!({"room": room})),
        ("joinRoom", json!({"room": room, "since": 0})),
        ("joinPrivateRoom", json!({"roomId": room})),
        ("leaveRoom", json!({"room": room})),
        ("sendMessage", json!({"room": room, "body": "hello"})),
        ("history", json!({"room": room})),
        ("history", json!({"room": room, "after": 0})),
        ("markRead", json!({"room": room, "seq": 1})),
        ("typing", json!({"room": room, "typing": true})),
        ("listOnline", json!({"room": room})),
    ]
}

/// Every REST route that names a user by id, from inside the caller's own room `own_room`.
pub fn user_routes(own_room: &str, user: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (
            Method::PUT,
            format!("/api/rooms/{own_room}/members/{user}"),
            Some(json!({"role": "member"})),
        ),
        (
            Method::PUT,
            format!("/api/rooms/{own_room}/members/{user}"),
            Some(json!({"role": "moderator"})),
        ),
        (
            Method::DELETE,
            format!("/api/rooms/{own_room}/members/{user}"),
            None,
        ),
        (Method::POST, format!("/api/direct/{user}"), Some(json!({}))),
        (
            Method::POST,
            format!("/api/admin/users/{user}/disable"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/api/admin/users/{user}/enable"),
            Some(json!({})),
        ),
    ]
}

/// A request a suite makes: method, path and body.
pub type Route = (Method, String, Option<Value>);

/// Sends each route of `asked` (naming another workspace's object) and its counterpart in
/// `control` (the same route naming an id nothing has) through `api` as `token`, and checks
/// that each pair gets the same `404`, body and all: the other workspace's object is exactly an
/// unknown one.
pub async fn assert_like_unknown(api: &Api, token: &str, asked: Vec<Route>, control: Vec<Route>) {
    for ((method, path, body), (_, control_path, control_body)) in asked.into_iter().zip(control) {
        let got = api.request(method.clone(), &path, Some(token), body).await;
        let want = api
            .request(method.clone(), &control_path, Some(token), control_body)
            .await;
        assert_eq!(got.status, want.status, "{method} {path}: {}", got.body);
        assert_eq!(got.body, want.body, "{method} {path}");
        assert_eq!(got.status.as_u16(), 404, "{method} {path}");
    }
}
