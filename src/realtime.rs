//! Socket.IO: identity at the handshake, rooms, live delivery, and the operations REST uses to
//! act on live sockets (kick, revoke, room deletion, read positions).
//!
//! Socket.IO rooms used, all addressed by name so that every operation works on room membership
//! rather than a local map of sockets:
//! - `room:<room id>`: the sockets that joined a chat room; broadcasts go here.
//! - `user:<user id>`: every socket of a user (the contract's personal room).
//! - `session:<session id>`: the sockets of one login, for logout and revocation.
//! - `ru:<room id>:<user id>`: a user's sockets in a chat room, to tell the user's first
//!   arrival and last departure apart (presence) and to kick one user.

mod events;
mod handshake;
mod inbound;

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use serde::Serialize;
use serde_json::json;
use socketioxide::{layer::SocketIoLayer, SocketIo};
use uuid::Uuid;

use crate::{
    app::AppState,
    config::Config,
    metrics::Metrics,
    rooms::Removal,
    store::{members::UserRef, messages::Message},
    writer::{Committed, RoomRef},
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

/// A user's message as the `message` event carries it.
#[derive(Serialize)]
struct UserMessage<'a> {
    kind: &'static str,
    #[serde(flatten)]
    message: &'a Message,
    room: &'a RoomRef,
}

/// `presence` `{room, user, status}`.
#[derive(Serialize)]
pub(crate) struct Presence<'a> {
    pub room: &'a RoomRef,
    pub user: &'a UserRef,
    pub status: &'static str,
}

/// The Socket.IO server and the operations the rest of the service performs on live sockets.
#[derive(Clone)]
pub struct Realtime {
    io: SocketIo,
    layer: SocketIoLayer,
    metrics: Arc<Metrics>,
    /// Set once shutdown has begun: socketioxide panics on operations after `close()`.
    closed: Arc<AtomicBool>,
}

impl Realtime {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        let limit = config.max_body_bytes;
        let (layer, io) = SocketIo::builder()
            // Incoming packets are capped like REST bodies, on both transports.
            .max_payload(limit as u64)
            .ws_max_message_size(limit)
            .ws_max_frame_size(limit)
            .max_buffer_size(1024)
            .build_layer();
        Realtime {
            io,
            layer,
            metrics,
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Registers the namespace: from here on sockets can connect.
    pub fn start(state: &AppState) {
        handshake::register(state);
    }

    pub fn layer(&self) -> SocketIoLayer {
        self.layer.clone()
    }

    pub(crate) fn io(&self) -> &SocketIo {
        &self.io
    }

    fn open(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    /// Disconnects every socket and refuses further operations.
    pub async fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.io.close().await;
        }
    }

    /// Sends `event` to every socket in any of `rooms` (each socket once).
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        rooms: Vec<String>,
        event: &'static str,
        data: &T,
    ) {
        if !self.open() {
            return;
        }
        if let Err(err) = self.io.to(rooms).emit(event, data).await {
            tracing::warn!(error = %err, event, "broadcast failed");
        }
    }

    /// Delivers committed messages, in commit order.
    pub async fn publish(&self, committed: Vec<Committed>) {
        for c in &committed {
            let mut targets = Vec::with_capacity(1 + c.also_to.len());
            targets.push(room_channel(c.room.id));
            targets.extend(c.also_to.iter().cloned());
            if self.open() {
                let reached = self.io.to(targets.clone()).sockets().len();
                self.metrics.deliveries.add(reached as u64);
            }
            let payload = UserMessage {
                kind: "user",
                message: &c.message,
                room: &c.room,
            };
            self.emit(targets, "message", &payload).await;
        }
    }

    /// How many sockets `user` has in `room`.
    pub(crate) async fn sockets_in_room(&self, room: Uuid, user: Uuid) -> usize {
        if !self.open() {
            return 0;
        }
        self.io.to(presence_channel(room, user)).sockets().len()
    }

    /// The distinct users with a socket in `room`.
    pub(crate) async fn users_in_room(&self, room: Uuid) -> Vec<UserRef> {
        if !self.open() {
            return Vec::new();
        }
        let mut users: Vec<UserRef> = Vec::new();
        for socket in self.io.to(room_channel(room)).sockets() {
            if let Some(conn) = socket.extensions.get::<inbound::Conn>() {
                let user = conn.user_ref();
                if !users.iter().any(|u| u.id == user.id) {
                    users.push(user);
                }
            }
        }
        users.sort_by_key(|u| u.username.to_lowercase());
        users
    }

    /// Disconnects the sockets of these sessions (logout, password change, stolen token).
    pub async fn disconnect_sessions(&self, sessions: &[Uuid]) {
        if !self.open() || sessions.is_empty() {
            return;
        }
        let rooms: Vec<String> = sessions.iter().map(|s| session_channel(*s)).collect();
        if let Err(err) = self.io.to(rooms).disconnect().await {
            tracing::warn!(error = %err, "disconnecting sessions failed");
        }
    }

    /// Disconnects every socket of a user (disabled by an admin).
    pub async fn disconnect_user(&self, user: Uuid) {
        if !self.open() {
            return;
        }
        if let Err(err) = self.io.to(user_channel(user)).disconnect().await {
            tracing::warn!(error = %err, "disconnecting a user failed");
        }
    }

    /// Takes a removed member's sockets out of the room: they get `removed`, leave it, and the
    /// room hears that the user left.
    pub async fn remove_member(&self, room: &RoomRef, user: &UserRef, removal: Removal) {
        let removed = json!({ "room": room, "reason": removal.as_str() });
        let had_sockets = self.evict(presence_channel(room.id, user.id), room, &removed);
        if had_sockets {
            let presence = Presence {
                room,
                user,
                status: "left",
            };
            self.emit(vec![room_channel(room.id)], "presence", &presence)
                .await;
        }
    }

    /// A deleted room's sockets get `removed` and leave it.
    pub async fn room_deleted(&self, room: &RoomRef) {
        let removed = json!({ "room": room, "reason": "room_deleted" });
        self.evict(room_channel(room.id), room, &removed);
    }

    /// Every socket in `channel` gets `removed` and leaves `room`, keeping each socket's own
    /// record of its rooms right. Returns whether there was any.
    fn evict(&self, channel: String, room: &RoomRef, removed: &serde_json::Value) -> bool {
        if !self.open() {
            return false;
        }
        let sockets = self.io.to(channel).sockets();
        for socket in &sockets {
            let _ = socket.emit("removed", removed);
            let mut channels = vec![room_channel(room.id)];
            if let Some(conn) = socket.extensions.get::<inbound::Conn>() {
                channels.push(presence_channel(room.id, conn.auth.id()));
                conn.forget(room.id);
            }
            socket.leave(channels);
        }
        !sockets.is_empty()
    }

    /// Tells a user's sockets where they have read up to in a room.
    pub async fn read_moved(&self, user: Uuid, room: &RoomRef, seq: i64) {
        self.emit(
            vec![user_channel(user)],
            "read",
            &json!({ "room": room, "seq": seq }),
        )
        .await;
    }
}
