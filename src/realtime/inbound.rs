//! Per-socket ordering of client events.
//!
//! socketioxide runs each event handler as its own task, so two events of one socket can finish
//! in either order. The contract needs a socket's sends committed in the order it sent them,
//! and a `joinRoom` emitted just before a `sendMessage` should apply first. socketioxide does
//! extract handler arguments synchronously, in packet order, before it spawns the handler:
//! the `Inbound` extractor below uses that moment to push the event onto the socket's queue, and
//! one task per socket takes events off the queue in order. Sends are only *queued* to the
//! message writer by that task, so a socket's commits still pipeline.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use serde_json::Value as Json;
use socketioxide::{
    adapter::LocalAdapter,
    extract::{AckSender, Event, SocketRef, TryData},
    handler::{FromMessage, FromMessageParts, Value},
    socket::Socket,
};
use tokio::sync::mpsc;
use tracing::Instrument;
use uuid::Uuid;

use super::events;
use crate::{
    app::AppState,
    auth::AuthUser,
    error::AppError,
    metrics::Metrics,
    store::{rooms::RoomRef, users::UserRef},
};

/// Events a socket may have waiting before further ones are refused: room for a client that
/// fires hundreds of sends without waiting for acks, while bounding what one socket can queue.
pub(crate) const INBOX: usize = 1024;

/// What the events waiting on one socket may weigh together (estimated by `weight`), so that a
/// socket filling its queue with large payloads holds at most this much, not `INBOX` times the
/// largest packet.
pub(crate) const INBOX_BYTES: usize = 1024 * 1024;

pub(crate) enum Cmd {
    /// Boxed so that the queue's slots stay small: tokio allocates them in blocks of 32 as
    /// soon as the queue exists, for every connected socket.
    Event(Box<Queued>),
    /// The socket is gone.
    Disconnected,
}

pub(crate) struct Queued {
    name: String,
    data: Json,
    ack: AckSender,
    /// This event's share of `INBOX_BYTES`, given back when it is taken off the queue.
    weight: usize,
}

/// A rough upper estimate of what a queued event occupies in memory: its JSON's length plus
/// the per-node overhead of `serde_json::Value` (strings, vectors, map entries).
fn weight(name: &str, data: &Json) -> usize {
    fn value(v: &Json) -> usize {
        const NODE: usize = 32;
        NODE + match v {
            Json::String(s) => s.len(),
            Json::Array(items) => items.iter().map(value).sum(),
            Json::Object(map) => map.iter().map(|(k, v)| NODE + k.len() + value(v)).sum(),
            Json::Null | Json::Bool(_) | Json::Number(_) => 0,
        }
    }
    std::mem::size_of::<Queued>() + name.len() + value(data)
}

/// What a connected socket carries: its identity, its queue, and the chat rooms it joined.
#[derive(Clone)]
pub(crate) struct Conn {
    pub auth: AuthUser,
    inbox: mpsc::Sender<Cmd>,
    /// Chat rooms this socket is in, by id: a cache beside socketioxide's own room list (the
    /// authority on what the socket has joined), kept right by joins, leaves, kicks and room
    /// deletions. It resolves names without a query and tells the rooms when the socket goes.
    joined: Arc<Mutex<HashMap<Uuid, RoomRef>>>,
    /// Set when the socket disconnects, or is being disconnected as a slow consumer.
    /// (socketioxide's own `connected()` is still false for a moment after the client was told
    /// it is connected, so it cannot tell "gone" from "new".)
    gone: Arc<AtomicBool>,
    /// The estimated bytes of the events waiting in `inbox`.
    waiting: Arc<AtomicUsize>,
    pub metrics: Arc<Metrics>,
}

impl Conn {
    pub fn user_ref(&self) -> UserRef {
        UserRef::from(&self.auth.user)
    }

    pub fn remember(&self, room: RoomRef) {
        if let Ok(mut joined) = self.joined.lock() {
            joined.insert(room.id, room);
        }
    }

    pub fn forget(&self, room: Uuid) {
        if let Ok(mut joined) = self.joined.lock() {
            joined.remove(&room);
        }
    }

    /// A joined room named by id or name, as the client wrote it.
    pub fn find(&self, room: &str) -> Option<RoomRef> {
        let joined = self.joined.lock().ok()?;
        if let Ok(id) = room.parse::<Uuid>() {
            if let Some(r) = joined.get(&id) {
                return Some(r.clone());
            }
        }
        joined.values().find(|r| r.name == room).cloned()
    }

    /// Every chat room this socket is in.
    pub fn rooms(&self) -> Vec<RoomRef> {
        self.joined
            .lock()
            .map(|j| j.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// Stops handling this socket's events (the queued ones are dropped); true the first time.
    pub fn stop(&self) -> bool {
        !self.gone.swap(true, Ordering::AcqRel)
    }

    pub async fn disconnected(&self) {
        self.gone.store(true, Ordering::Release);
        let _ = self.inbox.send(Cmd::Disconnected).await;
    }
}

/// Creates a socket's connection context and starts its event task.
pub(crate) fn open(state: AppState, socket: SocketRef, auth: AuthUser) -> Conn {
    let (inbox, rx) = mpsc::channel(INBOX);
    let conn = Conn {
        auth,
        inbox,
        joined: Arc::default(),
        gone: Arc::default(),
        waiting: Arc::default(),
        metrics: state.metrics.clone(),
    };
    tokio::spawn(run(state, socket, conn.clone(), rx));
    conn
}

async fn run(state: AppState, socket: SocketRef, conn: Conn, mut rx: mpsc::Receiver<Cmd>) {
    let ctx = events::Ctx {
        state,
        socket,
        conn,
    };
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Cmd::Event(event) => {
                ctx.conn.waiting.fetch_sub(event.weight, Ordering::AcqRel);
                // Events still queued when the socket went away are dropped, not half-done.
                if !ctx.conn.is_gone() {
                    let Queued {
                        name, data, ack, ..
                    } = *event;
                    // Debug: a span per event at info would cost every message its share.
                    // The field values are only computed when the span is enabled.
                    let span = tracing::debug_span!(
                        "event",
                        name = %name,
                        socket.id = %ctx.socket.id,
                        user.id = %ctx.conn.auth.id(),
                        workspace.id = %ctx.conn.auth.workspace(),
                        room = data.get("room").and_then(|r| r.as_str()).unwrap_or_default(),
                    );
                    // Boxed: the handlers' state machines are large, and an idle socket's task
                    // should not carry one around while it waits for its next event.
                    Box::pin(events::handle(&ctx, &name, data, ack).instrument(span)).await;
                }
            }
            Cmd::Disconnected => {
                Box::pin(events::disconnected(&ctx)).await;
                break;
            }
        }
    }
}

/// The extractor that queues the event, in arrival order. It never fails for a connected
/// socket (a socket without `Conn` did not pass the handshake).
pub(crate) struct Inbound;

#[derive(Debug, thiserror::Error)]
#[error("event from a socket without a connection context")]
pub(crate) struct NoConn;

impl FromMessage<LocalAdapter> for Inbound {
    type Error = NoConn;

    fn from_message(
        s: Arc<Socket<LocalAdapter>>,
        mut v: Value,
        ack_id: Option<i64>,
    ) -> Result<Self, NoConn> {
        let conn = s.extensions.get::<Conn>().ok_or(NoConn)?;
        let name =
            Event::from_message_parts(&s, &mut v, &ack_id).map_or_else(|_| String::new(), |e| e.0);
        let Ok(TryData(data)) = TryData::<Json>::from_message_parts(&s, &mut v, &ack_id);
        let Ok(ack) = AckSender::from_message_parts(&s, &mut v, &ack_id);
        // No argument at all reads as null, which each event then refuses or accepts.
        let data = data.unwrap_or(Json::Null);
        let weight = weight(&name, &data);
        let socket = SocketRef::from(s.clone());
        let refuse = |ack| {
            events::answer::<()>(
                &socket,
                ack,
                Err(AppError::RateLimited {
                    message: "too many requests waiting on this socket".into(),
                    retry_after: std::time::Duration::from_millis(100),
                }),
            )
        };
        // Counted before it is queued, so that the event task never subtracts what was not
        // added; undone when the event is refused.
        let before = conn.waiting.fetch_add(weight, Ordering::AcqRel);
        if before + weight > INBOX_BYTES {
            conn.waiting.fetch_sub(weight, Ordering::AcqRel);
            refuse(ack);
            return Ok(Inbound);
        }
        let queued = Box::new(Queued {
            name,
            data,
            ack,
            weight,
        });
        if let Err(mpsc::error::TrySendError::Full(Cmd::Event(event))) =
            conn.inbox.try_send(Cmd::Event(queued))
        {
            conn.waiting.fetch_sub(weight, Ordering::AcqRel);
            refuse(event.ack);
        }
        Ok(Inbound)
    }
}
