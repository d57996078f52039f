//! The client events of the contract, handled one at a time per socket (see `inbound`).
//! Every event answers through its ack: `{"ok": true, ...}` or `{"ok": false, "error": {...}}`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use socketioxide::extract::{AckSender, SocketRef};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{inbound::Conn, presence_channel, room_channel, user_channel, Presence};
use crate::{
    app::AppState,
    error::{AppError, AppResult},
    rooms,
    store::{
        self,
        messages::{NewMessage, Page, Stored},
        rooms::RoomAccess,
    },
    validate,
    writer::{Receipt, RoomRef},
};

pub(crate) struct Ctx {
    pub state: AppState,
    pub socket: SocketRef,
    pub conn: Conn,
}

impl Ctx {
    fn user_id(&self) -> Uuid {
        self.conn.auth.id()
    }

    /// A message from this socket's user, with a fresh UUIDv7.
    fn new_message(&self, room_id: Uuid, body: String, client_id: Option<String>) -> NewMessage {
        NewMessage {
            id: Uuid::now_v7(),
            room_id,
            sender_id: self.user_id(),
            body,
            client_id,
        }
    }
}

/// Answers an event's ack: `fields` merged after `"ok": true`, or the error.
pub(crate) fn reply<T: Serialize>(ack: AckSender, result: AppResult<T>) {
    let body = match result {
        Ok(fields) => {
            let mut body = Map::new();
            body.insert("ok".into(), Value::Bool(true));
            if let Ok(Value::Object(extra)) = serde_json::to_value(&fields) {
                body.extend(extra);
            }
            Value::Object(body)
        }
        Err(err) => json!({ "ok": false, "error": err.body() }),
    };
    // No callback on the client side: nothing to answer.
    let _ = ack.send(&body);
}

/// An ack with nothing but `"ok": true`.
#[derive(Serialize)]
struct Done {}

pub(crate) async fn handle(ctx: &Ctx, event: &str, data: Value, ack: AckSender) {
    match event {
        "joinRoom" => reply(ack, join(ctx, &data, JoinKind::Room).await),
        "joinPrivateRoom" => reply(ack, join(ctx, &data, JoinKind::Private).await),
        "leaveRoom" => reply(ack, leave(ctx, &data).await),
        "sendMessage" => send_message(ctx, &data, ack).await,
        "directMessage" => direct_message(ctx, &data, ack).await,
        "history" => reply(ack, history(ctx, &data).await),
        "markRead" => reply(ack, mark_read(ctx, &data).await),
        "typing" => reply(ack, typing(ctx, &data).await),
        "listOnline" => reply(ack, list_online(ctx, &data).await),
        other => reply::<()>(
            ack,
            Err(AppError::invalid(format!("unknown event '{other}'"))),
        ),
    }
}

// ------------------------------------------------------------------ payloads

/// A required string field of an object payload.
fn string_field<'a>(data: &'a Value, field: &str) -> AppResult<&'a str> {
    match data.get(field) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(AppError::invalid_field(field, "is required")),
        Some(_) => Err(AppError::invalid_field(field, "must be a string")),
    }
}

fn object(data: &Value) -> AppResult<&Value> {
    if data.is_object() {
        Ok(data)
    } else {
        Err(AppError::invalid("the payload must be an object"))
    }
}

/// A room named by a bare string or by the `field` of an object.
fn room_arg<'a>(data: &'a Value, field: &str) -> AppResult<&'a str> {
    match data {
        Value::String(s) => Ok(s),
        Value::Object(_) => string_field(data, field),
        _ => Err(AppError::invalid_field(field, "is required")),
    }
}

fn message_body(data: &Value) -> AppResult<String> {
    let body = string_field(data, "body")?.trim();
    if !(1..=4000).contains(&validate::char_len(body)) {
        return Err(AppError::invalid_field(
            "body",
            "must be 1-4000 characters after trimming",
        ));
    }
    Ok(body.to_owned())
}

fn client_id(data: &Value) -> AppResult<Option<String>> {
    match data.get("client_id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if (1..=64).contains(&validate::char_len(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AppError::invalid_field(
            "client_id",
            "must be a string of 1-64 characters",
        )),
    }
}

// ------------------------------------------------------------------ rooms

/// A room by id or name (a name may look like an id, so both are tried), with the caller's role.
async fn lookup(ctx: &Ctx, room: &str) -> AppResult<Option<RoomAccess>> {
    let db = &ctx.state.db;
    if let Ok(id) = room.parse::<Uuid>() {
        if let Some(access) = store::rooms::access_by_id(db, id, ctx.user_id()).await? {
            return Ok(Some(access));
        }
    }
    if !validate::is_room_name(room) && !room.starts_with("dm:") {
        return Ok(None);
    }
    Ok(store::rooms::access_by_name(db, room, ctx.user_id()).await?)
}

/// A room the caller may enter: `not_found` or `forbidden` (audited) otherwise.
async fn enterable(ctx: &Ctx, room: &str, action: &str) -> AppResult<RoomAccess> {
    let access = lookup(ctx, room).await?.ok_or_else(room_not_found)?;
    if !access.may_enter() {
        rooms::audit_denied(&ctx.state, &ctx.conn.auth, &access.room, action).await?;
        return Err(not_authorized());
    }
    Ok(access)
}

/// A room this socket has joined: else `not_joined` (or why it could not have).
async fn joined(ctx: &Ctx, room: &str, action: &str) -> AppResult<RoomRef> {
    if let Some(r) = ctx.conn.find(room) {
        if is_in(&ctx.socket, r.id) {
            return Ok(r);
        }
        // Kicked, or the room was deleted, since the join.
        ctx.conn.forget(r.id);
    }
    enterable(ctx, room, action).await?;
    Err(AppError::NotJoined)
}

fn is_in(socket: &SocketRef, room: Uuid) -> bool {
    let channel = room_channel(room);
    socket.rooms().iter().any(|r| *r == channel)
}

fn room_ref(access: &RoomAccess) -> RoomRef {
    RoomRef {
        id: access.room.id,
        name: access.room.name.clone(),
    }
}

const NOT_AUTHORIZED: &str = "You are not authorized to join this room.";
const ROOM_NOT_FOUND: &str = "Room not found.";

fn not_authorized() -> AppError {
    AppError::Forbidden(NOT_AUTHORIZED.into())
}

fn room_not_found() -> AppError {
    AppError::NotFound(ROOM_NOT_FOUND.into())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum JoinKind {
    /// `joinRoom`: "Welcome <username> to the <room> room!"
    Room,
    /// `joinPrivateRoom`: "<username> has joined the private discussion."
    Private,
}

/// The join, in the contract's order: check (public, or an ACL row) -> join the Socket.IO room
/// -> `history` to the joiner -> the system `message` and `presence` to the room. Joining the
/// room before reading history means a message committed meanwhile is either in the history or
/// delivered live (or both): never neither.
async fn join(ctx: &Ctx, data: &Value, kind: JoinKind) -> AppResult<Value> {
    let field = if kind == JoinKind::Private {
        "roomId"
    } else {
        "room"
    };
    let asked = room_arg(data, field)?;
    let since = rooms::seq_arg("since", data.get("since").unwrap_or(&Value::Null))?;
    let event = if kind == JoinKind::Private {
        "joinPrivateRoom"
    } else {
        "joinRoom"
    };

    let access = match enterable(ctx, asked, event).await {
        Ok(access) => access,
        Err(err) => {
            if matches!(err, AppError::Forbidden(_) | AppError::NotFound(_)) {
                ctx.state.metrics.join_denials.inc();
                let _ = ctx.socket.emit(
                    "error",
                    &json!({ "code": err.code(), "message": err.to_string(), "room": asked }),
                );
            }
            return Err(err);
        }
    };
    let room = room_ref(&access);
    let channel = room_channel(room.id);
    let already = is_in(&ctx.socket, room.id);
    if !already {
        ctx.socket.join(vec![
            channel.clone(),
            presence_channel(room.id, ctx.user_id()),
        ]);
        ctx.conn.remember(room.clone());
    }

    let limit = i64::from(ctx.state.config.history_limit);
    let page = since.map_or(Page::Before(None), Page::After);
    let history = match store::messages::page(&ctx.state.db, room.id, page, limit).await {
        Ok(history) => history,
        Err(err) => {
            // A failed join changes nothing: the socket does not stay in the room.
            if !already {
                ctx.socket
                    .leave(vec![channel, presence_channel(room.id, ctx.user_id())]);
                ctx.conn.forget(room.id);
            }
            return Err(err.into());
        }
    };
    let _ = ctx.socket.emit(
        "history",
        &json!({ "room": room, "messages": history.messages, "has_more": history.has_more }),
    );

    if !already {
        let user = ctx.conn.user_ref();
        let body = match kind {
            JoinKind::Room => format!("Welcome {} to the {} room!", user.username, room.name),
            JoinKind::Private => format!("{} has joined the private discussion.", user.username),
        };
        let notice = json!({
            "kind": "system",
            "room": room,
            "body": body,
            "created_at": now(),
        });
        let first = ctx.state.realtime.sockets_in_room(room.id, user.id).await == 1;
        ctx.state
            .realtime
            .emit(vec![channel.clone()], "message", &notice)
            .await;
        if first {
            let presence = Presence {
                room: &room,
                user: &user,
                status: "joined",
            };
            ctx.state
                .realtime
                .emit(vec![channel], "presence", &presence)
                .await;
        }
    }
    Ok(json!({ "room": access.room }))
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

async fn leave(ctx: &Ctx, data: &Value) -> AppResult<Done> {
    let asked = room_arg(data, "room")?;
    let room = joined(ctx, asked, "leaveRoom").await?;
    leave_room(ctx, &room).await;
    Ok(Done {})
}

/// Takes this socket out of a room; the room hears it if that was the user's last socket there.
async fn leave_room(ctx: &Ctx, room: &RoomRef) {
    ctx.socket.leave(vec![
        room_channel(room.id),
        presence_channel(room.id, ctx.user_id()),
    ]);
    ctx.conn.forget(room.id);
    if ctx
        .state
        .realtime
        .sockets_in_room(room.id, ctx.user_id())
        .await
        == 0
    {
        let user = ctx.conn.user_ref();
        let presence = Presence {
            room,
            user: &user,
            status: "left",
        };
        ctx.state
            .realtime
            .emit(vec![room_channel(room.id)], "presence", &presence)
            .await;
    }
}

/// The socket is gone: the rooms it was in hear that its user left, where it was the last one.
pub(crate) async fn disconnected(ctx: &Ctx) {
    let rooms = ctx.conn.rooms();
    ctx.socket.leave_all();
    for room in rooms {
        leave_room(ctx, &room).await;
    }
}

// ------------------------------------------------------------------ messages

/// `sendMessage`: checked and queued in order; acknowledged (and broadcast, by the writer) once
/// committed. The ack is awaited off this socket's queue, so later events need not wait for it.
async fn send_message(ctx: &Ctx, data: &Value, ack: AckSender) {
    let queued = async {
        object(data)?;
        let asked = string_field(data, "room")?;
        let room = joined(ctx, asked, "sendMessage").await?;
        let body = message_body(data)?;
        let client_id = client_id(data)?;
        ctx.state.message_limits.check(ctx.user_id()).await?;
        let message = ctx.new_message(room.id, body, client_id);
        ctx.state.writer.submit(message, room, Vec::new()).await
    }
    .await;
    match queued {
        Err(err) => reply::<()>(ack, Err(err)),
        Ok(receipt) => ack_when_committed(receipt, ack, json!({})),
    }
}

/// `directMessage`: to a user by id or username, in the direct room of the two (created on first
/// use), delivered to both users' sockets.
async fn direct_message(ctx: &Ctx, data: &Value, ack: AckSender) {
    let queued = async {
        object(data)?;
        let to = string_field(data, "to")?;
        let body = message_body(data)?;
        let client_id = client_id(data)?;
        ctx.state.message_limits.check(ctx.user_id()).await?;
        let target = match to.parse::<Uuid>() {
            Ok(id) => store::users::find(&ctx.state.db, id).await?,
            Err(_) => store::users::credentials(&ctx.state.db, to)
                .await?
                .map(|c| c.user),
        }
        .ok_or_else(|| AppError::NotFound("no such user".into()))?;
        if target.id == ctx.user_id() {
            return Err(AppError::invalid_field(
                "to",
                "must be another user than yourself",
            ));
        }
        let room = rooms::direct(&ctx.state, &ctx.conn.auth, target.id).await?;
        let room_ref = RoomRef {
            id: room.id,
            name: room.name.clone(),
        };
        let message = ctx.new_message(room.id, body, client_id);
        let also_to = vec![user_channel(ctx.user_id()), user_channel(target.id)];
        let receipt = ctx.state.writer.submit(message, room_ref, also_to).await?;
        Ok((receipt, room))
    }
    .await;
    match queued {
        Err(err) => reply::<()>(ack, Err(err)),
        Ok((receipt, room)) => ack_when_committed(receipt, ack, json!({ "room": room })),
    }
}

/// Acknowledges a queued message once the writer has committed it (or refused it), off the
/// socket's queue so that the socket's next events need not wait: `{ok, message, ...extra}`. A
/// repeated `client_id` is acknowledged with the first message.
fn ack_when_committed(receipt: Receipt, ack: AckSender, mut extra: Value) {
    tokio::spawn(async move {
        let outcome = receipt.outcome().await.map(|stored| {
            let message = match stored {
                Stored::New(m) | Stored::Duplicate(m) => m,
            };
            extra["message"] = json!(message);
            extra
        });
        reply(ack, outcome);
    });
}

// ------------------------------------------------------------------ the rest

/// `history`: as the REST history; needs only the right to join.
async fn history(ctx: &Ctx, data: &Value) -> AppResult<Value> {
    object(data)?;
    let asked = string_field(data, "room")?;
    let null = Value::Null;
    let arg = |name: &str| data.get(name).unwrap_or(&null);
    let (page, limit) = rooms::parse_page(arg("before"), arg("after"), arg("limit"))?;
    let access = enterable(ctx, asked, "history").await?;
    let history = store::messages::page(&ctx.state.db, access.room.id, page, limit).await?;
    Ok(json!({ "messages": history.messages, "has_more": history.has_more }))
}

#[derive(Deserialize)]
struct Seq {
    seq: Value,
}

/// `markRead`: as `PUT /api/rooms/{id}/read`; the user's other sockets get `read`.
async fn mark_read(ctx: &Ctx, data: &Value) -> AppResult<Done> {
    object(data)?;
    let asked = string_field(data, "room")?;
    let seq = serde_json::from_value::<Seq>(data.clone())
        .ok()
        .filter(|s| s.seq.is_number())
        .and_then(|s| rooms::seq_arg("seq", &s.seq).ok().flatten())
        .ok_or_else(|| AppError::invalid_field("seq", "must be an integer >= 0"))?;
    let room = joined(ctx, asked, "markRead").await?;
    let (_, stored, moved) = rooms::mark_read(&ctx.state, &ctx.conn.auth, room.id, seq)
        .await
        .map_err(|e| match e {
            // Over Socket.IO a room the user may not use is `forbidden`, never hidden.
            AppError::NotFound(_) => not_authorized(),
            other => other,
        })?;
    if moved {
        let read = json!({ "room": room, "seq": stored });
        ctx.state
            .realtime
            .emit_from(
                &ctx.socket,
                vec![user_channel(ctx.user_id())],
                "read",
                &read,
            )
            .await;
    }
    Ok(Done {})
}

/// `typing`: tells the others in the room (not this socket).
async fn typing(ctx: &Ctx, data: &Value) -> AppResult<Done> {
    object(data)?;
    let asked = string_field(data, "room")?;
    let typing = match data.get("typing") {
        Some(Value::Bool(b)) => *b,
        _ => return Err(AppError::invalid_field("typing", "must be true or false")),
    };
    let room = joined(ctx, asked, "typing").await?;
    ctx.state.message_limits.check(ctx.user_id()).await?;
    let event = json!({ "room": room, "user": ctx.conn.user_ref(), "typing": typing });
    ctx.state
        .realtime
        .emit_from(&ctx.socket, vec![room_channel(room.id)], "typing", &event)
        .await;
    Ok(Done {})
}

/// `listOnline`: the distinct users with a socket in the room; needs only the right to join.
async fn list_online(ctx: &Ctx, data: &Value) -> AppResult<Value> {
    let asked = room_arg(data, "room")?;
    let access = enterable(ctx, asked, "listOnline").await?;
    let users = ctx.state.realtime.users_in_room(access.room.id).await;
    Ok(json!({ "users": users }))
}
