//! The delivery worker: turns the event log into deliveries and POSTs them, on every node at
//! once if there are several (a claim re-checks, on the row it locked, that the delivery is
//! still due, so two nodes never take the same one).
//!
//! It runs on tasks and connections of its own, reads the event log after the fact, and bounds
//! what it holds: at most `CONCURRENCY` requests in flight, at most `PER_WEBHOOK` of them to one
//! webhook (a slow or dead receiver holds its own slots only, not the others'), each with a 10 s
//! timeout, and an answer's body is never read. What it does cost the message path is Postgres
//! time: four row writes per delivery (made, claimed, attempt, outcome) on the same database as
//! the writer; BENCHMARKS.md has the figures.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, Notify, Semaphore};
use uuid::Uuid;

use super::{address, signing};
use crate::{
    app::AppState,
    events::{self, Event},
    store::webhooks::{self, Attempt, Claimed},
    workspaces::WorkspaceId,
};

/// Requests in flight from one node.
const CONCURRENCY: usize = 64;
/// Requests in flight to one webhook from one node.
const PER_WEBHOOK: usize = 16;
/// Deliveries of one webhook claimed in one round (only while fewer than `PER_WEBHOOK` of its
/// deliveries are queued on this node): a fast receiver is fed 48 at a time, so that the
/// rounds' own queries do not bound its rate.
const CLAIM_PER_WEBHOOK: usize = 48;
/// How long a receiver has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claimed delivery is held before another node may try it (a node that died
/// mid-attempt). A node holds fewer than `PER_WEBHOOK + CLAIM_PER_WEBHOOK` (64) deliveries of a
/// webhook, sent 16 at a time, so a claimed one waits at most four `TIMEOUT`s for a slot and
/// takes at most one more: 60 s leave room.
const LEASE_SECS: f64 = 60.0;
/// How long a delivery is retried before it is marked failed.
const GIVE_UP_AFTER_SECS: f64 = 24.0 * 3600.0;
/// How often the worker looks for new events and due retries when it found nothing to do.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// How long it lets deliveries finish before claiming again, once one has.
const GATHER: Duration = Duration::from_millis(2);
/// Most attempts recorded in one statement.
const RECORD_BATCH: usize = 512;
/// Events taken per webhook per round.
const EVENTS_PER_ROUND: i64 = 500;

/// Starts the worker, for as long as the process runs (a delivery cut short by the process's
/// end is tried again once its lease has run out, by this node or another).
pub fn spawn(state: AppState) {
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .dns_resolver(address::resolver(state.config.webhook_allow_private))
        .user_agent(concat!("Huddle-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "the webhook worker cannot start: no HTTP client");
            return;
        }
    };
    let (attempts, recorded) = mpsc::unbounded_channel();
    tokio::spawn(record_attempts(state.db.clone(), recorded));
    let worker = Arc::new(Worker {
        state,
        client,
        slots: Arc::new(Semaphore::new(CONCURRENCY)),
        queued: Mutex::new(HashMap::new()),
        freed: Notify::new(),
        attempts,
    });
    tokio::spawn(async move {
        loop {
            if worker.round().await {
                continue;
            }
            // Nothing to start: wait for a slot to free up or for new events, then let a few
            // more finish so that the next round claims them together.
            tokio::select! {
                _ = worker.freed.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
            tokio::time::sleep(GATHER).await;
        }
    });
}

/// Writes attempts' outcomes a batch at a time (one statement for all that finished meanwhile),
/// so that a busy webhook costs Postgres a statement per batch, not per request.
async fn record_attempts(db: sqlx::PgPool, mut recorded: mpsc::UnboundedReceiver<Attempt>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while recorded.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        if let Err(err) = webhooks::record(&db, &batch, GIVE_UP_AFTER_SECS).await {
            // Not recorded: the leases run out and those deliveries are tried again (at least
            // once).
            tracing::warn!(error = %err, attempts = batch.len(), "recording webhook attempts failed");
        }
        batch.clear();
    }
}

struct Worker {
    state: AppState,
    client: reqwest::Client,
    slots: Arc<Semaphore>,
    /// Deliveries of each webhook claimed by this node and not yet finished.
    queued: Mutex<HashMap<Uuid, (usize, Arc<Semaphore>)>>,
    /// Told when a delivery finishes (a slot is free).
    freed: Notify,
    /// Finished attempts, to `record_attempts`.
    attempts: mpsc::UnboundedSender<Attempt>,
}

impl Worker {
    /// One round: new events into deliveries, then due deliveries claimed and started. Returns
    /// whether there was work (then the next round follows at once).
    async fn round(self: &Arc<Self>) -> bool {
        let db = &self.state.db;
        let made = match webhooks::enqueue(db, EVENTS_PER_ROUND).await {
            Ok(made) => made,
            Err(err) => {
                tracing::warn!(error = %err, "taking events for webhooks failed");
                return false;
            }
        };
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
            return made > 0;
        }
        let claimed =
            match webhooks::claim(db, room as i64, CLAIM_PER_WEBHOOK as i64, &busy, LEASE_SECS)
                .await
            {
                Ok(claimed) => claimed,
                Err(err) => {
                    tracing::warn!(error = %err, "claiming webhook deliveries failed");
                    return false;
                }
            };
        let any = !claimed.is_empty();
        let wanted: Vec<(WorkspaceId, i64)> = claimed
            .iter()
            .map(|d| (d.workspace_id, d.event_position))
            .collect();
        // One event may go to several webhooks in a round: each delivery gets its copy.
        let events = if wanted.is_empty() {
            HashMap::new()
        } else {
            match events::at(db, &wanted).await {
                Ok(events) => events,
                Err(err) => {
                    // The claims' leases run out and they are tried again.
                    tracing::warn!(error = %err, "reading events for webhook deliveries failed");
                    return false;
                }
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
                // Its own webhook's slot first, so a slow receiver queues on its own slots
                // without taking the ones other webhooks need.
                if let Ok(_mine) = per_webhook.acquire().await {
                    if let Ok(_slot) = worker.slots.clone().acquire_owned().await {
                        worker.attempt(delivery, event).await;
                    }
                }
                worker.leave(webhook);
            });
        }
        any || made > 0
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

    /// POSTs one delivery and records what came of it.
    async fn attempt(&self, d: Claimed, event: Option<Event>) {
        let started = Instant::now();
        let (status, error) = match &event {
            None => (
                None,
                Some(
                    "the event is gone (past EVENT_RETENTION_DAYS, or its room was deleted)"
                        .to_owned(),
                ),
            ),
            Some(event) => self.post(&d, event).await,
        };
        let latency_ms = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
        let delivered = status.is_some_and(|s| (200..300).contains(&s)) && error.is_none();
        let retry_in_secs = if delivered {
            None
        } else if event.is_none() {
            // Nothing left to send: past the retry window at once, so it is marked failed.
            Some(2.0 * GIVE_UP_AFTER_SECS)
        } else {
            Some(self.backoff(d.attempt))
        };
        let outcome = Attempt {
            delivery_id: d.id,
            attempt: d.attempt,
            response_status: status,
            latency_ms,
            error: error.clone(),
            retry_in_secs,
        };
        let _ = self.attempts.send(outcome);
        if !delivered {
            tracing::info!(
                delivery.id = %d.id, webhook.id = %d.webhook_id, attempt = d.attempt,
                status = ?status, error = error.as_deref().unwrap_or(""),
                "webhook delivery failed; retrying later"
            );
        }
    }

    /// The request itself: the answer's status, or why there was none.
    async fn post(&self, d: &Claimed, event: &Event) -> (Option<i32>, Option<String>) {
        let id = event.id.to_string();
        let body = match serde_json::to_vec(event) {
            Ok(body) => body,
            Err(err) => return (None, Some(format!("the event could not be encoded: {err}"))),
        };
        let url = match reqwest::Url::parse(&d.url) {
            Ok(url) => url,
            Err(err) => return (None, Some(format!("bad URL: {err}"))),
        };
        // An address literal never reaches the resolver: checked here instead.
        if let Some(host) = url.host_str() {
            let allow = self.state.config.webhook_allow_private;
            if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
                if let Err(why) = address::check_host(host, 0, allow).await {
                    return (None, Some(why));
                }
            }
        }
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = signing::sign(&d.secret, &id, timestamp, &body);
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
        let base = self.state.config.webhook_retry_base.as_secs_f64();
        base * 2f64.powi((attempt - 1).clamp(0, 30))
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
