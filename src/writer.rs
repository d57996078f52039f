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

use std::{
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::{future::BoxFuture, FutureExt};
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

/// What the writer's queue carries.
enum Queued {
    Message(Pending),
    /// Answered once everything queued before it has been committed, answered and delivered.
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Queued>,
    /// Set by `drain`: messages submitted from then on are refused.
    closing: Arc<AtomicBool>,
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
        Writer {
            queue,
            closing: Arc::default(),
        }
    }

    /// Queues a message. Messages submitted one after the other (awaiting this call, not the
    /// receipt) are committed in that order.
    pub async fn submit(
        &self,
        message: NewMessage,
        room: RoomRef,
        also_to: Vec<String>,
    ) -> AppResult<Receipt> {
        if self.closing.load(Ordering::Acquire) {
            return Err(AppError::Unavailable("this server (it is shutting down)"));
        }
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Queued::Message(Pending {
                message,
                room,
                also_to,
                reply,
            }))
            .await
            .map_err(|_| AppError::Internal(anyhow::anyhow!("message writer stopped")))?;
        Ok(Receipt(rx))
    }

    /// For a graceful shutdown: refuses further messages (`unavailable`), then waits, at most
    /// `within`, until every message queued before has been committed and answered. Returns
    /// whether it got there in time.
    pub async fn drain(&self, within: Duration) -> bool {
        self.closing.store(true, Ordering::Release);
        let drained = async {
            loop {
                let (done, flushed) = oneshot::channel();
                if self.queue.send(Queued::Flush(done)).await.is_err() {
                    return;
                }
                let _ = flushed.await;
                // A submit that looked at `closing` just before it was set may have queued
                // behind the marker: go round until the queue is empty.
                if self.queue.capacity() == self.queue.max_capacity() {
                    return;
                }
            }
        };
        tokio::time::timeout(within, drained).await.is_ok()
    }
}

async fn run(
    db: sqlx::PgPool,
    metrics: Arc<Metrics>,
    deliver: Deliver,
    mut rx: mpsc::Receiver<Queued>,
) {
    let mut batch: Vec<Queued> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut flushes = Vec::new();
        let pending: Vec<Pending> = batch
            .drain(..)
            .filter_map(|queued| match queued {
                Queued::Message(p) => Some(p),
                Queued::Flush(done) => {
                    flushes.push(done);
                    None
                }
            })
            .collect();
        if !pending.is_empty() {
            // A bug that panics in one batch must not stop the writer for good: that batch's
            // senders get `internal` (their replies are dropped) and the next batch goes on.
            let batch = AssertUnwindSafe(commit_and_answer(&db, &metrics, &deliver, pending));
            if batch.catch_unwind().await.is_err() {
                tracing::error!("the message writer panicked on a batch; going on with the next");
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Commits a batch, answers each sender, and delivers the new messages.
async fn commit_and_answer(
    db: &sqlx::PgPool,
    metrics: &Metrics,
    deliver: &Deliver,
    pending: Vec<Pending>,
) {
    let outcomes = commit_batch(db, metrics, &pending).await;
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

/// Stores a batch: the whole of it in one statement when it can.
async fn commit_batch(
    db: &sqlx::PgPool,
    metrics: &Metrics,
    pending: &[Pending],
) -> Vec<AppResult<Stored>> {
    let messages: Vec<NewMessage> = pending.iter().map(|p| p.message.clone()).collect();
    commit(db, metrics, &messages).await
}

/// Stores messages in as few statements as it can. If a statement fails for another reason than
/// Postgres being away (a row Postgres refuses, a concurrent copy of a `client_id` on another
/// node), each half is stored on its own, and so on down to single messages: one bad row costs
/// about 2·log2(n) statements and fails only itself, never the other senders' messages. The
/// halves are committed in order, so each room's seqs still follow the submission order.
fn commit<'a>(
    db: &'a sqlx::PgPool,
    metrics: &'a Metrics,
    messages: &'a [NewMessage],
) -> BoxFuture<'a, Vec<AppResult<Stored>>> {
    Box::pin(async move {
        metrics.writer_statements.inc();
        let err = match messages::insert_batch(db, messages).await {
            Ok(outcomes) => return outcomes.into_iter().map(answer).collect(),
            Err(err) => err,
        };
        if is_connection_error(&err) {
            tracing::warn!(error = %err, messages = messages.len(), "database unavailable; messages refused");
            return messages
                .iter()
                .map(|_| Err(AppError::Unavailable("the database")))
                .collect();
        }
        if let [one] = messages {
            // A concurrent copy of its client_id won the race: the statement rolled back whole
            // (no seq used up), and now finds that copy and answers with it.
            if messages::is_duplicate_client_id(&err) {
                metrics.writer_statements.inc();
                if let Ok(outcomes) = messages::insert_batch(db, std::slice::from_ref(one)).await {
                    return outcomes.into_iter().map(answer).collect();
                }
            }
            return vec![Err(refused_row(err))];
        }
        tracing::debug!(error = %err, messages = messages.len(), "batch failed; storing its halves apart");
        let (first, rest) = messages.split_at(messages.len() / 2);
        let mut out = commit(db, metrics, first).await;
        out.extend(commit(db, metrics, rest).await);
        out
    })
}

fn answer(outcome: BatchOutcome) -> AppResult<Stored> {
    match outcome {
        BatchOutcome::Stored(stored) => Ok(stored),
        BatchOutcome::NoRoom => Err(room_gone()),
        BatchOutcome::Refused => Err(AppError::Forbidden(
            "You are not allowed to post in this room.".into(),
        )),
    }
}

/// Why Postgres refused one message on its own: text it cannot store (a data exception, class
/// 22) is the client's fault; anything else is a bug.
fn refused_row(err: sqlx::Error) -> AppError {
    let data_exception = err
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code.starts_with("22"));
    if data_exception {
        return AppError::invalid("the message contains text that cannot be stored");
    }
    AppError::from(err)
}

fn room_gone() -> AppError {
    AppError::NotFound("the room no longer exists".into())
}
