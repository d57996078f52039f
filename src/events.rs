//! The event log: every change a product's backend may want to hear of, as an event written in
//! the same transaction as the change, numbered per workspace in commit order, read with
//! `GET /api/server/events?after=` and delivered by webhooks.
//!
//! Each change's code builds its events here (`message`, `room`, `member`, `user`) and appends
//! them with `record` as the last statement of its transaction (see `store::events::append` for
//! why last). A committed change always has its events; a rolled-back one never does.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    app::AppState,
    auth::api_key::ServerCaller,
    error::AppResult,
    rooms::Removal,
    store::{self, events::NewEvent, members::Member, messages::Message, rooms::Room, users::User},
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
        data: Some(data),
        message_id: None,
        quoted_id: None,
    }
}

fn to_json<T: Serialize>(value: &T) -> Value {
    // Our own types always serialize; a failure would be a bug, shown rather than hidden.
    serde_json::to_value(value).unwrap_or_else(|err| json!({ "error": err.to_string() }))
}

/// `message.*` and `reaction.*` as stored: `{message}`, the message as everyone sees it (no
/// `my_reactions`) in its state after the change; the room is added when the event is read.
pub fn message(kind: Kind, message: &Message) -> NewEvent {
    let mut event = new(kind, message_data(message));
    event.message_id = Some(message.id);
    event.quoted_id = message.reply_to.as_ref().map(|q| q.id);
    event
}

/// What a stored message event holds.
pub fn message_data(message: &Message) -> Value {
    let mut shown = to_json(message);
    // As everyone sees it: without the reading user's own reactions.
    if let Some(fields) = shown.as_object_mut() {
        fields.remove("my_reactions");
    }
    json!({ "message": shown })
}

/// A message event that reads its message when it is read: `message.deleted` (a deleted
/// message never changes again), and what the plain batch statement writes for new messages.
pub fn message_read_later(kind: Kind, message_id: Uuid) -> NewEvent {
    NewEvent {
        id: Uuid::new_v4(),
        kind: kind.as_str(),
        data: None,
        message_id: Some(message_id),
        quoted_id: None,
    }
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

/// An event as the log and webhooks show it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Event {
    pub id: Uuid,
    /// `message.created`, `message.updated`, `message.deleted`, `reaction.added`, ... (the
    /// contract's event types).
    #[serde(rename = "type")]
    #[schema(example = "message.created")]
    pub kind: String,
    pub position: i64,
    pub workspace_id: WorkspaceId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The event's object, as its type says (a message, a room and a member, ...).
    #[schema(value_type = Object)]
    pub data: Value,
}

/// A page of the event log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
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
    // One snapshot for the rows and what they read, so that a message event is never shown
    // with a room or message that a later transaction changed or deleted in between.
    let mut tx = state.db.begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let mut rows = store::events::page(&mut *tx, caller.workspace(), after, limit + 1).await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let last_position = rows.last().map_or(after, |e| e.position);
    let events = render(&mut tx, rows).await?;
    tx.commit().await?;
    Ok(EventPage {
        events,
        has_more,
        last_position,
    })
}

/// Makes events of their rows: a message event gets its room as it stands, and its message
/// from `messages` where the row stores none.
pub async fn render(
    conn: &mut sqlx::PgConnection,
    rows: Vec<store::events::Row>,
) -> sqlx::Result<Vec<Event>> {
    let unstored: Vec<Uuid> = rows
        .iter()
        .filter(|r| r.data.is_none())
        .filter_map(|r| r.message_id)
        .collect();
    let read: HashMap<Uuid, Message> = if unstored.is_empty() {
        HashMap::new()
    } else {
        store::messages::read_many(&mut *conn, &unstored)
            .await?
            .into_iter()
            .map(|m| (m.id, m.broadcast()))
            .collect()
    };
    // Each message event's message JSON, and its room.
    let mut shown: Vec<Option<(Value, Option<Uuid>)>> = Vec::with_capacity(rows.len());
    for row in &rows {
        shown.push(match (row.message_id, &row.data) {
            (None, _) => None,
            (Some(_), Some(data)) => {
                let message = data.get("message").cloned().unwrap_or(Value::Null);
                let room = message
                    .get("room_id")
                    .and_then(Value::as_str)
                    .and_then(|id| id.parse().ok());
                Some((message, room))
            }
            (Some(id), None) => Some(match read.get(&id) {
                Some(m) => (to_json(m), Some(m.room_id)),
                None => (Value::Null, None),
            }),
        });
    }
    let mut room_ids: Vec<Uuid> = shown.iter().flatten().filter_map(|s| s.1).collect();
    room_ids.sort();
    room_ids.dedup();
    let rooms: HashMap<Uuid, Room> = if room_ids.is_empty() {
        HashMap::new()
    } else {
        store::rooms::with_workspace(&mut *conn, &room_ids)
            .await?
            .into_iter()
            .map(|(_, room)| (room.id, room))
            .collect()
    };
    let mut events = Vec::with_capacity(rows.len());
    for (row, shown) in rows.into_iter().zip(shown) {
        let data = match shown {
            None => row.data.unwrap_or(Value::Null),
            Some((message, room)) => match room.and_then(|id| rooms.get(&id)) {
                Some(room) if !message.is_null() => {
                    json!({ "room": to_json(room), "message": message })
                }
                // Not possible within one snapshot (a deleted room's message events go with
                // it); said rather than shown half-made.
                _ => {
                    tracing::warn!(
                        event.position = row.position,
                        "an event's message or room is gone; skipped"
                    );
                    continue;
                }
            },
        };
        events.push(Event {
            id: row.id,
            kind: row.kind,
            position: row.position,
            workspace_id: row.workspace_id,
            created_at: row.created_at,
            data,
        });
    }
    Ok(events)
}

/// The events at these `(workspace, position)`s as the log shows them, read in one snapshot
/// (the webhook worker's deliveries); an event no longer kept is absent.
pub async fn at(
    db: &sqlx::PgPool,
    wanted: &[(WorkspaceId, i64)],
) -> sqlx::Result<HashMap<(WorkspaceId, i64), Event>> {
    let mut tx = db.begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let rows = store::events::at(&mut *tx, wanted).await?;
    let events = render(&mut tx, rows).await?;
    tx.commit().await?;
    Ok(events
        .into_iter()
        .map(|e| ((e.workspace_id, e.position), e))
        .collect())
}
