//! Group commit of every change to a room's timeline.
//!
//! Every change (a new message, an edit, a deletion, a reaction) goes through one queue to one
//! writer task. The writer takes whatever has queued up (at most `MAX_BATCH`) and commits it at
//! once: under load, changes that arrive while a commit is in flight share the next commit, so
//! the cost of a commit (and its fsync) is spread over many; when idle, a change commits alone
//! and at once. Nothing is acknowledged before its commit.
//!
//! A batch of new messages only is one statement (`store::messages::insert_batch`), committed
//! on its own. Any other batch is one transaction: it first locks the batch's rooms (in id
//! order, so writers on several nodes cannot deadlock), then stores each run of changes of one
//! kind with one statement, in queue order, and commits. Because one task commits batches one
//! after the other, and each room's changes are numbered under its lock, revs are assigned,
//! acknowledged and announced in commit order, and a socket that enqueues its changes in order
//! gets them committed in that order.
//!
//! After a commit, each change goes two ways: its outcome back to its sender through the
//! `Receipt` (a oneshot; the socket layer or the REST handler answers from there), and what it
//! announces (`Committed`) to `Deliver` (`Realtime::deliver`: to the room's sockets on this
//! node, then to the other nodes), which a task of its own runs batch after batch in commit
//! order while the writer goes on with the next commit. Both follow the commit; which one
//! reaches a client first is not fixed.

use std::{
    collections::{HashMap, HashSet},
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::{future::BoxFuture, FutureExt};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::{
    error::{is_connection_error, AppError, AppResult},
    events::{self, Kind},
    metrics::Metrics,
    store::{
        self,
        messages::{
            self, BatchOutcome, ChangeOutcome, Delete, Edit, Log, Message, NewMessage, Stored,
        },
        reactions::{self, React, ReactOutcome},
        rooms::RoomRef,
        users::UserRef,
    },
};

/// Most changes in one batch.
pub const MAX_BATCH: usize = 512;
/// Committed batches waiting for delivery before the writer waits for the deliverer.
const DELIVERY_QUEUE: usize = 16;
/// Changes waiting for the writer before senders are made to wait.
const QUEUE: usize = 16 * 1024;

/// A change to a room's timeline, as it is queued.
#[derive(Clone, Debug)]
pub enum Change {
    Send(NewMessage),
    Edit(Edit),
    Delete(Delete),
    /// A reaction, with the reacting user as the `reaction` event names them.
    React(React, UserRef),
}

impl Change {
    fn room_id(&self) -> Uuid {
        match self {
            Change::Send(m) => m.room_id,
            Change::Edit(e) => e.room_id,
            Change::Delete(d) => d.room_id,
            Change::React(r, _) => r.room_id,
        }
    }
}

/// What a committed change answers its sender with.
#[derive(Clone, Debug)]
pub enum Applied {
    /// A message: new, or the first copy of its `client_id`.
    Sent(Stored),
    /// The message after the edit or reaction, with the sender's own reactions.
    Changed(Message),
    /// Deleted (or deleted already).
    Deleted,
}

impl Applied {
    /// The message an answer carries (none for a deletion).
    pub fn into_message(self) -> Option<Message> {
        match self {
            Applied::Sent(stored) => Some(stored.into_message()),
            Applied::Changed(message) => Some(message),
            Applied::Deleted => None,
        }
    }
}

/// What a committed change tells the room's sockets (and a mentioned user's).
#[derive(Clone, Debug)]
pub enum Announcement {
    /// A new message (`message`); `also_to`: Socket.IO rooms that get it besides the room's own
    /// (a direct message's two users).
    Message {
        message: Message,
        also_to: Vec<String>,
    },
    /// A message in its new state (`messageUpdated`): edited, or a thread root's new summary.
    Updated(Message),
    /// `messageDeleted`.
    Deleted { id: Uuid, seq: i64, rev: i64 },
    /// `reaction`, with the emoji's count after the change.
    Reaction {
        message_id: Uuid,
        seq: i64,
        rev: i64,
        emoji: String,
        user: UserRef,
        on: bool,
        count: i64,
    },
    /// `mentioned`, to each of these users' sockets.
    Mentioned { users: Vec<Uuid>, message: Message },
}

/// A committed change's announcement and its room.
#[derive(Clone, Debug)]
pub struct Committed {
    pub room: RoomRef,
    pub announcement: Announcement,
}

/// Delivers announcements to their sockets, in commit order (`Realtime::deliver`).
pub type Deliver = Arc<dyn Fn(Vec<Committed>) -> BoxFuture<'static, ()> + Send + Sync>;

struct Pending {
    change: Change,
    room: RoomRef,
    also_to: Vec<String>,
    reply: oneshot::Sender<AppResult<Applied>>,
}

/// What the writer's queue carries.
enum Queued {
    Change(Box<Pending>),
    /// Answered once everything queued before it has been committed, answered and delivered.
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Queued>,
    /// Set by `drain`: changes submitted from then on are refused.
    closing: Arc<AtomicBool>,
    /// Changes in the batch being committed.
    in_batch: Arc<AtomicUsize>,
}

/// A submitted change's outcome, to be awaited (after the next change was submitted, if the
/// caller wants pipelining).
pub struct Receipt(oneshot::Receiver<AppResult<Applied>>);

impl Receipt {
    pub async fn outcome(self) -> AppResult<Applied> {
        self.0.await.unwrap_or_else(|_| {
            Err(AppError::Internal(anyhow::anyhow!(
                "message writer stopped"
            )))
        })
    }
}

impl Writer {
    /// Starts the writer task; it stops when every `Writer` handle is dropped. `edit_window`:
    /// seconds after sending during which a message may be edited (0: always).
    pub fn start(
        db: sqlx::PgPool,
        metrics: Arc<Metrics>,
        deliver: Deliver,
        edit_window: u64,
    ) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let batches = Batches {
            db,
            metrics,
            edit_window: i64::try_from(edit_window).unwrap_or(i64::MAX),
        };
        let (deliveries, pending_deliveries) = mpsc::channel(DELIVERY_QUEUE);
        tokio::spawn(deliver_in_order(deliver, pending_deliveries));
        let in_batch = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(batches, deliveries, rx, in_batch.clone()));
        Writer {
            queue,
            closing: Arc::default(),
            in_batch,
        }
    }

    /// Changes waiting for the writer or in the batch it is committing. A few at a time is a
    /// writer keeping up; a large batch or a queue behind it is one that is saturated, and
    /// background work (the webhook worker) gives way.
    pub fn load(&self) -> usize {
        self.in_batch.load(Ordering::Relaxed) + self.queue.max_capacity() - self.queue.capacity()
    }

    /// Queues a change. Changes submitted one after the other (awaiting this call, not the
    /// receipt) are committed in that order.
    pub async fn submit(
        &self,
        change: Change,
        room: RoomRef,
        also_to: Vec<String>,
    ) -> AppResult<Receipt> {
        if self.closing.load(Ordering::Acquire) {
            return Err(AppError::Unavailable("this server (it is shutting down)"));
        }
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Queued::Change(Box::new(Pending {
                change,
                room,
                also_to,
                reply,
            })))
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

/// What the deliverer's queue carries: committed batches' announcements, and flush markers
/// that pass every delivery queued before them.
enum ToDeliver {
    Batch(Vec<Committed>),
    Flush(oneshot::Sender<()>),
}

async fn run(
    batches: Batches,
    deliveries: mpsc::Sender<ToDeliver>,
    mut rx: mpsc::Receiver<Queued>,
    in_batch: Arc<AtomicUsize>,
) {
    let mut batch: Vec<Queued> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        in_batch.store(batch.len(), Ordering::Relaxed);
        let mut flushes = Vec::new();
        let pending: Vec<Pending> = batch
            .drain(..)
            .filter_map(|queued| match queued {
                Queued::Change(p) => Some(*p),
                Queued::Flush(done) => {
                    flushes.push(done);
                    None
                }
            })
            .collect();
        if !pending.is_empty() {
            // A bug that panics in one batch must not stop the writer for good: that batch's
            // senders get `internal` (their replies are dropped) and the next batch goes on.
            let batch = AssertUnwindSafe(commit_and_answer(&batches, pending));
            match batch.catch_unwind().await {
                Ok(committed) if !committed.is_empty() => {
                    let _ = deliveries.send(ToDeliver::Batch(committed)).await;
                }
                Ok(_) => {}
                Err(_) => {
                    tracing::error!(
                        "the message writer panicked on a batch; going on with the next"
                    )
                }
            }
        }
        in_batch.store(0, Ordering::Relaxed);
        for done in flushes {
            let _ = deliveries.send(ToDeliver::Flush(done)).await;
        }
    }
}

/// Delivers committed batches one after the other, in commit order, on a task of its own: the
/// writer commits the next batch while this one reaches its sockets, so a batch's database time
/// and its delivery overlap instead of adding up. (A bounded queue: a deliverer that falls
/// behind makes the writer wait rather than hold every batch in memory.)
async fn deliver_in_order(deliver: Deliver, mut rx: mpsc::Receiver<ToDeliver>) {
    while let Some(item) = rx.recv().await {
        match item {
            ToDeliver::Batch(committed) => {
                // As in the writer: a bug that panics in one delivery does not stop the rest.
                if AssertUnwindSafe(deliver(committed))
                    .catch_unwind()
                    .await
                    .is_err()
                {
                    tracing::error!("delivering a batch panicked; going on with the next");
                }
            }
            ToDeliver::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// A change's outcome after its commit, and what it announces.
struct Effect {
    applied: Applied,
    announce: Vec<Announcement>,
}

/// Commits a batch and answers each sender; returns the announcements, in batch order.
async fn commit_and_answer(batches: &Batches, pending: Vec<Pending>) -> Vec<Committed> {
    let changes: Vec<Change> = pending.iter().map(|p| p.change.clone()).collect();
    let outcomes = batches.commit(&changes).await;
    let mut committed = Vec::new();
    for (p, outcome) in pending.into_iter().zip(outcomes) {
        let reply = outcome.map(|effect| {
            if matches!(effect.applied, Applied::Sent(Stored::New(_))) {
                batches.metrics.messages_persisted.inc();
            }
            for announcement in effect.announce {
                let announcement = match announcement {
                    Announcement::Message { message, .. } => Announcement::Message {
                        message,
                        also_to: p.also_to.clone(),
                    },
                    other => other,
                };
                committed.push(Committed {
                    room: p.room.clone(),
                    announcement,
                });
            }
            effect.applied
        });
        // The sender may have gone; the change is stored all the same.
        let _ = p.reply.send(reply);
    }
    committed
}

/// The writer's database side.
struct Batches {
    db: sqlx::PgPool,
    metrics: Arc<Metrics>,
    edit_window: i64,
}

/// What each change's statement said, before the messages are read back.
enum Raw {
    Sent(BatchOutcome),
    Changed(ChangeOutcome),
    Reacted(ReactOutcome),
}

impl Batches {
    /// Stores changes in as few statements and commits as it can. If a commit fails for another
    /// reason than Postgres being away (a row Postgres refuses, a concurrent copy of a
    /// `client_id` on another node), each half is stored on its own, and so on down to single
    /// changes: one bad row costs about 2·log2(n) commits and fails only itself, never the
    /// other senders' changes. The halves are committed in order, so each room's changes still
    /// follow the submission order.
    fn commit<'a>(&'a self, changes: &'a [Change]) -> BoxFuture<'a, Vec<AppResult<Effect>>> {
        Box::pin(async move {
            let err = match self.try_commit(changes).await {
                Ok(effects) => return effects,
                Err(err) => err,
            };
            if is_connection_error(&err) {
                tracing::warn!(error = %err, changes = changes.len(), "database unavailable; changes refused");
                return changes
                    .iter()
                    .map(|_| Err(AppError::Unavailable("the database")))
                    .collect();
            }
            if changes.len() == 1 {
                // A concurrent copy of its client_id won the race: the statement rolled back
                // whole (no seq used up), and now finds that copy and answers with it.
                if messages::is_duplicate_client_id(&err) {
                    if let Ok(effects) = self.try_commit(changes).await {
                        return effects;
                    }
                }
                return vec![Err(refused_row(err))];
            }
            tracing::debug!(error = %err, changes = changes.len(), "batch failed; storing its halves apart");
            let (first, rest) = changes.split_at(changes.len() / 2);
            let mut out = self.commit(first).await;
            out.extend(self.commit(rest).await);
            out
        })
    }

    /// One commit of `changes`: new messages alone in one statement; anything else in one
    /// transaction that locks the rooms first. Then the messages the answers and announcements
    /// need are read back, and each change's effect made.
    async fn try_commit(&self, changes: &[Change]) -> sqlx::Result<Vec<AppResult<Effect>>> {
        self.metrics.writer_statements.inc();
        // Plain messages (no thread reply, no mention) need one statement, committed alone.
        let only_sends: Option<Vec<NewMessage>> = changes
            .iter()
            .map(|c| match c {
                Change::Send(m) if m.thread_root_id.is_none() && m.mentions.is_empty() => {
                    Some(m.clone())
                }
                _ => None,
            })
            .collect();
        if let Some(sends) = only_sends {
            let raw: Vec<Raw> = messages::insert_batch(&self.db, &sends, Log::InStatement)
                .await?
                .into_iter()
                .map(Raw::Sent)
                .collect();
            return effects(Reader::Pool(&self.db), changes, raw).await;
        }
        let mut tx = self.db.begin().await?;
        let rooms: Vec<Uuid> = changes.iter().map(Change::room_id).collect();
        store::rooms::lock(&mut tx, &rooms).await?;
        let mut raw = Vec::with_capacity(changes.len());
        for run in runs(changes) {
            match &run[0] {
                Change::Send(_) => {
                    let batch: Vec<NewMessage> = run.iter().filter_map(as_send).collect();
                    let out = messages::insert_batch(&mut *tx, &batch, Log::ByCaller).await?;
                    let stored: Vec<&Message> = out
                        .iter()
                        .filter_map(|o| match o {
                            BatchOutcome::New(m) => Some(&**m),
                            _ => None,
                        })
                        .collect();
                    let roots: Vec<Uuid> = stored.iter().filter_map(|m| m.thread_root_id).collect();
                    keep_created_events(&mut tx, &roots).await?;
                    messages::threads_and_mentions(&mut *tx, &stored).await?;
                    raw.extend(out.into_iter().map(Raw::Sent));
                }
                Change::Edit(_) => {
                    let batch: Vec<Edit> = run.iter().filter_map(as_edit).collect();
                    let ids: Vec<Uuid> = batch.iter().map(|e| e.id).collect();
                    keep_created_events(&mut tx, &ids).await?;
                    let out = messages::edit_batch(&mut *tx, &batch, self.edit_window).await?;
                    raw.extend(out.into_iter().map(Raw::Changed));
                }
                Change::Delete(_) => {
                    let batch: Vec<Delete> = run.iter().filter_map(as_delete).collect();
                    let out = messages::delete_batch(&mut *tx, &batch).await?;
                    raw.extend(out.into_iter().map(Raw::Changed));
                }
                Change::React(..) => {
                    let batch: Vec<React> = run.iter().filter_map(as_react).collect();
                    let ids: Vec<Uuid> = batch.iter().map(|r| r.message_id).collect();
                    keep_created_events(&mut tx, &ids).await?;
                    let out = reactions::react_batch(&mut *tx, &batch).await?;
                    raw.extend(out.into_iter().map(Raw::Reacted));
                }
            }
        }
        let effects = effects(Reader::Tx(&mut tx), changes, raw).await?;
        record_events(&mut tx, changes, &effects).await?;
        tx.commit().await?;
        Ok(effects)
    }
}

/// Before messages change: a `message.created` event that still reads its message when it is
/// read (nothing changed it since) gets the message stored as it is now, so that the event
/// keeps showing the message as it was created.
async fn keep_created_events(tx: &mut sqlx::PgConnection, ids: &[Uuid]) -> sqlx::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut ids = ids.to_vec();
    ids.sort();
    ids.dedup();
    let unchanged = store::events::unchanged_since_created(&mut *tx, &ids).await?;
    if unchanged.is_empty() {
        return Ok(());
    }
    let created: Vec<(Uuid, serde_json::Value, Option<Uuid>)> =
        messages::read_many(&mut *tx, &unchanged)
            .await?
            .iter()
            .map(|m| {
                (
                    m.id,
                    events::message_data(m),
                    m.reply_to.as_ref().map(|q| q.id),
                )
            })
            .collect();
    store::events::store_created(&mut *tx, &created).await
}

/// Appends the events of a transaction's batch, as its last statement: one per announcement
/// (the event log tells a backend what the sockets were told). A new message's event reads its
/// message when it is read, unless the batch changes the message too; a deletion erases the
/// message's text from its earlier events.
async fn record_events(
    tx: &mut sqlx::PgConnection,
    changes: &[Change],
    effects: &[AppResult<Effect>],
) -> sqlx::Result<()> {
    let mut deleted: HashSet<Uuid> = HashSet::new();
    let mut changed: HashSet<Uuid> = HashSet::new();
    for (change, effect) in changes.iter().zip(effects) {
        let Ok(effect) = effect else { continue };
        for announcement in &effect.announce {
            match announcement {
                Announcement::Deleted { id, .. } => {
                    deleted.insert(*id);
                }
                Announcement::Updated(m) => {
                    changed.insert(m.id);
                }
                Announcement::Reaction { message_id, .. } => {
                    changed.insert(*message_id);
                }
                _ => {}
            }
        }
        if let Change::Send(m) = change {
            if let Some(root) = m.thread_root_id {
                changed.insert(root);
            }
        }
    }
    let mut logged = Vec::new();
    for effect in effects.iter().flatten() {
        for announcement in &effect.announce {
            let (kind, id, shown) = match announcement {
                Announcement::Message { message, .. } => {
                    (Kind::MessageCreated, message.id, Some(message))
                }
                Announcement::Updated(message) => (Kind::MessageUpdated, message.id, Some(message)),
                Announcement::Deleted { id, .. } => (Kind::MessageDeleted, *id, None),
                Announcement::Reaction { message_id, on, .. } => {
                    let kind = if *on {
                        Kind::ReactionAdded
                    } else {
                        Kind::ReactionRemoved
                    };
                    let message = match &effect.applied {
                        Applied::Changed(m) => Some(m),
                        _ => None,
                    };
                    (kind, *message_id, message)
                }
                Announcement::Mentioned { .. } => continue,
            };
            let stored = match shown {
                // A new message no later change of the batch touched reads itself later.
                Some(_) if kind == Kind::MessageCreated && !changed.contains(&id) => None,
                _ if deleted.contains(&id) => None,
                other => other,
            };
            logged.push(match stored {
                Some(message) => events::message(kind, message),
                None => events::message_read_later(kind, id),
            });
        }
    }
    let mut deleted: Vec<Uuid> = deleted.into_iter().collect();
    deleted.sort();
    store::events::erase_messages(&mut *tx, &deleted).await?;
    store::events::append_for_messages(&mut *tx, logged).await
}

fn as_send(c: &Change) -> Option<NewMessage> {
    match c {
        Change::Send(m) => Some(m.clone()),
        _ => None,
    }
}

fn as_edit(c: &Change) -> Option<Edit> {
    match c {
        Change::Edit(e) => Some(e.clone()),
        _ => None,
    }
}

fn as_delete(c: &Change) -> Option<Delete> {
    match c {
        Change::Delete(d) => Some(d.clone()),
        _ => None,
    }
}

fn as_react(c: &Change) -> Option<React> {
    match c {
        Change::React(r, _) => Some(r.clone()),
        _ => None,
    }
}

/// Splits a batch into runs of one kind each, in order, that one statement can store: a run of
/// edits, deletions or reactions never changes the same thing twice (a statement sees the
/// table as it was before it, so the second change would not see the first).
fn runs(changes: &[Change]) -> Vec<&[Change]> {
    #[derive(PartialEq, Eq, Hash)]
    enum Key<'a> {
        Message(Uuid),
        Reaction(Uuid, Uuid, &'a str),
    }
    let mut runs = Vec::new();
    let mut start = 0;
    let mut seen: HashSet<Key> = HashSet::new();
    for (i, change) in changes.iter().enumerate() {
        let key = match change {
            Change::Send(_) => None,
            Change::Edit(e) => Some(Key::Message(e.id)),
            Change::Delete(d) => Some(Key::Message(d.id)),
            Change::React(r, _) => Some(Key::Reaction(r.message_id, r.user_id, &r.emoji)),
        };
        let same_kind =
            i > start && std::mem::discriminant(change) == std::mem::discriminant(&changes[start]);
        let repeated = key.as_ref().is_some_and(|k| seen.contains(k));
        if i > start && (!same_kind || repeated) {
            runs.push(&changes[start..i]);
            start = i;
            seen.clear();
        }
        if let Some(key) = key {
            seen.insert(key);
        }
    }
    if start < changes.len() {
        runs.push(&changes[start..]);
    }
    runs
}

/// Turns the statements' outcomes into answers and announcements, reading back (in one query,
/// on the connection or transaction that stored them) every message an answer or an
/// announcement shows whole: edited and reacted messages as their sender sees them, the first
/// copies of repeated `client_id`s, and thread roots with their new summaries.
/// Where `effects` reads back: the pool after a batch of sends committed on its own (only when
/// an answer needs a read, which a plain message never does), or the batch's transaction.
enum Reader<'a> {
    Pool(&'a sqlx::PgPool),
    Tx(&'a mut sqlx::PgConnection),
}

async fn effects(
    mut db: Reader<'_>,
    changes: &[Change],
    raw: Vec<Raw>,
) -> sqlx::Result<Vec<AppResult<Effect>>> {
    let nobody = Uuid::nil();
    let mut wanted: Vec<(Uuid, Uuid)> = Vec::new();
    // The last new reply of each thread root in the batch: the root is announced once, after it.
    let mut last_reply: HashMap<Uuid, usize> = HashMap::new();
    for (i, (change, raw)) in changes.iter().zip(&raw).enumerate() {
        match (change, raw) {
            (Change::Send(m), Raw::Sent(BatchOutcome::Duplicate(id))) => {
                wanted.push((*id, m.sender_id))
            }
            (Change::Send(m), Raw::Sent(BatchOutcome::New(_))) => {
                if let Some(root) = m.thread_root_id {
                    wanted.push((root, nobody));
                    last_reply.insert(root, i);
                }
            }
            (Change::Edit(e), Raw::Changed(ChangeOutcome::Changed { .. })) => {
                wanted.push((e.id, e.editor_id))
            }
            (
                Change::React(r, _),
                Raw::Reacted(ReactOutcome::Changed { .. } | ReactOutcome::Unchanged),
            ) => wanted.push((r.message_id, r.user_id)),
            _ => {}
        }
    }
    // Set when a read on the pool failed. That batch is committed already: its error must not
    // reach `Batches::commit`, which would store the batch again; only the answers that needed
    // the read fail (`unavailable`: a resend with the same `client_id` is safe).
    let mut read_failed = false;
    let (read, mine) = if wanted.is_empty() {
        (HashMap::new(), HashMap::new())
    } else {
        let mut ids: Vec<Uuid> = wanted.iter().map(|w| w.0).collect();
        ids.sort();
        ids.dedup();
        let read = match &mut db {
            Reader::Pool(pool) => messages::read_many(*pool, &ids)
                .await
                .unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "reading back committed messages failed");
                    read_failed = true;
                    Vec::new()
                }),
            Reader::Tx(conn) => messages::read_many(&mut **conn, &ids).await?,
        };
        let read: HashMap<Uuid, Message> = read.into_iter().map(|m| (m.id, m)).collect();
        wanted.retain(|w| w.1 != nobody);
        wanted.sort();
        wanted.dedup();
        let mine = if wanted.is_empty() {
            HashMap::new()
        } else {
            match &mut db {
                Reader::Pool(pool) => reactions::mine(*pool, &wanted).await.unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "reading back reactions failed");
                    read_failed = true;
                    HashMap::new()
                }),
                Reader::Tx(conn) => reactions::mine(&mut **conn, &wanted).await?,
            }
        };
        (read, mine)
    };
    // A message as `viewer` reads it: with their own reactions.
    let read = |id: Uuid, viewer: Uuid| -> AppResult<Message> {
        let missing = || {
            if read_failed {
                AppError::Unavailable("the database")
            } else {
                no_message()
            }
        };
        let mut message = read.get(&id).cloned().ok_or_else(missing)?;
        message.my_reactions = Some(mine.get(&(id, viewer)).cloned().unwrap_or_default());
        Ok(message)
    };
    let mut out = Vec::with_capacity(changes.len());
    for (i, (change, raw)) in changes.iter().zip(raw).enumerate() {
        let effect = match (change, raw) {
            (Change::Send(m), Raw::Sent(outcome)) => match outcome {
                BatchOutcome::New(message) => {
                    let broadcast = message.clone().broadcast();
                    let mut announce = vec![Announcement::Message {
                        message: broadcast.clone(),
                        also_to: Vec::new(),
                    }];
                    if !message.mentions.is_empty() {
                        announce.push(Announcement::Mentioned {
                            users: message.mentions.iter().map(|u| u.id).collect(),
                            message: broadcast,
                        });
                    }
                    if let Some(root) = m.thread_root_id {
                        if last_reply.get(&root) == Some(&i) {
                            if let Ok(root) = read(root, nobody) {
                                announce.push(Announcement::Updated(root.broadcast()));
                            }
                        }
                    }
                    Ok(Effect {
                        applied: Applied::Sent(Stored::New(*message)),
                        announce,
                    })
                }
                BatchOutcome::Duplicate(id) => read(id, m.sender_id).map(|first| Effect {
                    applied: Applied::Sent(Stored::Duplicate(first)),
                    announce: Vec::new(),
                }),
                BatchOutcome::NoRoom => Err(room_gone()),
                BatchOutcome::Refused => Err(AppError::Forbidden(
                    "You are not allowed to post in this room.".into(),
                )),
            },
            (Change::Edit(e), Raw::Changed(outcome)) => match outcome {
                ChangeOutcome::Changed {
                    newly_mentioned, ..
                } => read(e.id, e.editor_id).map(|message| {
                    let broadcast = message.clone().broadcast();
                    let mut announce = vec![Announcement::Updated(broadcast.clone())];
                    if !newly_mentioned.is_empty() {
                        announce.push(Announcement::Mentioned {
                            users: newly_mentioned,
                            message: broadcast,
                        });
                    }
                    Effect {
                        applied: Applied::Changed(message),
                        announce,
                    }
                }),
                other => Err(refused_change(other)),
            },
            (Change::Delete(d), Raw::Changed(outcome)) => match outcome {
                ChangeOutcome::Changed { rev, seq, .. } => Ok(Effect {
                    applied: Applied::Deleted,
                    announce: vec![Announcement::Deleted { id: d.id, seq, rev }],
                }),
                ChangeOutcome::Unchanged => Ok(Effect {
                    applied: Applied::Deleted,
                    announce: Vec::new(),
                }),
                other => Err(refused_change(other)),
            },
            (Change::React(r, user), Raw::Reacted(outcome)) => match outcome {
                ReactOutcome::Changed { rev, seq, count } => {
                    read(r.message_id, r.user_id).map(|message| Effect {
                        applied: Applied::Changed(message),
                        announce: vec![Announcement::Reaction {
                            message_id: r.message_id,
                            seq,
                            rev,
                            emoji: r.emoji.clone(),
                            user: user.clone(),
                            on: r.on,
                            count,
                        }],
                    })
                }
                ReactOutcome::Unchanged => read(r.message_id, r.user_id).map(|message| Effect {
                    applied: Applied::Changed(message),
                    announce: Vec::new(),
                }),
                ReactOutcome::Missing => Err(no_message()),
                ReactOutcome::Forbidden => Err(AppError::forbidden()),
                ReactOutcome::Deleted => {
                    Err(AppError::invalid_field("id", "the message is deleted"))
                }
            },
            _ => Err(AppError::Internal(anyhow::anyhow!(
                "a change and its outcome do not match"
            ))),
        };
        out.push(effect);
    }
    Ok(out)
}

/// Why an edit or a deletion was refused at commit.
fn refused_change(outcome: ChangeOutcome) -> AppError {
    match outcome {
        ChangeOutcome::Forbidden => AppError::forbidden(),
        ChangeOutcome::Deleted => AppError::invalid_field("id", "the message is deleted"),
        ChangeOutcome::TooLate => AppError::Forbidden("the edit window has passed".into()),
        ChangeOutcome::Missing | ChangeOutcome::Unchanged | ChangeOutcome::Changed { .. } => {
            no_message()
        }
    }
}

fn no_message() -> AppError {
    AppError::NotFound("no such message".into())
}

/// Why Postgres refused one change on its own: text it cannot store (a data exception, class
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
