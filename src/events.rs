//! The event log: every change a product's backend may want to hear of, as an event written in
//! the same transaction as the change, numbered per workspace in commit order, read with
//! `GET /api/server/events?after=` and delivered by webhooks.
//!
//! Each change's code builds its events here (`room`, `member`, `user`) and appends them with
//! `record` as the last statement of its transaction (see `store::events::append` for why
//! last). Events that show a message (`message.*`, `reaction.*`: `{room, message}`, the message
//! as everyone sees it in its state after the change) are made in SQL by the message writer,
//! from the rows it has just written (`store::events::append_messages`, and the batch statement
//! of plain messages), so that a busy room pays no serialization for them on the writer's task.
//! A committed change always has its events; a rolled-back one never does.

use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    app::AppState,
    auth::api_key::ServerCaller,
    error::AppResult,
    rooms::Removal,
    store::{
        self,
        events::{Event, NewEvent},
        members::Member,
        rooms::Room,
        users::User,
    },
    workspaces::WorkspaceId,
};

/// The event types of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    MessageCreated,
    MessageUpdated,
    MessageDeleted,
    ReactionAdded,
    ReactionRemoved,
    MemberAdded,
    MemberRoleChanged,
    MemberRemoved,
    RoomCreated,
    RoomUpdated,
    RoomDeleted,
    UserCreated,
    UserUpdated,
    UserDisabled,
    UserEnabled,
}

impl Kind {
    pub const ALL: [Kind; 15] = [
        Kind::MessageCreated,
        Kind::MessageUpdated,
        Kind::MessageDeleted,
        Kind::ReactionAdded,
        Kind::ReactionRemoved,
        Kind::MemberAdded,
        Kind::MemberRoleChanged,
        Kind::MemberRemoved,
        Kind::RoomCreated,
        Kind::RoomUpdated,
        Kind::RoomDeleted,
        Kind::UserCreated,
        Kind::UserUpdated,
        Kind::UserDisabled,
        Kind::UserEnabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::MessageCreated => "message.created",
            Kind::MessageUpdated => "message.updated",
            Kind::MessageDeleted => "message.deleted",
            Kind::ReactionAdded => "reaction.added",
            Kind::ReactionRemoved => "reaction.removed",
            Kind::MemberAdded => "member.added",
            Kind::MemberRoleChanged => "member.role_changed",
            Kind::MemberRemoved => "member.removed",
            Kind::RoomCreated => "room.created",
            Kind::RoomUpdated => "room.updated",
            Kind::RoomDeleted => "room.deleted",
            Kind::UserCreated => "user.created",
            Kind::UserUpdated => "user.updated",
            Kind::UserDisabled => "user.disabled",
            Kind::UserEnabled => "user.enabled",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

fn new(kind: Kind, data: Value) -> NewEvent {
    NewEvent {
        id: Uuid::now_v7(),
        kind: kind.as_str(),
        data,
    }
}

fn to_json<T: Serialize>(value: &T) -> Value {
    // Our own types always serialize; a failure would be a bug, shown rather than hidden.
    serde_json::to_value(value).unwrap_or_else(|err| json!({ "error": err.to_string() }))
}

/// `room.*`: `{room}`.
pub fn room(kind: Kind, room: &Room) -> NewEvent {
    new(kind, json!({ "room": to_json(room) }))
}

/// `member.*`: `{room, member}`, and `reason` (`kicked`, `left`) for `member.removed`.
pub fn member(kind: Kind, room: &Room, member: &Member, reason: Option<Removal>) -> NewEvent {
    let mut data = json!({ "room": to_json(room), "member": to_json(member) });
    if let Some(reason) = reason {
        data["reason"] = to_json(&reason);
    }
    new(kind, data)
}

/// `user.*`: `{user}`.
pub fn user(kind: Kind, user: &User) -> NewEvent {
    new(kind, json!({ "user": to_json(user) }))
}

/// Appends a transaction's events of `ws`: the transaction's last statement before its commit.
pub async fn record(
    tx: &mut sqlx::PgConnection,
    ws: WorkspaceId,
    events: &[NewEvent],
) -> AppResult<()> {
    Ok(store::events::append(tx, ws, events).await?)
}

/// A page of the event log.
#[derive(Debug, Serialize)]
pub struct EventPage {
    pub events: Vec<Event>,
    pub has_more: bool,
    /// The cursor to pass as `after` next: the position of the last event returned, or `after`
    /// itself when the page is empty.
    pub last_position: i64,
}

/// Events of the caller's workspace after `after` (0: from the start), at most `limit`.
pub async fn page(
    state: &AppState,
    caller: &ServerCaller,
    after: i64,
    limit: i64,
) -> AppResult<EventPage> {
    let mut events = store::events::page(&state.db, caller.workspace(), after, limit + 1).await?;
    let has_more = events.len() as i64 > limit;
    events.truncate(limit as usize);
    let last_position = events.last().map_or(after, |e| e.position);
    Ok(EventPage {
        events,
        has_more,
        last_position,
    })
}
