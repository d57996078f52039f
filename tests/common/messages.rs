//! Helpers for the messages v2 suites (edit, delete, threads, reactions, mentions, metadata, the
//! change feed): reading a room's state over REST, sending over a socket, and a client's view of
//! a room built from live events the way a correct client builds it (each field keeps the value
//! of the highest rev that set it), to compare with what the server stored.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    sio::{ack_ok, SioClient},
    urlencode, Api, Reply, Session,
};

/// A number field, panicking with the object when it is missing.
#[track_caller]
pub fn num(v: &Value, field: &str) -> i64 {
    v[field]
        .as_i64()
        .unwrap_or_else(|| panic!("no number {field} in {v}"))
}

/// A string field.
#[track_caller]
pub fn text(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field} in {v}"))
        .to_owned()
}

/// A user_ref of a session, as the server shows it (display_name defaults to the username).
pub fn user_ref(who: &Session) -> Value {
    json!({"id": who.id.to_string(), "username": who.username, "display_name": who.username})
}

/// A public room by name, or one of the caller's rooms by name.
pub async fn room_named(api: &Api, who: &Session, name: &str) -> Value {
    for path in ["/api/rooms", "/api/me/rooms"] {
        let reply = api.get(path, Some(&who.access)).await;
        if let Some(room) = reply.ok(200)["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
        {
            return room.clone();
        }
    }
    panic!("no room named {name} for {}", who.username)
}

/// The room object now (`GET /api/rooms/{id}`).
pub async fn room_now(api: &Api, who: &Session, room_id: &str) -> Value {
    api.get(&format!("/api/rooms/{room_id}"), Some(&who.access))
        .await
        .ok(200)
        .clone()
}

/// The room's `last_rev` now.
pub async fn last_rev(api: &Api, who: &Session, room_id: &str) -> i64 {
    num(&room_now(api, who, room_id).await, "last_rev")
}

/// `sendMessage` with this payload; asserts an ok ack and returns its message.
pub async fn send_json(s: &SioClient, payload: Value) -> Value {
    let ack = s.call("sendMessage", payload).await;
    ack_ok(&ack)["message"].clone()
}

/// `sendMessage` of a body; returns the acked message.
pub async fn send(s: &SioClient, room: &str, body: &str) -> Value {
    send_json(s, json!({"room": room, "body": body})).await
}

/// The next user message a socket receives (system notices such as welcomes skipped).
pub async fn next_user_message(s: &SioClient) -> Value {
    loop {
        let m = s.next("message").await;
        if m["kind"] != "system" {
            return m;
        }
    }
}

/// Every message of a room over REST, oldest first (paging with `after`).
pub async fn all_messages(api: &Api, who: &Session, room_id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = api
            .get(
                &format!("/api/rooms/{room_id}/messages?after={after}&limit=200"),
                Some(&who.access),
            )
            .await;
        let page = page.ok(200);
        let messages = page["messages"].as_array().unwrap();
        out.extend(messages.iter().cloned());
        if let Some(last) = messages.last() {
            after = num(last, "seq");
        }
        if page["has_more"] != true {
            return out;
        }
    }
}

/// One message as the history shows it to `who` now (by its seq).
pub async fn message_at(api: &Api, who: &Session, room_id: &str, seq: i64) -> Value {
    let page = api
        .get(
            &format!("/api/rooms/{room_id}/messages?after={}&limit=1", seq - 1),
            Some(&who.access),
        )
        .await;
    let m = page.ok(200)["messages"][0].clone();
    assert_eq!(m["seq"], seq, "no message {seq} in {}", page.body);
    m
}

/// `GET /api/rooms/{id}/changes?after_rev=..&limit=..` (either may be left out with None).
pub async fn changes(
    api: &Api,
    who: &Session,
    room_id: &str,
    after_rev: Option<&str>,
    limit: Option<&str>,
) -> Reply {
    let mut q = Vec::new();
    if let Some(a) = after_rev {
        q.push(format!("after_rev={a}"));
    }
    if let Some(l) = limit {
        q.push(format!("limit={l}"));
    }
    let path = format!("/api/rooms/{room_id}/changes?{}", q.join("&"));
    api.get(&path, Some(&who.access)).await
}

/// The revs of a page's messages, in its order.
pub fn revs(page: &Value) -> Vec<i64> {
    page["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages in {page}"))
        .iter()
        .map(|m| num(m, "rev"))
        .collect()
}

/// The path of one reaction of a message (the emoji percent-encoded, byte by byte).
pub fn reaction_path(room_id: &str, message_id: &str, emoji: &str) -> String {
    format!(
        "/api/rooms/{room_id}/messages/{message_id}/reactions/{}",
        urlencode(emoji)
    )
}

/// A message's reactions as emoji -> count, checking the "most used first" order on the way.
#[track_caller]
pub fn reactions(m: &Value) -> BTreeMap<String, i64> {
    let list = m["reactions"]
        .as_array()
        .unwrap_or_else(|| panic!("no reactions in {m}"));
    let counts: Vec<i64> = list.iter().map(|r| num(r, "count")).collect();
    assert!(
        counts.windows(2).all(|w| w[0] >= w[1]),
        "reactions most used first: {m}"
    );
    assert!(counts.iter().all(|c| *c > 0), "no zero counts: {m}");
    list.iter()
        .map(|r| (text(r, "emoji"), num(r, "count")))
        .collect()
}

/// A message's `my_reactions`, sorted (the order is not specified).
#[track_caller]
pub fn my_reactions(m: &Value) -> Vec<String> {
    let mut mine: Vec<String> = m["my_reactions"]
        .as_array()
        .unwrap_or_else(|| panic!("no my_reactions in {m}"))
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    mine.sort();
    mine
}

/// The ids of a message's `mentions`, sorted.
#[track_caller]
pub fn mention_ids(m: &Value) -> Vec<String> {
    let mut ids: Vec<String> = m["mentions"]
        .as_array()
        .unwrap_or_else(|| panic!("no mentions in {m}"))
        .iter()
        .map(|u| text(u, "id"))
        .collect();
    ids.sort();
    ids
}

/// Asserts the tombstone shape of a deleted message.
#[track_caller]
pub fn assert_tombstone(m: &Value) {
    assert_eq!(m["body"], "", "{m}");
    assert!(m["deleted_at"].is_string(), "deleted_at set: {m}");
    assert_eq!(m["reactions"], json!([]), "{m}");
    assert_eq!(m["mentions"], json!([]), "{m}");
    assert_eq!(m["metadata"], json!({}), "{m}");
}

/// How many rows of `messages` hold this text anywhere (body, metadata or any other column).
pub async fn message_rows_containing(db: &PgPool, needle: &str) -> i64 {
    sqlx::query_scalar("select count(*) from messages t where strpos(t::text, $1) > 0")
        .bind(needle)
        .fetch_one(db)
        .await
        .unwrap()
}

/// Reaction rows of one emoji on one message, in the database.
pub async fn db_reaction_count(db: &PgPool, message_id: &str, emoji: &str) -> i64 {
    let id: Uuid = message_id.parse().unwrap();
    sqlx::query_scalar("select count(*) from reactions where message_id = $1 and emoji = $2")
        .bind(id)
        .bind(emoji)
        .fetch_one(db)
        .await
        .unwrap()
}

/// A message's stored body and whether it is deleted, straight from the database.
pub async fn db_message(db: &PgPool, message_id: &str) -> (String, bool, i64) {
    let id: Uuid = message_id.parse().unwrap();
    sqlx::query_as("select body, deleted_at is not null, rev from messages where id = $1")
        .bind(id)
        .fetch_one(db)
        .await
        .unwrap()
}

/// Polls `cond` every 20 ms until it holds; panics after 10 s naming `what`.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if cond() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One message as a client knows it from events.
#[derive(Clone, Debug, Default)]
pub struct Known {
    pub seq: i64,
    /// The highest rev any event about this message carried.
    pub rev: i64,
    body_rev: i64,
    pub body: String,
    pub deleted: bool,
    /// emoji -> (rev that set it, count)
    reactions: BTreeMap<String, (i64, i64)>,
}

impl Known {
    /// The reactions with a count, as emoji -> count.
    pub fn reactions(&self) -> BTreeMap<String, i64> {
        self.reactions
            .iter()
            .filter(|(_, (_, c))| *c > 0)
            .map(|(e, (_, c))| (e.clone(), *c))
            .collect()
    }
}

/// A client's view of a room, built from events in any arrival order: each field takes the value
/// carried by the highest rev seen for it (full message states, `messageDeleted`, and `reaction`
/// events, whose counts are absolute).
#[derive(Debug, Default)]
pub struct View {
    pub messages: HashMap<String, Known>,
    /// The revs of `reaction` events, in arrival order.
    pub reaction_revs: Vec<i64>,
    /// Every event applied: (name, payload), by name in arrival order.
    pub log: Vec<(String, Value)>,
}

impl View {
    /// A full message state (from `message`, `messageUpdated`, a history or a page).
    pub fn apply_message(&mut self, m: &Value) {
        if m["kind"] == "system" {
            return;
        }
        let rev = num(m, "rev");
        let k = self.messages.entry(text(m, "id")).or_default();
        k.seq = num(m, "seq");
        k.rev = k.rev.max(rev);
        if rev > k.body_rev {
            k.body_rev = rev;
            k.body = text(m, "body");
            k.deleted = !m["deleted_at"].is_null();
        }
        let now: BTreeMap<String, i64> = m["reactions"]
            .as_array()
            .unwrap_or_else(|| panic!("no reactions in {m}"))
            .iter()
            .map(|r| (text(r, "emoji"), num(r, "count")))
            .collect();
        let known: Vec<String> = k.reactions.keys().cloned().collect();
        for emoji in known.iter().chain(now.keys()) {
            let entry = k.reactions.entry(emoji.clone()).or_insert((0, 0));
            if rev > entry.0 {
                *entry = (rev, now.get(emoji).copied().unwrap_or(0));
            }
        }
    }

    /// `messageDeleted` `{room, id, seq, rev}`.
    pub fn apply_deleted(&mut self, e: &Value) {
        let rev = num(e, "rev");
        let k = self.messages.entry(text(e, "id")).or_default();
        k.seq = num(e, "seq");
        k.rev = k.rev.max(rev);
        if rev > k.body_rev {
            k.body_rev = rev;
            k.body = String::new();
            k.deleted = true;
        }
        for entry in k.reactions.values_mut() {
            if rev > entry.0 {
                *entry = (rev, 0);
            }
        }
    }

    /// `reaction` `{room, message_id, seq, rev, emoji, user, on, count}`.
    pub fn apply_reaction(&mut self, e: &Value) {
        let rev = num(e, "rev");
        self.reaction_revs.push(rev);
        let k = self.messages.entry(text(e, "message_id")).or_default();
        k.seq = num(e, "seq");
        k.rev = k.rev.max(rev);
        let entry = k.reactions.entry(text(e, "emoji")).or_insert((0, 0));
        if rev > entry.0 {
            *entry = (rev, num(e, "count"));
        }
    }

    /// Takes every buffered change event of the socket (user messages, updates, deletions,
    /// reactions) and applies it. Returns how many were applied.
    pub fn pump(&mut self, s: &SioClient) -> usize {
        let mut n = 0;
        for m in s.drain("message") {
            if m["kind"] != "system" {
                self.apply_message(&m);
                self.log.push(("message".into(), m));
                n += 1;
            }
        }
        for e in s.drain("messageUpdated") {
            self.apply_message(&e["message"]);
            self.log.push(("messageUpdated".into(), e));
            n += 1;
        }
        for e in s.drain("messageDeleted") {
            self.apply_deleted(&e);
            self.log.push(("messageDeleted".into(), e));
            n += 1;
        }
        for e in s.drain("reaction") {
            self.apply_reaction(&e);
            self.log.push(("reaction".into(), e));
            n += 1;
        }
        n
    }

    /// Asserts this view of one message equals its stored state `m` (a history row).
    #[track_caller]
    pub fn assert_matches(&self, m: &Value, who: &str) {
        let id = text(m, "id");
        let k = self
            .messages
            .get(&id)
            .unwrap_or_else(|| panic!("{who} never heard of message {m}"));
        assert_eq!(k.rev, num(m, "rev"), "{who}'s rev of {m}");
        assert_eq!(k.body, text(m, "body"), "{who}'s body of {m}");
        assert_eq!(k.deleted, !m["deleted_at"].is_null(), "{who}: deleted? {m}");
        let stored: BTreeMap<String, i64> = m["reactions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (text(r, "emoji"), num(r, "count")))
            .collect();
        assert_eq!(k.reactions(), stored, "{who}'s reactions of {m}");
    }
}
