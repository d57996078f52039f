//! Socket.IO: identity at the handshake, rooms, live delivery, and the operations REST uses to
//! act on live sockets (kick, revoke, room deletion, read positions).
//!
//! Socket.IO rooms (called channels here, to keep them apart from chat rooms), all addressed by
//! name so that every operation works on membership rather than a local map of sockets:
//! - `room:<room id>`: the sockets that joined a chat room; broadcasts go here.
//! - `user:<user id>`: every socket of a user (the contract's personal room).
//! - `session:<session id>`: the sockets of one login, for logout and revocation.
//! - `ru:<room id>:<user id>`: a user's sockets in a chat room, to tell the user's first
//!   arrival and last departure apart (presence) and to kick one user.

mod events;
mod handshake;
mod inbound;
pub mod payload;
mod revalidate;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::{json, value::RawValue, Value};
use socketioxide::{extract::SocketRef, layer::SocketIoLayer, SendError, SocketError, SocketIo};
use uuid::Uuid;

use self::payload::{
    MessageDeleted, MessageEvent, Presence, PresenceStatus, ReactionEvent, Read, Removed,
    UserMessage,
};
use crate::{
    app::AppState,
    cluster::{self, Cluster, Op, Query},
    config::Config,
    metrics::Metrics,
    rooms::Removal,
    store::{messages::Message, rooms::RoomRef, users::UserRef},
    writer::{Announcement, Committed},
};

pub fn room_channel(room: Uuid) -> String {
    format!("room:{room}")
}

pub fn user_channel(user: Uuid) -> String {
    format!("user:{user}")
}

pub fn session_channel(session: Uuid) -> String {
    format!("session:{session}")
}

pub fn presence_channel(room: Uuid, user: Uuid) -> String {
    format!("ru:{room}:{user}")
}

/// The Socket.IO server and the operations the rest of the service performs on live sockets.
/// Each operation acts on this node's sockets and, with `REDIS_URL`, on every other node's.
#[derive(Clone)]
pub struct Realtime {
    local: Local,
    layer: SocketIoLayer,
    cluster: Option<Arc<Cluster>>,
}

/// The largest incoming Socket.IO packet (a polling request body, a websocket message or
/// frame). Every client event is small (a 4000-character body is at most 16 KiB of UTF-8, some
/// more with JSON escapes), so this is far under `MAX_BODY_BYTES`, which REST bodies use.
pub const MAX_SOCKET_PAYLOAD: usize = 64 * 1024;

/// Packets waiting to be written to one socket. socketioxide's default, 128, is too few for what
/// the contract lets a client do: hundreds of sends without waiting for acks produce an ack and
/// a broadcast each, faster than the websocket writer drains them. A client that stops reading
/// fills the queue; its next send then fails and the socket is disconnected (`sent_or_slow`).
/// What one socket can hold is this many packets, each bounded: a message by the body bound, a
/// history page by `rooms::PAGE_BYTES`, and pages come no faster than `ROOM_EVENT_RATE`.
pub const OUTGOING_PACKETS: usize = 1024;

/// How long an Engine.IO session may wait before it sends its Socket.IO CONNECT: a session that
/// never does holds memory without ever being authenticated.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Realtime {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let limit = MAX_SOCKET_PAYLOAD;
        let (layer, io) = SocketIo::builder()
            .max_payload(limit as u64)
            .ws_max_message_size(limit)
            .ws_max_frame_size(limit)
            .max_buffer_size(OUTGOING_PACKETS)
            .connect_timeout(CONNECT_TIMEOUT)
            // Every socket keeps a read buffer this size; chat frames are small (a larger one
            // is read in several pieces). The default, 4 KiB, is kept by every idle socket.
            .ws_read_buffer_size(1024)
            .build_layer();
        let local = Local {
            io,
            metrics,
            closed: Arc::new(AtomicBool::new(false)),
        };
        let cluster = match &config.redis {
            Some(redis) => Some(Cluster::start(
                redis,
                &config.redis_prefix,
                Arc::new(local.clone()),
            )?),
            None => None,
        };
        Ok(Realtime {
            local,
            layer,
            cluster,
        })
    }

    /// Registers the namespace (from here on sockets can connect) and starts re-checking them.
    pub fn start(state: &AppState) {
        handshake::register(state);
        revalidate::spawn(state);
    }

    /// False once shutdown has begun.
    pub(crate) fn is_open(&self) -> bool {
        self.local.open()
    }

    pub fn layer(&self) -> SocketIoLayer {
        self.layer.clone()
    }

    pub(crate) fn io(&self) -> &SocketIo {
        &self.local.io
    }

    /// The cluster link, when several nodes share Redis.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// Disconnects every socket and refuses further operations.
    pub async fn close(&self) {
        if !self.local.closed.swap(true, Ordering::AcqRel) {
            if let Some(cluster) = &self.cluster {
                cluster.leave().await;
            }
            self.local.io.close().await;
        }
    }

    /// Makes sure this node hears what other nodes send to these Socket.IO rooms before a
    /// socket joins them (see `Cluster::hold`).
    pub(crate) async fn hold(&self, rooms: &[String]) {
        if let Some(cluster) = &self.cluster {
            cluster.hold(rooms).await;
        }
    }

    async fn tell_others(&self, op: Op) {
        if let Some(cluster) = &self.cluster {
            cluster.publish(op).await;
        }
    }

    /// Sends `event` to every socket in any of `channels` (each socket once), on every node.
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        channels: Vec<String>,
        event: &'static str,
        data: &T,
    ) {
        // Serialized once, straight from `data`, for this node's sockets; only the other
        // nodes' envelope needs it as a JSON value.
        let Some(raw) = once(event, data) else {
            return;
        };
        self.local.emit_raw(channels.clone(), event, &raw);
        if self.cluster.is_some() {
            match serde_json::from_str(raw.get()) {
                Ok(data) => {
                    self.tell_others(Op::Emit {
                        channels,
                        event: event.to_owned(),
                        data,
                    })
                    .await
                }
                Err(err) => tracing::error!(error = %err, event, "an event could not be re-read"),
            }
        }
    }

    /// As `emit`, but not to `socket` itself.
    pub(crate) async fn emit_except<T: Serialize + ?Sized>(
        &self,
        socket: &SocketRef,
        channels: Vec<String>,
        event: &'static str,
        data: &T,
    ) {
        let Some(data) = to_value(event, data) else {
            return;
        };
        if self.local.open() {
            let except = socket.id;
            for target in self.local.io.to(channels.clone()).sockets() {
                if target.id != except {
                    self.local.send(&target, event, &data);
                }
            }
        }
        // The socket lives on this node only, so the others send to all of theirs.
        self.tell_others(Op::Emit {
            channels,
            event: event.to_owned(),
            data,
        })
        .await;
    }

    /// Delivers committed changes to the sockets of their rooms (new messages also to a direct
    /// message's two users, mentions to the mentioned users), on every node, in commit order.
    pub async fn deliver(&self, committed: Vec<Committed>) {
        for c in &committed {
            let room = &c.room;
            let to_room = || vec![room_channel(room.id)];
            match &c.announcement {
                Announcement::Message { message, also_to } => {
                    let mut channels = Vec::with_capacity(1 + also_to.len());
                    channels.push(room_channel(room.id));
                    channels.extend(also_to.iter().cloned());
                    self.deliver_message(channels, message, room).await;
                }
                Announcement::Updated(message) => {
                    let event = MessageEvent { room, message };
                    self.emit(to_room(), "messageUpdated", &event).await;
                }
                Announcement::Deleted { id, seq, rev } => {
                    let event = MessageDeleted {
                        room,
                        id: *id,
                        seq: *seq,
                        rev: *rev,
                    };
                    self.emit(to_room(), "messageDeleted", &event).await;
                }
                Announcement::Reaction {
                    message_id,
                    seq,
                    rev,
                    emoji,
                    user,
                    on,
                    count,
                } => {
                    let event = ReactionEvent {
                        room,
                        message_id: *message_id,
                        seq: *seq,
                        rev: *rev,
                        emoji,
                        user,
                        on: *on,
                        count: *count,
                    };
                    self.emit(to_room(), "reaction", &event).await;
                }
                Announcement::Mentioned { users, message } => {
                    let channels = users.iter().map(|u| user_channel(*u)).collect();
                    let event = MessageEvent { room, message };
                    self.emit(channels, "mentioned", &event).await;
                }
            }
        }
    }

    /// A new message to `channels`, on every node.
    async fn deliver_message(&self, channels: Vec<String>, message: &Message, room: &RoomRef) {
        // Serialized once, straight from the message: the same bytes go to every socket here,
        // and only the other nodes' envelope needs it as a JSON value.
        let Some(raw) = once("message", &UserMessage::new(message, room)) else {
            return;
        };
        self.local.deliver(channels.clone(), &raw).await;
        if self.cluster.is_some() {
            match serde_json::from_str(raw.get()) {
                Ok(data) => self.tell_others(Op::Deliver { channels, data }).await,
                Err(err) => tracing::error!(error = %err, "a message could not be re-read"),
            }
        }
    }

    /// How many sockets `user` has in `room`, on every node.
    pub(crate) async fn sockets_in_room(&self, room: Uuid, user: Uuid) -> usize {
        let mut count = self.local.sockets_in_room(room, user);
        if let Some(cluster) = &self.cluster {
            for answer in cluster.ask(Query::SocketsInRoom { room, user }).await {
                count += answer.as_u64().unwrap_or(0) as usize;
            }
        }
        count
    }

    /// The distinct users with a socket in `room`, on every node, by username.
    pub(crate) async fn users_in_room(&self, room: Uuid) -> Vec<UserRef> {
        let mut users = self.local.users_in_room(room);
        if let Some(cluster) = &self.cluster {
            for answer in cluster.ask(Query::UsersInRoom { room }).await {
                let theirs: Vec<UserRef> = serde_json::from_value(answer).unwrap_or_default();
                for user in theirs {
                    users.entry(user.id).or_insert(user);
                }
            }
        }
        let mut users: Vec<UserRef> = users.into_values().collect();
        users.sort_by_key(|u| u.username.to_lowercase());
        users
    }

    /// Disconnects the sockets in `channels`, on every node. Called after a commit, from
    /// requests whose client may hang up: it runs on a task of its own, so that it cannot be
    /// cancelled half-way.
    async fn disconnect(&self, channels: Vec<String>) {
        let this = self.clone();
        uncancellable(async move {
            this.tell_others(Op::Disconnect {
                channels: channels.clone(),
            })
            .await;
            this.local.disconnect(channels).await;
        })
        .await;
    }

    /// Disconnects the sockets of these sessions (logout, password change, stolen token).
    pub async fn disconnect_sessions(&self, sessions: &[Uuid]) {
        if sessions.is_empty() {
            return;
        }
        self.disconnect(sessions.iter().map(|s| session_channel(*s)).collect())
            .await;
    }

    /// Disconnects every socket of a user (disabled by an admin).
    pub async fn disconnect_user(&self, user: Uuid) {
        self.disconnect(vec![user_channel(user)]).await;
    }

    /// Disconnects the sockets in `channels` on this node only.
    pub(crate) async fn disconnect_here(&self, channels: Vec<String>) {
        self.local.disconnect(channels).await;
    }

    /// Every socket in `channel` on this node only gets `removed` and leaves `room`.
    pub(crate) fn evict_here(&self, channel: String, room: &RoomRef, removal: Removal) {
        if let Some(removed) = removed(room, removal) {
            self.local.evict(&channel, room, &removed);
        }
    }

    /// Every socket in `channel`, on every node, gets `removed` and leaves `room`.
    async fn evict(&self, channel: String, room: &RoomRef, removal: Removal) {
        let Some(removed) = removed(room, removal) else {
            return;
        };
        self.local.evict(&channel, room, &removed);
        self.tell_others(Op::Evict {
            channel,
            room: room.clone(),
            removed,
        })
        .await;
    }

    /// A removed member: every socket of the user, joined to the room or not (so every device
    /// can drop the room from its list), gets `removed`; those in the room leave it, and the
    /// room hears that the user left if it was there.
    /// (Like `disconnect`, on a task of its own, so that a caller's cancellation cannot skip it.)
    pub async fn remove_member(&self, room: &RoomRef, user: &UserRef, removal: Removal) {
        let (this, room, user) = (self.clone(), room.clone(), user.clone());
        uncancellable(async move {
            let was_there = this.sockets_in_room(room.id, user.id).await > 0;
            this.evict(user_channel(user.id), &room, removal).await;
            if was_there {
                let presence = Presence {
                    room: &room,
                    user: &user,
                    status: PresenceStatus::Left,
                };
                this.emit(vec![room_channel(room.id)], "presence", &presence)
                    .await;
            }
        })
        .await;
    }

    /// Every socket in a room gets `removed` and leaves it (the room was deleted).
    pub async fn remove_all(&self, room: &RoomRef, removal: Removal) {
        let (this, room) = (self.clone(), room.clone());
        uncancellable(async move {
            this.evict(room_channel(room.id), &room, removal).await;
        })
        .await;
    }

    /// Tells a user's sockets (but `except`, when given) where they have read up to in a room.
    pub async fn read_moved(
        &self,
        user: Uuid,
        room: &RoomRef,
        seq: i64,
        except: Option<&SocketRef>,
    ) {
        let read = Read { room, seq };
        let channels = vec![user_channel(user)];
        match except {
            Some(socket) => self.emit_except(socket, channels, "read", &read).await,
            None => self.emit(channels, "read", &read).await,
        }
    }
}

/// Runs an effect that follows a commit on a task of its own and waits for it: the caller (an
/// HTTP handler whose client may hang up, which drops its future) can be cancelled, the effect
/// cannot.
async fn uncancellable(effect: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Err(err) = tokio::spawn(effect).await {
        tracing::error!(error = %err, "an effect on live sockets failed");
    }
}

/// An event's payload serialized once, for sending to many sockets.
fn once<T: Serialize + ?Sized>(event: &str, data: &T) -> Option<Box<RawValue>> {
    match serde_json::value::to_raw_value(data) {
        Ok(raw) => Some(raw),
        Err(err) => {
            tracing::error!(error = %err, event, "an event could not be serialized");
            None
        }
    }
}

/// The `removed` event, as JSON.
fn removed(room: &RoomRef, removal: Removal) -> Option<Value> {
    let removed = Removed {
        room,
        reason: removal,
    };
    to_value("removed", &removed)
}

/// An event's payload as JSON, once for this node and the others. Our own types always
/// serialize; a failure would be a bug, and is logged rather than sent half-made.
fn to_value<T: Serialize + ?Sized>(event: &str, data: &T) -> Option<Value> {
    match serde_json::to_value(data) {
        Ok(value) => Some(value),
        Err(err) => {
            tracing::error!(error = %err, event, "an event could not be serialized");
            None
        }
    }
}

/// The slow-consumer policy, after a failed send to `socket`. A full outgoing queue means the
/// client stopped reading: it is disconnected rather than left to miss events silently or to
/// make the server hold more for it. Its queued client events are dropped and it leaves every
/// channel, so nothing more is produced for it. The Socket.IO DISCONNECT packet itself needs a
/// free slot in that queue; when there is none, Engine.IO closes the connection at its next
/// heartbeat (its PING cannot be queued either), within `pingInterval` (25 s).
pub(crate) fn sent_or_slow(socket: &SocketRef, err: SendError) {
    match err {
        SendError::Socket(SocketError::InternalChannelFull) => {
            if let Some(conn) = socket.extensions.get::<inbound::Conn>() {
                if conn.stop() {
                    conn.metrics.slow_consumers.inc();
                    tracing::info!(
                        socket.id = %socket.id,
                        user.id = %conn.auth.id(),
                        "disconnecting a socket that stopped reading"
                    );
                }
            }
            socket.leave_all();
            if socket.clone().disconnect().is_err() {
                tracing::debug!(socket.id = %socket.id, "disconnect waits for the heartbeat");
            }
        }
        // Gone meanwhile: its disconnect handler does the rest.
        SendError::Socket(SocketError::Closed) => {}
        SendError::Serialize(err) => {
            tracing::error!(error = ?err, "an event could not be serialized")
        }
    }
}

/// Whether `user` may open one more socket (`MAX_SOCKETS_PER_USER`), counting the user's
/// sockets on every node and `in_flight` handshakes of theirs here. Nodes that cannot be asked
/// (Redis unusable, or too slow to answer) count as none: the cap then holds per node rather
/// than refusing every connection.
pub(crate) async fn below_socket_cap(state: &AppState, user: Uuid, in_flight: usize) -> bool {
    let realtime = &state.realtime;
    let mut count = realtime.local.sockets_of(user) + in_flight;
    if let Some(cluster) = &realtime.cluster {
        for answer in cluster.ask(Query::SocketsOfUser { user }).await {
            count += answer.as_u64().unwrap_or(0) as usize;
        }
    }
    count < state.config.max_sockets_per_user
}

/// This node's sockets.
#[derive(Clone)]
struct Local {
    io: SocketIo,
    metrics: Arc<Metrics>,
    /// Set once shutdown has begun: socketioxide panics on operations after `close()`.
    closed: Arc<AtomicBool>,
}

impl Local {
    fn open(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    /// Sends to each socket on its own rather than through socketioxide's broadcast, whose
    /// error does not say which sockets failed: a socket whose outgoing queue is full must be
    /// disconnected (it would silently miss the event otherwise), so it has to be known. The
    /// payload is serialized once, and each socket's packet copies those bytes (a `RawValue`
    /// is written as it is), so the per-socket sends cost no serialization of their own.
    async fn emit(&self, channels: Vec<String>, event: &str, data: &Value) {
        if !self.open() {
            return;
        }
        let Some(data) = once(event, data) else {
            return;
        };
        self.emit_raw(channels, event, &data);
    }

    /// As `emit`, with the payload serialized already.
    fn emit_raw(&self, channels: Vec<String>, event: &str, data: &RawValue) {
        if !self.open() {
            return;
        }
        for socket in self.io.to(channels).sockets() {
            self.send(&socket, event, data);
        }
    }

    /// A committed message, serialized, to this node's sockets in `channels`, counted as
    /// deliveries.
    async fn deliver(&self, channels: Vec<String>, data: &RawValue) {
        if !self.open() {
            return;
        }
        let sockets = self.io.to(channels).sockets();
        self.metrics.deliveries.add(sockets.len() as u64);
        for socket in sockets {
            self.send(&socket, "message", data);
        }
    }

    /// One event to one socket, under the slow-consumer policy.
    fn send<T: Serialize + ?Sized>(&self, socket: &SocketRef, event: &str, data: &T) {
        if let Err(err) = socket.emit(event, data) {
            sent_or_slow(socket, err);
        }
    }

    async fn disconnect(&self, channels: Vec<String>) {
        if !self.open() {
            return;
        }
        if let Err(err) = self.io.to(channels).disconnect().await {
            tracing::warn!(error = %err, "disconnecting sockets failed");
        }
    }

    /// Every socket in `channel` gets `removed` and leaves `room`, keeping each socket's own
    /// record of its rooms right.
    fn evict(&self, channel: &str, room: &RoomRef, removed: &Value) {
        if !self.open() {
            return;
        }
        for socket in self.io.to(channel.to_owned()).sockets() {
            self.send(&socket, "removed", removed);
            let mut channels = vec![room_channel(room.id)];
            if let Some(conn) = socket.extensions.get::<inbound::Conn>() {
                channels.push(presence_channel(room.id, conn.auth.id()));
                conn.forget(room.id);
            }
            socket.leave(channels);
        }
    }

    fn sockets_in_room(&self, room: Uuid, user: Uuid) -> usize {
        if !self.open() {
            return 0;
        }
        self.io.to(presence_channel(room, user)).sockets().len()
    }

    /// The distinct users with a socket in `room` here, by id (one pass over the sockets).
    fn users_in_room(&self, room: Uuid) -> HashMap<Uuid, UserRef> {
        let mut users = HashMap::new();
        if !self.open() {
            return users;
        }
        for socket in self.io.to(room_channel(room)).sockets() {
            if let Some(conn) = socket.extensions.get::<inbound::Conn>() {
                users
                    .entry(conn.auth.id())
                    .or_insert_with(|| conn.user_ref());
            }
        }
        users
    }

    /// How many sockets `user` has on this node.
    fn sockets_of(&self, user: Uuid) -> usize {
        if !self.open() {
            return 0;
        }
        self.io.to(user_channel(user)).sockets().len()
    }
}

impl cluster::Apply for Local {
    fn apply(&self, op: Op) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            match op {
                Op::Emit {
                    channels,
                    event,
                    data,
                } => self.emit(channels, &event, &data).await,
                Op::Deliver { channels, data } => {
                    if let Some(raw) = once("message", &data) {
                        self.deliver(channels, &raw).await;
                    }
                }
                Op::Disconnect { channels } => self.disconnect(channels).await,
                Op::Evict {
                    channel,
                    room,
                    removed,
                } => self.evict(&channel, &room, &removed),
                Op::Query { .. } => {}
            }
        })
    }

    fn rooms_in_use(&self) -> BoxFuture<'_, Option<HashSet<String>>> {
        Box::pin(async move {
            if !self.open() {
                return None;
            }
            // `of`, not `rooms()` on the io: that panics before the namespace is registered.
            let rooms = self.io.of("/")?.rooms().await.ok()?;
            // A presence room (`ru:`) is only counted here, never sent to across nodes.
            let routed = rooms
                .into_iter()
                .filter(|room| !room.starts_with("ru:"))
                .map(|room| room.into_owned())
                .collect();
            Some(routed)
        })
    }

    fn answer(&self, query: Query) -> Value {
        match query {
            Query::SocketsInRoom { room, user } => json!(self.sockets_in_room(room, user)),
            Query::SocketsOfUser { user } => json!(self.sockets_of(user)),
            Query::UsersInRoom { room } => {
                json!(self.users_in_room(room).into_values().collect::<Vec<_>>())
            }
        }
    }
}
