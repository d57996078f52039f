//! Group commit of chat messages.
//!
//! Every message goes through one queue to one writer task. The writer takes whatever has queued
//! up (at most `MAX_BATCH`) and stores it in one statement (`store::messages::insert_batch`):
//! under load, messages that arrive while a commit is in flight share the next commit, so the
//! cost of a commit (and its fsync) is spread over many messages; when idle, a message commits
//! alone and at once. Nothing is acknowledged before its commit.
//!
//! Because one task commits batches one after the other, seqs are assigned, acknowledged and
//! delivered in commit order, and a socket that enqueues its sends in order gets them committed
//! in that order.
//!
//! After a commit, each message goes two ways: its outcome back to its sender through the
//! `Receipt` (a oneshot; the socket layer acknowledges from there), and the batch's new messages
//! to `Deliver` (`Realtime::deliver`: to the room's sockets on this node, then to the other
//! nodes). Both follow the commit; which one reaches a client first is not fixed.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::{
    error::{is_connection_error, AppError, AppResult},
    metrics::Metrics,
    store::{
        messages::{self, BatchOutcome, Message, NewMessage, Stored},
        rooms::RoomRef,
    },
};

/// Most messages in one batch statement.
pub const MAX_BATCH: usize = 512;
/// Messages waiting for the writer before senders are made to wait.
const QUEUE: usize = 16 * 1024;

/// A newly committed message and where it goes.
#[derive(Clone, Debug)]
pub struct Committed {
    pub message: Message,
    pub room: RoomRef,
    /// Socket.IO rooms that get it besides the room's own (a direct message's two users).
    pub also_to: Vec<String>,
}

/// Delivers committed messages to their sockets, in commit order (`Realtime::deliver`).
pub type Deliver = Arc<dyn Fn(Vec<Committed>) -> BoxFuture<'static, ()> + Send + Sync>;

struct Pending {
    message: NewMessage,
    room: RoomRef,
    also_to: Vec<String>,
    reply: oneshot::Sender<AppResult<Stored>>,
}

#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Pending>,
}

/// A submitted message's outcome, to be awaited (after the next message was submitted, if the
/// caller wants pipelining).
pub struct Receipt(oneshot::Receiver<AppResult<Stored>>);

impl Receipt {
    pub async fn outcome(self) -> AppResult<Stored> {
        self.0.await.unwrap_or_else(|_| {
            Err(AppError::Internal(anyhow::anyhow!(
                "message writer stopped"
            )))
        })
    }
}

impl Writer {
    /// Starts the writer task; it stops when every `Writer` handle is dropped.
    pub fn start(db: sqlx::PgPool, metrics: Arc<Metrics>, deliver: Deliver) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, metrics, deliver, rx));
        Writer { queue }
    }

    /// Queues a message. Messages submitted one after the other (awaiting this call, not the
    /// receipt) are committed in that order.
    pub async fn submit(
        &self,
        message: NewMessage,
        room: RoomRef,
        also_to: Vec<String>,
    ) -> AppResult<Receipt> {
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Pending {
                message,
                room,
                also_to,
                reply,
            })
            .await
            .map_err(|_| AppError::Internal(anyhow::anyhow!("message writer stopped")))?;
        Ok(Receipt(rx))
    }
}

async fn run(
    db: sqlx::PgPool,
    metrics: Arc<Metrics>,
    deliver: Deliver,
    mut rx: mpsc::Receiver<Pending>,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let pending = std::mem::take(&mut batch);
        let outcomes = commit_batch(&db, &pending).await;
        let mut committed = Vec::new();
        for (p, outcome) in pending.into_iter().zip(outcomes) {
            if let Ok(Stored::New(message)) = &outcome {
                metrics.messages_persisted.inc();
                committed.push(Committed {
                    message: message.clone(),
                    room: p.room,
                    also_to: p.also_to,
                });
            }
            // The sender may have gone; the message is stored all the same.
            let _ = p.reply.send(outcome);
        }
        if !committed.is_empty() {
            deliver(committed).await;
        }
    }
}

/// Stores a batch; if the batch as a whole fails for another reason than Postgres being away,
/// each message is stored on its own so one bad apple cannot sink the others.
async fn commit_batch(db: &sqlx::PgPool, pending: &[Pending]) -> Vec<AppResult<Stored>> {
    let messages: Vec<NewMessage> = pending.iter().map(|p| p.message.clone()).collect();
    match messages::insert_batch(db, &messages).await {
        Ok(outcomes) => outcomes
            .into_iter()
            .map(|o| match o {
                BatchOutcome::Stored(stored) => Ok(stored),
                BatchOutcome::NoRoom => Err(room_gone()),
            })
            .collect(),
        Err(err) if is_connection_error(&err) => {
            tracing::warn!(error = %err, messages = pending.len(), "database unavailable; messages refused");
            pending
                .iter()
                .map(|_| Err(AppError::Unavailable("the database")))
                .collect()
        }
        Err(err) => {
            tracing::debug!(error = %err, "batch failed; storing its messages one by one");
            let mut out = Vec::with_capacity(messages.len());
            for m in &messages {
                out.push(messages::insert(db, m).await.map_err(|e| {
                    // No room row to take a seq from: it was deleted meanwhile.
                    if matches!(e, sqlx::Error::RowNotFound) {
                        room_gone()
                    } else {
                        AppError::from(e)
                    }
                }));
            }
            out
        }
    }
}

fn room_gone() -> AppError {
    AppError::NotFound("the room no longer exists".into())
}
