//! The Socket.IO wire contract as types: what clients send (parsed by `crate::decode`, as REST
//! bodies are, so a bad field gets the same `fields` detail on both transports), what the server
//! emits, and the one acknowledgement shape.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    error::{AppResult, ErrorBody},
    messages::Outgoing,
    rooms::Removal,
    store::{
        messages::{History, Message},
        rooms::{Room, RoomRef},
        users::{User, UserRef},
    },
    validate::{PageQuery, Seq},
};

// ------------------------------------------------------------------ client to server

/// `joinRoom`: a room name, or `{room, since?, since_rev?}` (name or id).
#[derive(Debug, Deserialize)]
pub struct JoinRoom {
    pub room: String,
    #[serde(default)]
    pub since: Option<Seq>,
    #[serde(default)]
    pub since_rev: Option<Seq>,
}

impl From<String> for JoinRoom {
    fn from(room: String) -> Self {
        JoinRoom {
            room,
            since: None,
            since_rev: None,
        }
    }
}

/// `joinPrivateRoom`: `{roomId, since?, since_rev?}` (a bare id is taken too).
#[derive(Debug, Deserialize)]
pub struct JoinPrivateRoom {
    #[serde(rename = "roomId")]
    pub room_id: String,
    #[serde(default)]
    pub since: Option<Seq>,
    #[serde(default)]
    pub since_rev: Option<Seq>,
}

impl From<String> for JoinPrivateRoom {
    fn from(room_id: String) -> Self {
        JoinPrivateRoom {
            room_id,
            since: None,
            since_rev: None,
        }
    }
}

/// `leaveRoom` and `listOnline`: a room name, or `{room}`.
#[derive(Debug, Deserialize)]
pub struct RoomOnly {
    pub room: String,
}

impl From<String> for RoomOnly {
    fn from(room: String) -> Self {
        RoomOnly { room }
    }
}

/// `sendMessage`: `{room, body, client_id?, reply_to?, thread_root_id?, metadata?}`.
/// (Fields are spelled out rather than flattened, so that a bad one is named in the error.)
#[derive(Debug, Deserialize)]
pub struct SendMessage {
    pub room: String,
    pub body: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub reply_to: Option<Uuid>,
    #[serde(default)]
    pub thread_root_id: Option<Uuid>,
    #[serde(default)]
    pub metadata: Option<Value>,
}

impl SendMessage {
    pub fn outgoing(self) -> (String, Outgoing) {
        let outgoing = Outgoing {
            body: self.body,
            client_id: self.client_id,
            reply_to: self.reply_to,
            thread_root_id: self.thread_root_id,
            metadata: self.metadata,
        };
        (self.room, outgoing)
    }
}

/// `directMessage`: `{to, body, client_id?, reply_to?, thread_root_id?, metadata?}` (`to`: a
/// user id or username).
#[derive(Debug, Deserialize)]
pub struct DirectMessage {
    pub to: String,
    pub body: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub reply_to: Option<Uuid>,
    #[serde(default)]
    pub thread_root_id: Option<Uuid>,
    #[serde(default)]
    pub metadata: Option<Value>,
}

impl DirectMessage {
    pub fn outgoing(self) -> (String, Outgoing) {
        let outgoing = Outgoing {
            body: self.body,
            client_id: self.client_id,
            reply_to: self.reply_to,
            thread_root_id: self.thread_root_id,
            metadata: self.metadata,
        };
        (self.to, outgoing)
    }
}

/// `editMessage`: `{room, id, body, metadata?}`.
#[derive(Debug, Deserialize)]
pub struct EditMessage {
    pub room: String,
    pub id: Uuid,
    pub body: String,
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// `deleteMessage`: `{room, id}`.
#[derive(Debug, Deserialize)]
pub struct DeleteMessage {
    pub room: String,
    pub id: Uuid,
}

/// `react`: `{room, id, emoji, on}`.
#[derive(Debug, Deserialize)]
pub struct ReactTo {
    pub room: String,
    pub id: Uuid,
    pub emoji: String,
    pub on: bool,
}

/// `history`: `{room, before?, after?, limit?}`.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    pub room: String,
    #[serde(flatten)]
    pub page: PageQuery,
}

/// `markRead`: `{room, seq}`.
#[derive(Debug, Deserialize)]
pub struct MarkRead {
    pub room: String,
    pub seq: Seq,
}

/// `typing`: `{room, typing}`.
#[derive(Debug, Deserialize)]
pub struct Typing {
    pub room: String,
    pub typing: bool,
}

// ------------------------------------------------------------------ server to client

/// `session` `{user}`, on connect.
#[derive(Serialize)]
pub struct Session<'a> {
    pub user: &'a User,
}

/// `message`, for a user's message: the message with `kind: "user"` and its room.
#[derive(Serialize)]
pub struct UserMessage<'a> {
    pub kind: &'static str,
    #[serde(flatten)]
    pub message: &'a Message,
    pub room: &'a RoomRef,
}

impl<'a> UserMessage<'a> {
    pub fn new(message: &'a Message, room: &'a RoomRef) -> Self {
        UserMessage {
            kind: "user",
            message,
            room,
        }
    }
}

/// `message`, for a system notice (not stored): `{kind: "system", room, body, created_at}`.
#[derive(Serialize)]
pub struct SystemNotice<'a> {
    pub kind: &'static str,
    pub room: &'a RoomRef,
    pub body: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl<'a> SystemNotice<'a> {
    pub fn new(room: &'a RoomRef, body: String) -> Self {
        SystemNotice {
            kind: "system",
            room,
            body,
            created_at: OffsetDateTime::now_utc(),
        }
    }
}

/// `history` `{room, messages, has_more}`, to a joining socket; with `since_rev`, also
/// `updates` and `updates_has_more`.
#[derive(Serialize)]
pub struct HistoryEvent<'a> {
    pub room: &'a RoomRef,
    #[serde(flatten)]
    pub page: &'a History,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updates: Option<&'a [Message]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updates_has_more: Option<bool>,
}

/// `messageUpdated` `{room, message}` and `mentioned` `{room, message}`.
#[derive(Serialize)]
pub struct MessageEvent<'a> {
    pub room: &'a RoomRef,
    pub message: &'a Message,
}

/// `messageDeleted` `{room, id, seq, rev}`.
#[derive(Serialize)]
pub struct MessageDeleted<'a> {
    pub room: &'a RoomRef,
    pub id: Uuid,
    pub seq: i64,
    pub rev: i64,
}

/// `reaction` `{room, message_id, seq, rev, emoji, user, on, count}`; `count` is the emoji's
/// count after the change (clients set it, never add to it).
#[derive(Serialize)]
pub struct ReactionEvent<'a> {
    pub room: &'a RoomRef,
    pub message_id: Uuid,
    pub seq: i64,
    pub rev: i64,
    pub emoji: &'a str,
    pub user: &'a UserRef,
    pub on: bool,
    pub count: i64,
}

/// `presence` `{room, user, status}`.
#[derive(Serialize)]
pub struct Presence<'a> {
    pub room: &'a RoomRef,
    pub user: &'a UserRef,
    pub status: PresenceStatus,
}

#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    /// The user's first socket entered the room.
    Joined,
    /// The user's last socket left it.
    Left,
}

/// `removed` `{room, reason}`.
#[derive(Serialize)]
pub struct Removed<'a> {
    pub room: &'a RoomRef,
    pub reason: Removal,
}

/// `read` `{room, seq}`: the stored read position.
#[derive(Serialize)]
pub struct Read<'a> {
    pub room: &'a RoomRef,
    pub seq: i64,
}

/// `typing` `{room, user, typing}`.
#[derive(Serialize)]
pub struct TypingEvent<'a> {
    pub room: &'a RoomRef,
    pub user: &'a UserRef,
    pub typing: bool,
}

/// `error` `{code, message, room}`, beside a refused join's ack.
#[derive(Serialize)]
pub struct JoinRefused<'a> {
    pub code: &'static str,
    pub message: String,
    /// What the client sent.
    pub room: &'a str,
}

// ------------------------------------------------------------------ acknowledgements

/// Every acknowledgement: `{"ok": true, ...T}` or `{"ok": false, "error": {...}}`.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Ack<T> {
    Ok {
        ok: Flag<true>,
        #[serde(flatten)]
        data: T,
    },
    Err {
        ok: Flag<false>,
        error: ErrorBody,
    },
}

impl<T> From<AppResult<T>> for Ack<T> {
    fn from(result: AppResult<T>) -> Self {
        match result {
            Ok(data) => Ack::Ok { ok: Flag, data },
            Err(err) => Ack::Err {
                ok: Flag,
                error: err.body(),
            },
        }
    }
}

/// `true` or `false` as a type, so that each variant of `Ack` writes `ok` one way only.
#[derive(Clone, Copy, Debug)]
pub struct Flag<const B: bool>;

impl<const B: bool> Serialize for Flag<B> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(B)
    }
}

/// An acknowledgement with nothing but `"ok": true`.
#[derive(Serialize)]
pub struct Done {}

/// `joinRoom` / `joinPrivateRoom`: `{ok, room}`.
#[derive(Serialize)]
pub struct Joined {
    pub room: Room,
}

/// `sendMessage`: `{ok, message}`; `directMessage`: `{ok, message, room}`.
#[derive(Serialize)]
pub struct Sent {
    pub message: Message,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<Room>,
}

/// `listOnline`: `{ok, users}`.
#[derive(Serialize)]
pub struct Online {
    pub users: Vec<UserRef>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AppError;
    use serde_json::json;

    #[test]
    fn acks_flatten_their_data_after_ok() {
        let ok = Ack::from(Ok::<_, AppError>(Online { users: vec![] }));
        assert_eq!(
            serde_json::to_value(ok).unwrap(),
            json!({"ok": true, "users": []})
        );
        let done = Ack::from(Ok::<_, AppError>(Done {}));
        assert_eq!(serde_json::to_value(done).unwrap(), json!({"ok": true}));
        let err = Ack::<Done>::from(Err(AppError::NotJoined));
        assert_eq!(
            serde_json::to_value(err).unwrap(),
            json!({"ok": false, "error": {"code": "not_joined", "message": "join the room first"}})
        );
    }

    #[test]
    fn a_room_is_a_bare_string_or_an_object() {
        use crate::decode::string_or_object;
        let bare: JoinRoom = string_or_object(json!("general"), "room").unwrap();
        assert_eq!(
            (bare.room.as_str(), bare.since, bare.since_rev),
            ("general", None, None)
        );
        let full: JoinRoom =
            string_or_object(json!({"room": "general", "since": 4}), "room").unwrap();
        assert_eq!(full.since, Some(Seq(4)));
        for bad in [
            json!(null),
            json!(5),
            json!({"room": 5}),
            json!({"since": 1}),
        ] {
            assert!(
                string_or_object::<JoinRoom>(bad.clone(), "room").is_err(),
                "{bad}"
            );
        }
    }
}
