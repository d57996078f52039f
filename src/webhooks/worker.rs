//! The delivery worker: streams each webhook's events from the log and POSTs them, on every
//! node at once if there are several.
//!
//! **Streams.** A webhook's first attempts come from a stream: one node at a time (the one
//! holding the webhook's advisory lock, released at once if that node dies) reads the events
//! past the webhook's cursor a batch at a time, POSTs the ones of its types, then writes the
//! batch down in one statement: a delivery row and an attempt row per event sent (delivered, or
//! pending with its first retry due) and the cursor moved past the batch, only if the cursor is
//! still where the batch started. A node that dies mid-batch has moved nothing: the next holder
//! sends those events again (at least once). Positions are dense and follow commit order (see
//! `docs/events.md`), so a cursor never passes an event that could still appear.
//!
//! **Retries.** A pending delivery is claimed when due (a claim re-checks, on the row it locked,
//! that the delivery is still due, so two nodes never take the same one), POSTed, and its
//! outcome written with other attempts' in one statement.
//!
//! **What it costs the message path.** Nothing on its tasks: the worker runs on a thread and a
//! runtime of its own in the `SCHED_IDLE` class (it gets the CPU the message path leaves idle),
//! with its own few database connections, whose commits do not wait for the disk. While this
//! node's writer is saturated it gives way: one batch per 200 ms for the whole node, so
//! deliveries lag under such a load and catch up once it falls. It bounds what it holds: at
//! most `CONCURRENCY` requests in flight, at most `PER_WEBHOOK` of them to one webhook (a slow
//! or dead receiver holds its own slots only), each with a 10 s timeout, and an answer's body
//! is never read. In Postgres a delivered event costs two row inserts written a batch per
//! statement; BENCHMARKS.md has the figures.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sqlx::{postgres::PgConnectOptions, ConnectOptions, PgPool};
use tokio::{
    sync::{mpsc, oneshot, Notify, Semaphore},
    task::JoinSet,
};
use uuid::Uuid;

use super::{address, signing};
use crate::{
    app::AppState,
    events::{self, Event},
    store::{
        self,
        webhooks::{Attempt, Claimed, Sent},
    },
    writer::Writer,
};

/// Requests in flight from one node.
const CONCURRENCY: usize = 64;
/// Requests in flight to one webhook from one node.
const PER_WEBHOOK: usize = 16;
/// Retries of one webhook claimed in one round (only while fewer than `PER_WEBHOOK` of its
/// requests are queued on this node).
const CLAIM_PER_WEBHOOK: usize = 48;
/// How long a receiver has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claimed retry is held before another node may try it (a node that died
/// mid-attempt). A node holds fewer than `PER_WEBHOOK + CLAIM_PER_WEBHOOK` (64) retries of a
/// webhook, sent 16 at a time, so a claimed one waits at most four `TIMEOUT`s for a slot and
/// takes at most one more: 60 s leave room.
const LEASE_SECS: f64 = 60.0;
/// How long a delivery is retried before it is marked failed.
const GIVE_UP_AFTER_SECS: f64 = 24.0 * 3600.0;
/// How often the worker looks for webhooks with new events and for due retries when it found
/// nothing to do.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// How long it lets retries finish before claiming again, once one has.
const GATHER: Duration = Duration::from_millis(2);
/// Most retries recorded in one statement.
const RECORD_BATCH: usize = 512;
/// Events a stream reads per batch (and at most sends in it).
const STREAM_BATCH: i64 = 256;
/// Events per batch while the receiver is failing: one round of requests, not a flood.
const FAILING_BATCH: i64 = PER_WEBHOOK as i64;
/// The longest a stream waits after a batch that failed entirely (it waits the retry base,
/// doubling per such batch in a row, up to this).
const MAX_PAUSE: Duration = Duration::from_secs(60);
/// How long a stream that has caught up waits for more events before it ends (and its lock is
/// released), looking every `LINGER_POLL`: a steady flow is sent in batches of what came in
/// 25 ms (each batch costs eight statements, so fewer, larger ones cost Postgres less per event
/// than chasing each event as it commits; it adds about 12 ms to the lag).
const LINGER: Duration = Duration::from_millis(500);
const LINGER_POLL: Duration = Duration::from_millis(25);
/// Streams one node runs at once.
const STREAMS: usize = 64;
/// The worker's own database connections (streams and retries), beside the lock session.
const CONNECTIONS: u32 = 4;
/// Changes in this node's writer (queued or being committed) above which it counts as
/// saturated (at 2,000 msg/s it holds a few at a time; saturated, hundreds), and the worker
/// gives way: before each batch or round it waits, looking every `GIVE_WAY_POLL`, so that under
/// a saturating load the node still sends one batch of `BUSY_BATCH` (or one retry round) per
/// `MAX_GIVE_WAY`, up to 1,280 events/s in all, in small steps rather than bursts, and its
/// streams catch up once the load falls.
const BUSY: usize = 64;
const GIVE_WAY_POLL: Duration = Duration::from_millis(5);
const MAX_GIVE_WAY: Duration = Duration::from_millis(50);
const BUSY_BATCH: i64 = 64;

/// Starts the worker on a thread of its own, for as long as the runtime that calls this runs
/// (a delivery cut short by the end is sent again: at least once).
pub fn spawn(state: &AppState) {
    let settings = Settings {
        allow_private: state.config.webhook_allow_private,
        retry_base: state.config.webhook_retry_base,
        // Fixed plans, as the writer's (the same few statements all day); and commits that do
        // not wait for the disk, so that the writer's group commits keep the WAL flushes to
        // themselves. A batch lost in a Postgres crash leaves the cursor before it, and those
        // events are sent again (at least once).
        connect: store::fixed_plans((*state.db.connect_options()).clone())
            .options([("synchronous_commit", "off")]),
        writer: state.writer.clone(),
    };
    // Held by a task of the calling runtime: when that runtime ends (a test's), the worker
    // thread hears it and ends too.
    let (alive, ended) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _alive = alive;
        std::future::pending::<()>().await
    });
    let spawned = std::thread::Builder::new()
        .name("webhooks".into())
        .spawn(move || {
            crate::idle::lower_priority("the webhook worker");
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    tracing::error!(error = %err, "the webhook worker cannot start: no runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                tokio::select! {
                    _ = ended => {}
                    () = run(settings) => {}
                }
            });
        });
    if let Err(err) = spawned {
        tracing::error!(error = %err, "the webhook worker cannot start: no thread");
    }
}

struct Settings {
    allow_private: bool,
    retry_base: Duration,
    connect: PgConnectOptions,
    writer: Writer,
}

async fn run(settings: Settings) {
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .dns_resolver(address::resolver(settings.allow_private))
        .user_agent(concat!("Huddle-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "the webhook worker cannot start: no HTTP client");
            return;
        }
    };
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(CONNECTIONS)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(settings.connect.clone());
    let (attempts, recorded) = mpsc::unbounded_channel();
    tokio::spawn(record_attempts(db.clone(), recorded));
    let worker = Arc::new(Worker {
        db,
        client,
        allow_private: settings.allow_private,
        retry_base: settings.retry_base,
        writer: settings.writer.clone(),
        went_ahead: Mutex::new(Instant::now()),
        slots: Arc::new(Semaphore::new(CONCURRENCY)),
        queued: Mutex::new(HashMap::new()),
        freed: Notify::new(),
        attempts,
    });
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<Uuid>();
    // The session that holds the advisory locks of the streams this node runs.
    let mut locks: Option<sqlx::PgConnection> = None;
    let mut running: HashSet<Uuid> = HashSet::new();
    loop {
        while let Ok(id) = ended.try_recv() {
            running.remove(&id);
            if let Some(conn) = locks.as_mut() {
                if let Err(err) = store::webhooks::release_stream(conn, id).await {
                    tracing::warn!(error = %err, "releasing a webhook stream failed");
                    locks = None;
                }
            }
        }
        if locks.is_none() {
            match settings.connect.connect().await {
                Ok(conn) => locks = Some(conn),
                Err(err) => tracing::warn!(error = %err, "the webhook worker cannot connect"),
            }
        }
        if let Some(conn) = locks.as_mut() {
            let room = STREAMS.saturating_sub(running.len()) as i64;
            let skip: Vec<Uuid> = running.iter().copied().collect();
            match store::webhooks::take_streams(conn, &skip, room).await {
                Ok(taken) => {
                    for id in taken {
                        running.insert(id);
                        let worker = worker.clone();
                        let ended = ended_tx.clone();
                        tokio::spawn(async move {
                            worker.stream(id).await;
                            let _ = ended.send(id);
                        });
                    }
                }
                Err(err) => {
                    // The session and its locks are gone: the streams running finish their
                    // batch, and the cursor check keeps them from writing over a node that
                    // took them over meanwhile.
                    tracing::warn!(error = %err, "taking webhook streams failed");
                    locks = None;
                }
            }
        }
        if worker.retry_round().await {
            continue;
        }
        // Nothing to retry: wait for a slot to free up, a stream to end, or the next look.
        tokio::select! {
            _ = worker.freed.notified() => {}
            Some(id) = ended.recv() => {
                running.remove(&id);
                if let Some(conn) = locks.as_mut() {
                    if store::webhooks::release_stream(conn, id).await.is_err() {
                        locks = None;
                    }
                }
            }
            _ = tokio::time::sleep(IDLE_POLL) => {}
        }
        tokio::time::sleep(GATHER).await;
    }
}

/// Writes retries' outcomes a batch at a time (one statement for all that finished meanwhile).
async fn record_attempts(db: PgPool, mut recorded: mpsc::UnboundedReceiver<Attempt>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while recorded.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        if let Err(err) = store::webhooks::record(&db, &batch, GIVE_UP_AFTER_SECS).await {
            // Not recorded: the leases run out and those deliveries are tried again (at least
            // once).
            tracing::warn!(error = %err, attempts = batch.len(), "recording webhook attempts failed");
        }
        batch.clear();
    }
}

struct Worker {
    db: PgPool,
    client: reqwest::Client,
    allow_private: bool,
    retry_base: Duration,
    /// This node's message writer, whose load says when to give way.
    writer: Writer,
    /// When a batch or round last went ahead while the writer was saturated.
    went_ahead: Mutex<Instant>,
    slots: Arc<Semaphore>,
    /// Requests of each webhook queued or in flight on this node (streamed and retried), and
    /// the semaphore that lets `PER_WEBHOOK` of them go at once.
    queued: Mutex<HashMap<Uuid, (usize, Arc<Semaphore>)>>,
    /// Told when a request finishes (a slot is free).
    freed: Notify,
    /// Finished retries, to `record_attempts`.
    attempts: mpsc::UnboundedSender<Attempt>,
}

/// What a stream reads next.
enum Next {
    /// The webhook is paused or gone: the stream ends.
    Stop,
    /// Nothing past the cursor.
    CaughtUp {
        workspace: crate::workspaces::WorkspaceId,
        cursor: i64,
    },
    Batch(Batch),
}

struct Batch {
    url: Arc<str>,
    secret: Arc<[u8]>,
    /// The cursor the batch starts at, and the last position it read.
    from: i64,
    to: i64,
    /// The events read that the webhook takes.
    events: Vec<Event>,
}

/// How one request went.
struct Outcome {
    status: Option<i32>,
    error: Option<String>,
    latency_ms: i32,
}

impl Outcome {
    fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s)) && self.error.is_none()
    }
}

impl Worker {
    /// Streams one webhook (its lock held) until it has caught up and nothing more came for a
    /// moment, it was paused or deleted, or another node took it over.
    async fn stream(self: &Arc<Self>, id: Uuid) {
        // Batches in a row in which every request failed.
        let mut failing = 0u32;
        let mut caught_up_at: Option<Instant> = None;
        loop {
            let saturated = self.give_way().await;
            let limit = if failing > 0 {
                FAILING_BATCH
            } else if saturated {
                BUSY_BATCH
            } else {
                STREAM_BATCH
            };
            let batch = match self.next_batch(id, limit).await {
                Ok(Next::Batch(batch)) => batch,
                Ok(Next::Stop) => return,
                Ok(Next::CaughtUp { workspace, cursor }) => {
                    let since = *caught_up_at.get_or_insert_with(Instant::now);
                    loop {
                        if since.elapsed() >= LINGER {
                            return;
                        }
                        tokio::time::sleep(LINGER_POLL).await;
                        match store::events::last_position(&self.db, workspace).await {
                            Ok(last) if last > cursor => break,
                            Ok(_) => {}
                            Err(_) => return,
                        }
                    }
                    continue;
                }
                Err(err) => {
                    tracing::warn!(error = %err, webhook.id = %id, "reading events for a webhook failed");
                    return;
                }
            };
            caught_up_at = None;
            let sent = self.send_all(id, &batch).await;
            let failed: Vec<&Sent> = sent.iter().filter(|s| s.retry_in_secs.is_some()).collect();
            if let Some(first) = failed.first() {
                tracing::info!(
                    webhook.id = %id, failed = failed.len(), sent = sent.len(),
                    error = first.error.as_deref().unwrap_or(""),
                    "webhook deliveries failed; retrying later"
                );
            }
            let all_failed = !sent.is_empty() && failed.len() == sent.len();
            match store::webhooks::record_sent(&self.db, id, batch.from, batch.to, &sent).await {
                Ok(true) => {}
                // Another node streamed these events meanwhile: it goes on from there.
                Ok(false) => return,
                Err(err) => {
                    // Nothing written, the cursor unmoved: the next holder sends them again.
                    tracing::warn!(error = %err, webhook.id = %id, "recording a webhook batch failed");
                    return;
                }
            }
            if all_failed {
                // A receiver that fails everything is not flooded: the next batch waits, then
                // is small (the failed ones are retried on their own schedule meanwhile).
                failing += 1;
                tokio::time::sleep(self.pause(failing)).await;
            } else {
                failing = 0;
            }
        }
    }

    /// The webhook's next batch, read in one snapshot (the events as they stood together).
    async fn next_batch(&self, id: Uuid, limit: i64) -> sqlx::Result<Next> {
        let mut tx = self.db.begin().await?;
        sqlx::query("set transaction isolation level repeatable read, read only")
            .execute(&mut *tx)
            .await?;
        let Some(head) = store::webhooks::stream_head(&mut *tx, id).await? else {
            return Ok(Next::Stop);
        };
        if !head.active {
            return Ok(Next::Stop);
        }
        let rows =
            store::events::page(&mut *tx, head.workspace_id, head.event_cursor, limit).await?;
        let Some(to) = rows.last().map(|r| r.position) else {
            return Ok(Next::CaughtUp {
                workspace: head.workspace_id,
                cursor: head.event_cursor,
            });
        };
        let wanted: Vec<_> = rows
            .into_iter()
            .filter(|r| head.events.is_empty() || head.events.contains(&r.kind))
            .collect();
        let events = events::render(&mut tx, wanted).await?;
        tx.commit().await?;
        Ok(Next::Batch(Batch {
            url: head.url.into(),
            secret: head.secret.into(),
            from: head.event_cursor,
            to,
            events,
        }))
    }

    /// Sends a batch's events, `PER_WEBHOOK` at a time; returns what each came to.
    async fn send_all(self: &Arc<Self>, id: Uuid, batch: &Batch) -> Vec<Sent> {
        let mut requests = JoinSet::new();
        for event in &batch.events {
            let worker = self.clone();
            let (url, secret, event) = (batch.url.clone(), batch.secret.clone(), event.clone());
            let per_webhook = self.enter(id);
            requests.spawn(async move {
                let outcome = worker.send(&per_webhook, &url, &secret, &event).await;
                worker.leave(id);
                (event, outcome)
            });
        }
        let mut sent = Vec::with_capacity(batch.events.len());
        while let Some(done) = requests.join_next().await {
            let Ok((event, outcome)) = done else { continue };
            sent.push(Sent {
                delivery_id: Uuid::now_v7(),
                event_position: event.position,
                event_id: event.id,
                retry_in_secs: (!outcome.delivered()).then(|| self.backoff(1)),
                response_status: outcome.status,
                latency_ms: outcome.latency_ms,
                error: outcome.error,
            });
        }
        sent
    }

    /// One request, once its webhook's slot and then a node slot are free (so that a slow
    /// receiver queues on its own slots without taking the ones other webhooks need).
    async fn send(
        &self,
        per_webhook: &Semaphore,
        url: &str,
        secret: &[u8],
        event: &Event,
    ) -> Outcome {
        let (Ok(_mine), Ok(_slot)) = (per_webhook.acquire().await, self.slots.acquire().await)
        else {
            return Outcome {
                status: None,
                error: Some("the worker is stopping".to_owned()),
                latency_ms: 0,
            };
        };
        let started = Instant::now();
        let (status, error) = self.post(url, secret, event).await;
        Outcome {
            status,
            error,
            latency_ms: started.elapsed().as_millis().min(i32::MAX as u128) as i32,
        }
    }

    /// One round of retries: due ones claimed and started. Returns whether it claimed any
    /// (then the next round follows at once).
    async fn retry_round(self: &Arc<Self>) -> bool {
        self.give_way().await;
        // Claimed and not finished, per webhook and in all: a node holds at most twice what it
        // sends at once, and a webhook with a full queue waits for its own to drain.
        let (busy, held): (Vec<Uuid>, usize) = {
            let queued = match self.queued.lock() {
                Ok(q) => q,
                Err(poisoned) => poisoned.into_inner(),
            };
            let busy = queued
                .iter()
                .filter(|(_, (n, _))| *n >= PER_WEBHOOK)
                .map(|(id, _)| *id)
                .collect();
            (busy, queued.values().map(|(n, _)| n).sum())
        };
        let room = (2 * CONCURRENCY).saturating_sub(held);
        if room == 0 {
            return false;
        }
        let claimed = match store::webhooks::claim(
            &self.db,
            room as i64,
            CLAIM_PER_WEBHOOK as i64,
            &busy,
            LEASE_SECS,
        )
        .await
        {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::warn!(error = %err, "claiming webhook retries failed");
                return false;
            }
        };
        if claimed.is_empty() {
            return false;
        }
        let wanted: Vec<_> = claimed
            .iter()
            .map(|d| (d.workspace_id, d.event_position))
            .collect();
        let events = match events::at(&self.db, &wanted).await {
            Ok(events) => events,
            Err(err) => {
                // The claims' leases run out and they are tried again.
                tracing::warn!(error = %err, "reading events for webhook retries failed");
                return false;
            }
        };
        for delivery in claimed {
            let event = events
                .get(&(delivery.workspace_id, delivery.event_position))
                .cloned();
            let per_webhook = self.enter(delivery.webhook_id);
            let worker = self.clone();
            tokio::spawn(async move {
                let webhook = delivery.webhook_id;
                worker.retry(&per_webhook, delivery, event).await;
                worker.leave(webhook);
            });
        }
        true
    }

    fn enter(&self, webhook: Uuid) -> Arc<Semaphore> {
        let mut queued = match self.queued.lock() {
            Ok(q) => q,
            Err(poisoned) => poisoned.into_inner(),
        };
        let entry = queued
            .entry(webhook)
            .or_insert_with(|| (0, Arc::new(Semaphore::new(PER_WEBHOOK))));
        entry.0 += 1;
        entry.1.clone()
    }

    fn leave(&self, webhook: Uuid) {
        let mut queued = match self.queued.lock() {
            Ok(q) => q,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(entry) = queued.get_mut(&webhook) {
            entry.0 -= 1;
            if entry.0 == 0 {
                queued.remove(&webhook);
            }
        }
        drop(queued);
        self.freed.notify_one();
    }

    /// Retries one delivery and hands its outcome to `record_attempts`.
    async fn retry(&self, per_webhook: &Semaphore, d: Claimed, event: Option<Event>) {
        let outcome = match &event {
            None => Outcome {
                status: None,
                error: Some(
                    "the event is gone (past EVENT_RETENTION_DAYS, or its room was deleted)"
                        .to_owned(),
                ),
                latency_ms: 0,
            },
            Some(event) => self.send(per_webhook, &d.url, &d.secret, event).await,
        };
        let delivered = outcome.delivered();
        let retry_in_secs = if delivered {
            None
        } else if event.is_none() {
            // Nothing left to send: past the retry window at once, so it is marked failed.
            Some(2.0 * GIVE_UP_AFTER_SECS)
        } else {
            Some(self.backoff(d.attempt))
        };
        if !delivered {
            tracing::info!(
                delivery.id = %d.id, webhook.id = %d.webhook_id, attempt = d.attempt,
                status = ?outcome.status, error = outcome.error.as_deref().unwrap_or(""),
                "webhook delivery failed again; retrying later"
            );
        }
        let _ = self.attempts.send(Attempt {
            delivery_id: d.id,
            attempt: d.attempt,
            response_status: outcome.status,
            latency_ms: outcome.latency_ms,
            error: outcome.error,
            retry_in_secs,
        });
    }

    /// The request itself: the answer's status, or why there was none.
    async fn post(&self, url: &str, secret: &[u8], event: &Event) -> (Option<i32>, Option<String>) {
        let id = event.id.to_string();
        let body = match serde_json::to_vec(event) {
            Ok(body) => body,
            Err(err) => return (None, Some(format!("the event could not be encoded: {err}"))),
        };
        let url = match reqwest::Url::parse(url) {
            Ok(url) => url,
            Err(err) => return (None, Some(format!("bad URL: {err}"))),
        };
        // An address literal never reaches the resolver: checked here instead.
        if let Some(host) = url.host_str() {
            if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
                if let Err(why) = address::check_host(host, 0, self.allow_private).await {
                    return (None, Some(why));
                }
            }
        }
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = signing::sign(secret, &id, timestamp, &body);
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        match sent {
            // The body is never read: a huge answer costs nothing.
            Ok(response) => {
                let status = response.status();
                let error = (!status.is_success()).then(|| format!("answered {status}"));
                (Some(i32::from(status.as_u16())), error)
            }
            Err(err) if err.is_timeout() => (None, Some("no answer within 10 s".to_owned())),
            Err(err) => (None, Some(error_chain(&err))),
        }
    }

    /// The wait before the next attempt: `WEBHOOK_RETRY_BASE` (5 s), doubling per attempt.
    fn backoff(&self, attempt: i32) -> f64 {
        let base = self.retry_base.as_secs_f64();
        base * 2f64.powi((attempt - 1).clamp(0, 30))
    }

    /// Deliveries give way to messages: while this node's writer is saturated, wait, until
    /// `MAX_GIVE_WAY` has passed since the node's last batch or round that went ahead anyway.
    /// Returns whether this one goes ahead of a saturated writer (then it is to be small).
    async fn give_way(&self) -> bool {
        loop {
            if self.writer.load() <= BUSY {
                return false;
            }
            {
                let mut last = match self.went_ahead.lock() {
                    Ok(last) => last,
                    Err(poisoned) => poisoned.into_inner(),
                };
                if last.elapsed() >= MAX_GIVE_WAY {
                    *last = Instant::now();
                    return true;
                }
            }
            tokio::time::sleep(GIVE_WAY_POLL).await;
        }
    }

    /// A stream's wait after `failing` batches in a row failed entirely.
    fn pause(&self, failing: u32) -> Duration {
        Duration::from_secs_f64(self.backoff(failing.min(31) as i32)).min(MAX_PAUSE)
    }
}

/// An error with its causes, as one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
