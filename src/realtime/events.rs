//! The client events of the contract, run one at a time per socket (see `inbound`). Each handler
//! is choreography: parse the payload (`payload`), call the rules (`rooms`, `messages`), emit,
//! and answer the ack: `{"ok": true, ...}` or `{"ok": false, "error": {...}}`.

use serde::Serialize;
use serde_json::Value;
use socketioxide::extract::{AckSender, SocketRef};
use uuid::Uuid;

use super::{
    inbound::Conn,
    payload::{
        Ack, DeleteMessage, DirectMessage, Done, EditMessage, HistoryEvent, HistoryQuery,
        JoinPrivateRoom, JoinRefused, JoinRoom, Joined, MarkRead, Online, Presence, PresenceStatus,
        ReactTo, RoomOnly, SendMessage, Sent, SystemNotice, Typing, TypingEvent,
    },
    presence_channel, room_channel, sent_or_slow,
};
use crate::{
    app::AppState,
    auth::AuthUser,
    decode,
    error::{AppError, AppResult},
    messages,
    rooms::{self, Refusal, RoomKey},
    store::{
        messages::History,
        rooms::{Room, RoomAccess, RoomRef},
        users::UserRef,
    },
    validate::Seq,
    writer::Receipt,
};

pub(crate) struct Ctx {
    pub state: AppState,
    pub socket: SocketRef,
    pub conn: Conn,
}

impl Ctx {
    fn caller(&self) -> &AuthUser {
        &self.conn.auth
    }

    /// A room this socket may enter: the one access rule, refusing as sockets do.
    async fn enterable(&self, asked: &str, action: &str) -> AppResult<RoomAccess> {
        let key = RoomKey::Asked(asked);
        rooms::access(&self.state, self.caller(), key, action, Refusal::Forbid).await
    }

    /// A room this socket has joined; else `not_joined`, unless the socket may not enter the
    /// room at all (kicked, say), which is answered first, as `forbidden`.
    async fn joined(&self, asked: &str, action: &str) -> AppResult<RoomRef> {
        if let Some(room) = self.conn.find(asked) {
            if is_in(&self.socket, room.id) {
                return Ok(room);
            }
            // Kicked, or the room was deleted, since the join.
            self.conn.forget(room.id);
        }
        self.enterable(asked, action).await?;
        Err(AppError::NotJoined)
    }
}

/// Answers an event's ack. Without a callback on the client side there is nothing to answer;
/// an answer that finds the socket's outgoing queue full disconnects the socket.
pub(crate) fn answer<T: Serialize>(socket: &SocketRef, ack: AckSender, result: AppResult<T>) {
    if let Err(err) = &result {
        if !matches!(err, AppError::Internal(_)) {
            // Internal errors are logged where their body is made; the rest are the client's.
            tracing::debug!(code = err.code(), error = %err, "event refused");
        }
    }
    if let Err(err) = ack.send(&Ack::from(result)) {
        sent_or_slow(socket, err);
    }
}

/// An event to this socket alone, under the same slow-consumer policy.
fn emit<T: Serialize + ?Sized>(socket: &SocketRef, event: &str, data: &T) {
    if let Err(err) = socket.emit(event, data) {
        sent_or_slow(socket, err);
    }
}

pub(crate) async fn handle(ctx: &Ctx, event: &str, data: Value, ack: AckSender) {
    let s = &ctx.socket;
    match event {
        "joinRoom" => answer(s, ack, join_room(ctx, data).await),
        "joinPrivateRoom" => answer(s, ack, join_private_room(ctx, data).await),
        "leaveRoom" => answer(s, ack, leave(ctx, data).await),
        "sendMessage" => send_message(ctx, data, ack).await,
        "directMessage" => direct_message(ctx, data, ack).await,
        "editMessage" => edit_message(ctx, data, ack).await,
        "deleteMessage" => delete_message(ctx, data, ack).await,
        "react" => react(ctx, data, ack).await,
        "history" => answer(s, ack, history(ctx, data).await),
        "markRead" => answer(s, ack, mark_read(ctx, data).await),
        "typing" => answer(s, ack, typing(ctx, data).await),
        "listOnline" => answer(s, ack, list_online(ctx, data).await),
        other => answer::<Done>(
            s,
            ack,
            Err(AppError::invalid(format!("unknown event '{other}'"))),
        ),
    }
}

// ------------------------------------------------------------------ joining and leaving

#[derive(Clone, Copy, PartialEq, Eq)]
enum JoinKind {
    Room,
    Private,
}

impl JoinKind {
    fn event(self) -> &'static str {
        match self {
            JoinKind::Room => "joinRoom",
            JoinKind::Private => "joinPrivateRoom",
        }
    }

    /// The system notice the room hears when a socket joins.
    fn notice(self, user: &UserRef, room: &RoomRef) -> String {
        match self {
            JoinKind::Room => format!("Welcome {} to the {} room!", user.username, room.name),
            JoinKind::Private => format!("{} has joined the private discussion.", user.username),
        }
    }
}

/// Room events (joins, leaves, history, listOnline) draw from the user's room-event bucket.
async fn room_event(ctx: &Ctx) -> AppResult<()> {
    ctx.state.quotas.room_event(ctx.caller().id()).await
}

async fn join_room(ctx: &Ctx, data: Value) -> AppResult<Joined> {
    let p: JoinRoom = decode::string_or_object(data, "room")?;
    join(ctx, &p.room, p.since, p.since_rev, JoinKind::Room).await
}

async fn join_private_room(ctx: &Ctx, data: Value) -> AppResult<Joined> {
    let p: JoinPrivateRoom = decode::string_or_object(data, "roomId")?;
    join(ctx, &p.room_id, p.since, p.since_rev, JoinKind::Private).await
}

/// The join, in the contract's order: check (public, or an ACL row) -> join the Socket.IO room
/// -> `history` to the joiner -> the system `message` and `presence` to the room. Joining the
/// room before reading history means a message committed meanwhile is either in the history or
/// delivered live (or both): never neither.
async fn join(
    ctx: &Ctx,
    asked: &str,
    since: Option<Seq>,
    since_rev: Option<Seq>,
    kind: JoinKind,
) -> AppResult<Joined> {
    if since_rev.is_some() && since.is_none() {
        return Err(AppError::invalid_field(
            "since_rev",
            "needs since: the changes are those of the messages up to since",
        ));
    }
    room_event(ctx).await?;
    let access = match ctx.enterable(asked, kind.event()).await {
        Ok(access) => access,
        Err(err) => {
            if matches!(err, AppError::Forbidden(_) | AppError::NotFound(_)) {
                ctx.state.metrics.join_denials.inc();
                let refused = JoinRefused {
                    code: err.code(),
                    message: err.to_string(),
                    room: asked,
                };
                emit(&ctx.socket, "error", &refused);
            }
            return Err(err);
        }
    };
    let room = RoomRef::from(&access.room);
    let user = ctx.conn.user_ref();
    let channels = vec![room_channel(room.id), presence_channel(room.id, user.id)];
    let already = is_in(&ctx.socket, room.id);
    let cap = ctx.state.config.max_rooms_per_socket;
    if !already && ctx.conn.rooms().len() >= cap {
        return Err(AppError::invalid(format!(
            "this connection is already in {cap} rooms; leave one first"
        )));
    }
    if !already {
        // Heard from every node before the history is read: nothing committed after the read
        // can be missed.
        ctx.state.realtime.hold(&channels[..1]).await;
        ctx.socket.join(channels.clone());
        ctx.conn.remember(room.clone());
    }
    let replay = match rooms::replay(&ctx.state, ctx.caller(), room.id, since, since_rev).await {
        Ok(replay) => replay,
        Err(err) => {
            // A failed join changes nothing: the socket does not stay in the room.
            if !already {
                ctx.socket.leave(channels);
                ctx.conn.forget(room.id);
            }
            return Err(err);
        }
    };
    let replayed = HistoryEvent {
        room: &room,
        page: &replay.history,
        updates: replay.updates.as_ref().map(|(u, _)| u.as_slice()),
        updates_has_more: replay.updates.as_ref().map(|(_, more)| *more),
    };
    emit(&ctx.socket, "history", &replayed);

    if !already {
        let realtime = &ctx.state.realtime;
        let first = realtime.sockets_in_room(room.id, user.id).await == 1;
        let notice = SystemNotice::new(&room, kind.notice(&user, &room));
        realtime
            .emit(vec![room_channel(room.id)], "message", &notice)
            .await;
        if first {
            let presence = Presence {
                room: &room,
                user: &user,
                status: PresenceStatus::Joined,
            };
            realtime
                .emit(vec![room_channel(room.id)], "presence", &presence)
                .await;
        }
    }
    Ok(Joined { room: access.room })
}

async fn leave(ctx: &Ctx, data: Value) -> AppResult<Done> {
    let p: RoomOnly = decode::string_or_object(data, "room")?;
    room_event(ctx).await?;
    let room = ctx.joined(&p.room, "leaveRoom").await?;
    leave_room(ctx, &room).await;
    Ok(Done {})
}

/// Takes this socket out of a room; the room hears it if that was the user's last socket there.
async fn leave_room(ctx: &Ctx, room: &RoomRef) {
    let user = ctx.conn.user_ref();
    ctx.socket.leave(vec![
        room_channel(room.id),
        presence_channel(room.id, user.id),
    ]);
    ctx.conn.forget(room.id);
    let realtime = &ctx.state.realtime;
    if realtime.sockets_in_room(room.id, user.id).await == 0 {
        let presence = Presence {
            room,
            user: &user,
            status: PresenceStatus::Left,
        };
        realtime
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

fn is_in(socket: &SocketRef, room: Uuid) -> bool {
    let channel = room_channel(room);
    socket.rooms().iter().any(|r| *r == channel)
}

// ------------------------------------------------------------------ messages

/// `sendMessage`: checked and queued in order; acknowledged (and delivered, by the writer) once
/// committed. The ack is awaited off this socket's queue, so later events need not wait for it.
async fn send_message(ctx: &Ctx, data: Value, ack: AckSender) {
    let queued = async {
        let p: SendMessage = decode::from_value(data)?;
        let (room, outgoing) = p.outgoing();
        let room = ctx.joined(&room, "sendMessage").await?;
        messages::send(&ctx.state, ctx.caller(), room, outgoing).await
    }
    .await;
    ack_when_committed(&ctx.socket, queued.map(|r| (r, None)), ack);
}

/// `directMessage`: to a user by id or username, in the direct room of the two (created on first
/// use), delivered to both users' sockets.
async fn direct_message(ctx: &Ctx, data: Value, ack: AckSender) {
    let queued = async {
        let p: DirectMessage = decode::from_value(data)?;
        let (to, outgoing) = p.outgoing();
        let (receipt, room) =
            messages::send_direct(&ctx.state, ctx.caller(), &to, outgoing).await?;
        Ok((receipt, Some(room)))
    }
    .await;
    ack_when_committed(&ctx.socket, queued, ack);
}

/// `editMessage`: the sender's new body (and metadata); `{ok, message}` once committed.
async fn edit_message(ctx: &Ctx, data: Value, ack: AckSender) {
    let queued = async {
        let p: EditMessage = decode::from_value(data)?;
        let room = ctx.joined(&p.room, "editMessage").await?;
        messages::edit(&ctx.state, ctx.caller(), room, p.id, &p.body, p.metadata).await
    }
    .await;
    ack_when_committed(&ctx.socket, queued.map(|r| (r, None)), ack);
}

/// `deleteMessage`: `{ok}` once the tombstone is committed (or was already there).
async fn delete_message(ctx: &Ctx, data: Value, ack: AckSender) {
    let queued = async {
        let p: DeleteMessage = decode::from_value(data)?;
        let room = ctx.joined(&p.room, "deleteMessage").await?;
        messages::delete(&ctx.state, ctx.caller(), room, p.id).await
    }
    .await;
    ack_when_committed(&ctx.socket, queued.map(|r| (r, None)), ack);
}

/// `react`: adds or takes back a reaction; `{ok, message}` once committed.
async fn react(ctx: &Ctx, data: Value, ack: AckSender) {
    let queued = async {
        let p: ReactTo = decode::from_value(data)?;
        let room = ctx.joined(&p.room, "react").await?;
        messages::react(&ctx.state, ctx.caller(), room, p.id, &p.emoji, p.on).await
    }
    .await;
    ack_when_committed(&ctx.socket, queued.map(|r| (r, None)), ack);
}

/// Acknowledges a queued change once the writer has committed it (or refused it), off the
/// socket's queue so that the socket's next events need not wait: `{ok, message, room?}`, or
/// `{ok}` for a deletion. A repeated `client_id` is acknowledged with the first message.
fn ack_when_committed(
    socket: &SocketRef,
    queued: AppResult<(Receipt, Option<Room>)>,
    ack: AckSender,
) {
    let (receipt, room) = match queued {
        Ok(queued) => queued,
        Err(err) => return answer::<Sent>(socket, ack, Err(err)),
    };
    let socket = socket.clone();
    tokio::spawn(async move {
        match messages::committed(receipt).await {
            Ok(Some(message)) => answer(&socket, ack, Ok(Sent { message, room })),
            Ok(None) => answer(&socket, ack, Ok(Done {})),
            Err(err) => answer::<Done>(&socket, ack, Err(err)),
        }
    });
}

// ------------------------------------------------------------------ the rest

/// `history`: as the REST history; needs only the right to join.
async fn history(ctx: &Ctx, data: Value) -> AppResult<History> {
    let p: HistoryQuery = decode::from_value(data)?;
    room_event(ctx).await?;
    let key = RoomKey::Asked(&p.room);
    rooms::history(&ctx.state, ctx.caller(), key, p.page, Refusal::Forbid).await
}

/// `markRead`: as `PUT /api/rooms/{id}/read`; the user's other sockets get `read`.
async fn mark_read(ctx: &Ctx, data: Value) -> AppResult<Done> {
    let p: MarkRead = decode::from_value(data)?;
    let room = ctx.joined(&p.room, "markRead").await?;
    let key = RoomKey::Id(room.id);
    let except = Some(&ctx.socket);
    rooms::mark_read(
        &ctx.state,
        ctx.caller(),
        key,
        p.seq,
        Refusal::Forbid,
        except,
    )
    .await?;
    Ok(Done {})
}

/// `typing`: tells the others in the room (not this socket).
async fn typing(ctx: &Ctx, data: Value) -> AppResult<Done> {
    let p: Typing = decode::from_value(data)?;
    let room = ctx.joined(&p.room, "typing").await?;
    messages::typing_allowed(&ctx.state, ctx.caller()).await?;
    let event = TypingEvent {
        room: &room,
        user: &ctx.conn.user_ref(),
        typing: p.typing,
    };
    ctx.state
        .realtime
        .emit_except(&ctx.socket, vec![room_channel(room.id)], "typing", &event)
        .await;
    Ok(Done {})
}

/// `listOnline`: the distinct users with a socket in the room; needs only the right to join.
async fn list_online(ctx: &Ctx, data: Value) -> AppResult<Online> {
    let p: RoomOnly = decode::string_or_object(data, "room")?;
    room_event(ctx).await?;
    let access = ctx.enterable(&p.room, "listOnline").await?;
    let users = ctx.state.realtime.users_in_room(access.room.id).await;
    Ok(Online { users })
}
